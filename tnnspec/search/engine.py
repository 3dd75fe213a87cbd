"""The search engine: Optuna storages, samplers, pruners, the study, and the worker processes.

A search is an Optuna study kept in a *storage* that every worker process shares:

* ``sqlite:///path.db`` (the default: ``OUT/study.db``) — one machine, a few workers;
* ``postgresql://user@host:port/db`` (or ``postgresql+psycopg2://``) and ``mysql://...`` (or
  ``mysql+pymysql://``) — workers on several machines;
* ``journal:///path/to/file.log`` — Optuna's append-only journal file (one machine, or a file
  system with working ``flock``).

Relational storages run Optuna's heartbeat: a worker records one every ``heartbeat`` seconds
while a trial runs; a trial whose heartbeat is older than ``2 * heartbeat`` seconds is failed by
the next worker that starts a trial (``optuna.storages.fail_stale_trials``) and queued again
with the same parameters (``RetryHeartbeatStaleTrialCallback(max_retry=2)``). Optuna 4.9's
journal storage has no heartbeat: there, ``tnnspec search`` fails the running trials of workers
*of this machine* that are no longer alive when it starts, and queues them the same way.

``tnnspec search`` (:func:`run_search`) creates or loads the study, then starts ``K`` worker
processes (``python -m tnnspec.search.worker``, each with ``cores // K`` torch threads) and
prints a line per finished trial. Workers stop when the study holds ``N`` finished trials
(complete or pruned), however many workers there are, on however many machines.

Nothing here imports Optuna at module import time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

SEARCH_JSON = "search.json"
DEFAULT_HEARTBEAT = 60
MAX_RETRY = 2
FINISHED = ("COMPLETE", "PRUNED")


class SearchError(Exception):
    """A problem the user can fix (bad storage URL, missing Optuna, no search in a folder):
    the command line prints it as one line and exits 2."""


# ---------------------------------------------------------------- optuna
def require_optuna():
    """The ``optuna`` module, or a SearchError saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise SearchError("tnnspec search needs Optuna: pip install 'tnnspec[search]' "
                          "(or pip install 'optuna>=4.9')") from None
    # the search prints its own line per trial (with a failure's reason): no Optuna log lines
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


# ---------------------------------------------------------------- storage
STORAGE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql", "mysql+mysqldb",
                   "journal")


def default_storage(out_dir: str | Path) -> str:
    return f"sqlite:///{(Path(out_dir) / 'study.db').resolve()}"


def check_storage_url(url: str) -> str:
    """``url`` if it names a supported storage; a SearchError saying what is accepted otherwise."""
    scheme, sep, rest = url.partition("://")
    accepted = ("sqlite:///PATH.db, postgresql://USER@HOST:PORT/DB, mysql://USER@HOST/DB "
                "or journal:///PATH.log")
    if not sep or scheme not in STORAGE_SCHEMES:
        raise SearchError(f"--storage {url!r}: unknown storage; use {accepted}")
    if scheme == "sqlite" and not rest.startswith("/"):
        raise SearchError(f"--storage {url!r}: a SQLite storage is sqlite:///PATH.db (three slashes)")
    if scheme == "sqlite" and rest in ("/", "/:memory:"):
        raise SearchError(f"--storage {url!r}: an in-memory database cannot be shared by worker processes")
    if scheme == "journal" and (not rest.startswith("/") or rest == "/"):
        raise SearchError(f"--storage {url!r}: a journal storage is journal:///PATH.log (three slashes)")
    if scheme not in ("sqlite", "journal") and not rest.strip("/"):
        raise SearchError(f"--storage {url!r}: no server named; use {accepted}")
    return url


def absolute_storage_url(url: str) -> str:
    """File storages with a relative path made absolute (workers may run elsewhere)."""
    scheme, _, rest = url.partition("://")
    if scheme in ("sqlite", "journal"):
        path = rest[1:]
        return f"{scheme}:///{Path(path).resolve()}"
    return url


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for output and search.json)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, at, host = rest.rpartition("@")
    if ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}@{host}"


