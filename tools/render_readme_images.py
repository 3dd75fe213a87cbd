"""Regenerate the pictures in docs/images/ from graphs/*.yaml, so README pictures never drift.

For every graph file ``graphs/<name>.yaml`` this writes ``docs/images/<name>_graph.{svg,png}``
(the area graph) and ``docs/images/<name>_unrolled.{svg,png}`` (the space-time picture); for
the large graphs of ``GRAPH_ONLY`` (the macaque cortex) only the area graph, plus the extra
views of ``VIEWS`` (``docs/images/<name>_<view>_graph.{svg,png}``: the README's first picture
is ``macaque_fv91_top3_graph.svg``). Needs graphviz's ``dot`` program.

    .venv/bin/python tools/render_readme_images.py [--graphs DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tnnspec
from tnnspec.render import RenderError, area_graph, render, unrolled

GRAPH_ONLY = ("macaque_markov2014", "macaque_fv91")
VIEWS = {"macaque_fv91": {"top3": {"top_k": 3}}}  # extra area-graph pictures: view -> area_graph options
README_GRAPHS = ("ventral4", "cornet_rt", *GRAPH_ONLY)


def render_all(graphs: Path, out: Path, names=README_GRAPHS) -> list[Path]:
    """Render the graphs ``names`` (file stems in ``graphs``; None: every graph file, include
    fragments ``_*.yaml`` excepted) into ``out``; returns the files written. Graphs named in
    ``GRAPH_ONLY`` get the area graph only."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    paths = sorted(p for p in Path(graphs).glob("*.yaml") if not p.name.startswith("_"))
    if names is not None:
        paths = [p for p in paths if p.stem in names]
    for path in paths:
        spec = tnnspec.load(path)
        pictures = [("graph", area_graph(spec))]
        pictures += [(f"{view}_graph", area_graph(spec, **options)) for view, options in VIEWS.get(path.stem, {}).items()]
        if path.stem not in GRAPH_ONLY:
            pictures.append(("unrolled", unrolled(spec)))
        for kind, picture in pictures:
            for suffix in ("svg", "png"):
                # the cortex-scale pictures are large: their PNGs at 96 dpi (the SVGs are exact)
                dpi = 96 if path.stem in GRAPH_ONLY else 144
                written.append(render(picture, out / f"{path.stem}_{kind}.{suffix}", dpi=dpi))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graphs", type=Path, default=ROOT / "graphs", help="folder of graph YAML files")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder for the pictures")
    args = parser.parse_args(argv)
    try:
        written = render_all(args.graphs, args.out)
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for p in written:
        print(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
