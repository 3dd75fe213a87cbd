"""``tnnspec view``: the state it shows, the watcher, the server, the command, and the page in a
real headless Chromium (skipped, with the reason, when Playwright or /usr/bin/chromium is missing)."""

from __future__ import annotations

import http.client
import json
import os
import re
import runpy
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tnnspec.api import check_file
from tnnspec.cli.main import main
from tnnspec.cli.summary import summary_text
from tnnspec.graph.checks import edge_names
from tnnspec.graph.plan import build_plan
from tnnspec.graph.timing import edge_delays
from tnnspec.render import hierarchy_levels
from tnnspec.spec.source import files_read
from tnnspec.view import ViewServer, ViewState, build_picture

ROOT = Path(__file__).resolve().parents[1]
VENTRAL4 = ROOT / "graphs" / "ventral4.yaml"

# ventral4's IT -> V4 feedback edge, pointed at an area that does not exist; the fix adds one
FEEDBACK = "{type: feedback, source: IT, target: V4,"
MISTAKE = "{type: feedback, source: IT, target: V5,"
NEW_AREA = "  PIT: {use: recurrent_area, level: 5, channels: 64, group: ventral}\n"
NEW_EDGE = "  - {type: feedforward, source: IT, target: PIT, transform: [{conv: {kernel: 1}}]}\n"


def write(path: Path, text: str) -> None:
    """Write ``text`` and make sure the file's mtime moves on (coarse clocks)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    if path.stat().st_mtime_ns <= before:
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


def mistake_position(text: str) -> tuple[int, int]:
    """line, column of 'V5' in ventral4 with MISTAKE written in."""
    for number, line in enumerate(text.splitlines(), 1):
        if MISTAKE in line:
            return number, line.index("target: V5") + len("target: ") + 1
    raise AssertionError("mistake not written")


def with_new_area(text: str) -> str:
    text = text.replace("  IT: {use: recurrent_area, level: 4, channels: 128, group: ventral}\n",
                        "  IT: {use: recurrent_area, level: 4, channels: 128, group: ventral}\n" + NEW_AREA)
    return text.replace("readouts:\n", NEW_EDGE + "readouts:\n")


def get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.putrequest("GET", path, skip_host=True)
    conn.putheader("Host", host or f"127.0.0.1:{port}")
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, body


@pytest.fixture(scope="module")
def ventral4_state():
    state = ViewState(VENTRAL4)
    assert state.refresh()
    return state


# ---------------------------------------------------------------- the state, without a browser

def test_state_of_a_valid_file_matches_the_spec(ventral4_state, has_dot):
    s = ventral4_state.snapshot()
    spec, _ = check_file(VENTRAL4)
    plan = build_plan(spec)
    assert s["valid"] and not s["stale"] and s["diagnostics"] == [] and s["version"] == 1
    assert s["files"] == [str(VENTRAL4)] and s["missing"] == []
    for name in spec.areas:
        assert f"<title>{name}</title>" in s["svg"]["area_graph"]
        assert f"<title>{name}__t0</title>" in s["svg"]["unrolled"]
    for name in edge_names(spec):
        assert f'id="{name}"' in s["svg"]["area_graph"]
    levels = hierarchy_levels(spec)
    table = summary_text(spec, show_plan=False).splitlines()
    for name, area in spec.areas.items():
        d = s["areas"][name]
        assert d["level"] == levels[name]
        assert d["cell"]["type"] == area.cell.type and d["channels"] == area.channels
        assert d["arrival"] == plan.arrival[name] and d["arrival_ms"] == plan.arrival[name] * spec.time.dt_ms
        assert tuple(d["output_shape"]) == tuple(plan.shapes.output[name])
        row = next(line for line in table if line.startswith(name + " "))
        assert f"{d['params']:,}" in row.split()  # the summary's params column
    delays = edge_delays(spec)
    for i, (name, e) in enumerate(zip(edge_names(spec), spec.edges)):
        d = s["edges"][name]
        assert (d["type"], d["source"], d["target"], d["weight"]) == (e.type, e.source, e.target, e.weight)
        assert d["delay_steps"] == delays[i] and d["delay_ms"] == delays[i] * spec.time.dt_ms
    assert s["edges"]["IT__V4"]["transform"] == ["resample(mode=bilinear)", "conv(kernel=1)"]
    assert s["summary"] == summary_text(spec, show_plan=False)
    assert s["plan"] in summary_text(spec)  # the plan as `tnnspec summary` prints it
    assert not ventral4_state.refresh()  # nothing changed: nothing rebuilt
    assert ventral4_state.builds == 1 and json.loads(ventral4_state.json_bytes())["version"] == 1


def test_a_mistake_is_located_and_the_last_valid_picture_kept(tmp_path, has_dot):
    path = tmp_path / "ventral4.yaml"
    good = VENTRAL4.read_text()
    write(path, good)
    state = ViewState(path)
    state.refresh()
    first = state.snapshot()
    write(path, good.replace(FEEDBACK, MISTAKE))
    assert state.refresh()
    s = state.snapshot()
    line, col = mistake_position(path.read_text())
    assert not s["valid"] and s["stale"] and s["version"] == 2 and s["picture_version"] == 1
    assert [d["text"] for d in s["diagnostics"]] == [
        f"{path}:{line}:{col}: error: edges[8].target: unknown area 'V5'; known: V1, V2, V4, IT"]
    assert s["svg"] == first["svg"] and s["areas"] == first["areas"] and s["summary"] == first["summary"]
    write(path, with_new_area(path.read_text().replace(MISTAKE, FEEDBACK)))
    assert state.refresh()
    s = state.snapshot()
    assert s["valid"] and not s["stale"] and s["picture_version"] == 3
    assert "<title>PIT</title>" in s["svg"]["area_graph"] and s["areas"]["PIT"]["in_edges"] == ["IT__PIT"]


def test_a_file_that_never_was_valid_has_no_picture(tmp_path):
    path = tmp_path / "bad.yaml"
    write(path, "tnnspec: \"1.1\"\nname: bad\nareas: [\n")
    state = ViewState(path)
    state.refresh()
    s = state.snapshot()
    assert not s["valid"] and not s["stale"] and s["picture_version"] is None
    assert s["svg"] == {"area_graph": None, "unrolled": None} and s["areas"] == {}
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: error: YAML syntax error", s["diagnostics"][0]["text"])


COMMON = """\
tnnspec: "1.1"
templates:
  block:
    cell: {type: identity}
    ops: [relu]
