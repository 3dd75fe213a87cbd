"""The search engine (issue #18): worker processes sharing an Optuna study through a storage
(SQLite, PostgreSQL, journal), crash recovery, the CLI and the report.

Trials are tiny (8x8 digits, a 2-area graph, 20 optimiser steps). The planted better option:
the readout reads V2, whose only real input is the optional edge image->V2 (its other input,
V1->V2, has weight 0), so without the edge a network is at chance (10 %).
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna", reason="the search engine needs optuna (pip install 'tnnspec[search]')")

from tnnspec.cli.main import main  # noqa: E402
from tnnspec.search.engine import create_or_load_study, make_storage  # noqa: E402
from tnnspec.search.objectives import DELAY_ENV  # noqa: E402
from tnnspec.search.report import dominates  # noqa: E402
from tnnspec.search.space import load_space  # noqa: E402

TrialState = optuna.trial.TrialState

GRAPH = """\
tnnspec: "1.1"
name: tiny
time: {dt_ms: 10, steps: 2, default_delay: sweep}
inputs:
  image: {shape: [1, 8, 8]}
areas:
  V1: {level: 1, channels: 4, ops: [relu]}
  V2: {level: 2, channels: 8, ops: [relu]}
edges:
  - {type: feedforward, source: image, target: V1, transform: [{conv: {kernel: 3}}]}
  - {type: feedforward, source: V1, target: V2, weight: 0, transform: [{conv: {kernel: 3}}]}
  - {type: feedforward, source: image, target: V2, transform: [{conv: {kernel: 3}}]}
readouts:
  logits: {source: V2, head: [flatten, {linear: 10}]}
"""

TRAINING = "training: {data: {name: digits, size: 8}, epochs: 1, max_steps: 20, batch_size: 32, lr: 0.03}"


def write_space(folder: Path, *, name: str = "tiny", objectives: str = "[{metric: val_accuracy}]",
                sampler: str = "{type: random, seed: 6}", extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tiny.yaml").write_text(GRAPH)
    path = folder / f"{name}.space.yaml"
    path.write_text(f"""\
