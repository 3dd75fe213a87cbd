"""cache_constants (the default): input-independent updates are kept from one inference call to
the next (tnnspec/compile/network.py, Network._kept_constants) — bit-identical outputs, fewer
updates, and a fresh computation whenever anything they read changes or the call is not a
plain CPU inference call."""

from __future__ import annotations

import pytest
import torch

import tnnspec
from tnnspec import zoo

BN_ZERO_DRIVE = """
tnnspec: "1.0"
name: constants_with_buffers
time: {steps: 6, default_delay: biological}
inputs: {x: {shape: [3, 16, 16], schedule: {type: on_off, on: 1, off: 4}}}
areas:
  A: {level: 1, channels: 8, before_arrival: zero_drive, ops: [{norm: {type: batch}}, relu]}
  B: {level: 2, channels: 8, before_arrival: zero_drive, cell: {type: gru, kernel: 3},
      ops: [{norm: {type: batch}}]}
  C: {level: 3, channels: 8, before_arrival: zero_drive, combine: concat, cell: {type: lstm, kernel: 3}}
edges:
  - {type: feedforward, source: x, target: A, transform: [{conv: {kernel: 3, padding: 1}}]}
  - {type: feedforward, source: A, target: B, transform: [{conv: {kernel: 3, padding: 1}}]}
  - {type: feedforward, source: B, target: C, transform: [{conv: {kernel: 3, padding: 1}}]}
  - {type: lateral, source: C, target: C, transform: [{conv: {kernel: 1}}]}
  - {type: feedback, source: C, target: A, transform: [{conv: {kernel: 1}}]}
readouts:
  y: {source: C, head: [{pool: avg}, {linear: 3}]}
  total: {source: B, cumulative: true, head: [{pool: avg}, {linear: 2}]}
"""


def _spec(name):
    if name == "cornet_rt":
        spec = zoo.load(name)
        return spec.model_copy(update={"inputs": {k: v.model_copy(update={"shape": [3, 64, 64]})
                                                  for k, v in spec.inputs.items()}})
    if name == "stand_ins":  # zero_input: edge transforms of zero source outputs (tnn's t = 0)
        return tnnspec.loads(BN_ZERO_DRIVE.replace("zero_drive", "zero_input"))
    return tnnspec.loads(BN_ZERO_DRIVE)


def _pair(name, **options):
    torch.manual_seed(0)
    plain = tnnspec.compile(_spec(name), cache_constants=False, **options).eval()
    cached = tnnspec.compile(_spec(name), **options).eval()
    gen = torch.Generator().manual_seed(1)
    for m in plain.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    cached.load_state_dict(plain.state_dict())
    return plain, cached


def _count(net):
    calls = []
    real = net._update
    net._update = lambda *a, **k: calls.append(a[0].area) or real(*a, **k)
    return calls


def _same(a, b):
    assert a.readouts.keys() == b.readouts.keys() and a.areas.keys() == b.areas.keys()
    for k in a.readouts:
        assert torch.equal(a.readouts[k], b.readouts[k]), k
    for k in a.areas:
        assert torch.equal(a.areas[k], b.areas[k]), k


@pytest.mark.parametrize("name", ["cornet_rt", "constants_with_buffers", "stand_ins"])
def test_kept_updates_give_bit_identical_outputs_with_fewer_updates(name):
    plain, cached = _pair(name)
    calls = _count(cached)
    x = plain.example_inputs(3)
    record = tuple(plain.spec.areas)
    constant = cached.plan.constant
    assert constant > 0
    with torch.no_grad():
        for call in range(3):
            calls.clear()
            _same(cached(x, record=record), plain(x, record=record))
            total = sum(len(s) for s in cached.plan.schedule)
            assert len(calls) == (total if call == 0 else total - constant), call
            x = plain.example_inputs(3, seed=call + 1)  # another input: the same constants
        calls.clear()
        _same(cached(x, readout_steps="last"), plain(x, readout_steps="last"))  # another plan
        _same(cached(plain.example_inputs(5)), plain(plain.example_inputs(5)))  # another batch size