"""
MAIN = """\
tnnspec: "1.1"
name: small
include: [parts/common.yaml]
inputs:
  image: {shape: [3, 16, 16]}
areas:
  A: {use: block, channels: 8}
edges:
  - {type: feedforward, source: image, target: A, transform: [{conv: {kernel: 3}}]}
"""


def test_the_loader_lists_the_files_it_reads(tmp_path):
    (tmp_path / "parts").mkdir()
    write(tmp_path / "parts" / "common.yaml", COMMON)
    write(tmp_path / "main.yaml", MAIN)
    with files_read() as files:
        spec, diags = check_file(tmp_path / "main.yaml")
    assert spec is not None and diags == []
    assert files == [str(tmp_path / "main.yaml"), str(tmp_path / "parts" / "common.yaml")]
    with files_read() as files:  # a missing include is listed too: creating it changes the spec
        write(tmp_path / "other.yaml", MAIN.replace("parts/common.yaml", "parts/missing.yaml"))
        spec, diags = check_file(tmp_path / "other.yaml")
    assert spec is None and files[-1] == str(tmp_path / "parts" / "missing.yaml")


def test_a_change_in_an_included_file_rebuilds(tmp_path, has_dot):
    (tmp_path / "parts").mkdir()
    common, main_file = tmp_path / "parts" / "common.yaml", tmp_path / "main.yaml"
    write(common, COMMON)
    write(main_file, MAIN)
    state = ViewState(main_file)
    state.refresh()
    s = state.snapshot()
    assert s["valid"] and s["files"] == [str(main_file), str(common)]
    assert s["areas"]["A"]["ops"] == ["relu"] and not state.refresh()
    write(common, COMMON.replace("ops: [relu]", "ops: [relu, {dropout: 0.5}]"))  # only the include changes
    assert state.refresh()
    s = state.snapshot()
    assert s["version"] == 2 and s["areas"]["A"]["ops"] == ["relu", "dropout(p=0.5)"]
    common.unlink()  # a missing include: located error, still watched; back again: valid
    assert state.refresh()
    s = state.snapshot()
    assert s["stale"] and s["missing"] == [str(common)]
    assert s["diagnostics"][0]["text"].startswith(f"{main_file}:3:11: error: include: 'parts/common.yaml' not found")
    write(common, COMMON)
    assert state.refresh() and state.snapshot()["valid"] and state.snapshot()["version"] == 4


def test_without_graphviz_the_page_says_so_and_keeps_the_rest(monkeypatch):
    spec, _ = check_file(VENTRAL4)
    monkeypatch.setenv("PATH", "")
    picture = build_picture(spec)
    assert picture["svg"] == {"area_graph": None, "unrolled": None}
    assert "graphviz" in picture["svg_error"] and "not installed" in picture["svg_error"]
    assert picture["summary"] and picture["areas"]["V4"]["arrival"] == 0


# ---------------------------------------------------------------- the server and the command

def test_server_binds_localhost_and_serves_only_its_own_files(tmp_path, has_dot):
    path = tmp_path / "ventral4.yaml"
    write(path, VENTRAL4.read_text())
    with ViewServer(path, port=0, poll=0.05) as server:
        server.start()
        assert server.httpd.server_address[0] == "127.0.0.1" and server.url == f"http://127.0.0.1:{server.port}/"
        status, body = get(server.port, "/")
        assert status == 200 and b"/static/view.js" in body
        for name in ("view.js", "view.css", "index.html"):
            assert get(server.port, f"/static/{name}")[0] == 200
        for bad in ("/../pyproject.toml", "/static/../server.py", "/static/%2e%2e/state.py", "/static/",
                    "/static//etc/passwd", "/api/../../pyproject.toml", "/graphs/ventral4.yaml"):
            assert get(server.port, bad)[0] == 404, bad
        assert get(server.port, "/", host="evil.example:80")[0] == 403  # DNS rebinding
        assert get(server.port, "/", host=f"localhost:{server.port}")[0] == 200
        status, body = get(server.port, "/api/state")
        assert status == 200 and json.loads(body)["version"] == 1

        # /events: the version at once, then after every rebuild
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/events")
        events = conn.getresponse()
        assert events.getheader("Content-Type") == "text/event-stream"
        assert events.fp.readline() == b"event: version\n" and events.fp.readline() == b"data: 1\n"

        # a long poll returns as soon as a save is seen
        threading.Timer(0.3, write, (path, VENTRAL4.read_text().replace(FEEDBACK, MISTAKE))).start()
        t0 = time.monotonic()
        status, body = get(server.port, "/api/state?since=1")
        assert status == 200 and json.loads(body)["version"] >= 2 and time.monotonic() - t0 < 2.0
        assert json.loads(body)["stale"]
        events.fp.readline()  # the blank line ending the first event
        assert events.fp.readline() == b"event: version\n"
        assert int(events.fp.readline().removeprefix(b"data: ")) >= 2
        conn.close()
        assert get(server.port, "/api/state?since=x")[0] == 400


def test_view_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["view", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage: tnnspec view" in out and "--port" in out and "127.0.0.1" in out


def test_port_in_use_and_missing_file_are_clear_errors(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["view", str(VENTRAL4), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"error: port {port} on 127.0.0.1 is in use" in err and "--port 0" in err and "Traceback" not in err
    assert main(["view", "no/such/file.yaml"]) == 1
    assert "error: no/such/file.yaml: no such file" in capsys.readouterr().err


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_the_server_cleanly(tmp_path, sig):
    """Also when started with SIGINT ignored, as a background job of a non-interactive shell
    starts its children (Python then keeps it ignored unless the program sets it)."""
    path = tmp_path / "ventral4.yaml"
    write(path, VENTRAL4.read_text())
    proc = subprocess.Popen([sys.executable, "-m", "tnnspec", "view", str(path), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            preexec_fn=_ignore_sigint)
    try:
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            url = m and int(m.group(1))
        assert url, f"no URL printed; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        assert get(url, "/")[0] == 200
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)  # generous: a loaded machine, not a timing test
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err and "KeyboardInterrupt" not in err


# ---------------------------------------------------------------- the page, in headless Chromium

def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
        print(f"skipped: {reason}")
        pytest.skip(reason)
    tool = runpy.run_path(str(ROOT / "tools" / "view_screenshot.py"))
    if not Path(tool["CHROMIUM"]).exists():
        reason = f"{tool['CHROMIUM']} is missing (apt-get install chromium, or make setup)"
        print(f"skipped: {reason}")
        pytest.skip(reason)
    return tool


def test_the_page_follows_the_file(tmp_path, has_dot):
    tool = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    path = tmp_path / "ventral4.yaml"
    write(path, VENTRAL4.read_text())
    spec, _ = check_file(path)
    area_names = "els => els.map(e => e.dataset.title)"
    graph_nodes = "#canvas-area_graph svg g.node"
    with ViewServer(path, port=0) as server, sync_playwright() as p:
        server.start()
        browser = tool["launch"](p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(server.url)
            page.wait_for_selector(f"{graph_nodes}.pickable", timeout=15000)
            assert set(spec.areas) <= set(page.eval_on_selector_all(graph_nodes, area_names))
            assert page.is_hidden("#diagnostics") and page.is_hidden("#stale")

            # a mistake: its located message appears within seconds, the picture stays (stale)
            write(path, VENTRAL4.read_text().replace(FEEDBACK, MISTAKE))
            line, col = mistake_position(path.read_text())
            where = f"{path}:{line}:{col}: error: edges[8].target: unknown area 'V5'"
            page.wait_for_function("t => [...document.querySelectorAll('#diag-list li')]"
                                   ".some(li => li.textContent.startsWith(t))", arg=where, timeout=4000)
            assert page.is_visible("#stale") and "last valid version" in page.inner_text("#stale")
            assert set(spec.areas) <= set(page.eval_on_selector_all(graph_nodes, area_names))

            # fixed with a new area and edge: the new area is drawn, the errors go
            write(path, with_new_area(path.read_text().replace(MISTAKE, FEEDBACK)))
            page.wait_for_selector(f'{graph_nodes}[data-title="PIT"]', timeout=4000)
            assert page.is_hidden("#diagnostics") and page.is_hidden("#stale")

            # details: hover shows an area, a click pins it
            page.hover(f'{graph_nodes}[data-name="V2"]')
            page.wait_for_selector('#details[data-name="V2"]', timeout=2000)
            page.click(f'{graph_nodes}[data-name="PIT"]')
            page.mouse.move(2, 890)
            details = page.inner_text("#details")
            assert "PIT" in details and "arrival" in details and "step 0 (0 ms)" in details
            assert "64×4×4" in details and "identity" in details
            page.click("#details .chip >> text=IT__PIT")  # an edge from the area's details
            details = page.inner_text("#details")
            assert "IT → PIT" in details and "0 steps = 0 ms" in details and "conv(kernel=1)" in details

            # pan/zoom: the wheel zooms around the pointer, Fit goes back
            before = page.get_attribute("#canvas-area_graph svg", "viewBox")
            page.mouse.move(500, 400)
            page.mouse.wheel(0, -400)
            page.wait_for_function(f"() => document.querySelector('#canvas-area_graph svg')"
                                   f".getAttribute('viewBox') !== '{before}'", timeout=2000)
            page.click("#fit")
            assert page.get_attribute("#canvas-area_graph svg", "viewBox") == before

            shot = tmp_path / "view.png"
            page.screenshot(path=str(shot))
            print(f"screenshot: {shot}")
            assert shot.stat().st_size > 10_000
        finally:
            browser.close()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' not installed")
def test_screenshot_tool_is_wired(tmp_path):
    tool = _browser_or_skip()
    out = tool["screenshot"](VENTRAL4, tmp_path / "view.png", size=(1000, 700))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
