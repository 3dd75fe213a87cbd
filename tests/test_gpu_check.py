"""tools/gpu_check.py without a GPU: it must say so and exit 0, and its dry run on the CPU
(``--device cpu``) must run every check end to end (here on two small zoo models, one of them
without readouts, which the checks compare by their areas). Its correctness check compares the
default-optimized network with the plain interpreter in float64 (a real comparison: it catches
a pass that breaks its invariant), and the ``share_constants`` network with it too."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tnnspec

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "tools" / "gpu_check.py")

CONSTANTS = """
tnnspec: "1.1"
name: constants
time: {steps: 5, default_delay: sweep}
inputs: {x: {shape: [3, 8, 8], schedule: {type: on_off, start: 2}}}
areas:
  A: {level: 1, channels: 4, ops: [relu]}
  B: {level: 2, channels: 4, cell: {type: gru, kernel: 3}}
edges:
  - {type: feedforward, source: x, target: A, transform: [{conv: {kernel: 3}}]}
  - {type: feedforward, source: A, target: B, transform: [{conv: {kernel: 3}}]}
readouts: {pred: {source: B, head: [{pool: avg}, {linear: 3}]}}
"""


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour without CUDA")
def test_without_cuda_it_skips_cleanly():
    done = subprocess.run([sys.executable, SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "CUDA not available: skipping the GPU check" in done.stdout


def test_dry_run_on_the_cpu_checks_every_model_end_to_end(tmp_path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--quick", "--batches", "1", "16",
                           "--models", "spoerer2017_b", "reynolds_heeger", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2/2 models ok on cpu" in done.stdout and "eager b16" in done.stdout
    rows = json.loads(out.read_text())
    assert {r["model"] for r in rows} == {"spoerer2017_b", "reynolds_heeger"}
    for r in rows:
        # float32 with the default passes against the float64 plain interpreter: close, not equal
        assert r["ok"] and 0.0 < r["max_abs_diff"] <= r["tolerance"], r
        assert r["eager_b1_ms"] > 0 and r["eager_b16_ms"] > 0, r


def test_the_check_compares_share_constants_with_the_plain_run(gpu_check):
    spec = tnnspec.loads(CONSTANTS)
    assert tnnspec.compile(spec, optimize=gpu_check.SHARE).plan.constant > 0
    row = gpu_check.correctness(spec, "cpu")
    assert row["ok"] and 0.0 < row["max_abs_diff"] <= row["tolerance"], row
    assert 0.0 < row["shared_maxdiff"] <= row["tolerance"], row


def test_the_check_fails_when_a_pass_breaks_its_invariant(gpu_check, monkeypatch):
    from tnnspec.compile import packing, passes

    real = packing.Conv2d.conv_at

    def broken(self, x, weight, bias, stride=None):  # a packed conv that is 1 % off
        y = real(self, x, weight, bias, stride)
        return y * 1.01 if passes.on("packed_weights") else y

    monkeypatch.setattr(packing.Conv2d, "conv_at", broken)
    row = gpu_check.correctness(tnnspec.loads(CONSTANTS), "cpu")
    assert not row["ok"] and row["max_abs_diff"] > row["tolerance"], row
