"""The compiled Network: API, gradients, probes, combine modes and modulatory edges,
checked against hand-computed expectations on tiny graphs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tnnspec
from tnnspec import zoo

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def without(*names: str) -> tuple[str, ...]:
    """The default passes less ``names``."""
    return tuple(n for n in tnnspec.compile.DEFAULT if n not in names)


NO_HOIST = without("hoist")


@pytest.fixture(scope="module")
def ventral():
    return tnnspec.load(ROOT / "graphs" / "ventral4.yaml")


def test_api_shapes_and_names(ventral):
    net = tnnspec.compile(ventral)
    x = net.example_inputs(batch_size=3)
    run = net(x, record=("V1", "IT"))
    T = net.plan.steps
    assert run.readouts["logits"].shape == (T, 3, 10)
    assert run.areas["IT"].shape == (T, 3, 128, 4, 4)
    assert set(run.areas) == {"V1", "IT"}
    names = [n for n, _ in net.named_parameters()]
    assert "edges.V1__V2.conv.weight" in names and "areas.V1.ops.norm.weight" in names
    assert "readouts.logits.linear.weight" in names
    assert net(net.example_inputs(batch_size=1)).readouts["logits"].shape == (T, 1, 10)  # dynamic batch


def test_gradient_reaches_every_parameter(ventral):
    net = tnnspec.compile(ventral)
    run = net(net.example_inputs(2))
    run.readouts["logits"].square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_deterministic_and_no_state_leaks(ventral):
    torch.manual_seed(0)
    net = tnnspec.compile(ventral).eval()
    x = net.example_inputs(2)
    a = net(x).readouts["logits"]
    net(net.example_inputs(2, seed=5))  # another call in between must not change anything
    b = net(x).readouts["logits"]
    assert torch.equal(a, b)


def test_probe_called_once_per_area_per_step(ventral):
    net = tnnspec.compile(ventral)
    counts = {a: 0 for a in ventral.areas}
    for name in ventral.areas:
        net.areas[name].probe.register_forward_hook(lambda m, i, o, name=name: counts.__setitem__(name, counts[name] + 1))
    net(net.example_inputs(1), steps=5)
    assert counts == {a: 5 for a in ventral.areas}


def test_on_off_schedule_shows_blank_after_off(ventral):
    net = tnnspec.compile(ventral, optimize=NO_HOIST)  # the edge transform sees every step's frame
    seen = []
    net.edges["image__V1"].conv.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    x = net.example_inputs(2)
    net(x, steps=6)
    assert len(seen) == 6
    assert all(torch.equal(s, x) for s in seen[:4])
    assert all(torch.equal(s, torch.zeros_like(x)) for s in seen[4:])


def test_edge_terms_of_unchanged_inputs_are_computed_once_per_change(ventral):
    hoisted, plain = tnnspec.compile(ventral), tnnspec.compile(ventral, optimize=NO_HOIST)
    plain.load_state_dict(hoisted.state_dict())
    seen = []
    hoisted.edges["image__V1"].conv.register_forward_hook(lambda m, i, o: seen.append(i[0].clone()))
    x = hoisted.example_inputs(2)
    a, b = hoisted(x, steps=6, record=tuple(ventral.areas)), plain(x, steps=6, record=tuple(ventral.areas))
    assert len(seen) == 2  # the image at t=0 and the blank at t=4 (on_off, stop: 4)
    assert torch.equal(seen[0], x) and torch.equal(seen[1], torch.zeros_like(x))
    for name in ventral.areas:
        assert torch.equal(a.areas[name], b.areas[name]), name
    reads = [r for step in hoisted.plan_for(6).schedule for s in step for r in s.reads if r.edge == 0]
    assert [r.reuse for r in reads] == [False, True, True, True, False, True]


SMALL = """
tnnspec: "1.1"
name: small
time: {{steps: 3, default_delay: sweep}}
inputs:
  x: {{shape: [2, 4, 4]}}
  cue: {{shape: [2]}}
areas:
  A: {{level: 1, channels: 2, combine: {combine}}}
  B: {{level: 2, channels: 2}}
