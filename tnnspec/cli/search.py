"""``tnnspec search``: architecture search over a search-space file (docs/search.md).

``tnnspec search SPACE --trials N --workers K [--storage URL] --out DIR`` runs (or resumes) the
study; ``tnnspec search --report DIR`` writes ``DIR/report/``. Problems the user can cause
(bad space file: located diagnostics, exit 1; bad storage URL, missing Optuna, a folder with no
search: one line, exit 2) are never tracebacks.
"""

from __future__ import annotations

import argparse
import sys

from .argtypes import at_least_one


def cmd_search(args) -> int:
    from ..search.engine import SearchError
    from ..spec.diagnostics import SpecError

    def fail(msg: str) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return 2

    try:
        if args.report:
            if args.space:
                return fail("--report DIR takes no SPACE file (the folder's search.json names it)")
            from ..search.report import write_report

            rep = write_report(args.report, storage=args.storage)
            print(f"wrote {rep / 'report.md'}, {rep / 'trials.csv'} and the plots in {rep}")
            return 0
        if not args.space:
            return fail("give a search-space file (tnnspec search SPACE --trials N --out DIR), or --report DIR")
        if args.trials is None:
            return fail("--trials N is needed: the number of finished trials the study should hold")
        if args.out is None:
            return fail("--out DIR is needed: where the trial graphs, trainings and search.json go")
        from ..search.engine import run_search

        run = run_search(args.space, trials=args.trials, workers=args.workers, storage=args.storage, out=args.out,
                         study_name=args.study, device=args.device or "cpu", heartbeat=args.heartbeat,
                         threads=args.threads,
                         say=lambda msg: print(msg, flush=True))
        return 0 if run.complete else 1
    except SearchError as exc:
        return fail(str(exc))
    except SpecError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue the study", file=sys.stderr)
        return 130


def add_search_parser(sub) -> argparse.ArgumentParser:
    from ..search.engine import DEFAULT_HEARTBEAT

    p = sub.add_parser("search", help="architecture search on a search-space file with Optuna (parallel workers)",
                       description="Run or resume an architecture search (Optuna study) over the graphs a "
                                   "search-space file describes, with K worker processes sharing a storage; or "
                                   "write the report of a search folder (--report DIR). See docs/search.md.")
    p.add_argument("space", nargs="?", metavar="SPACE", help="search-space file (tnnspec_search: \"1\")")
    p.add_argument("--trials", type=at_least_one, metavar="N",
                   help="finished (complete or pruned) trials the study should hold, across all workers")
    p.add_argument("--workers", type=at_least_one, default=1, metavar="K",
                   help="worker processes on this machine (each gets cores // K torch threads; default 1)")
    p.add_argument("--threads", type=at_least_one, default=None, metavar="T",
                   help="torch threads of each worker (default: cores // K)")
    p.add_argument("--storage", metavar="URL",
                   help="sqlite:///PATH.db (default: DIR/study.db), postgresql://..., mysql://... or "
                        "journal:///PATH.log; workers anywhere that share it share the study")
    p.add_argument("--out", metavar="DIR", help="output folder: search.json, graphs/, trials/, report/")
    p.add_argument("--study", metavar="NAME", help="study name in the storage (default: the space's name)")
    p.add_argument("--device", help="device the workers train on: cpu (default), cuda or cuda:N")
    p.add_argument("--heartbeat", type=at_least_one, default=DEFAULT_HEARTBEAT, metavar="S",
                   help=f"seconds between a running trial's heartbeats (default {DEFAULT_HEARTBEAT}); a trial "
                        "silent for 2*S is failed and run again with the same parameters")
    p.add_argument("--report", metavar="DIR", help="write DIR/report/ for the search in DIR (no SPACE)")
    p.set_defaults(fn=cmd_search)
    return p
