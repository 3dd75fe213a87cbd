"""checkpoint="recursive": the bisected run (tnnspec/compile/bisection.py) gives the gradients
of the plain run — for parameters and inputs, with dropout, BatchNorm in
train mode, truncated BPTT and autocast — while holding only ~log2(T) carries."""

import math

import pytest
import torch

import tnnspec
from tnnspec.compile.bisection import bisection_points

SPEC = """
tnnspec: "1.1"
name: bisect
time: {{steps: 9, default_delay: sweep}}
inputs: {{x: {{shape: [2, 8, 8], schedule: {schedule}}}}}
areas:
  S1: {{level: 1, channels: 4, ops: [{ops}relu]}}
  R: {{level: 2, channels: 4, cell: {{type: gru, kernel: 3}}}}
  T: {{level: 3, channels: 4, ops: [{{norm: {{type: group, groups: 2}}}}, relu]}}
edges:
  - {{type: feedforward, source: x, target: S1, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: feedforward, source: S1, target: R, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: feedforward, source: R, target: T, transform: [{{conv: {{kernel: 1}}}}]}}
  - {{type: lateral, source: T, target: T, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: feedback, source: T, target: R, transform: [{{conv: {{kernel: 1}}}}]}}
readouts:
  pred: {{source: T, head: [{{pool: avg}}, {{linear: 3}}]}}
  total: {{source: T, cumulative: true, head: [{{pool: avg}}, {{linear: 2}}]}}
"""


def _pair(schedule="static", ops="", **options):
    spec = tnnspec.loads(SPEC.format(schedule=schedule, ops=ops))
    plain = tnnspec.compile(spec, **options)
    bisected = tnnspec.compile(spec, checkpoint="recursive", **options)
    bisected.load_state_dict(plain.state_dict())
    return plain, bisected


def _loss(run):
    return run.readouts["pred"].square().sum() + run.readouts["total"].sum() + run.areas["R"].pow(3).sum()


def _close(a, b, name):
    scale = max(b.abs().max().item(), 1.0)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale, msg=name)


def test_bisection_points_halve_the_remaining_distance():
    assert bisection_points(0, 31) == [16, 24, 28, 30, 31]
    assert bisection_points(5, 5) == []
    assert bisection_points(3, 4) == [4]
    for end in range(1, 70):
        assert len(bisection_points(0, end)) == math.ceil(math.log2(end + 1))


@pytest.mark.parametrize("schedule", ["static", "sequence", "{type: on_off, start: 1, stop: 5}"])
def test_parameter_and_input_gradients_equal_the_plain_run(schedule):
    torch.manual_seed(0)
    plain, bisected = _pair(schedule)
    x = plain.example_inputs(2)
    grads = []
    for net in (plain, bisected):
        xi = x.clone().requires_grad_(True)
        run = net(xi, record=("R",))
        _loss(run).backward()
        grads.append((run, xi.grad, {n: p.grad for n, p in net.named_parameters()}))
    (ra, xa, pa), (rb, xb, pb) = grads
    assert torch.equal(ra.readouts["pred"], rb.readouts["pred"]) and torch.equal(ra.areas["R"], rb.areas["R"])
    _close(xb, xa, "input")
    for name, g in pa.items():
        assert (g is None) == (pb[name] is None), name
        if g is not None:
            _close(pb[name], g, name)


def test_autograd_grad_returns_the_parameter_gradients_without_touching_grad():
    torch.manual_seed(0)
    plain, bisected = _pair()
    x = plain.example_inputs(2)
    params = [list(net.parameters()) for net in (plain, bisected)]
    ga = torch.autograd.grad(_loss(plain(x, record=("R",))), params[0], allow_unused=True)
    gb = torch.autograd.grad(_loss(bisected(x, record=("R",))), params[1], allow_unused=True)
    for a, b, p in zip(ga, gb, params[1]):
        assert (a is None) == (b is None) and p.grad is None
        if a is not None:
            _close(b, a, "param")


def test_dropout_masks_are_replayed_in_the_recomputation():
    plain, bisected = _pair(ops="{dropout: 0.5}, ")
    x = plain.example_inputs(2)
    outs = []
    for net in (plain, bisected):
        torch.manual_seed(7)
        run = net(x, record=("R",))
        _loss(run).backward()
        outs.append(run.readouts["pred"])
        after = torch.rand(3)  # the generator continues where the forward pass left it
        outs.append(after)
    assert torch.equal(outs[0], outs[2]) and torch.equal(outs[1], outs[3])
    for (name, a), (_, b) in zip(plain.named_parameters(), bisected.named_parameters()):
        if a.grad is not None:
            _close(b.grad, a.grad, name)


def test_batchnorm_statistics_are_updated_once_per_step():
    plain, bisected = _pair(ops="{norm: {type: batch}}, ")
    x = plain.example_inputs(4)
    for net in (plain, bisected):
        _loss(net(x, record=("R",))).backward()
    buffers = dict(plain.named_buffers())
    assert any("running_mean" in n for n in buffers)
    for name, b in bisected.named_buffers():
        assert torch.equal(b, buffers[name]), name


@pytest.mark.parametrize("tbptt", [2, 4])
def test_truncated_bptt_cuts_the_same_gradients(tbptt):
    torch.manual_seed(0)
    plain, bisected = _pair(tbptt=tbptt)
    x = plain.example_inputs(2)
    for net in (plain, bisected):
        _loss(net(x, record=("R",))).backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), bisected.named_parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            _close(b.grad, a.grad, name)


def test_autocast_state_is_reentered_for_the_recomputation():
    torch.manual_seed(0)
    plain, bisected = _pair()
    x = plain.example_inputs(2)
    for net in (plain, bisected):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            run = net(x, record=("R",))
        _loss(run).float().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), bisected.named_parameters()):
        # (without it the recomputation fails: bfloat16 activations meet float32 weights). The
        # plain run sums the steps' gradients of the cached bfloat16 weight copy in bfloat16, the
        # bisected run sums them in float32: equal to ~1 % of the largest entry.
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-2 * max(a.grad.abs().max().item(), 1.0),
                                       msg=name)


def test_second_backward_is_refused_with_a_clear_message():
    _, bisected = _pair()
    loss = _loss(bisected(bisected.example_inputs(2), record=("R",)))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="already backpropagated"):
        loss.backward()


def test_each_step_runs_at_most_log2_t_plus_2_times_and_the_stack_stays_logarithmic(monkeypatch):
    from tnnspec.compile import bisection

    _, net = _pair()
    T = 32
    calls, depth = [], []
    net.areas["T"].probe.register_forward_hook(lambda *a: calls.append(1))
    real = bisection._BisectedRun.backward

    def watched(ctx, *grads):
        stack = ctx.driver.stack

        class Watch(list):
            def append(self, item):
                super().append(item)
                depth.append(len(self))

        ctx.driver.stack = Watch(stack)
        return real(ctx, *grads)

    monkeypatch.setattr(bisection._BisectedRun, "backward", staticmethod(watched))
    _loss(net(net.example_inputs(2), steps=T, record=("R",))).backward()
    assert T * 2 < len(calls) <= T * (math.log2(T) + 2)
    assert max(depth) <= math.log2(T) + 1
