"""Convolutions of all-zero inputs (tnnspec/compile/packing.py): an area run on an all-zero drive
before its input arrives returns the conv's bias (or zeros) without computing the convolution —
bit-identical outputs and gradients, weights still get their (zero) gradient, and the conv runs
whenever the shortcut would not be exact."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tnnspec
from tnnspec import zoo
from tnnspec.compile import packing

ZERO_DRIVE = """
tnnspec: "1.0"
name: zero_drive_convs
time: {steps: 5, default_delay: sweep}
inputs: {x: {shape: [3, 16, 16]}}
areas:
  A: {level: 1, channels: 8, before_arrival: zero_drive, ops: [{conv: {kernel: 3, stride: 2, padding: 1, bias: false}}, relu]}
  B: {level: 2, channels: 8, before_arrival: zero_drive,
      ops: [{conv: {kernel: 3, padding: 1, bias: false}}, {norm: {type: group, groups: 2}}, relu]}
  C: {level: 3, channels: 6, before_arrival: zero_drive, cell: {type: gru, kernel: 3},
      ops: [{conv: {kernel: 1, bias: false}}]}
edges:
  - {type: feedforward, source: x, target: A, delay: 1, transform: [{conv: {kernel: 3, padding: 1}}]}
  - {type: feedforward, source: A, target: B, transform: [{conv: {kernel: 3, padding: 1}}]}
  - {type: feedforward, source: B, target: C, transform: [{conv: 6}]}
  - {type: lateral, source: B, target: B, delay: 1}
