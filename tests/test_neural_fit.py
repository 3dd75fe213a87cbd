"""Comparing models with recordings on data whose answer is known (tnnspec.neural.synthetic):
a teacher network recorded through random sparse linear maps, with latencies, trial noise and a
known noise ceiling (reliability 0.8 in every bin after the latency)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import tnnspec
from tnnspec.neural.fit import run_fit
from tnnspec.neural.synthetic import make_teacher, synthetic_recordings, teacher_spec
from tnnspec.neural.timemap import equal_bins
from tnnspec.spec.neural import Dynamics

ROOT = Path(__file__).resolve().parents[1]
BINS = equal_bins(0, 200, 20)


def _after_latency(entry, key):
    """Ceiled scores of the bins that start at or after the region's latency."""
    lat = entry["latency_ms"]
    return [v for (s, _), v in zip(entry["bins"], entry["scores"][key]["ceiled"]) if s >= lat - 1e-9]


@pytest.fixture(scope="module")
def static_teacher(tmp_path_factory):
    """The teacher with the image shown for the whole window: 400 stimuli x 6 repetitions, 30
    neurons in V4 (latency 40 ms) and IT (60 ms), 20 ms bins to 200 ms."""
    syn = synthetic_recordings(make_teacher(teacher_spec(None)), n_stimuli=400, neurons={"V4": 30, "IT": 30},
                               bins=BINS)
    out = tmp_path_factory.mktemp("static_teacher")
    syn.save(out)
    return out


def test_the_known_ceiling_is_what_the_split_halves_estimate(static_teacher):
    from tnnspec.neural import stats
    from tnnspec.neural.recordings import load_recordings, select_region, stimulus_ids
    from tnnspec.neural.score import region_trials

    rec = load_recordings(static_teacher / "recordings.nc")
    for region, lat in (("V4", 40), ("IT", 60)):
        rel = stats.split_half_reliability(region_trials(select_region(rec, region), stimulus_ids(rec)))
        after = BINS[:, 0] >= lat
        assert np.median(rel[:, after]) == pytest.approx(0.8, abs=0.03)  # set to 0.8 by construction
        assert np.abs(np.median(rel[:, ~after], axis=0)).max() < 0.1  # before the latency: noise only


def test_mapping_the_teacher_onto_itself_reaches_the_ceiling(static_teacher, tmp_path):
    spec = tnnspec.load(static_teacher / "teacher.yaml")
    scores = run_fit(spec, static_teacher / "recordings.nc", static_teacher / "stimuli.npz", out_dir=tmp_path,
                     checkpoint=static_teacher / "teacher.safetensors", folds=3, progress=False)
    for region, entry in scores["regions"].items():
        after = _after_latency(entry, "mapping")
        assert len(after) >= 7 and min(after) >= 0.95, (region, after)
    assert {"scores.json", "predictions.npz", "metrics.jsonl", "report.md", "score_vs_time.png"} <= \
        {p.name for p in tmp_path.iterdir()}


def test_a_shuffled_stimulus_control_scores_about_zero(static_teacher):
    spec = tnnspec.load(static_teacher / "teacher.yaml")
    scores = run_fit(spec, static_teacher / "recordings.nc", static_teacher / "stimuli.npz", shuffle=True,
                     mapping={"V4": "V4"}, checkpoint=static_teacher / "teacher.safetensors", folds=3, progress=False)
    for region, entry in scores["regions"].items():
        after = _after_latency(entry, "mapping")
        assert abs(np.mean(after)) < 0.05 and max(abs(v) for v in after) < 0.15, (region, after)


def test_a_student_fitted_to_the_dynamics_reaches_090_of_ceiling(static_teacher, tmp_path):
    """The teacher's graph with fresh weights, trained on 300 images and 22-23 neurons per region;
    scored on the 100 held-out images, for the fitted neurons and for the held-out neurons mapped
    by ridge regression on the training images only."""
    spec = tnnspec.load(static_teacher / "teacher.yaml")
    scores = run_fit(spec, static_teacher / "recordings.nc", static_teacher / "stimuli.npz", mode="dynamics",
                     dynamics=Dynamics(epochs=60, lr=3e-3), out_dir=tmp_path, progress=False, report=False)
    assert scores["split"] == {"train_images": 300, "heldout_images": 100}
    for region, entry in scores["regions"].items():
        assert entry["neurons"] == {"fitted": 22, "heldout": 8}
        for key in ("heldout_images", "heldout_neurons"):
            after = _after_latency(entry, key)
            assert np.mean(after) >= 0.9, (region, key, after)
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert len(epochs) == 60 and epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    assert (tmp_path / "checkpoint.safetensors").is_file()