def make_storage(url: str, heartbeat: int = DEFAULT_HEARTBEAT):
    """The Optuna storage for ``url``: RDBStorage with heartbeat and retry for sqlite, PostgreSQL
    and MySQL; JournalStorage with a file backend for ``journal:///``."""
    optuna = require_optuna()
    check_storage_url(url)
    scheme, _, rest = url.partition("://")
    if scheme == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = Path(rest[1:])
        if not path.parent.is_dir():
            raise SearchError(f"--storage {url!r}: folder {path.parent} does not exist")
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except OSError as exc:
            raise SearchError(f"--storage {url!r}: {exc}") from None
    heartbeat = max(1, int(heartbeat))
    given = url
    if scheme == "postgresql":  # SQLAlchemy 2.1 defaults to psycopg 3; take psycopg2 when only it is here
        import importlib.util

        if importlib.util.find_spec("psycopg") is None and importlib.util.find_spec("psycopg2") is not None:
            url = "postgresql+psycopg2://" + rest
    engine_kwargs: dict = {}
    if scheme == "sqlite":
        path = Path(rest[1:])
        if not path.parent.is_dir():
            raise SearchError(f"--storage {url!r}: folder {path.parent} does not exist")
        # several processes write: wait for the lock rather than fail ("database is locked")
        engine_kwargs = {"connect_args": {"timeout": 120}}
    elif scheme.startswith("postgresql"):
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    try:
        return optuna.storages.RDBStorage(
            url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY))
    except ImportError as exc:
        driver = {"postgresql": "psycopg2-binary", "mysql": "mysqlclient (or use mysql+pymysql:// with pymysql)"}
        need = next((v for k, v in driver.items() if scheme.startswith(k)), "the database driver")
        raise SearchError(f"--storage {redact(given)}: the database driver is not installed ({need}): {exc}") from None
    except Exception as exc:  # sqlalchemy's OperationalError, ArgumentError...: unreachable or malformed
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SearchError(f"--storage {redact(given)}: cannot open the storage: {first}") from None


def has_heartbeat(storage) -> bool:
    from optuna.storages._heartbeat import is_heartbeat_enabled

    inner = getattr(storage, "_backend", storage)  # create_study wraps an RDBStorage in a cache
    return is_heartbeat_enabled(inner) or is_heartbeat_enabled(storage)


# ---------------------------------------------------------------- sampler and pruner
def make_sampler(space, worker_index: int = 0):
    """The space's sampler. Each worker gets seed ``seed + worker_index`` so that workers started
    with the same seed do not propose the same parameters (a search with several workers is not
    reproducible trial by trial: which worker takes which trial depends on timing)."""
    optuna = require_optuna()
    cfg = dict(getattr(space, "sampler", None) or {})
    kind = cfg.get("type", "tpe")
    seed = cfg.get("seed")
    seed = None if seed is None else int(seed) + worker_index
    if kind == "tpe":  # constant_liar: parallel workers do not all propose the same point
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"unknown sampler type {kind!r}; use tpe, nsga2 or random")


def make_pruner(space):
    """MedianPruner(n_warmup_steps=warmup_epochs) or NopPruner. Optuna prunes single-objective
    studies only; a multi-objective study always gets NopPruner."""
    optuna = require_optuna()
    cfg = dict(getattr(space, "pruner", None) or {})
    kind = cfg.get("type", "median")
    if kind == "none" or len(space.objectives) > 1:
        return optuna.pruners.NopPruner()
    if kind == "median":
        return optuna.pruners.MedianPruner(n_warmup_steps=int(cfg.get("warmup_epochs", 0) or 0))
    raise SearchError(f"unknown pruner type {kind!r}; use median or none")


def directions(space) -> list[str]:
    return [o.direction for o in space.objectives]


def objective_names(space) -> list[str]:
    return [objective_label(o) for o in space.objectives]


def objective_label(o) -> str:
    levels = tuple(getattr(o, "levels", ()) or ())
    if o.metric == "occlusion_accuracy" and levels:
        return f"occlusion_accuracy@{','.join(f'{x:g}' for x in levels)}"
    return o.metric


