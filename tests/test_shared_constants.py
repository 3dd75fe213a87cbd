"""Input-independent updates: the plan pass ``share_constants`` marks them (AreaStep.constant),
and a network compiled with it computes them once for the batch (batch size 1, broadcast where
input-dependent updates read them)."""

from __future__ import annotations

import pytest
import torch

import tnnspec
from tnnspec import zoo

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SHARE = (*tnnspec.compile.DEFAULT, "share_constants")

MIXED = """
tnnspec: "1.1"
name: constants
time: {steps: 6, default_delay: sweep}
inputs: {x: {shape: [3, 12, 12], schedule: {type: on_off, start: 2}}}
areas:
  A: {level: 1, channels: 4, cell: {type: leaky, tau_ms: 20}, ops: [relu]}
  B: {level: 2, channels: 4, combine: concat, cell: {type: lstm, kernel: 3}}
  C: {level: 3, channels: 4, combine: multiplicative, ops: [{norm: {type: group, groups: 2}}, relu]}
edges:
  - {type: feedforward, source: x, target: A, transform: [{conv: {kernel: 3}}]}
  - {type: feedforward, source: A, target: B, delay: 1, transform: [{conv: {kernel: 3}}]}
  - {type: lateral, source: B, target: B, transform: [{conv: {kernel: 1}}]}
  - {type: feedforward, source: B, target: C, transform: [{conv: {kernel: 3}}]}
  - {type: feedback, source: C, target: A, transform: [{conv: {kernel: 1}}]}
readouts:
  pred: {source: C, head: [{pool: avg}, {linear: 3}]}
  total: {source: C, cumulative: true, head: [{pool: avg}, {linear: 2}]}
"""


def _small(name):
    spec = zoo.load(name)
    return spec.model_copy(update={"inputs": {k: v.model_copy(update={"shape": [3, 64, 64]})
                                              for k, v in spec.inputs.items()}})


SPECS = {
    "cornet_rt": lambda: _small("cornet_rt"),
    "ventral4": lambda: tnnspec.load(ROOT / "graphs" / "ventral4.yaml"),
    "mixed": lambda: tnnspec.loads(MIXED),
}


def _constant_steps(plan):
    return {(s.area, t) for t, step in enumerate(plan.schedule) for s in step if s.constant}


def test_cornet_rt_updates_before_the_image_arrives_are_marked():
    assert tnnspec.compile(_small("cornet_rt")).plan.constant == 0  # only the pass marks them
    plan = tnnspec.compile(_small("cornet_rt"), optimize=SHARE).plan  # every edge one step: V2@1, V4@2, IT@3
    assert "share_constants" in plan.passes
    assert _constant_steps(plan) == {("V2", 0), ("V4", 0), ("IT", 0), ("V4", 1), ("IT", 1), ("IT", 2)}
    assert plan.constant == 6 and "(input-independent)" in str(plan)
    from tnnspec.cli.summary import summary_text

    assert "; 6 input-independent" in summary_text(_small("cornet_rt"), show_plan=False)


@pytest.mark.parametrize("name", list(SPECS))
def test_marked_updates_are_the_same_for_every_sample_and_the_others_are_not(name):
    """The flag against what it claims: with three different inputs in one batch (computed by
    the default network, every update at full batch), a marked update's output is the same for
    all samples, and every other computed update differs between some samples."""
    spec = SPECS[name]()
    net = tnnspec.compile(spec).eval()
    constant = _constant_steps(tnnspec.compile(spec, optimize=SHARE).plan)  # the marks of the pass
    assert bool(constant) == (name != "ventral4")  # same-step bottom-up: every area sees the image at t=0
    with torch.no_grad():
        run = net(net.example_inputs(3), record=tuple(spec.areas))
    computed = {(s.area, t) for t, step in enumerate(net.plan.schedule) for s in step}
    for area, t in computed:
        out = run.areas[area][t]
        same = all(torch.equal(out[0], out[k]) for k in (1, 2))
        assert same == ((area, t) in constant), (area, t)


@pytest.mark.parametrize("name", ["cornet_rt", "mixed"])
def test_shared_constants_give_the_outputs_and_gradients_of_the_full_batch(name):
    spec = SPECS[name]()
    torch.manual_seed(0)
    plain = tnnspec.compile(spec)
    shared = tnnspec.compile(spec, optimize=SHARE)
    shared.load_state_dict(plain.state_dict())
    x = plain.example_inputs(3)
    record = tuple(spec.areas)
    cells = _spy_on_cells(shared)
    runs = []
    for net in (plain, shared):
        run = net(x, record=record)
        loss = sum(v.square().sum() for v in run.readouts.values()) + sum(v.abs().sum() for v in run.areas.values())
        loss.backward()
        runs.append(run)
    batches = [b for bs in cells.values() for b in bs]
    assert batches.count(1) == shared.plan.constant and batches.count(3) == len(batches) - shared.plan.constant
    for kind in ("readouts", "areas"):
        for key, value in getattr(runs[0], kind).items():
            got = getattr(runs[1], kind)[key]
            assert got.shape == value.shape
            torch.testing.assert_close(got, value, rtol=1e-5, atol=1e-5, msg=key)
    for (n, a), (_, b) in zip(plain.named_parameters(), shared.named_parameters()):
        assert (a.grad is None) == (b.grad is None), n
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5 * max(a.grad.abs().max().item(), 1.0),
                                       msg=n)


def _spy_on_cells(net) -> dict[str, list[int]]:
    """Per area, the batch size of each cell call (a spy, not a hook: hooks turn sharing off)."""
    cells: dict[str, list[int]] = {}
    for area, module in net.areas.items():
        real = module.cell.forward
        module.cell.forward = lambda drive, *a, _real=real, _area=area: (
            cells.setdefault(_area, []).append(drive.shape[0]) or _real(drive, *a))
    return cells


def test_sharing_is_off_with_batchnorm_or_dropout_in_training_and_with_hooks():
    text = MIXED.replace("ops: [relu]}", "ops: [{norm: batch}, {dropout: 0.2}, relu]}")
    spec = tnnspec.loads(text)
    torch.manual_seed(0)
    plain = tnnspec.compile(spec)
    shared = tnnspec.compile(spec, optimize=SHARE)
    shared.load_state_dict(plain.state_dict())
    x = plain.example_inputs(3)
    assert shared.plan.constant > 0
    cells = _spy_on_cells(shared)

    def batches(run):
        cells.clear()
        run()
        return {b for bs in cells.values() for b in bs}

    # train mode: BatchNorm statistics and dropout masks couple samples, so nothing is shared
    torch.manual_seed(1)
    a = plain(x).readouts["pred"]
    torch.manual_seed(1)
    out = {}
    assert batches(lambda: out.setdefault("y", shared(x).readouts["pred"])) == {3}
    assert torch.equal(out["y"], a)
    shared.eval()
    with torch.no_grad():
        assert batches(lambda: shared(x)) == {1, 3}
        seen = []
        handle = shared.areas["C"].probe.register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
        assert batches(lambda: shared(x)) == {3}
        assert seen and set(seen) == {3}  # hooks see every sample
        handle.remove()
        assert batches(lambda: shared(x)) == {1, 3}
        global_hook = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
        try:
            assert batches(lambda: shared(x)) == {3}  # a global hook too
        finally:
            global_hook.remove()
        assert batches(lambda: shared(x)) == {1, 3}
