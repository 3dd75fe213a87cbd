"""``tnnspec import-tnn``: convert a neuroailab tnn / convrnns JSON graph into a tnnspec file.

Problems in the JSON are printed as located diagnostics (``file:line:col: error: ...``, exit
status 1), never as a traceback; notes (what the user should know about the conversion) go to
standard error, the YAML to ``-o`` or standard output.
"""

from __future__ import annotations

import sys
from pathlib import Path


def cmd_import_tnn(args) -> int:
    from ..interop import import_tnn
    from ..spec.diagnostics import SpecError

    try:
        result = import_tnn(args.file, unroll=args.unroll, cell=args.cell, name=args.name)
    except SpecError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return 1
    except ValueError as exc:  # a bad --cell or --name
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.output:
        try:
            Path(args.output).write_text(result.text, encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
            return 1
        spec = result.spec
        print(f"wrote {args.output} ({len(spec.areas)} areas, {len(spec.edges)} edges)", file=sys.stderr)
    else:
        sys.stdout.write(result.text)
    return 0


def add_import_parser(sub) -> None:
    """Add ``tnnspec import-tnn FILE.json [--unroll tnn|tnn_tf] [--cell NAME] [--name NAME] [-o OUT.yaml]``."""
    from ..interop import CELL_CHOICES, UNROLL_MODES

    p = sub.add_parser("import-tnn", help="convert a neuroailab tnn/convrnns JSON graph into a tnnspec file")
    p.add_argument("file", metavar="FILE.json", help="the tnn JSON graph ({\"nodes\": [...], \"edges\": [...]})")
    p.add_argument("--unroll", choices=UNROLL_MODES, default="tnn",
                   help="tnn: every link delays one step (tnn's unroll, default); tnn_tf: links along the "
                        "feedforward order in the same step, the others one step later (unroll_tf)")
    p.add_argument("--cell", metavar="NAME", default=None,
                   help=f"tnnspec cell for memory nodes whose keys do not identify their cell ({', '.join(CELL_CHOICES)})")
    p.add_argument("--name", metavar="NAME", default=None, help="model name (default: the file's stem)")
    p.add_argument("-o", "--output", metavar="OUT.yaml", help="write the graph here (default: standard output)")
    p.set_defaults(fn=cmd_import_tnn)