edges:
  - {{type: feedforward, source: x, target: A, transform: [{{conv: {{kernel: 1, bias: false}}}}]}}
  - {{type: lateral, source: A, target: A, transform: [{{conv: {{kernel: 1, bias: false}}}}]}}
  - {{type: feedforward, source: A, target: B, transform: [{{conv: {{kernel: 1, bias: false}}}}]}}
  - {{type: feedback, source: B, target: A, transform: [{{conv: {{kernel: 1, bias: false}}}}]}}
  - {{type: attention, source: cue, target: B, mode: relative_gain, delay: 0}}
  - {{type: normalization, source: B, target: B, delay: 1, sigma: 0.5, pool: {{kernel: 3}}}}
"""


def _reference(net, x, cue, combine):
    """Hand-unrolled equivalent of SMALL, written from docs/spec.md's equations."""
    W = {n: net.edges[n].conv.weight for n in ("x__A", "A__A", "A__B", "B__A")}
    conv = lambda n, v: F.conv2d(v, W[n])  # noqa: E731
    A, B = [], []
    for t in range(3):
        b = conv("x__A", x)
        rec = [conv("A__A", A[t - 1]), conv("B__A", B[t - 1])] if t else []
        if combine == "sum":
            a = b + sum(rec) if rec else b
        else:
            a = b * (1 + rec[0] + rec[1]) if rec else b
        A.append(a)
        d = conv("A__B", a) * (1 + cue.view(-1, 2, 1, 1))
        if t:
            pool = F.avg_pool2d(B[t - 1].abs().mean(1, keepdim=True), 3, 1, 1, count_include_pad=False)
            d = d / (0.5 + pool)
        B.append(d)
    return torch.stack(A), torch.stack(B)


@pytest.mark.parametrize("combine", ["sum", "multiplicative"])
def test_combine_attention_and_normalization_match_hand_unrolled(combine):
    net = tnnspec.compile(tnnspec.loads(SMALL.format(combine=combine))).double()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    cue = torch.rand(2, 2, dtype=torch.float64)
    run = net({"x": x, "cue": cue}, record=("A", "B"))
    A, B = _reference(net, x, cue, combine)
    assert torch.allclose(run.areas["A"], A, atol=1e-12)
    assert torch.allclose(run.areas["B"], B, atol=1e-12)


def test_concat_combine_stacks_channels_in_edge_order():
    text = """
tnnspec: "1.1"
name: cat
time: {steps: 1}
inputs: {x: {shape: [1, 2, 2]}, z: {shape: [2, 2, 2]}}
areas: {A: {level: 1, channels: 3, combine: concat}}
edges:
  - {type: feedforward, source: z, target: A, delay: 0}
  - {type: feedforward, source: x, target: A, delay: 0}
"""
    net = tnnspec.compile(tnnspec.loads(text))
    x, y = torch.randn(2, 1, 2, 2), torch.randn(2, 2, 2, 2)
    out = net({"x": x, "z": y}, record=("A",)).areas["A"][0]
    assert torch.equal(out, torch.cat([y, x], 1))


def test_concat_drive_counts_the_areas_own_lateral_edge():
    """The lateral edge's shape depends on the area itself, so it is unknown when the drive is
    first inferred; the drive must still stack both edges (it was 4 channels, and the cell's
    input conv failed at run time)."""
    text = """
tnnspec: "1.1"
name: cat_loop
time: {steps: 3}
inputs: {x: {shape: [3, 6, 6]}}
areas: {B: {level: 1, channels: 4, combine: concat, cell: {type: lstm, kernel: 3}}}
edges:
  - {type: feedforward, source: x, target: B, transform: [{conv: {kernel: 3}}]}
  - {type: lateral, source: B, target: B, transform: [{conv: {kernel: 1}}]}
"""
    net = tnnspec.compile(tnnspec.loads(text))
    assert net.plan.shapes.drive["B"] == (8, 6, 6)
    assert net.areas["B"].cell.input_conv.in_channels == 8
    assert net(net.example_inputs(2), record=("B",)).areas["B"].shape == (3, 2, 4, 6, 6)