tnnspec_search: "1"
name: {name}
graph: tiny.yaml
optional_edges: [image->V2]
objectives: {objectives}
{TRAINING}
sampler: {sampler}
pruner: {{type: none}}
{extra}""")
    return path


def study_of(space_path: Path, url: str, name: str = "tiny"):
    return create_or_load_study(load_space(space_path), make_storage(url), name, create=False)


def finished(study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


# ------------------------------------------------------------------ (a) two workers on SQLite
def test_two_workers_on_sqlite_find_the_planted_edge(tmp_path, capsys):
    space = write_space(tmp_path)
    out = tmp_path / "out"
    code = main(["search", str(space), "--trials", "6", "--workers", "2", "--threads", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    study = study_of(space, f"sqlite:///{out / 'study.db'}")
    done = finished(study)
    assert len(done) == 6, [(t.number, t.state) for t in study.trials]
    best = study.best_trial
    assert best.params == {"edge.image->V2": True}
    assert best.value > 0.5  # the edge: far above chance
    worse = [t for t in done if t.params["edge.image->V2"] is False]
    assert all(t.value < 0.2 for t in worse)  # without it: chance
    pids = {t.user_attrs["worker_pid"] for t in done}
    assert len(pids) == 2, "both workers took trials"
    for t in done:
        assert Path(t.user_attrs["graph_file"]).is_file()
        assert Path(t.user_attrs["graph_file"]).parent == out / "graphs"
        assert t.user_attrs["digest"] in Path(t.user_attrs["graph_file"]).read_text() or \
            t.user_attrs["digest"][:12] in t.user_attrs["graph_file"]
        for m in ("val_accuracy", "val_loss", "params", "flops", "latency_ms"):
            assert f"metric.{m}" in t.user_attrs
    lines = [line for line in printed.splitlines() if line.startswith("trial ")]
    assert len(lines) == 6 and all("best so far" in line for line in lines), printed
    assert (out / "search.json").is_file()
    # running it again: nothing to do, the study is complete
    assert main(["search", str(space), "--trials", "6", "--workers", "2", "--threads", "1", "--out", str(out)]) == 0
    assert "nothing to run" in capsys.readouterr().out


# ------------------------------------------------------------------ (b) a worker killed mid-trial
def test_killed_worker_trial_is_failed_retried_and_the_study_resumes(tmp_path, monkeypatch, capsys):
    space = write_space(tmp_path)
    out = tmp_path / "out"
    url = f"sqlite:///{out / 'study.db'}"
    args = ["search", str(space), "--trials", "2", "--threads", "1", "--out", str(out), "--heartbeat", "1"]
    monkeypatch.setenv(DELAY_ENV, "60")  # the first trial waits: it is caught running
    result = {}
    runner = threading.Thread(target=lambda: result.setdefault("code", main(args)))
    runner.start()
    victim = None
    deadline = time.time() + 60
    while victim is None and time.time() < deadline:
        time.sleep(0.2)
        if not (out / "study.db").is_file() or not (out / "search.json").is_file():
            continue
        study = study_of(space, url)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid = t.user_attrs.get("worker_pid")
            if pid is not None:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    continue
                victim = (t.number, pid, dict(t.params))
                os.kill(pid, signal.SIGKILL)
                break
    runner.join(timeout=60)
    assert victim is not None, "no running trial was seen"
    assert result.get("code") == 1  # the study is not complete
    printed = capsys.readouterr().out
    assert "signal 9" in printed and "run the same command again" in printed
    study = study_of(space, url)
    assert study.trials[victim[0]].state == TrialState.RUNNING  # nobody has failed it yet
    monkeypatch.delenv(DELAY_ENV)
    assert main(args) == 0  # its worker fails the lost trial once it is 2 heartbeats old, and retries it
    study = study_of(space, url)
    lost = study.trials[victim[0]]
    assert lost.state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim[0]]
    assert len(retries) == 1 and retries[0].params == victim[2]
    assert retries[0].state == TrialState.COMPLETE
    assert len(finished(study)) == 2
    assert main(["search", "--report", str(out)]) == 0
    report = (out / "report" / "report.md").read_text()
    assert f"retry of trial {victim[0]}" in report


# ------------------------------------------------------------------ (c) PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL server (trust auth, a random port), stopped at teardown."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql")
    pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install psycopg2-binary)")
    bindir = bins[-1].parent
    prefix: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="tnnspec-pg-", dir="/tmp"))
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
        try:
            shutil.chown(folder, "postgres", "postgres")
        except (LookupError, OSError) as exc:
            pytest.skip(f"no 'postgres' user to run the server as: {exc}")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()

    def run(*cmd, timeout=60):
        return subprocess.run([*prefix, *map(str, cmd)], capture_output=True, text=True, timeout=timeout)

    got = run(bindir / "initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync")
    if got.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"initdb failed: {got.stderr.strip()[-300:]}")
    got = run(bindir / "pg_ctl", "-D", data, "-l", folder / "log", "-w", "-o",
              f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    if got.returncode != 0:
        log = (folder / "log").read_text() if (folder / "log").exists() else ""
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"the PostgreSQL server did not start: {got.stderr.strip()[-300:]} {log[-300:]}")
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def test_postgresql_storage(tmp_path, postgres_url, capsys):
    space = write_space(tmp_path, name="pgsearch")
    out = tmp_path / "out"
    assert main(["search", str(space), "--trials", "2", "--threads", "1", "--out", str(out),
                 "--storage", postgres_url]) == 0
    assert "postgresql://postgres@127.0.0.1" in capsys.readouterr().out
    study = study_of(space, postgres_url, "pgsearch")
    assert len(finished(study)) == 2
    assert not (out / "study.db").exists()
    assert main(["search", "--report", str(out)]) == 0


# ------------------------------------------------------------------ (d) journal + (f) the report
def test_journal_storage_two_objectives_and_the_report(tmp_path, capsys):
    space = write_space(tmp_path, objectives="[{metric: val_accuracy}, {metric: params}]",
                        sampler="{type: nsga2, seed: 6}")
    out = tmp_path / "out"
    url = f"journal:///{tmp_path / 'journal.log'}"
    assert main(["search", str(space), "--trials", "3", "--threads", "1", "--out", str(out),
                 "--storage", url]) == 0
    study = study_of(space, url)
    done = finished(study)
    assert len(done) == 3 and all(len(t.values) == 2 for t in done)
    assert (tmp_path / "journal.log").stat().st_size > 0

    assert main(["search", "--report", str(out)]) == 0
    rep = out / "report"
    for name in ("report.md", "trials.csv", "history.png", "pareto.png"):
        assert (rep / name).is_file() and (rep / name).stat().st_size > 0, name
    text = (rep / "report.md").read_text()
    assert "## Pareto front" in text and "val_accuracy" in text
    assert "importances.png" in text or "importances" in text  # drawn, or why not
    with open(rep / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(study.trials)
    complete = [r for r in rows if r["state"] == "COMPLETE"]
    front = [r for r in complete if r["best"] == "True"]
    assert front
    directions = ["maximize", "minimize"]
    vals = lambda r: (float(r["val_accuracy"]), float(r["params"]))  # noqa: E731
    for r in front:  # nobody beats a front trial
        assert not any(dominates(vals(o), vals(r), directions) for o in complete)
    for r in complete:  # and every other trial is beaten by a front trial
        if r not in front:
            assert any(dominates(vals(f), vals(r), directions) for f in front)
    best_files = list((rep / "best").glob("*.yaml"))
    assert len(best_files) == len({r["graph_file"] for r in front})


# ------------------------------------------------------------------ (e) mistakes: messages, no tracebacks
def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch):
    space = write_space(tmp_path)
    code = main(["search", str(space), "--trials", "2", "--out", str(tmp_path / "o"), "--storage", "redis://x"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --storage 'redis://x': unknown storage") and err.count("\n") == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["search", "--report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no search.json" in err and err.count("\n") == 1 and "Traceback" not in err

    code = main(["search", str(space), "--trials", "2", "--out", str(tmp_path / "o"),
                 "--storage", f"sqlite:///{tmp_path / 'missing' / 'x.db'}"])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and err.count("\n") == 1

    bad = tmp_path / "bad.space.yaml"
    bad.write_text('tnnspec_search: "1"\ngraph: tiny.yaml\nobjectives: [{metric: accuracy}]\n')
    assert main(["search", str(bad), "--trials", "2", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "unknown metric" in err

    monkeypatch.setitem(__import__("sys").modules, "optuna", None)  # optuna not installed
    assert main(["search", str(space), "--trials", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "needs Optuna" in err and "tnnspec[search]" in err and err.count("\n") == 1


# ------------------------------------------------------------------ the trainer's epoch hook
def test_on_epoch_is_called_after_each_validation_and_its_exception_propagates(tmp_path):
    import tnnspec
    from tnnspec.spec.training import Training
    from tnnspec.train import train

    (tmp_path / "tiny.yaml").write_text(GRAPH)
    spec = tnnspec.load(tmp_path / "tiny.yaml")
    cfg = Training.model_validate({"data": {"name": "digits", "size": 8}, "epochs": 3, "batch_size": 256})
    seen = []

    class Stop(Exception):
        pass

    def on_epoch(epoch, metrics):
        seen.append((epoch, metrics["val_acc"], metrics["epoch"]))
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        train(spec, cfg, out_dir=tmp_path / "run", progress=False, on_epoch=on_epoch)
    assert [(e, k) for e, _, k in seen] == [(0, 0), (1, 1)]
    assert all(0 <= acc <= 1 for _, acc, _ in seen)
    assert (tmp_path / "run" / "checkpoint.json").is_file()  # the epoch's checkpoint came first


FLOPS_GRAPH = """
tnnspec: "1.1"
name: flops_probe
time: {dt_ms: 10, steps: 3, default_delay: sweep}
inputs:
  image: {shape: [1, 16, 16]}
parameters:
  k: 3
areas:
  A: {level: 1, channels: 8}
edges:
  - {type: feedforward, source: image, target: A, transform: [{conv: {kernel: $k}}]}
  - {type: lateral, source: A, target: A, transform: [{conv: {kernel: $k, bias: false}}]}
readouts:
  logits: {source: A, head: [{pool: avg}, {linear: 10}]}
"""


@pytest.mark.parametrize("k", [3, 5])
def test_flops_are_the_plans_convolutions_and_linear_layers(k):
    """2 FLOPs per multiply-add (torch's FlopCounterMode convention), counted by hand: the bottom-up
    conv at every step, the lateral conv from step 1 on (absent at t = 0), the readout at every
    step; the speed passes (oneDNN-packed convolutions, hoisting) must not change the count."""
    import tnnspec
    from tnnspec.search.objectives import count_flops

    spec = tnnspec.loads(FLOPS_GRAPH.replace("k: 3", f"k: {k}"))
    hw, steps = 16 * 16, 3
    bottom_up = 2 * 1 * 8 * k * k * hw
    lateral = 2 * 8 * 8 * k * k * hw
    readout = 2 * 8 * 10
    assert count_flops(spec) == steps * bottom_up + (steps - 1) * lateral + steps * readout
