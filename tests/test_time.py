"""Impulse-response tests of the time rules (docs/time.md).

Each graph is built from linear identity-like pathways (1x1 convs with weight 1, no bias) so
that a unit impulse shown only at t = 0 travels through it unchanged: an area's output is
non-zero exactly at the steps the rules say. Arrival steps are computed independently here
by enumerating paths on these small graphs (the library uses a Dijkstra search).
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

import tnnspec
from tnnspec.graph.timing import ms_to_steps


def _spec(edges, areas, steps, before="silent", extra_time=""):
    area_lines = "\n".join(f"  {a}: {{level: {lvl}, channels: 1, before_arrival: {before}}}"
                           for a, lvl in areas.items())
    edge_lines = "\n".join(
        "  - {" + ", ".join(f"{k}: {v}" for k, v in e.items())
        + ", transform: [{conv: {kernel: 1, bias: false}}]}" for e in edges)
    text = f"""
tnnspec: "1.1"
name: impulse
time: {{steps: {steps}{extra_time}}}
inputs:
  x: {{shape: [1, 1, 1], schedule: {{type: on_off, start: 0, stop: 1}}}}
areas:
{area_lines}
edges:
{edge_lines}
"""
    return tnnspec.loads(text)


def _run(spec):
    net = tnnspec.compile(spec)
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(1.0)
        run = net(torch.ones(1, 1, 1, 1, dtype=torch.float32), record=tuple(spec.areas))
    return net, {a: [t for t in range(v.shape[0]) if v[t].abs().sum() > 0] for a, v in run.areas.items()}


def _brute_arrival(edges, areas, delays):
    """Earliest arrival by enumerating every simple path from the input (small graphs only)."""
    best = {a: math.inf for a in areas}
    adj = {}
    for e, d in zip(edges, delays):
        adj.setdefault(e["source"], []).append((e["target"], d))

    def walk(node, t, seen):
        for nxt, d in adj.get(node, []):
            if nxt in seen:
                continue
            best[nxt] = min(best[nxt], t + d)
            walk(nxt, t + d, seen | {nxt})

    walk("x", 0, {"x"})
    return best


CHAIN = {"A": 1, "B": 2, "C": 3}
DIAMOND = {"A": 1, "B": 2, "C": 2, "D": 3}


@pytest.mark.parametrize("d1,d2,d3", list(itertools.product([0, 1, 3], repeat=3)))
def test_chain_impulse_reaches_each_area_at_its_arrival(d1, d2, d3):
    edges = [dict(type="feedforward", source="x", target="A", delay=d1),
             dict(type="feedforward", source="A", target="B", delay=d2),
             dict(type="feedforward", source="B", target="C", delay=d3)]
    spec = _spec(edges, CHAIN, steps=12)
    net, nonzero = _run(spec)
    expect = _brute_arrival(edges, CHAIN, [d1, d2, d3])
    for area in CHAIN:
        assert net.plan.arrival[area] == expect[area]
        # a one-step impulse through pure delays is non-zero at exactly one step
        assert nonzero[area] == [expect[area]]


@pytest.mark.parametrize("left,right", [(0, 0), (0, 3), (3, 1), (1, 1)])
def test_diamond_arrival_is_the_shortest_path(left, right):
    edges = [dict(type="feedforward", source="x", target="A", delay=0),
             dict(type="feedforward", source="A", target="B", delay=left),
             dict(type="feedforward", source="A", target="C", delay=right),
             dict(type="feedforward", source="B", target="D", delay=1),
             dict(type="feedforward", source="C", target="D", delay=1)]
    spec = _spec(edges, DIAMOND, steps=10)
    net, nonzero = _run(spec)
    expect = _brute_arrival(edges, DIAMOND, [e["delay"] for e in edges])
    assert {a: net.plan.arrival[a] for a in DIAMOND} == expect
    assert nonzero["D"] == sorted({1 + left, 1 + right})  # the impulse arrives once per path
    assert nonzero["D"][0] == expect["D"]


def test_feedback_loop_echoes_every_loop_period():
    # A -> B (delay 1), B -> A feedback (delay 2): the impulse circulates with period 3
    areas = {"A": 1, "B": 2}
    edges = [dict(type="feedforward", source="x", target="A", delay=0),
             dict(type="feedforward", source="A", target="B", delay=1),
             dict(type="feedback", source="B", target="A", delay=2)]
    spec = _spec(edges, areas, steps=10)
    net, nonzero = _run(spec)
    assert net.plan.arrival == {"x": 0, "A": 0, "B": 1}
    assert nonzero["A"] == [0, 3, 6, 9]
    assert nonzero["B"] == [1, 4, 7]


def test_lateral_self_loop_keeps_the_impulse_alive():
    areas = {"A": 1}
    edges = [dict(type="feedforward", source="x", target="A", delay=2),
             dict(type="lateral", source="A", target="A", delay=3)]
    _, nonzero = _run(_spec(edges, areas, steps=10))
    assert nonzero["A"] == [2, 5, 8]


@pytest.mark.parametrize("dt,ms,steps", [(10, 0, 0), (10, 10, 1), (10, 25, 3), (10, 3, 1), (5, 20, 4),
                                         (0.1, 0.3, 3)])
def test_ms_delays_round_up_to_whole_steps(dt, ms, steps):
    assert ms_to_steps(ms, dt) == steps
    areas = {"A": 1}
    edges = [dict(type="feedforward", source="x", target="A", delay_ms=ms)]
    net, nonzero = _run(_spec(edges, areas, steps=8, extra_time=f", dt_ms: {dt}"))
    assert net.plan.arrival["A"] == steps
    assert nonzero["A"] == [steps]


def test_presets_biological_and_sweep():
    base = """
