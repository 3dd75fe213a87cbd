"""What the tools that generate zoo graphs from data files share (make_macaque_graph.py,
make_fv91_graph.py): the data folder (the copy in the repository, else the project's shared
one) and the command line (write the graph file, or ``--check`` that it is up to date)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def data_folder(name: str) -> Path:
    """``data/macaque/<name>`` in the repository, else ``../shared/data/macaque/<name>``."""
    repo = ROOT / "data" / "macaque" / name
    return repo if repo.is_dir() else ROOT.parent / "shared" / "data" / "macaque" / name


def run(doc: str, build: Callable[[Path], str], data_name: str, out: Path, argv: list[str] | None) -> int:
    """The generator's command line: ``[--data DIR] [--out FILE] [--check]``; ``--check`` exits 1
    when the file on disk differs from what the data give."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=None,
                        help=f"folder with the {data_name} CSVs (default: data/macaque/{data_name}, "
                             f"else ../shared/data/macaque/{data_name})")
    parser.add_argument("--out", type=Path, default=out, help="the graph file to write")
    parser.add_argument("--check", action="store_true", help="compare with --out instead of writing it")
    args = parser.parse_args(argv)
    text = build(args.data or data_folder(data_name))
    if args.check:
        same = args.out.is_file() and args.out.read_text() == text
        print(f"{args.out}: {'up to date' if same else 'differs from the data; run without --check'}")
        return 0 if same else 1
    args.out.write_text(text)
    print(f"wrote {args.out}")
    return 0
