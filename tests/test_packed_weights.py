"""packed_weights=True (tnnspec/compile/packing.py): CPU inference convolutions on weights kept
in oneDNN's blocked layout — outputs equal the plain convolutions to float rounding, the packed
weights are made once and follow weight changes, and nothing is packed where it must not be."""

from __future__ import annotations

import pytest
import torch

import tnnspec
from tnnspec import zoo
from tnnspec.compile import packing

pytestmark = pytest.mark.skipif(not packing.available(), reason="this torch build has no oneDNN packed convolution")

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]

MIXED = """
tnnspec: "1.0"
name: mixed_convs
time: {steps: 4, default_delay: sweep}
inputs: {x: {shape: [3, 15, 15]}}
areas:
  A: {level: 1, channels: 8, ops: [{conv: {kernel: 4, padding: same}}, relu]}
  R: {level: 2, channels: 8, cell: {type: gru, kernel: 3}}
  S: {level: 3, channels: 6, cell: {type: reciprocal_gated_convrnn, tau_depth_separable: true}}
edges:
  - {type: feedforward, source: x, target: A, transform: [{conv: {kernel: 3, stride: 2, dilation: 1}}]}
  - {type: feedforward, source: A, target: R, transform: [{conv: {kernel: 2, padding: same}}]}
  - {type: feedforward, source: R, target: S, transform: [{conv: 6}]}
  - {type: feedback, source: S, target: A, transform: [{resample: bilinear}, {conv: 8}]}
readouts: {y: {source: S, head: [{pool: avg}, {linear: 3}]}}
"""


def _pair(spec, **options):
    torch.manual_seed(0)
    plain = tnnspec.compile(spec).eval()
    packed = tnnspec.compile(spec, packed_weights=True, **options).eval()
    packed.load_state_dict(plain.state_dict())
    return plain, packed


@pytest.fixture
def reorders(monkeypatch):
    calls = []
    real = packing._reorder
    monkeypatch.setattr(packing, "_reorder", lambda *a: calls.append(a[-1]) or real(*a))
    return calls


def _convs(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(b.abs().max().item(), 1.0))


def test_every_conv_of_the_network_can_run_packed():
    for net in (tnnspec.compile(tnnspec.loads(MIXED)), tnnspec.compile(zoo.load("cornet_s"))):
        convs = _convs(net)
        assert convs and all(isinstance(m, packing.Conv2d) for m in convs)


@pytest.mark.parametrize("source", ["ventral4", "mixed"])
def test_outputs_equal_the_plain_run_and_weights_are_packed_once(source, reorders):
    spec = tnnspec.load(ROOT / "graphs" / "ventral4.yaml") if source == "ventral4" else tnnspec.loads(MIXED)
    plain, packed = _pair(spec)
    x = plain.example_inputs(3)
    record = tuple(spec.areas)
    with torch.inference_mode():
        a, b = plain(x, record=record), packed(x, record=record)
        made = len(reorders)
        assert made >= len(_convs(packed)) - 1  # every conv ran packed (a feedback conv may be silent at T=4)
        for name in record:
            _close(b.areas[name], a.areas[name])
        _close(b.readouts["y" if source == "mixed" else "logits"], a.readouts["y" if source == "mixed" else "logits"])
        packed(x, record=record)
        assert len(reorders) == made  # kept: the second call reorders nothing
        packed(packed.example_inputs(5), record=record)
        assert len(reorders) == 2 * made  # a new input shape packs again (oneDNN picks per shape)


def test_packed_weights_follow_weight_changes_and_to(reorders):
    spec = tnnspec.load(ROOT / "graphs" / "ventral4.yaml")
    plain, packed = _pair(spec)
    x = plain.example_inputs(2)
    with torch.no_grad():
        packed(x)
        for net in (plain, packed):  # in place, as an optimiser step does
            net.edges["V1__V2"].conv.weight.mul_(-2.0)
        _close(packed(x).readouts["logits"], plain(x).readouts["logits"])
        packed.load_state_dict(tnnspec.compile(spec).state_dict())
        plain.load_state_dict(packed.state_dict())
        _close(packed(x).readouts["logits"], plain(x).readouts["logits"])
        packed.double(), plain.double()  # float64 is not packed; .to() drops the packed weights
        assert all(packing._CACHE not in m.__dict__ for m in packed.modules())
        before = len(reorders)
        assert torch.equal(packed(x.double()).readouts["logits"], plain(x.double()).readouts["logits"])
        assert len(reorders) == before


def test_nothing_is_packed_with_gradients_or_under_autocast(reorders):
    plain, packed = _pair(tnnspec.load(ROOT / "graphs" / "ventral4.yaml"))
    x = plain.example_inputs(2)
    out = packed(x).readouts["logits"]
    assert torch.equal(out, plain(x).readouts["logits"]) and not reorders
    out.sum().backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(packed(x).readouts["logits"], plain(x).readouts["logits"])
    assert not reorders


def test_with_fused_batchnorm_each_inner_steps_fold_is_packed_once(reorders):
    spec = zoo.load("cornet_s")
    spec = spec.model_copy(update={"inputs": {"image": spec.inputs["image"].model_copy(update={"shape": [3, 64, 64]})}})
    plain, packed = _pair(spec, fuse_batchnorm=True)
    gen = torch.Generator().manual_seed(1)
    for m in plain.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    packed.load_state_dict(plain.state_dict())
    x = plain.example_inputs(2)
    with torch.inference_mode():
        a = plain(x, readout_steps="last").readouts["logits"]
        _close(packed(x, readout_steps="last").readouts["logits"], a)
        made = len(reorders)
        # a block's conv1..3 are shared over inner steps, each step folding its own BatchNorm
        inner = sum(area.cell.inner_steps for area in spec.areas.values() if area.cell.name == "cornet_s_block")
        # image edge, V1's conv2, per block its conv_input (edge) and skip, and 3 per inner step
        assert made == 1 + 1 + 3 + 3 + 3 * inner
        _close(packed(x, readout_steps="last").readouts["logits"], a)
        assert len(reorders) == made
