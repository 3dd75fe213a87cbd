"""The README's demo (until the training demo exists): validate, summarise and render a graph."""

from __future__ import annotations

import sys
from pathlib import Path

from tnnspec.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "out" / "demo"


def run() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    graph = str(ROOT / "graphs" / "ventral4.yaml")
    steps = [["validate", graph], ["summary", graph],
             ["render", graph, "-o", str(OUT / "ventral4.svg"), "--detail"],
             ["render", graph, "--unrolled", "-o", str(OUT / "ventral4_unrolled.svg")]]
    for argv in steps:
        print(f"\n$ tnnspec {' '.join(argv)}", flush=True)
        if main(argv) != 0:
            return 1
    print(f"\ndemo outputs in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(run())