def test_tbptt_cuts_gradients_to_early_steps(ventral):
    net = tnnspec.compile(ventral, tbptt=2)
    x = net.example_inputs(1).requires_grad_(True)
    run = net(x, steps=6)
    run.readouts["logits"][-1].sum().backward()
    full = tnnspec.compile(ventral)
    full.load_state_dict(net.state_dict())
    x2 = x.detach().clone().requires_grad_(True)
    full(x2, steps=6).readouts["logits"][-1].sum().backward()
    assert not torch.allclose(x.grad, x2.grad)  # the truncated run sees only the last window


def test_input_errors_are_clear(ventral):
    net = tnnspec.compile(ventral)
    with pytest.raises(ValueError, match=r"expected shape \[B, 3, 64, 64\]"):
        net(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="unknown area 'V9'"):
        net(net.example_inputs(1), record=("V9",))


def test_cumulative_readout_sums_over_steps(ventral):
    spec = ventral.model_copy(update={"readouts": {
        "now": ventral.readouts["logits"],
        "cum": ventral.readouts["logits"].model_copy(update={"cumulative": True})}})
    net = tnnspec.compile(spec)
    with torch.no_grad():
        net.readouts["cum"].load_state_dict(net.readouts["now"].state_dict())
        run = net(net.example_inputs(2))
    assert torch.allclose(run.readouts["cum"], run.readouts["now"].cumsum(0), atol=1e-5)


@pytest.mark.slow
def test_torch_compile_matches_eager(ventral):
    net = tnnspec.compile(ventral).eval()
    x = net.example_inputs(2)
    eager = net(x).readouts["logits"]
    compiled = torch.compile(net)
    assert torch.allclose(compiled(x).readouts["logits"], eager, atol=1e-5)


@pytest.mark.gpu
def test_cuda_matches_cpu(ventral):
    net = tnnspec.compile(ventral).eval()
    x = net.example_inputs(2)
    cpu = net(x).readouts["logits"]
    gpu = net.to("cuda")(x.to("cuda")).readouts["logits"].cpu()
    assert torch.allclose(cpu, gpu, atol=1e-4)


@pytest.mark.parametrize("mode", [True, "recursive"])
@pytest.mark.parametrize("steps", [1, 5, 8])
def test_activation_checkpointing_gives_the_same_gradients(ventral, steps, mode):
    torch.manual_seed(0)
    plain = tnnspec.compile(ventral)
    ckpt = tnnspec.compile(ventral, checkpoint=mode)
    ckpt.load_state_dict(plain.state_dict())
    x = plain.example_inputs(2)
    runs = []
    for net in (plain, ckpt):
        run = net(x, steps=steps, record=("V1", "IT"))
        (run.readouts["logits"].square().sum() + run.areas["IT"].sum()).backward()
        runs.append(run)
    assert torch.equal(runs[0].readouts["logits"], runs[1].readouts["logits"])
    assert torch.equal(runs[0].areas["V1"], runs[1].areas["V1"])
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        assert (a.grad is None) == (b.grad is None), name  # at T = 1 feedback weights get none
        if a.grad is not None:  # float32 sums in another order ("recursive" sums per-step gradients)
            scale = a.grad.abs().max().item()
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5 * max(scale, 1.0), msg=name)


def test_checkpoint_option_is_checked(ventral):
    with pytest.raises(ValueError, match="checkpoint must be"):
        tnnspec.compile(ventral, checkpoint="nested")