readouts: {pred: {source: C, head: [{pool: avg}, {linear: 3}]}}
"""


@pytest.fixture
def shortcuts(monkeypatch):
    calls = []
    real = packing.Conv2d._conv_of_zeros
    monkeypatch.setattr(packing.Conv2d, "_conv_of_zeros", lambda self, *a: calls.append(self) or real(self, *a))
    return calls


def _no_shortcut(monkeypatch):
    monkeypatch.setattr(packing.Conv2d, "_zero_shortcut", lambda self, *a: None)


GEOMETRIES = [  # (kernel, stride, padding, dilation, groups, bias, hw)
    (3, 1, 1, 1, 1, False, 9), (3, 2, 1, 1, 1, True, 9), (7, 4, 3, 1, 1, True, 30), (2, 1, "same", 1, 1, True, 8),
    (3, 1, "valid", 2, 1, False, 11), (1, 1, 0, 1, 2, True, 5), (4, 3, 2, 1, 4, False, 13), (5, 1, "same", 2, 1, True, 7),
]


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
@pytest.mark.parametrize("grad", [False, True])
def test_the_output_is_what_the_convolution_returns(grad, shortcuts):
    for k, stride, pad, dil, groups, bias, hw in GEOMETRIES:
        conv = packing.Conv2d(8, 12, k, stride, pad, dil, groups, bias=bias)
        with torch.no_grad():
            if bias:
                conv.bias.uniform_(-1, 1)
            conv.weight.uniform_(-1, 1)
        if grad and bias:
            conv.bias.requires_grad_(False)  # a bias that needs a gradient runs the conv (tested below)
        x = packing.mark_zero(torch.zeros(3, 8, hw, hw))
        with torch.set_grad_enabled(grad):
            got = conv(x)
        want = F.conv2d(torch.zeros(3, 8, hw, hw), conv.weight, conv.bias, stride, pad, dil, groups)
        assert got.shape == want.shape and torch.equal(got, want), (k, stride, pad, dil, groups, bias, hw)
        assert len(shortcuts) == 1
        shortcuts.clear()
        if grad:
            got.square().sum().backward()
            assert conv.weight.grad is not None and torch.equal(conv.weight.grad, torch.zeros_like(conv.weight))


def test_the_conv_runs_where_the_shortcut_would_not_be_exact(shortcuts):
    conv = packing.Conv2d(4, 4, 3, padding=1)
    x = packing.mark_zero(torch.zeros(2, 4, 6, 6))
    conv(x).sum().backward()  # the bias needs a gradient: conv2d's own bias gradient
    assert not shortcuts and torch.equal(conv.bias.grad, torch.full((4,), 72.0))
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("nan")  # 0 · NaN is NaN: the conv's output, not the bias
        out = conv(x)
        want = F.conv2d(torch.zeros(2, 4, 6, 6), conv.weight, conv.bias, padding=1)
        assert out[:, 0].isnan().any() and not shortcuts
        torch.testing.assert_close(out, want, rtol=0, atol=0, equal_nan=True)
        # infinities (the weights' sum is inf, or NaN for +inf and -inf) and finite weights whose
        # sum overflows: the conv runs (the shortcut checks finiteness through that sum)
        for values in ([float("inf")], [float("inf"), -float("inf")], [3e38, 3e38]):
            conv.weight[0, 0, 0, 0] = 1.0
            conv.weight.view(-1)[: len(values)] = torch.tensor(values)
            out = conv(x)
            want = F.conv2d(torch.zeros(2, 4, 6, 6), conv.weight, conv.bias, padding=1)
            torch.testing.assert_close(out, want, rtol=0, atol=0, equal_nan=True)
            assert not shortcuts, values
        conv.weight.view(-1)[:2] = 0.5
        conv.weight[0, 0, 0, 0] = 1.0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert conv(x).dtype == torch.bfloat16 and not shortcuts
        conv(x)
        assert len(shortcuts) == 1
        conv(torch.zeros(2, 4, 6, 6))  # zeros tnnspec did not make: computed
        assert len(shortcuts) == 1


@pytest.mark.parametrize("name", ["cornet_rt", "zero_drive_convs"])
def test_zero_drive_areas_skip_their_convolution_with_identical_outputs_and_gradients(name, shortcuts, monkeypatch):
    spec = zoo.load(name) if name == "cornet_rt" else tnnspec.loads(ZERO_DRIVE)
    torch.manual_seed(0)
    net = tnnspec.compile(spec)
    x = net.example_inputs(2)

    def run():
        net.zero_grad()
        out = net(x)
        sum(v.square().mean() for v in out.readouts.values()).backward()
        return out.readouts, {n: p.grad.clone() for n, p in net.named_parameters()}

    got, got_grads = run()
    assert shortcuts  # an area's first conv ran on zeros before the image reached it
    _no_shortcut(monkeypatch)
    want, want_grads = run()
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert got_grads.keys() == want_grads.keys() and all(torch.equal(got_grads[k], want_grads[k]) for k in want_grads)


HOOKED = """
tnnspec: "1.0"
name: hooked_zeros
time: {steps: 4, default_delay: sweep}
inputs: {x: {shape: [3, 8, 8]}}
areas:
  A: {level: 1, channels: 3, before_arrival: zero_drive}
  B: {level: 2, channels: 4, before_arrival: zero_drive, ops: [relu]}
edges:
  - {type: feedforward, source: x, target: A, delay: 2}
  - {type: feedforward, source: A, target: B, transform: [{conv: {kernel: 3, padding: 1, bias: false}}]}
readouts: {pred: {source: B, head: [{pool: avg}, {linear: 2}]}}
"""


def test_a_hook_that_writes_into_a_zero_output_is_seen_downstream(shortcuts):
    """Before x arrives, A's output is the all-zero drive itself; a forward hook may write into it
    in place (a perturbation), so with hooks registered zeros are not marked."""
    torch.manual_seed(0)
    net = tnnspec.compile(tnnspec.loads(HOOKED))
    x = net.example_inputs(2)
    with torch.inference_mode():
        plain = net(x).readouts["pred"]
        assert shortcuts
        shortcuts.clear()
        handle = net.areas["A"].probe.register_forward_hook(lambda m, i, out: out.add_(1.0))
        perturbed = net(x).readouts["pred"]
        handle.remove()
    assert not shortcuts and not torch.equal(perturbed[:2], plain[:2])  # steps 0-1: A silent-by-zeros
