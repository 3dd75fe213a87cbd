"""A screenshot of ``tnnspec view`` for the docs: docs/images/view.png.

Serves FILE (default graphs/ventral4.yaml) on a free port of 127.0.0.1, opens the page in
headless Chromium (Debian's /usr/bin/chromium, driven by Playwright; Playwright's own browser
download is not used), pins the details of one area and writes the picture.

    .venv/bin/python tools/view_screenshot.py [FILE] [-o docs/images/view.png] [--select V4]

Needs ``pip install playwright`` (the dev extra) and ``apt-get install chromium`` (make setup).
The browser tests in tests/test_view.py launch Chromium through :func:`launch`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tnnspec.view import ViewServer

CHROMIUM = "/usr/bin/chromium"
# a closed network, running as root: no sandbox, no GPU, nothing fetched in the background
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def launch(playwright):
    """Headless Chromium from /usr/bin/chromium (a fresh profile: Playwright makes one)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)


def screenshot(file: str | Path, out: str | Path, select: str | None = "V4",
               size: tuple[int, int] = (1600, 1000)) -> Path:
    from playwright.sync_api import sync_playwright

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with ViewServer(file, port=0) as server, sync_playwright() as p:
        server.start()
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": size[0], "height": size[1]}, device_scale_factor=1)
            page.goto(server.url)
            page.wait_for_selector("#canvas-area_graph svg g.node.pickable", timeout=15000)
            if select:
                page.locator(f'#canvas-area_graph g.node[data-name="{select}"]').click()
                page.wait_for_selector(f'#details[data-name="{select}"]', timeout=5000)
            page.mouse.move(size[0] - 5, size[1] - 5)  # out of the picture: the pinned details show
            page.screenshot(path=str(out))
        finally:
            browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", default=os.path.relpath(ROOT / "graphs" / "ventral4.yaml"))
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "images" / "view.png"))
    ap.add_argument("--select", default="V4", help="the area whose details are pinned ('' for none)")
    ap.add_argument("--size", default="1600x1000", help="viewport WIDTHxHEIGHT in pixels")
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    print(f"wrote {screenshot(args.file, args.output, args.select or None, (width, height))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