def test_cutting_a_students_recurrence_loses_the_late_bins(tmp_path):
    """The teacher shows the image for 100 ms; after that only its lateral and feedback edges
    carry activity. A student fitted with those edges cut scores far lower on the late bins."""
    syn = synthetic_recordings(make_teacher(), n_stimuli=200, neurons={"V4": 20}, bins=BINS)
    syn.save(tmp_path / "data")
    full = tnnspec.load(tmp_path / "data" / "teacher.yaml")
    tree = full.dump()
    for e in tree["edges"]:
        if e["type"] in ("lateral", "feedback"):
            e["enabled"] = False
    cut = tnnspec.Spec.model_validate(tree)
    late = {}
    for name, spec in (("full", full), ("cut", cut)):
        scores = run_fit(spec, tmp_path / "data" / "recordings.nc", tmp_path / "data" / "stimuli.npz",
                         mapping={"V4": "V4"}, mode="dynamics", dynamics=Dynamics(epochs=15, lr=3e-3, heldout_neurons=0.0),
                         progress=False)
        entry = scores["regions"]["V4"]
        # model time >= 110 ms (the stimulus went off at 100 ms): bins from latency + 110 ms on
        late[name] = [v if v is not None else 0.0 for (s, _), v in zip(entry["bins"], entry["scores"]["heldout_images"]["ceiled"])
                      if s >= entry["latency_ms"] + 110]
    assert len(late["full"]) >= 2
    assert np.mean(late["full"]) > np.mean(late["cut"]) + 0.3, late


class _Result:
    def __init__(self, code, out, err):
        self.returncode, self.stdout, self.stderr = code, out, err


@pytest.fixture
def _cli(capsys):
    """Run the command line in this process (no interpreter start-up per call)."""
    from tnnspec.cli.main import main

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return _Result(code, out, err)

    return run


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """80 stimuli, 12 V4 neurons, 20 ms bins from 40 to 120 ms: for the command line."""
    syn = synthetic_recordings(make_teacher(teacher_spec(None)), n_stimuli=80, neurons={"V4": 12},
                               bins=equal_bins(40, 120, 20), repetitions=4)
    out = tmp_path_factory.mktemp("small")
    syn.save(out)
    return out


