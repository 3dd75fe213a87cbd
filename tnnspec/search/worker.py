"""One search worker: ``python -m tnnspec.search.worker SPACE --storage URL --study NAME --out DIR --trials N``.

``tnnspec search`` starts these; more can be started by hand, on any machine that reaches the
storage (docs/search.md, "Distributed workers"). A worker takes trials from the shared study
until it holds ``N`` finished (complete or pruned) trials:

* before each trial it takes a file lock in the output folder (so that workers of one machine
  count and ask one at a time), fails stale trials (heartbeat storages: a lost worker's trial is failed
  and queued again with the same parameters), then counts: with ``N`` finished it stops; when
  the finished and running trials already make ``N`` it waits (one of those may still fail);
* it runs one trial with ``study.optimize(..., n_trials=1, callbacks=[MaxTrialsCallback(N,
  states=(COMPLETE, PRUNED))])``;
* a trial that finds, once started, that ``N`` trials numbered before it are finished or
  running is *surplus* (two workers of different machines asked at the same moment): it ends FAIL with the user
  attribute ``surplus`` (and no training), so the study ends with exactly ``N`` finished.

A trial that fails with a problem of the trial itself (training diverged, a data or neural
error) ends FAIL with the user attribute ``error`` and the worker goes on; too many failures
(``N`` or more) stop it. Exit status: 0 when the study holds ``N`` finished trials.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

POLL_S = 0.5


class SurplusTrial(Exception):
    """This trial is not needed: earlier trials already make the budget."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tnnspec.search.worker", description=__doc__.split("\n\n")[0])
    p.add_argument("space", metavar="SPACE")
    p.add_argument("--storage", required=True, metavar="URL")
    p.add_argument("--study", required=True, metavar="NAME")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--trials", required=True, type=int, metavar="N")
    p.add_argument("--threads", type=int, default=None, metavar="T", help="torch threads (default: torch's)")
    p.add_argument("--index", type=int, default=0, metavar="I", help="worker index (its sampler seed is seed + I)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--heartbeat", type=int, default=None, metavar="S")
    return p


def run_worker(space, study, *, trials: int, out, device: str = "cpu", say=None) -> int:
    """Take trials of ``study`` until it holds ``trials`` finished ones. Returns an exit status."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from ..neural.errors import NeuralDataError
    from ..train.evaluate import DataError
    from ..train.trainer import TrainError
    from .engine import counts, fail_orphaned_trials
    from .objectives import TrialObjective

    say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
    objective = TrialObjective(space, out, device=device)
    trial_errors = (TrainError, DataError, NeuralDataError, ValueError, RuntimeError)
    ahead_states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)

    lock = _AskLock(Path(out) / ".ask.lock")

    def run(trial):
        lock.release()
        ahead = [t for t in study.get_trials(deepcopy=False, states=ahead_states) if t.number < trial.number]
        if len(ahead) >= trials:
            trial.set_user_attr("surplus", True)
            raise SurplusTrial(f"trial {trial.number}: {len(ahead)} trials before it make the budget")
        try:
            return objective(trial)
        except optuna.TrialPruned:
            raise
        except trial_errors as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise

    stop = MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    while True:
        lock.acquire()  # held until this worker's next trial has been asked for (or it waits)
        fail_orphaned_trials(study)
        c = counts(study)
        if c.finished >= trials:
            lock.release()
            return 0
        errors = sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
                     if t.user_attrs.get("error"))
        if errors >= max(trials, 3):
            lock.release()
            say(f"worker {os.getpid()}: stopping: {errors} trials failed with errors (see the user attribute "
                "'error' of the FAIL trials, or the report)")
            return 1
        if c.finished + c.running >= trials and c.waiting == 0:
            lock.release()
            time.sleep(POLL_S)  # the running trials make the budget; wait in case one of them is lost
            continue
        try:
            study.optimize(run, n_trials=1, callbacks=[stop], catch=(SurplusTrial, *trial_errors),
                           gc_after_trial=True)
        finally:
            lock.release()


class _AskLock:
    """An exclusive file lock that the workers sharing an output folder hold from counting the
    trials to asking for the next one, so that on one machine two workers never both start the
    last trial (workers elsewhere are kept exact by the surplus check)."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        if self.fd is not None:
            return
        try:
            import fcntl

            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self.fd = fd
        except (ImportError, OSError):  # no flock here: the surplus check alone
            self.fd = None

    def release(self) -> None:
        if self.fd is None:
            return
        import fcntl

        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except KeyboardInterrupt:
        return 130


def _main(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from ..spec.diagnostics import SpecError
    from .engine import DEFAULT_HEARTBEAT, SearchError, create_or_load_study, make_storage
    from .space import load_space

    try:
        space = load_space(args.space)
        storage = make_storage(args.storage, args.heartbeat or DEFAULT_HEARTBEAT)
        study = create_or_load_study(space, storage, args.study, worker_index=args.index, create=False)
    except SearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except SpecError as exc:
        for d in exc.diagnostics:
            print(d, file=sys.stderr)
        return 1
    return run_worker(space, study, trials=args.trials, out=args.out, device=args.device)


def _stop_once() -> None:
    """Ctrl-C or SIGTERM (``tnnspec search`` passes its Ctrl-C on): stop like Ctrl-C, once — the
    running trial ends FAIL; a second signal (the terminal's and the parent's) is ignored."""
    import signal

    def handler(signum, frame):
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    _stop_once()
    sys.exit(main())
