"""Changes between calls are seen at the next call: after an edit through ``.data`` (the usual
lesion), ``load_state_dict(assign=True)``, a change of an edge's ``weight`` attribute, a module
swap or a train/eval switch, a network's next call equals a fresh ``optimize="none"`` network
(the plain interpreter) with the same state dict and the same change.

Nothing a pass computes survives a call except weights derived from parameters (packed convs,
folded BatchNorms, :mod:`tnnspec.compile.kept`), so these are the values that could go stale;
each network here runs once before the change, so they exist. (The scenarios come from the
tests of the removed cross-call cache of input-independent updates.)"""

from __future__ import annotations

import pytest
import torch

import tnnspec

SPEC = """
tnnspec: "1.1"
name: constants_with_buffers
time: {steps: 6, default_delay: biological}
inputs: {x: {shape: [3, 16, 16], schedule: {type: on_off, start: 1, stop: 4}}}
areas:
  A: {level: 1, channels: 8, before_arrival: zero_drive, ops: [{conv: {kernel: 1}}, {norm: {type: batch}}, relu]}
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
  pred: {source: C, head: [{pool: avg}, {linear: 3}]}
  total: {source: B, cumulative: true, head: [{pool: avg}, {linear: 2}]}
"""
SPECS = {"zero_drive": SPEC, "stand_ins": SPEC.replace("zero_drive", "zero_input")}  # stand_ins: tnn's t = 0
OPTIMIZE = {  # (passes, exact): bit-identical to the plain interpreter, else equal to float rounding
    "default": ("default", True),  # packed_weights (exact)
    "inexact": ((*(n for n in tnnspec.compile.DEFAULT if n != "packed_weights"), "packed_weights_fast",
                 "share_constants", "fuse_batchnorm"), False),
}


def _randomise_batchnorm(net):
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():  # statistics that are not the identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def _fresh(text, net, training=False):
    """The plain interpreter with ``net``'s state dict."""
    plain = tnnspec.compile(tnnspec.loads(text), optimize="none").train(training)
    plain.load_state_dict(net.state_dict())
    return plain


def _same(a, b, exact):
    assert a.readouts.keys() == b.readouts.keys() and a.areas.keys() == b.areas.keys()
    for kind in ("readouts", "areas"):
        for k, want in getattr(b, kind).items():
            got = getattr(a, kind)[k]
            if exact:
                assert torch.equal(got, want), k
            else:
                torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * max(want.abs().max().item(), 1.0),
                                           msg=k)


def _changed(a, b):
    return any(not torch.equal(a.readouts[k], b.readouts[k]) for k in a.readouts)


# each change: (net, text) -> the text of the spec the changed network computes
def _conv_through_data(net, text):
    w = net.areas["C"].cell.input_conv.weight  # read by C's input-independent updates
    w.data[: w.shape[0] // 2] = 0.0
    return text


def _batchnorm_through_data(net, text):
    net.areas["A"].ops.norm.running_mean.data += 1.0  # a folded norm's statistics
    net.areas["A"].ops.norm.weight.data[:4] = 0.0
    return text


def _load_state_dict_assign(net, text):
    other = tnnspec.compile(tnnspec.loads(text)).state_dict()  # new tensors, not copies into the old ones
    net.load_state_dict({k: v * 0.5 if v.is_floating_point() else v.clone() for k, v in other.items()},
                        assign=True)
    return text


def _edge_weight(net, text):
    net.edges["B__C"].weight = 0.5
    old = "- {type: feedforward, source: B, target: C, "
    assert old in text
    return text.replace(old, old + "weight: 0.5, ")


def _swap_conv(net, text):
    """A user's plain ``nn.Conv2d`` (new weights) in place of the edge's conv."""
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    torch.nn.init.normal_(conv.weight, std=0.2, generator=torch.Generator().manual_seed(3))
    net.edges["A__B"].conv = conv
    return text


def _swap_norm(net, text):
    """Another BatchNorm after A's conv (the fused pair is new)."""
    norm = torch.nn.BatchNorm2d(8).eval()
    norm.running_mean.fill_(-0.5), norm.running_var.fill_(2.0)
    net.areas["A"].ops.norm = norm
    return text


def _swap_relu(net, text):
    """A tanh in place of A's ReLU (the in-place ReLU pass must not apply to it)."""
    net.areas["A"].ops.relu = torch.nn.Tanh()
    return text.replace("{norm: {type: batch}}, relu]", "{norm: {type: batch}}, tanh]")


CHANGES = [_conv_through_data, _batchnorm_through_data, _load_state_dict_assign, _edge_weight, _swap_conv,
           _swap_norm, _swap_relu]


@pytest.mark.parametrize("optimize", list(OPTIMIZE))
@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("change", CHANGES, ids=lambda f: f.__name__.strip("_"))
def test_the_next_call_equals_a_fresh_plain_network(change, name, optimize):
    text = SPECS[name]
    passes, exact = OPTIMIZE[optimize]
    torch.manual_seed(0)
    net = tnnspec.compile(tnnspec.loads(text), optimize=passes).eval()
    _randomise_batchnorm(net)
    x = net.example_inputs(3)
    record = tuple(net.spec.areas)
    with torch.no_grad():
        before = net(x, record=record)  # packs weights, folds norms
        _same(before, _fresh(text, net).eval()(x, record=record), exact)
        changed = change(net, text)
        after = net(x, record=record)
        _same(after, _fresh(changed, net)(x, record=record), exact)
        _same(net(x, record=record), _fresh(changed, net)(x, record=record), exact)  # and the call after
    assert _changed(before, after)


@pytest.mark.parametrize("optimize", list(OPTIMIZE))
def test_train_and_eval_switches_are_seen(optimize):
    """Train mode: batch statistics (nothing folded, nothing shared), and the running statistics
    move; back in eval mode the folds follow the new statistics."""
    passes, exact = OPTIMIZE[optimize]
    torch.manual_seed(0)
    net = tnnspec.compile(tnnspec.loads(SPEC), optimize=passes).eval()
    _randomise_batchnorm(net)
    x = net.example_inputs(3)
    with torch.no_grad():
        before = net(x)
        _same(before, _fresh(SPEC, net)(x), exact)
        plain = _fresh(SPEC, net, training=True)
        net.train()
        trained = net(x)
        _same(trained, plain(x), exact)  # both updated their running statistics
        assert _changed(before, trained)
        net.eval(), plain.eval()
        after = net(x)
        _same(after, plain(x), exact)
        _same(after, _fresh(SPEC, net)(x), exact)
        assert _changed(before, after)  # the statistics moved