# ---------------------------------------------------------------- the study
def create_or_load_study(space, storage, study_name: str, *, worker_index: int = 0, create: bool = True):
    """The study ``study_name`` in ``storage`` (a URL or a storage object), created with the
    space's directions unless it exists (``load_if_exists``): running the search again resumes
    it. Refused (SearchError) if an existing study has other objectives."""
    optuna = require_optuna()
    if isinstance(storage, str):
        storage = make_storage(storage)
    sampler, pruner = make_sampler(space, worker_index), make_pruner(space)
    wanted = directions(space)
    try:
        if create:
            study = optuna.create_study(storage=storage, study_name=study_name, directions=wanted,
                                        sampler=sampler, pruner=pruner, load_if_exists=True)
        else:
            study = optuna.load_study(storage=storage, study_name=study_name, sampler=sampler, pruner=pruner)
    except KeyError:
        raise SearchError(f"no study named {study_name!r} in the storage") from None
    have = [d.name.lower() for d in study.directions]
    if have != wanted:
        raise SearchError(f"study {study_name!r} in the storage optimises {have}, but the space asks for {wanted} "
                          "(use another --study name or --storage)")
    names = objective_names(space)
    stored = study.user_attrs.get("objectives")
    if stored is None and create:
        study.set_user_attr("objectives", names)
    elif stored is not None and list(stored) != names:
        raise SearchError(f"study {study_name!r} in the storage has objectives {stored}, but the space asks for "
                          f"{names} (use another --study name or --storage)")
    return study


@dataclass
class Counts:
    complete: int = 0
    pruned: int = 0
    running: int = 0
    waiting: int = 0
    fail: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned


def counts(study) -> Counts:
    c = Counts()
    for t in study.get_trials(deepcopy=False):
        name = t.state.name.lower()
        if hasattr(c, name):
            setattr(c, name, getattr(c, name) + 1)
    return c


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a recycled pid is not our worker
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return b"tnnspec.search.worker" in cmdline


def fail_orphaned_trials(study) -> list[int]:
    """For storages without a heartbeat (journal): fail the RUNNING trials whose worker ran on
    this machine and is gone, and queue each again with the same parameters (as the heartbeat's
    retry callback does). Returns the numbers of the failed trials."""
    optuna = require_optuna()
    if has_heartbeat(study._storage):
        optuna.storages.fail_stale_trials(study)
        return []
    host = socket.gethostname()
    failed = []
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        pid, where = t.user_attrs.get("worker_pid"), t.user_attrs.get("worker_host")
        if pid is None or where != host or _pid_alive(int(pid)):
            continue
        try:
            if not study._storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        failed.append(t.number)
        retry(study, study._storage.get_trial(t._trial_id))
    return failed


# ---------------------------------------------------------------- search.json
def write_search_json(out: Path, info: dict) -> None:
    from ..train.checkpoint import write_json_atomic

    write_json_atomic(out / SEARCH_JSON, info)


def read_search_json(out: str | Path) -> dict:
    path = Path(out) / SEARCH_JSON
    if not path.is_file():
        raise SearchError(f"{out}: no {SEARCH_JSON} here (is it the --out folder of a tnnspec search?)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SearchError(f"{path}: not valid JSON: {exc}") from None


# ---------------------------------------------------------------- progress lines
def format_values(values) -> str:
    if values is None:
        return "-"
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]" if len(values) > 1 else f"{values[0]:.4g}"


def best_line(study) -> str:
    """Best so far: the best trial (one objective) or the size of the Pareto front."""
    try:
        if len(study.directions) == 1:
            b = study.best_trial
            return f"best so far: trial {b.number} ({format_values(b.values)})"
        front = study.best_trials
        if not front:
            return "no complete trial yet"
        return f"Pareto front so far: {len(front)} trial(s) {sorted(t.number for t in front)}"
    except ValueError:
        return "no complete trial yet"


def progress_line(trial, study) -> str:
    state = trial.state.name
    line = f"trial {trial.number} {state}"
    if state == "COMPLETE":
        line += f" values {format_values(trial.values)}"
    elif state == "PRUNED":
        why = trial.user_attrs.get("pruned_reason")
        last = trial.intermediate_values
        if why:
            line += f" ({why if len(why) <= 160 else why[:157] + '...'})"
        elif last:
            step = max(last)
            line += f" at epoch {step} (intermediate {last[step]:.4g})"
    elif state == "FAIL":
        if trial.user_attrs.get("surplus"):
            why = "not needed: the other workers' trials reach the budget"
        else:
            why = trial.user_attrs.get("error")
        if not why:
            retried = any(trial.number in t.system_attrs.get("retry_history", ())
                          for t in study.get_trials(deepcopy=False))
            why = "worker lost; " + ("queued again with the same parameters" if retried else "not retried")
        line += f" ({why})"
    params = ", ".join(f"{k}={v}" for k, v in trial.params.items())
    if params:
        line += f" {{{params}}}"
    return f"{line}; {best_line(study)}"


