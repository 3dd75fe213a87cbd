"""Checkpoints survive a crash: training runs killed with SIGKILL inside every stage of a save,
and at random moments, always resume, and end with weights bit-identical to an uninterrupted run.

Each run is a separate Python process (a real SIGKILL: no ``finally`` block, no cleanup). The
stage kills patch ``tnnspec.train.checkpoint._stage``, which a save calls after each of its
stages: a temporary file written (before its rename), the weights file, the optimiser file, the
switch (``checkpoint.json`` replaced), the ``checkpoint.safetensors`` link, the removal of the
previous files.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from checkpoint_helpers import assert_same_checkpoint

from tnnspec.train import checkpoint as ckpt

SPEC = """\
tnnspec: "1.1"
name: tiny
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
readouts:
  logits: {source: IT, head: [{pool: avg}, {linear: 10}]}
training:
  data: {name: digits, occlusion: [0.0, 0.4], size: 16}
  batch_size: 16
  lr: 0.01
"""
STAGES = 9       # _stage calls per save with an optimiser (see the module docstring)
SWITCH = 5       # index of the "switch" stage: kills from here on keep the new checkpoint
MAX_STEPS = STAGES + 6  # the killed runs reach step 13 (9 kills, 4 after the switch)

# One process imports torch once and forks a child per training run (torch is used only in the
# children, with one thread, so forking is safe). A child resumes if a checkpoint exists,
# checkpoints every step, and may SIGKILL itself at stage K of its N-th save. After each child
# the parent records how it ended and which complete checkpoint the folder holds.
RUNNER = r"""
import json, os, signal, sys
import torch
torch.set_num_threads(1)
import tnnspec
from tnnspec.train import checkpoint as ckpt
from tnnspec.train.data import OccludedDigits
from tnnspec.train.trainer import train, with_overrides

spec = tnnspec.load(sys.argv[1])
ds = OccludedDigits("digits", split="train", size=16, occlusion=[0.0, 0.4], seed=0)
images = [ds[i] for i in range(64)]  # 4 steps per epoch: the runs also cross epoch ends


def child(out, max_steps, kill_save, kill_stage):
    count = {"save": 0, "stage": 0}
    real_save = ckpt.save_checkpoint

    def save(*args, **kwargs):
        count["save"] += 1
        count["stage"] = 0
        return real_save(*args, **kwargs)

    def stage(name):
        if count["save"] == kill_save:
            if count["stage"] == kill_stage:
                os.kill(os.getpid(), signal.SIGKILL)
            count["stage"] += 1

    if kill_save:
        ckpt.save_checkpoint, ckpt._stage = save, stage
    train(spec, with_overrides(spec.training, epochs=100, max_steps=max_steps), out_dir=out, resume=True,
          progress=False, dataset=images, val_dataset=False, checkpoint_every=1)


def complete(out):
    meta = ckpt.read_meta(os.path.join(out, ckpt.META))
    step = str(meta["position"]["step"])
    ok = all(ckpt.weights_metadata(os.path.join(out, name)).get("step") == step
             for name in (meta["weights"], meta["optimizer"]["tensors"]))
    return int(step), ok


for line in sys.stdin:
    out, max_steps, kill_save, kill_stage = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            child(out, max_steps, kill_save, kill_stage)
        except BaseException as exc:
            print(repr(exc), file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    exit_code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    step, ok = complete(out) if os.path.exists(os.path.join(out, ckpt.META)) else (None, False)
    print(json.dumps({"killed": killed, "exit": exit_code, "step": step, "complete": ok}), flush=True)
"""


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    d = tmp_path_factory.mktemp("kill")
    (d / "tiny.yaml").write_text(SPEC)
    (d / "runner.py").write_text(RUNNER)
    return d


def _runs(runner: Path, runs: list[tuple[Path, int, int, int]]) -> list[dict]:
    """Run (out, max_steps, kill_save, kill_stage) one after the other; one result per run."""
    stdin = "".join(json.dumps([str(out), steps, save, stage]) + "\n" for out, steps, save, stage in runs)
    r = subprocess.run([sys.executable, str(runner / "runner.py"), str(runner / "tiny.yaml")], check=False,
                       input=stdin, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(runs), r.stderr
    return results


@pytest.fixture(scope="module")
def straight(runner, tmp_path_factory):
    """An uninterrupted run to MAX_STEPS."""
    out = tmp_path_factory.mktemp("straight")
    [r] = _runs(runner, [(out, MAX_STEPS, 0, 0)])
    assert r == {"killed": False, "exit": 0, "step": MAX_STEPS, "complete": True}
    return out


def test_a_kill_inside_every_stage_of_a_save_resumes_bit_identically(runner, straight, tmp_path):
    # one run folder, killed again and again: each run resumes from what the last one left,
    # saves once completely, and is killed inside its second save, one stage further each time
    out = tmp_path / "killed"
    runs = [(out, MAX_STEPS, 2, k) for k in range(STAGES)] + [(out, MAX_STEPS, 0, 0)]
    results = _runs(runner, runs)
    before = 0
    for k, r in enumerate(results[:-1]):
        assert r["killed"] and r["complete"], (k, r)
        # before the switch the previous checkpoint stands; from the switch on, the new one
        assert r["step"] == before + (2 if k >= SWITCH else 1), (k, r)
        before = r["step"]
    assert results[-1] == {"killed": False, "exit": 0, "step": MAX_STEPS, "complete": True}
    assert_same_checkpoint(straight, out)
    # the last save removed what the killed saves left behind
    meta = ckpt.read_meta(out / ckpt.META)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    tensors = sorted(p.name for p in out.glob("*.safetensors"))
    assert tensors == sorted([ckpt.WEIGHTS, meta["weights"], meta["optimizer"]["tensors"]])
    assert os.path.samefile(out / ckpt.WEIGHTS, out / meta["weights"])
    # the metrics log holds each step once, in order, however often the run was killed
    steps = [e["step"] for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if e["event"] == "step"]
    assert steps == list(range(1, MAX_STEPS + 1))


def _kill_at_random(runner: Path, tmp_path: Path, tries: int, seed: int) -> None:
    """``tnnspec train`` (the command a user runs) killed with SIGKILL at random moments while
    it checkpoints every step, then resumed: each resumed run ends like an uninterrupted one."""
    rng = random.Random(seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "tnnspec", "train", str(runner / "tiny.yaml"), "--out", str(out),
                "--epochs", "1", "--max-steps", str(MAX_STEPS), "--checkpoint-every", "1", "--no-progress",
                "--resume"]

    straight = tmp_path / "straight"
    r = subprocess.run(command(straight), check=False, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    for t in range(tries):
        out = tmp_path / f"run{t}"
        proc = subprocess.Popen(command(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120  # kill once checkpoints are being written, at a random moment
        while not (out / ckpt.META).exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        r = subprocess.run(command(out), check=False, capture_output=True, text=True, env=env, timeout=300)
        assert r.returncode == 0, (t, r.stderr)
        assert_same_checkpoint(straight, out)


def test_a_random_kill_of_the_train_command_resumes(runner, tmp_path):
    _kill_at_random(runner, tmp_path, tries=1, seed=0)


@pytest.mark.slow
def test_sixteen_random_kills_always_resume(runner, tmp_path):
    _kill_at_random(runner, tmp_path, tries=16, seed=1)