def test_bf16_autocast_runs_and_stays_close(ventral):
    net = tnnspec.compile(ventral).eval()
    x = net.example_inputs(2)
    with torch.no_grad():
        ref = net(x).readouts["logits"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = net(x).readouts["logits"].float()
    assert low.shape == ref.shape and (low - ref).abs().max() < 0.1 * ref.abs().max() + 0.05


def test_torch_export_matches_eager(ventral):
    net = tnnspec.compile(ventral).eval()
    x = net.example_inputs(2)
    exported = torch.export.export(net, (x,))
    out = exported.module()(x)
    assert torch.allclose(out.readouts["logits"], net(x).readouts["logits"], atol=1e-5)


def test_unroll_loop_compiles_to_one_graph_without_breaks(ventral):
    torch._dynamo.reset()
    net = tnnspec.compile(ventral).eval()
    explanation = torch._dynamo.explain(net)(net.example_inputs(2))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1


STEM = """
tnnspec: "1.1"
name: stem
time: {{steps: 6, default_delay: sweep}}
inputs: {{x: {{shape: [2, 8, 8], schedule: {schedule}}}}}
areas:
  S1: {{level: 1, channels: 4, ops: [{{norm: {{type: group, groups: 2}}}}, relu]}}
  S2: {{level: 2, channels: 4, ops: [relu]}}
  R: {{level: 3, channels: 4, cell: {{type: gru, kernel: 3}}}}
  T: {{level: 4, channels: 4}}
edges:
  - {{type: feedforward, source: x, target: S1, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: feedforward, source: S1, target: S2, delay: 1, transform: [{{conv: {{kernel: 3}}}}]}}
  - {{type: feedforward, source: S2, target: R, transform: [{{conv: {{kernel: 1}}}}]}}
  - {{type: feedforward, source: R, target: T, transform: [{{conv: {{kernel: 1}}}}]}}
readouts: {{pred: {{source: T, head: [{{pool: avg}}, {{linear: 3}}]}}}}
"""


@pytest.mark.parametrize("schedule", ["static", "{type: on_off, start: 0, stop: 3}", "sequence"])
def test_time_invariant_hoisting_is_exact(schedule):
    spec = tnnspec.loads(STEM.format(schedule=schedule))
    hoisted, plain = tnnspec.compile(spec), tnnspec.compile(spec, optimize=NO_HOIST)
    plain.load_state_dict(hoisted.state_dict())
    input_convs = {}
    for key, net in (("hoisted", hoisted), ("plain", plain)):  # the GRU's input conv, x -> [r; u; c]
        net.areas["R"].cell.input_conv.register_forward_hook(
            lambda *a, key=key: input_convs.__setitem__(key, input_convs.get(key, 0) + 1))
    x = hoisted.example_inputs(2)
    a = hoisted(x, record=tuple(spec.areas))
    b = plain(x, record=tuple(spec.areas))
    for name in spec.areas:
        assert torch.equal(a.areas[name], b.areas[name]), name
    assert torch.equal(a.readouts["pred"], b.readouts["pred"])
    reused = {(t, s.area) for t, step in enumerate(hoisted.plan.schedule) for s in step if s.reuse}
    drive_reused = {t for t, step in enumerate(hoisted.plan.schedule) for s in step if s.drive_reuse}
    assert input_convs["plain"] == 5  # R computes from its arrival at t = 1
    if schedule == "static":  # stems are computed once; the GRU and what follows it never reuse
        assert reused == {(t, "S1") for t in range(1, 6)} | {(t, "S2") for t in range(2, 6)}
        # the GRU's drive (S2's term) is unchanged from t = 2: its input conv runs at t = 1 only
        # kept: the GRU's input term, and S2 -> R's conv (edge 2) from t = 3 on
        assert drive_reused == {2, 3, 4, 5} and hoisted.plan.kept == {2, "R", ("output", "S1"), ("output", "S2")}
        assert input_convs["hoisted"] == 1 and "(drive reused)" in str(hoisted.plan)
        assert hoisted.plan.reused_drives == 4
        from tnnspec.cli.summary import summary_text

        assert "; 4 cell input terms reused" in summary_text(spec, show_plan=False)
    elif schedule == "sequence":
        assert reused == set() and drive_reused == set() and input_convs["hoisted"] == 5
    else:  # the frame changes at t=3 (blank): S1 recomputes there, S2 one step later
        assert (3, "S1") not in reused and (4, "S2") not in reused and (4, "S1") in reused


RECURRING_DRIVE_CELLS = ["simple_rnn", "gru", "lstm", "ugrnn", "intersection_rnn", "resnet_unit",
                         "{type: reciprocal_gated_convrnn, input_activation: elu, input_to_out: true}"]


@pytest.mark.parametrize("cell", RECURRING_DRIVE_CELLS, ids=lambda c: c.split(",")[0].strip("{").replace("type: ", ""))
def test_a_recurring_drive_reuses_the_cells_input_term_exactly(cell):
    """Cells with an input term (a part of the update that reads only the drive: conv RNNs'
    input convs) compute it once while their drive is unchanged (static image): outputs
    bit-identical to recomputing it, gradients equal to rounding."""
    cell_spec = cell if cell.startswith("{") else f"{{type: {cell}, kernel: 3}}"
    escaped = cell_spec.replace("{", "{{").replace("}", "}}")  # STEM is a str.format template
    spec = tnnspec.loads(STEM.replace("{{type: gru, kernel: 3}}", escaped).format(schedule="static"))
    assert spec.areas["R"].cell.type == cell_spec.split(",")[0].strip("{}").replace("type: ", "")
    hoisted, plain = tnnspec.compile(spec), tnnspec.compile(spec, optimize=NO_HOIST)
    plain.load_state_dict(hoisted.state_dict())
    calls = {"hoisted": 0, "plain": 0}
    for key, net in (("hoisted", hoisted), ("plain", plain)):
        cell_module = net.areas["R"].cell
        assert cell_module.has_input_term
        real = cell_module.input_term

        def counted(drive, key=key, real=real):
            calls[key] += 1
            return real(drive)

        cell_module.input_term = counted
    x = hoisted.example_inputs(2)
    a, b = hoisted(x, record=("R",)), plain(x, record=("R",))
    assert calls == {"hoisted": 1, "plain": 5}  # R computes at t = 1..5; its drive recurs from t = 2
    assert torch.equal(a.areas["R"], b.areas["R"]) and torch.equal(a.readouts["pred"], b.readouts["pred"])
    a.readouts["pred"].square().sum().backward()
    b.readouts["pred"].square().sum().backward()
    for (name, p), q in zip(hoisted.named_parameters(), plain.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)


def test_kept_input_terms_trace_to_one_graph():
    """The kept cells' input terms and zero stand-ins live in the carry: no graph break."""
    torch._dynamo.reset()
    spec = tnnspec.loads(STEM.format(schedule="static").replace("level: 3, channels: 4,",
                                                                 "level: 3, channels: 4, before_arrival: zero_input,"))
    net = tnnspec.compile(spec).eval()
    assert net.plan.reused_drives == 4 and any(r.zeros for step in net.plan.schedule for s in step for r in s.reads)
    x = net.example_inputs(2)
    with torch.no_grad():
        explanation = torch._dynamo.explain(net)(x)
        assert explanation.graph_break_count == 0 and explanation.graph_count == 1
        torch.testing.assert_close(torch.compile(net)(x).readouts["pred"], net(x).readouts["pred"])


@pytest.mark.parametrize("schedule", ["static", "sequence"])
def test_readout_steps_prune_the_plan_exactly(schedule):
    spec = tnnspec.loads(STEM.format(schedule=schedule))  # includes a GRU: state keeps history alive
    net = tnnspec.compile(spec)
    x = net.example_inputs(2)
    full = net(x).readouts["pred"]
    last = net(x, readout_steps="last").readouts["pred"]
    some = net(x, readout_steps=[1, 3]).readouts["pred"]
    assert last.shape[0] == 1 and torch.allclose(last[0], full[-1], atol=1e-6)
    assert torch.allclose(some, full[[1, 3]], atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        net(x, readout_steps=[9])


def test_readout_last_skips_updates_that_cannot_reach_it():
    text = """
tnnspec: "1.1"
name: chain
time: {steps: 5, default_delay: biological}
inputs: {x: {shape: [2, 6, 6]}}
areas:
  A: {level: 1, channels: 2, before_arrival: zero_drive}
  B: {level: 2, channels: 2, before_arrival: zero_drive}
  C: {level: 3, channels: 2, before_arrival: zero_drive}
edges:
  - {type: feedforward, source: x, target: A, transform: [conv]}
  - {type: feedforward, source: A, target: B, transform: [conv]}
  - {type: feedforward, source: B, target: C, transform: [conv]}
  - {type: lateral, source: C, target: C, transform: [conv]}
readouts: {pred: {source: C, head: [{pool: avg}, {linear: 3}]}}
"""
    net = tnnspec.compile(tnnspec.loads(text))
    x = net.example_inputs(2)
    full = net(x).readouts["pred"]
    pruned = net.call_plan(readout_steps="last")
    assert net.call_plan(readout_steps=[4]) is pruned and pruned.emit == (4,) and pruned.passes[-1] == "prune"
    count = lambda plan: sum(len(step) for step in plan.schedule)  # noqa: E731
    assert count(pruned) == count(net.plan) - 3  # A at t=3, 4 and B at t=4 cannot reach C at t=4
    assert pruned.pruned == {("A", 3), ("A", 4), ("B", 4)}
    assert {(s.area, t) for t, step in enumerate(pruned.schedule) for s in step} >= {("C", t) for t in range(5)}
    assert [s.area for s in pruned.schedule[3]] == ["B", "C"] and [s.area for s in pruned.schedule[4]] == ["C"]
    assert torch.allclose(net(x, readout_steps="last").readouts["pred"][0], full[-1], atol=1e-6)


@pytest.mark.parametrize("options", [{}, {"tbptt": 2}, {"checkpoint": True}, {"tbptt": 3, "checkpoint": True},
                                     {"checkpoint": "recursive"}, {"tbptt": 2, "checkpoint": "recursive"}])
def test_hoisting_keeps_outputs_and_gradients_with_tbptt_and_checkpointing(options):
    """Reused area outputs and edge terms give the gradients of recomputing them, also when
    steps are recomputed. Under truncated BPTT the network does not hoist (a kept value could
    reach back across a cut window): its plan is the unhoisted one, with the same outputs."""
    spec = tnnspec.loads(STEM.format(schedule="static"))
    hoisted, plain = tnnspec.compile(spec, **options), tnnspec.compile(spec, optimize=NO_HOIST, **options)
    plain.load_state_dict(hoisted.state_dict())
    plan = hoisted.plan
    if options.get("tbptt"):
        assert "hoist" not in plan.passes and plan.reused == plan.reused_terms == plan.reused_drives == 0
        assert plan.kept == frozenset() and plan.schedule == plain.plan.schedule
    else:
        assert plan.passes == ("hoist",) and plan.reused_terms > 0
        assert plan.kept == {2, "R", ("output", "S1"), ("output", "S2")}  # + the stems kept outputs
    x = hoisted.example_inputs(2)
    runs = []
    for net in (hoisted, plain):
        out = net(x).readouts["pred"]
        out.square().sum().backward()
        runs.append((out.detach(), {n: p.grad.clone() for n, p in net.named_parameters()}))
    assert torch.equal(runs[0][0], runs[1][0])
    for name, grad in runs[1][1].items():
        torch.testing.assert_close(runs[0][1][name], grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("name", ["cornet_rt", "blt_net_64", "ventral4"])
def test_pruned_plans_with_reused_terms_match_the_dense_run(name):
    spec = zoo.load(name) if name != "ventral4" else tnnspec.load(ROOT / "graphs" / "ventral4.yaml")
    if name == "cornet_rt":  # a small image keeps the test fast; the graph is the same
        spec = spec.model_copy(update={"inputs": {"image": spec.inputs["image"].model_copy(update={"shape": [3, 64, 64]})}})
    hoisted, plain = tnnspec.compile(spec).eval(), tnnspec.compile(spec, optimize=NO_HOIST).eval()
    plain.load_state_dict(hoisted.state_dict())
    assert hoisted.plan.reused_terms > 0
    x = hoisted.example_inputs(2)
    with torch.inference_mode():
        dense = plain(x).readouts
        for steps in ("last", [1, hoisted.plan.steps - 2]):
            pruned = hoisted(x, readout_steps=steps).readouts
            idx = [hoisted.plan.steps - 1] if steps == "last" else steps
            for k in dense:
                assert torch.equal(pruned[k], dense[k][idx]), (name, steps, k)