def _late_area(net):
    """The last area: input-independent at step 0 in both specs."""
    return net.areas[list(net.spec.areas)[-1]]


def _weight(net):
    return next(m for m in _late_area(net).modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.GroupNorm))).weight


def _edit_in_place(net):
    with torch.no_grad():
        _weight(net).mul_(0.5)


def _lesion_through_data(net):
    w = _weight(net)
    w.data[: w.shape[0] // 2] = 0.0


def _statistics(net):
    norms = [m for m in net.areas["B"].modules() if isinstance(m, torch.nn.BatchNorm2d)] if "B" in net.areas else []
    if norms:
        norms[0].running_mean.data += 1.0
    else:
        _edit_in_place(net)


@pytest.mark.parametrize("name", ["cornet_rt", "constants_with_buffers", "stand_ins"])
@pytest.mark.parametrize("change", [_edit_in_place, _lesion_through_data, _statistics], ids=lambda f: f.__name__)
def test_any_change_to_what_they_read_recomputes_them(name, change):
    plain, cached = _pair(name)
    x = plain.example_inputs(2)
    with torch.no_grad():
        before = cached(x).readouts
        _same(cached(x), plain(x))
        for net in (plain, cached):
            change(net)
        after = cached(x)
        _same(after, plain(x))
    assert any(not torch.equal(before[k], after.readouts[k]) for k in before)


def test_load_state_dict_and_dtype_changes_are_seen():
    plain, cached = _pair("cornet_rt")
    x = plain.example_inputs(2)
    with torch.no_grad():
        cached(x)
        other = tnnspec.compile(_spec("cornet_rt")).state_dict()
        plain.load_state_dict(other), cached.load_state_dict(other)
        _same(cached(x), plain(x))
        another = {k: v * 0.5 for k, v in other.items()}  # new parameter objects, not copies into them
        plain.load_state_dict(another, assign=True), cached.load_state_dict(another, assign=True)
        _same(cached(x), plain(x))
        plain.double(), cached.double()
        _same(cached(x.double()), plain(x.double()))


def test_nothing_is_kept_with_gradients_in_train_mode_with_hooks_or_autocast():
    plain, cached = _pair("cornet_rt")
    calls = _count(cached)
    x = plain.example_inputs(2)
    total = sum(len(s) for s in cached.plan.schedule)
    with torch.no_grad():
        cached(x)  # kept from here on
    calls.clear()
    out = cached(x)  # gradients on
    assert torch.equal(out.readouts["logits"], plain(x).readouts["logits"]) and out.readouts["logits"].requires_grad
    handle = cached.areas["V2"].probe.register_forward_hook(lambda m, i, o: None)
    with torch.no_grad():
        cached(x)
        handle.remove()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cached(x)
        cached.train()
        cached(x)
        cached.eval()
    assert len(calls) == 4 * total  # the gradient call and the three above computed every update
    calls.clear()
    with torch.no_grad():
        cached(x)
    assert len(calls) == total - cached.plan.constant  # and a plain call uses the kept ones again


def test_updates_that_read_no_parameter_are_kept_too():
    spec = tnnspec.loads("""
tnnspec: "1.0"
name: bare
time: {steps: 4, default_delay: biological}
inputs: {x: {shape: [3, 8, 8]}}
areas:
  A: {level: 1, channels: 3, before_arrival: zero_drive, ops: [relu]}
  B: {level: 2, channels: 3, before_arrival: zero_drive, ops: [relu]}
edges:
  - {type: feedforward, source: x, target: A}
  - {type: feedforward, source: A, target: B}
readouts: {y: {source: B, head: [{pool: avg}, {linear: 2}]}}
""")
    net = tnnspec.compile(spec).eval()
    plain = tnnspec.compile(spec, cache_constants=False).eval()
    plain.load_state_dict(net.state_dict())
    calls, plain_calls = _count(net), _count(plain)
    x = net.example_inputs(2)
    with torch.no_grad():
        for _ in range(2):
            calls.clear(), plain_calls.clear()
            _same(net(x, record=("A", "B")), plain(x, record=("A", "B")))
    assert net.plan.constant and len(calls) == len(plain_calls) - net.plan.constant
