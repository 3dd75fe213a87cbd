"""tnnspec/compile/torch_compat.py: every private PyTorch API behind a probe, with a public
fallback. ``TNNSPEC_PUBLIC_TORCH_ONLY=1`` makes every probe say "unavailable"; the fallbacks
must then give the same values, and the private paths must really be skipped."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import tnnspec
from tnnspec import zoo
from tnnspec.compile import inplace, kept, packing, torch_compat

ROOT = Path(__file__).resolve().parents[1]
PROBES = ("hook_registries_available", "version_counters_available", "pytree_available",
          "onednn_prepacked_available", "onednn_fast_available")


def _cornet_rt():
    spec = zoo.load("cornet_rt")  # (cornet_z has no ReLU right after an op: none runs in place)
    spec = spec.model_copy(update={"inputs": {k: v.model_copy(update={"shape": [3, 64, 64]})
                                              for k, v in spec.inputs.items()}})
    torch.manual_seed(0)
    net = tnnspec.compile(spec).eval()
    for m in net.modules():
        if isinstance(m, packing.Conv2d):
            m.packed_weights = "exact"
    return net


@pytest.fixture
def counted(monkeypatch):
    """Calls of oneDNN's prepacked convolution and of in-place ReLUs."""
    calls = collections.Counter()
    if torch_compat.onednn_prepacked_available():
        run = torch.ops.mkldnn_prepacked.conv2d_run
        monkeypatch.setattr(torch.ops.mkldnn_prepacked, "conv2d_run",
                            lambda *a: calls.update(["prepacked"]) or run(*a))
    relu_ = torch.relu_
    monkeypatch.setattr(torch, "relu_", lambda x: calls.update(["relu_"]) or relu_(x))
    return calls


def test_public_only_turns_every_probe_off(monkeypatch):
    monkeypatch.delenv(torch_compat.ENV, raising=False)
    assert not torch_compat.public_only()
    onednn = torch.backends.mkldnn.is_available()  # (x86 builds: then both oneDNN paths must work)
    assert all(getattr(torch_compat, p)() for p in PROBES if onednn or "onednn" not in p)
    monkeypatch.setenv(torch_compat.ENV, "1")
    assert torch_compat.public_only()
    assert not any(getattr(torch_compat, p)() for p in PROBES)
    m = nn.Linear(2, 2)
    assert torch_compat.module_hooked(m) and torch_compat.global_hooks_registered() and not inplace.unhooked(m)
    assert torch_compat.version_counter(torch.zeros(1)) is None
    assert not packing.available("exact") and not packing.available("fast")
    with kept.session():  # a forward pass reads the variable once, at its start
        monkeypatch.setenv(torch_compat.ENV, "0")
        assert torch_compat.public_only()
    assert not torch_compat.public_only()


def test_public_fallbacks_compute_the_same_outputs(monkeypatch, counted):
    monkeypatch.delenv(torch_compat.ENV, raising=False)
    net = _cornet_rt()
    x = net.example_inputs(2)
    with torch.no_grad():
        private = net(x).readouts
    assert counted["relu_"], "no ReLU ran in place with the probes on"
    assert counted["prepacked"] or not torch_compat.onednn_prepacked_available(), "no prepacked conv ran"
    counted.clear()
    monkeypatch.setenv(torch_compat.ENV, "1")
    with torch.no_grad():
        public = net(x).readouts
    assert not counted, f"a private path ran under {torch_compat.ENV}=1: {dict(counted)}"
    assert public.keys() == private.keys() and all(torch.equal(public[k], private[k]) for k in public)


def test_fallback_trees_round_trip(monkeypatch):
    monkeypatch.setenv(torch_compat.ENV, "1")
    Carry = collections.namedtuple("Carry", "outputs states")
    tree = (Carry({"A": {0: torch.ones(2)}}, {"R": (torch.zeros(1), None), "S": [3]}),
            collections.OrderedDict(k=torch.full((1,), 2.0)), [])
    leaves, spec = torch_compat.tree_flatten(tree)
    assert [type(v) for v in leaves] == [torch.Tensor, torch.Tensor, type(None), int, torch.Tensor]
    back = torch_compat.tree_unflatten(leaves, spec)
    assert type(back[0]) is Carry and type(back[1]) is collections.OrderedDict and back[2] == []
    assert back[0].states["R"][1] is None and torch.equal(back[1]["k"], tree[1]["k"])
    doubled = torch_compat.tree_map(lambda v: v * 2 if v is not None else v, tree)
    assert doubled[0].states["S"] == [6] and torch.equal(doubled[0].outputs["A"][0], torch.full((2,), 2.0))
    with pytest.raises(ValueError, match="leaves"):
        torch_compat.tree_unflatten(leaves[:-1], spec)
    monkeypatch.delenv(torch_compat.ENV)  # a structure from the fallback still unflattens
    assert torch_compat.tree_unflatten(leaves, spec)[0].states["S"] == [3]


def test_conv2d_forward_is_the_private_conv_forward():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 10)
    for padding, mode in ((1, "zeros"), (2, "reflect"), ("same", "circular"), ("valid", "replicate"),
                          ((1, 2), "replicate")):
        conv = nn.Conv2d(3, 4, (3, 4), padding=padding, padding_mode=mode, dilation=(1, 2) if mode != "reflect" else 1)
        assert torch.equal(torch_compat.conv2d_forward(conv, x, conv.weight, conv.bias), conv(x)), (padding, mode)


CHECKPOINTED = r"""
import torch, tnnspec
from tnnspec.compile import torch_compat
calls = []
own = torch_compat._own_flatten
torch_compat._own_flatten = lambda tree, leaves: calls.append(1) or own(tree, leaves)
spec = tnnspec.loads('''
tnnspec: "1.0"
name: recursive
time: {steps: 6, default_delay: sweep}
inputs: {x: {shape: [2, 6, 6]}}
areas:
  S: {level: 1, channels: 3, ops: [relu]}
  R: {level: 2, channels: 3, cell: {type: gru, kernel: 3}}
edges:
  - {type: feedforward, source: x, target: S, transform: [{conv: {kernel: 3}}]}
  - {type: feedforward, source: S, target: R, transform: [{conv: {kernel: 3}}]}
  - {type: feedback, source: R, target: S, transform: [{conv: {kernel: 1}}]}
readouts:
  pred: {source: R, head: [{pool: avg}, {linear: 2}]}
''')
torch.manual_seed(0)
plain = tnnspec.compile(spec)
bisected = tnnspec.compile(spec, checkpoint="recursive")
bisected.load_state_dict(plain.state_dict())
x = torch.randn(2, 2, 6, 6)
grads = []
for net in (plain, bisected):
    net(x).readouts["pred"].square().sum().backward()
    grads.append({k: p.grad for k, p in net.named_parameters()})
assert calls, "the fallback flatten did not run"
assert not torch_compat.pytree_available()
for k in grads[0]:
    torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-6, msg=k)
print("ok", len(calls))
"""


def test_recursive_checkpoint_runs_on_the_fallback_trees():
    env = {**os.environ, torch_compat.ENV: "1"}
    proc = subprocess.run([sys.executable, "-c", CHECKPOINTED], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok ")


def test_a_probe_first_asked_under_inference_mode_still_finds_version_counters(monkeypatch):
    """Inference tensors have no version counter; a probe that ran on one would turn the cheap
    check of kept weights off for the process (every call then compares every weight's bits)."""
    monkeypatch.setattr(torch_compat, "_probes", {})
    with torch.inference_mode():
        assert torch_compat.version_counters_available()
