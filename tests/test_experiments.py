"""Smoke tests of the README demo (tools/occlusion_demo.py) and of the occlusion experiment
(tools/experiments/occlusion.py) at their smallest sizes, and their statistics against
independent references (SciPy, published values)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


demo = _module("occlusion_demo_under_test", ROOT / "tools" / "occlusion_demo.py")
experiment = _module("occlusion_experiment_under_test", ROOT / "tools" / "experiments" / "occlusion.py")


# ------------------------------------------------------------------ statistics
def test_mean_ci_is_the_t_interval():
    from scipy import stats

    x = np.array([0.81, 0.84, 0.79, 0.86, 0.83])
    m, h = experiment.mean_ci(x)
    lo, hi = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    assert m == pytest.approx(x.mean()) and m - h == pytest.approx(lo, abs=1e-12) and m + h == pytest.approx(hi)
    assert math.isnan(experiment.mean_ci([0.5])[1])


def test_paired_is_the_paired_t_test():
    from scipy import stats

    x = np.array([0.70, 0.64, 0.72, 0.69, 0.75])
    y = np.array([0.66, 0.63, 0.65, 0.68, 0.70])
    r = experiment.paired(x, y)
    assert r["p"] == pytest.approx(stats.ttest_rel(x, y).pvalue, rel=1e-12)
    assert r["mean"] == pytest.approx((x - y).mean())
    assert experiment.paired(x, x)["p"] == 1.0


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Table I: 81/263 -> 0.2553 to 0.3662; 15/148 -> 0.0624 to 0.1605
    lo, hi = demo.wilson(81, 263)
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    lo, hi = demo.wilson(15, 148)
    assert (round(lo, 4), round(hi, 4)) == (0.0624, 0.1605)


def test_paired_difference_mcnemar():
    from scipy.stats import binomtest

    a = np.array([1] * 30 + [0] * 5 + [1] * 50 + [0] * 15)
    b = np.array([0] * 30 + [1] * 5 + [1] * 50 + [0] * 15)
    r = demo.paired_difference(a, b)
    assert r["mean"] == pytest.approx(25 / 100)
    assert r["p"] == pytest.approx(binomtest(30, 35).pvalue)
    assert r["ci"][0] > 0


def test_solve_steps_per_level():
    labels = np.array([1, 1, 1], dtype=np.int8)
    pred = np.array([[[1, 0, 0], [1, 1, 0], [1, 1, 0]],        # level 0: solved at 0, 1, never
                     [[0, 0, 1], [1, 0, 1], [1, 1, 1]]], dtype=np.int8)
    assert experiment.solve_steps(pred, labels).tolist() == [[0, 1, -1], [1, 2, 0]]


def test_parameter_matched_controls():
    texts = experiment.architectures(8)
    n = {a: experiment.n_params(t) for a, t in texts.items()}
    for control in ("b_k", "b_f"):
        others = {experiment.n_params(experiment.b_variant(8, kernel=k)) for k in (3, 5, 7, 9, 11)} \
            if control == "b_k" else {experiment.n_params(experiment.b_variant(c)) for c in range(8, 33)}
        assert min(abs(o - n["blt"]) for o in others) == abs(n[control] - n["blt"])
    assert n["b"] < n["blt"]


# ------------------------------------------------------------------ smoke runs
def test_demo_smallest(tmp_path):
    assert demo.main(["--out", str(tmp_path), "--epochs", "1", "--max-steps", "2", "--test-limit", "24",
                      "--no-progress"]) == 0
    report = tmp_path / "report"
    text = (report / "summary.md").read_text()
    assert "| spoerer2017_blt |" in text and "[" in text.split("| spoerer2017_blt |")[1]   # intervals
    assert "McNemar" in text and "24 test images" in text
    for name in ("accuracy_vs_occlusion.png", "accuracy_vs_step.png", "solve_times.png"):
        assert (report / name).stat().st_size > 1000
    data = json.loads((report / "results.json").read_text())
    assert len(data["results"]["spoerer2017_b"]["interval"]) == 4


def test_experiment_smallest(tmp_path):
    out = tmp_path / "occ"
    args = [sys.executable, str(ROOT / "tools" / "experiments" / "occlusion.py"), "--out", str(out),
            "--seeds", "0", "1", "--rule-seeds", "0", "--epochs", "1", "--max-steps", "1", "--test-limit", "12",
            "--data", "digits", "--channels", "4", "--no-validate", "--workers", "2"]
    run = subprocess.run(args, capture_output=True, text=True, timeout=280)
    assert run.returncode == 0, run.stderr[-3000:]
    report = out / "report"
    text = (report / "summary.md").read_text()
    for heading in ("## Accuracy at the last step", "## Difference to B", "## Verdict", "## Solve time",
                    "## Rewarding early answers", "## Learning rules × architecture"):
        assert heading in text
    assert "| BLT | " in text and "| DFA | BLT |" in text and "| FA |" in text
    files = {p.name for p in report.iterdir()}
    assert {"accuracy_vs_occlusion.png", "accuracy_vs_step.png", "solve_times.png", "gamma_accuracy_vs_step.png",
            "rules_accuracy_vs_occlusion.png", "results.json"} <= files
    a = json.loads((report / "results.json").read_text())["analysis"]
    assert len(a["main"]["blt"]["acc_last"]) == 2 and len(a["rules"]["fa/blt"]) == 1
    assert set(a["gamma"]) == {"0.5", "0.9", "1"}
    # finished runs are kept: a second call trains nothing and writes the same tables
    again = subprocess.run(args + ["--workers", "1"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "runs already done" in again.stdout
    # other settings in the same folder are refused
    other = subprocess.run(args[:-2] + ["--epochs", "2"], capture_output=True, text=True, timeout=120)
    assert other.returncode == 2 and "other settings" in other.stderr