# ---------------------------------------------------------------- the parent process
@dataclass
class SearchRun:
    """What :func:`run_search` did."""

    out: Path
    storage: str
    study_name: str
    finished: int
    trials: int
    failed_workers: list[tuple[int, int]] = field(default_factory=list)  # (worker index, exit code)

    @property
    def complete(self) -> bool:
        return self.finished >= self.trials


def worker_threads(workers: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def run_search(space_path: str | Path, *, trials: int, workers: int = 1, storage: str | None = None,
               out: str | Path, study_name: str | None = None, device: str = "cpu",
               heartbeat: int = DEFAULT_HEARTBEAT, threads: int | None = None, say=print,
               poll_s: float = 0.5) -> SearchRun:
    """Create or load the study, start ``workers`` worker processes on it (``threads`` torch
    threads each; default: cores // workers), print a line per finished trial until they stop,
    and return a :class:`SearchRun`. Raises SearchError or the
    space's SpecError before starting anything."""
    require_optuna()
    from .space import load_space

    out = Path(out)
    space_path = Path(space_path).resolve()
    url = absolute_storage_url(check_storage_url(storage)) if storage else None
    space = load_space(space_path)  # SpecError with located diagnostics
    out.mkdir(parents=True, exist_ok=True)
    url = url or default_storage(out)
    name = study_name or space.name
    store = make_storage(url, heartbeat)
    study = create_or_load_study(space, store, name)
    info = {"space": str(space_path), "storage": redact(url), "study": name, "trials": trials,
            "objectives": objective_names(space), "directions": directions(space),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_search_json(out, info)
    orphans = fail_orphaned_trials(study)
    for n in orphans:
        say(f"trial {n}: its worker is gone; failed and queued again with the same parameters")

    seen: set[int] = set()
    start = counts(study)
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished():
            seen.add(t.number)
    if start.finished >= trials:
        say(f"study {name!r} already has {start.finished} finished trial(s) (>= {trials}): nothing to run "
            f"(tnnspec search --report {out})")
        return SearchRun(out, redact(url), name, start.finished, trials)
    if start.finished:
        say(f"resuming study {name!r}: {start.finished} of {trials} trial(s) finished")
    threads = threads or worker_threads(workers)
    say(f"search {name!r}: {trials} trial(s), {workers} worker(s) x {threads} thread(s), storage {redact(url)}")

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "tnnspec.search.worker", str(space_path), "--storage", url, "--study", name,
               "--out", str(out.resolve()), "--trials", str(trials), "--threads", str(threads),
               "--index", str(i), "--device", device, "--heartbeat", str(heartbeat)]
        procs.append(subprocess.Popen(cmd, env=env))

    def report_new() -> None:
        done = [t for t in study.get_trials(deepcopy=False) if t.state.is_finished() and t.number not in seen]
        for t in sorted(done, key=lambda t: (t.datetime_complete is None, t.datetime_complete or 0, t.number)):
            if True:
                seen.add(t.number)
                say(progress_line(t, study))

    def stop_workers(signum, frame):  # Ctrl-C or SIGTERM: stop the workers (each stops once), then wait
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt

    handlers = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, stop_workers)
    except ValueError:  # not the main thread (tests): no handlers
        handlers = {}
    failed_workers = []
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(poll_s)
            report_new()
    except KeyboardInterrupt:
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    report_new()
    for i, p in enumerate(procs):
        if p.returncode != 0:
            failed_workers.append((i, p.returncode))
            how = f"signal {-p.returncode}" if p.returncode < 0 else f"exit status {p.returncode}"
            say(f"worker {i} (pid {p.pid}) ended with {how}")
    end = counts(study)
    say(f"{end.finished} of {trials} trial(s) finished ({end.complete} complete, {end.pruned} pruned, "
        f"{end.fail} failed); report: tnnspec search --report {out}")
    if end.finished < trials:
        say("the study is not complete: run the same command again to continue")
    return SearchRun(out, redact(url), name, end.finished, trials, failed_workers)