tnnspec: "1.1"
name: p
time: {{steps: 6, default_delay: {preset}}}
inputs: {{x: {{shape: [1, 1, 1]}}}}
areas:
  A: {{level: 1, channels: 1}}
  B: {{level: 2, channels: 1}}
edges:
  - {{type: feedforward, source: x, target: A}}
  - {{type: feedforward, source: A, target: B}}
  - {{type: lateral, source: B, target: B}}
  - {{type: feedback, source: B, target: A}}
"""
    bio = tnnspec.compile(tnnspec.loads(base.format(preset="biological"))).plan
    sweep = tnnspec.compile(tnnspec.loads(base.format(preset="sweep"))).plan
    assert bio.delays == (0, 1, 1, 1) and bio.arrival["B"] == 1
    assert sweep.delays == (0, 0, 1, 1) and sweep.arrival["B"] == 0


def test_from_step_gates_an_edge_and_shifts_arrival():
    areas = {"A": 1, "B": 2}
    edges = [dict(type="feedforward", source="x", target="A", delay=0),
             dict(type="feedforward", source="A", target="B", delay=0, from_step=2)]
    spec = _spec(edges, areas, steps=5)
    net = tnnspec.compile(spec)
    assert net.plan.arrival["B"] == 2
    assert [s.area for s in net.plan.schedule[1]] == ["A"]


def test_silent_is_exactly_zero_and_zero_drive_is_not():
    text = """
tnnspec: "1.1"
name: t0
time: {{steps: 4}}
inputs: {{x: {{shape: [2, 4, 4]}}}}
areas:
  A: {{level: 1, channels: 4, ops: [{{norm: {{type: group, groups: 2}}}}, relu]}}
  B: {{level: 2, channels: 4, before_arrival: {mode}, ops: [{{norm: {{type: group, groups: 2}}}}, relu]}}
edges:
  - {{type: feedforward, source: x, target: A, delay: 0, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: feedforward, source: A, target: B, delay: 2, transform: [{{conv: {{kernel: 3}}}}]}}
"""
    for mode in ("silent", "zero_drive"):
        net = tnnspec.compile(tnnspec.loads(text.format(mode=mode)))
        with torch.no_grad():
            net.areas["B"].ops.norm.bias.uniform_(0.5, 1.0)  # GroupNorm's shift shows through ReLU
        run = net(torch.randn(2, 2, 4, 4), record=("B",))
        b = run.areas["B"]
        assert net.plan.arrival["B"] == 2
        if mode == "silent":
            assert torch.equal(b[:2], torch.zeros_like(b[:2]))
            assert [s.area for s in net.plan.schedule[0]] == ["A"]
        else:  # GroupNorm of an all-zero drive returns its shift: ReLU(beta) everywhere
            beta = net.areas["B"].ops.norm.bias.detach()
            expect = torch.relu(beta).view(1, 4, 1, 1).expand(2, 4, 4, 4)
            assert torch.allclose(b[0], expect) and torch.allclose(b[1], expect)


ZERO_INPUT = """
tnnspec: "1.1"
name: stand_ins
time: {{steps: 5}}
inputs: {{x: {{shape: [2, 4, 4]}}}}
areas:
  A: {{level: 1, channels: 3}}
  B: {{level: 2, channels: 3, before_arrival: {mode}}}
