"""The dynamics fit (tnnspec.neural.dynamics, trained by tnnspec.train.trainer.train through a
DynamicsTask) under torchrun: two gloo processes on 127.0.0.1 apply the same updates as one
process on the same global batches."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from ddp_helpers import free_port, gloo_env, one_thread  # noqa: F401  (one_thread: an autouse fixture)

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

ROOT = Path(__file__).resolve().parents[1]

# 40 stimuli, 25% held out -> 30 training images; global batches of 7 -> 4 steps (the short last
# batch is dropped), each split by tensor_split into shards of 4 and 3 images. With unequal
# shards the n_local/n_global weighting of the local mean losses matters: a plain mean over the
# ranks' losses would give the same gradient on equal shards (batch_size 10 -> 5 + 5) and go
# unnoticed. 4 Adam steps at the default lr 3e-3.
DYNAMICS = {"epochs": 1, "batch_size": 7, "heldout_neurons": 0.0}
N_TRAIN, STEPS = 30, 4

WORKER = """
# run by torchrun: run_fit(mode="dynamics"), data-parallel (gloo), every rank given the same
# folder (only rank 0 may write to it).
import os, sys, torch
import tnnspec
from tnnspec.neural.fit import run_fit
from tnnspec.spec.neural import Dynamics

torch.set_num_threads(1)
data, out = sys.argv[1:3]
spec = tnnspec.load(f"{data}/teacher.yaml")
run_fit(spec, f"{data}/recordings.nc", f"{data}/stimuli.npz", mode="dynamics", dynamics=Dynamics(**%r),
        out_dir=out,
        progress=False, report=False, mapping={"V4": "V4"})
""" % (DYNAMICS,)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A tiny synthetic set (40 stimuli x 2 repetitions, 8 V4 neurons, 20 ms bins from 40 to
    100 ms), fitted once in this process (``single``) and once by `torchrun --nproc-per-node 2`
    (``ddp``)."""
    import tnnspec
    from tnnspec.neural.fit import run_fit
    from tnnspec.neural.synthetic import make_teacher, synthetic_recordings, teacher_spec
    from tnnspec.neural.timemap import equal_bins
    from tnnspec.spec.neural import Dynamics

    tmp = tmp_path_factory.mktemp("neural_ddp")
    data = tmp / "data"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        syn = synthetic_recordings(make_teacher(teacher_spec(None)), n_stimuli=40, neurons={"V4": 8},
                                   bins=equal_bins(40, 100, 20), repetitions=2)
        syn.save(data)
        spec = tnnspec.load(data / "teacher.yaml")
        run_fit(spec, data / "recordings.nc", data / "stimuli.npz", mode="dynamics", dynamics=Dynamics(**DYNAMICS),
                out_dir=tmp / "single", progress=False, report=False, mapping={"V4": "V4"})
    finally:
        torch.set_num_threads(n)

    script = tmp / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           str(script), str(data), str(tmp / "ddp")]
    run = subprocess.run(cmd, cwd=ROOT, env=gloo_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return tmp


def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_dynamics_fit_under_two_gloo_processes_matches_one_process(runs):
    """Same network and readout weights (to float rounding), same global losses; only rank 0
    writes the training log and checkpoint, and they say world_size 2."""
    a = load_file(str(runs / "ddp" / "checkpoint.safetensors"))
    b = load_file(str(runs / "single" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    assert any(k.startswith("net.") for k in a) and any(k.startswith("heads.") for k in a)
    for k in a:
        # float32; the runs differ only in the order of float32 sums (forward passes on shards
        # of 4 and 3 images instead of 7, gradients summed by all_reduce): relative ~1e-7 of the
        # gradients, measured <= 3e-7 in the weights after 4 steps. Adam moves a weight by up
        # to ~lr = 3e-3 per step, so a wrongly weighted or missing gradient sum shows up far
        # above atol 1e-5.
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-5), (k, float((a[k] - b[k]).abs().max()))

    ddp, single = _events(runs / "ddp"), _events(runs / "single")
    (start,) = [e for e in ddp if e["event"] == "start"]  # rank 0 only
    assert start["world_size"] == 2 and start["task"] == "DynamicsTask"
    assert start["n_train"] == N_TRAIN and start["steps_per_epoch"] == STEPS
    assert [e["world_size"] for e in single if e["event"] == "start"] == [1]
    # the reported training loss is the global-batch mean in both (Adam barely notices a uniform
    # scale of the gradient, but the summed loss would be off by the same factor)
    (ep_ddp,) = [e for e in ddp if e["event"] == "epoch"]
    (ep_single,) = [e for e in single if e["event"] == "epoch"]
    for key in ("train_loss", "val_loss", "val_r"):
        assert ep_ddp[key] == pytest.approx(ep_single[key], abs=1e-5), key
    meta = json.loads((runs / "ddp" / "checkpoint.json").read_text())
    assert meta["world_size"] == 2 and meta["position"]["step"] == STEPS
    scores = json.loads((runs / "ddp" / "scores.json").read_text())
    assert scores["split"] == {"train_images": N_TRAIN, "heldout_images": 10}


def test_only_rank_0_writes_the_fit_results(runs):
    """Both ranks were given one folder: its results were written once (one score event per
    kind, no leftover temporary files)."""
    kinds = [e["kind"] for e in _events(runs / "ddp") if e["event"] == "score"]
    assert kinds == ["heldout_images"]  # heldout_neurons is 0 here
    assert not list((runs / "ddp").glob(".*tmp*"))
