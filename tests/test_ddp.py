"""Data-parallel training on CPU (gloo, two processes on 127.0.0.1) equals one process on the
same global batch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ddp_helpers import free_port, gloo_env, one_thread  # noqa: F401  (one_thread: an autouse fixture)
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
tnnspec: "1.0"
name: tiny_ddp
time: {steps: 3, default_delay: sweep}
inputs:
  image: {shape: [1, 16, 16]}
areas:
  V1: {channels: 8, ops: [relu]}
  IT: {channels: 16, ops: [relu]}
edges:
  - {type: feedforward, source: image, target: V1, transform: [{conv: {kernel: 3, stride: 2}}]}
  - {type: feedforward, source: V1, target: IT, transform: [{conv: {kernel: 3, stride: 2}}]}
  - {type: lateral, source: IT, target: IT, transform: [{conv: {kernel: 3}}]}
  - {type: feedback, source: IT, target: V1, transform: [{resample: bilinear}, {conv: {kernel: 1}}]}
readouts:
  logits: {source: IT, head: [{pool: avg}, {linear: 10}]}
training:
  data: {name: digits, occlusion: [0.0, 0.4]}
  batch_size: 8
  optimizer: sgd
  lr: 0.1
"""

BATCHES = ([3, 17, 5, 40, 22, 9, 31, 0], [11, 2, 29, 8, 36, 14, 1])  # even and odd global batches

WORKER = """
# run by torchrun: gradients of fixed global batches, then the train command in the same group
import sys, torch
import tnnspec
from tnnspec.train.__main__ import main
from tnnspec.train.evaluate import Tensors
from tnnspec.train.trainer import Trainer, init_distributed

torch.set_num_threads(1)
spec_file, data_file, out_dir = sys.argv[1:4]
spec = tnnspec.load(spec_file)
device, created = init_distributed("cpu")
assert created and torch.distributed.get_world_size() == 2
trainer = Trainer(spec, dataset=Tensors(**torch.load(data_file)), val_dataset=False)
out = []
for batch in {batches}:
    loss, acc = trainer.compute_gradients(torch.tensor(batch))
    out.append({{"loss": loss, "acc": acc,
                "grads": {{n: p.grad.clone() for n, p in trainer.net.named_parameters()}}}})
torch.save(out, f"{{out_dir}}/grads{{trainer.rank}}.pt")
bisected = Trainer(spec, dataset=Tensors(**torch.load(data_file)), val_dataset=False,
                   network_options={{"checkpoint": "recursive"}})  # gradients returned by one autograd function
bisected.net.load_state_dict(trainer.net.state_dict())
out = []
for batch in {batches}:
    loss, acc = bisected.compute_gradients(torch.tensor(batch))
    out.append({{"loss": loss, "grads": {{n: p.grad.clone() for n, p in bisected.net.named_parameters()}}}})
torch.save(out, f"{{out_dir}}/grads_recursive{{trainer.rank}}.pt")
sys.exit(main(["train", spec_file, "--max-steps", "3", "--epochs", "1", "--out", f"{{out_dir}}/run",
               "--no-progress", "--device", "cpu"]))
"""


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny_ddp.yaml"
    path.write_text(SPEC)
    return path


def _data() -> dict:
    g = torch.Generator().manual_seed(1)
    return {"images": torch.rand(48, 1, 16, 16, generator=g), "labels": torch.randint(0, 10, (48,), generator=g),
            "levels": torch.zeros(48)}


@pytest.fixture(scope="module")
def ddp_run(spec_file, tmp_path_factory) -> Path:
    """`torchrun --nproc-per-node 2` (gloo, 127.0.0.1, a free port) of a worker script that saves
    each rank's gradients on fixed global batches, then runs `tnnspec.train train` (3 steps)."""
    tmp = tmp_path_factory.mktemp("ddp")
    torch.save(_data(), tmp / "data.pt")
    script = tmp / "worker.py"
    script.write_text(WORKER.format(batches=[list(b) for b in BATCHES]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           str(script), str(spec_file), str(tmp / "data.pt"), str(tmp)]
    run = subprocess.run(cmd, cwd=ROOT, env=gloo_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    return tmp


def test_two_gloo_processes_give_the_gradient_of_the_global_batch(spec_file, ddp_run):
    import tnnspec
    from tnnspec.train.evaluate import Tensors
    from tnnspec.train.trainer import Trainer

    ranks = [torch.load(ddp_run / f"grads{r}.pt") for r in range(2)]
    spec = tnnspec.load(spec_file)
    single = Trainer(spec, dataset=Tensors(**_data()), val_dataset=False)
    assert single.world_size == 1
    for i, batch in enumerate(BATCHES):
        loss, acc = single.compute_gradients(torch.tensor(batch))
        grads = {n: p.grad for n, p in single.net.named_parameters()}
        for r in ranks:
            assert r[i]["loss"] == pytest.approx(loss, abs=1e-6)
            assert r[i]["acc"] == pytest.approx(acc)
            assert r[i]["grads"].keys() == grads.keys()
            for name, g in grads.items():
                assert torch.allclose(r[i]["grads"][name], g, rtol=0, atol=1e-6), (i, name)
        for name in grads:  # every rank applies the same gradient
            assert torch.equal(ranks[0][i]["grads"][name], ranks[1][i]["grads"][name])
        for r in range(2):  # checkpoint="recursive" under data parallelism: the same global gradient
            rec = torch.load(ddp_run / f"grads_recursive{r}.pt")[i]
            assert rec["loss"] == pytest.approx(loss, abs=1e-6)
            for name, g in grads.items():
                assert torch.allclose(rec["grads"][name], g, rtol=1e-5, atol=1e-6), (i, name, r)


def test_data_parallel_training_matches_one_process(spec_file, ddp_run, tmp_path):
    """The train command under torchrun and the same run in one process: same weights (to float
    rounding); only rank 0 writes metrics and checkpoints."""
    import tnnspec
    from tnnspec.train.trainer import train

    spec = tnnspec.load(spec_file)
    cfg = spec.training.model_copy(update={"max_steps": 3, "epochs": 1})
    result = train(spec, cfg, out_dir=tmp_path / "single", progress=False)
    out = ddp_run / "run"
    a = load_file(str(out / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "single" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-5), k

    events = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("start") == 1  # rank 0 only
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3]
    assert events[0]["world_size"] == 2
    assert events[-1]["event"] == "end" and events[-1]["val_acc"] == pytest.approx(result["val_acc"], abs=0.01)