edges:
  - {{type: feedforward, source: x, target: A, delay: 1, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: feedforward, source: A, target: B, delay: 1, from_step: {from_step},
     transform: [{{conv: {{kernel: 3}}}}]}}
"""


@pytest.mark.parametrize("from_step", [0, 1])
def test_zero_input_sends_zero_source_outputs_through_the_edge(from_step):
    """Rule 4, ``zero_input`` (tnn's t = 0 stand-ins, tnn_convrnns.md section 3.1): an edge whose
    source has no output yet (before step 0, or a silent source before its arrival) delivers
    its transform of zeros, so the conv's bias enters the drive; ``zero_drive`` gets exactly 0.
    An edge before its ``from_step`` delivers nothing either way. A is silent until step 1."""
    x = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    runs = {}
    for mode in ("zero_input", "zero_drive"):
        net = tnnspec.compile(tnnspec.loads(ZERO_INPUT.format(mode=mode, from_step=from_step)))
        with torch.no_grad():
            for p in net.parameters():
                p.uniform_(-1, 1, generator=torch.Generator().manual_seed(p.numel()))
            runs[mode] = net(x, record=("A", "B")).areas
    ab = net.edges["A__B"].conv
    a = runs["zero_input"]["A"]
    assert torch.equal(a, runs["zero_drive"]["A"]) and torch.equal(a[0], torch.zeros_like(a[0]))  # A silent at 0
    bias = ab.bias.detach().view(1, 3, 1, 1).expand(2, 3, 4, 4)
    b_in, b_drive = runs["zero_input"]["B"], runs["zero_drive"]["B"]
    for t in range(5):  # B reads A at t - 1: missing at t = 0 (before the run) and t = 1 (A silent at 0)
        if t < from_step:
            expect_in = expect_drive = torch.zeros(2, 3, 4, 4)  # the edge is off: zero drive
        elif t <= 1:
            expect_in, expect_drive = bias, torch.zeros(2, 3, 4, 4)
        else:
            expect_in = expect_drive = torch.nn.functional.conv2d(a[t - 1], ab.weight, ab.bias, padding=1)
        assert torch.allclose(b_in[t], expect_in, atol=1e-6), t
        assert torch.allclose(b_drive[t], expect_drive, atol=1e-6), t
    reads = {t: [(r.at, r.zeros) for s in net.plan.schedule[t] for r in s.reads if s.area == "B"]
             for t in range(3)}
    assert reads[2] == [(1, False)]
    plan_in = tnnspec.compile(tnnspec.loads(ZERO_INPUT.format(mode="zero_input", from_step=from_step)),
                              optimize=(*tnnspec.compile.DEFAULT, "share_constants")).plan  # marks `constant`
    stand_ins = {t: [(r.at, r.zeros) for s in plan_in.schedule[t] for r in s.reads if s.area == "B"]
                 for t in range(3)}
    assert stand_ins == {0: [(-1, True)] if from_step == 0 else [], 1: [(0, True)], 2: [(1, False)]}
    assert "A__B[zeros]" in str(plan_in) and plan_in.history["A"] == 1
    assert all(s.constant for t in (0, 1) for s in plan_in.schedule[t] if s.area == "B")


def test_run_time_steps_override_and_sequence_inputs():
    text = """
tnnspec: "1.1"
name: seq
time: {steps: 3}
inputs: {movie: {shape: [1, 1, 1], schedule: sequence}}
areas: {A: {level: 1, channels: 1}}
edges: [{type: feedforward, source: movie, target: A, delay: 1, transform: [{conv: {kernel: 1, bias: false}}]}]
"""
    net = tnnspec.compile(tnnspec.loads(text))
    with torch.no_grad():
        net.edges["movie__A"].conv.weight.fill_(1.0)
    frames = torch.arange(1.0, 8.0).view(1, 7, 1, 1, 1)
    run = net(frames, steps=7, record=("A",))
    assert run.areas["A"].shape[0] == 7
    assert run.areas["A"].flatten().tolist() == [0.0, 1, 2, 3, 4, 5, 6]  # frame t arrives at t + 1
    with pytest.raises(ValueError, match="sequence has 7 frames"):
        net(frames, steps=9)