def test_cli_fit_compare_and_summary(small_data, tmp_path, _cli):
    common = ("--neural", small_data / "recordings.nc", "--stimuli", small_data / "stimuli.npz", "--map", "V4",
              "--folds", "3", "--no-progress")
    teacher = _cli("fit", small_data / "teacher.yaml", *common, "--checkpoint",
                   small_data / "teacher.safetensors", "--out", tmp_path / "teacher")
    assert teacher.returncode == 0, teacher.stderr
    assert "V4 <- V4 (mapping, latency 40 ms): mean ceiled score" in teacher.stdout
    fresh = _cli("fit", small_data / "teacher.yaml", *common, "--latency", "V4=30:50:10", "--out", tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stderr
    chosen = json.loads((tmp_path / "fresh" / "scores.json").read_text())["regions"]["V4"]
    assert set(chosen["latency_search"]) == {"30", "40", "50"}
    both = _cli("compare", tmp_path / "teacher", tmp_path / "fresh", "--labels", "teacher,fresh",
                "--out", tmp_path / "cmp")
    assert both.returncode == 0, both.stderr
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["ranking"]["V4"] == ["teacher", "fresh"]
    summary = _cli("summary", small_data / "teacher.yaml", "--no-plan")
    assert "V4 <- area V4, latency 40 ms: needs 21 steps" in summary.stdout


def test_cli_errors_name_the_problem(static_teacher, tmp_path, _cli):
    common = ("--neural", static_teacher / "recordings.nc", "--stimuli", static_teacher / "stimuli.npz")
    r = _cli("fit", static_teacher / "teacher.yaml", *common, "--map", "V4=V5,MT=V1")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "region 'MT' is not in the recordings" in r.stderr and "the graph has no area 'V5'" in r.stderr
    r = _cli("fit", static_teacher / "teacher.yaml", *common, "--steps", "5")
    assert r.returncode == 1 and "unroll at least 16 steps" in r.stderr
    np.savez(tmp_path / "few.npz", images=np.zeros((3, 1, 16, 16), np.float32),
             stimulus_id=np.array(["a", "b", "c"]))
    r = _cli("fit", static_teacher / "teacher.yaml", "--neural", static_teacher / "recordings.nc",
             "--stimuli", tmp_path / "few.npz")
    assert r.returncode == 1 and "400 stimulus_id(s)" in r.stderr and "have no image in" in r.stderr
    r = _cli("fit", static_teacher / "teacher.yaml", *common, "--mode", "dynamics", "--train", "lateral,nope")
    assert r.returncode == 1 and "'nope' is neither an edge type" in r.stderr


def test_dynamics_fit_resumes_from_its_checkpoint(tmp_path):
    syn = synthetic_recordings(make_teacher(teacher_spec(None)), n_stimuli=40, neurons={"V4": 8},
                               bins=equal_bins(40, 100, 20), repetitions=2)
    syn.save(tmp_path / "d")
    spec = tnnspec.load(tmp_path / "d" / "teacher.yaml")
    args = (spec, tmp_path / "d" / "recordings.nc", tmp_path / "d" / "stimuli.npz")
    kw = dict(mode="dynamics", out_dir=tmp_path / "run", progress=False, report=False)
    run_fit(*args, mapping={"V4": "V4"}, dynamics=Dynamics(epochs=1, heldout_neurons=0.0), **kw)
    run_fit(*args, mapping={"V4": "V4"}, dynamics=Dynamics(epochs=2, heldout_neurons=0.0), resume=True, **kw)
    starts = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    starts = [e for e in starts if e["event"] == "start"]
    assert [e["resumed"] for e in starts] == [False, True] and starts[1]["epoch"] == 1


@pytest.mark.gpu
def test_dynamics_fit_and_mapping_on_cuda_match_the_cpu(tmp_path):
    """One epoch of a dynamics fit on CUDA (and ridge on himalaya's torch_cuda backend) against
    the CPU: same scores within float32 accumulation differences."""
    syn = synthetic_recordings(make_teacher(teacher_spec(None)), n_stimuli=60, neurons={"V4": 10},
                               bins=equal_bins(40, 100, 20), repetitions=4)
    syn.save(tmp_path / "d")
    spec = tnnspec.load(tmp_path / "d" / "teacher.yaml")
    args = (spec, tmp_path / "d" / "recordings.nc", tmp_path / "d" / "stimuli.npz")
    got = {}
    for device, backend in (("cpu", "numpy"), ("cuda", "torch_cuda")):
        got[device] = run_fit(*args, mapping={"V4": "V4"}, mode="dynamics", device=device, backend=backend,
                              dynamics=Dynamics(epochs=1), progress=False)
    for key in ("heldout_images", "heldout_neurons"):
        a = np.array(got["cpu"]["regions"]["V4"]["scores"][key]["raw"], dtype=float)
        b = np.array(got["cuda"]["regions"]["V4"]["scores"][key]["raw"], dtype=float)
        np.testing.assert_allclose(a, b, atol=2e-3)


def test_a_task_loss_mixed_into_the_dynamics_fit_trains_the_readout(small_data, tmp_path):
    """task_weight > 0 adds the spec's classification loss on the stimuli's labels: the readout
    head, untouched by the neural loss alone, changes; without a readout the error says so."""
    from safetensors.torch import load_file

    tree = tnnspec.load(small_data / "teacher.yaml").dump()
    tree["readouts"] = {"digit": {"source": "IT", "head": [{"pool": "avg"}, {"linear": 10}]}}
    spec = tnnspec.Spec.model_validate(tree)
    args = (spec, small_data / "recordings.nc", small_data / "stimuli.npz")
    heads = {}
    for w in (0.0, 1.0):
        out = tmp_path / f"w{w:g}"
        run_fit(*args, mapping={"V4": "V4"}, mode="dynamics", out_dir=out, progress=False, report=False,
                dynamics=Dynamics(epochs=1, task_weight=w, heldout_neurons=0.0))
        heads[w] = load_file(str(out / "checkpoint.safetensors"))["net.readouts.digit.linear.weight"]
    assert not torch.equal(heads[1.0], heads[0.0])  # same seed: only the task loss moved it
    from tnnspec.neural import NeuralDataError

    with pytest.raises(NeuralDataError, match="task_weight > 0"):
        run_fit(tnnspec.load(small_data / "teacher.yaml"), *args[1:], mapping={"V4": "V4"}, mode="dynamics",
                progress=False, dynamics=Dynamics(epochs=1, task_weight=1.0))
