"""``python -m tnnspec.train train|evaluate ...``: the two commands without the rest of the CLI
(also ``torchrun --nproc-per-node N -m tnnspec.train train SPEC ...``)."""

from __future__ import annotations

import argparse
import sys

from ..cli.train import add_evaluate_parser, add_train_parser
from ..spec.diagnostics import SpecError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tnnspec.train")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_evaluate_parser(sub)
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except SpecError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
