"""tools/gpu_check.py without a GPU: it must say so and exit 0, and its dry run on the CPU
(``--device cpu``) must run every check end to end (here on two small zoo models, one of them
without readouts, which the checks compare by their areas)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "tools" / "gpu_check.py")


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
        assert r["ok"] and r["max_abs_diff"] == 0.0 and r["graphs_b16_maxdiff"] == 0.0, r
        assert r["eager_b1_ms"] > 0 and r["eager_b16_ms"] > 0 and r["nhwc_b16_ms"] > 0
