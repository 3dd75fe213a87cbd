"""Zoo graphs: ConvRNNs (Nayebi et al.), Feedback Network (Zamir et al.), Reynolds-Heeger
normalization model of attention, the Markov 2014 and Felleman-Van Essen 1991 macaque graphs and
"What and where" (Chikkerur et al.).

Every file validates strictly, compiles and runs forward + backward at batch 2 (big models
shrunk: smaller images, fewer channels). Model-specific checks: ConvRNN arrival steps against
tnn's unroll rule (computed here from the node depths, and measured by perturbing the image);
the five rgc_intermediate feedback edges; contrast gain vs response gain in Reynolds-Heeger;
the macaque files are exactly what their generators write from the shipped CSVs.
"""

from __future__ import annotations

import csv
import math
import runpy
from pathlib import Path

import numpy as np
import pytest
import torch
from ruamel.yaml import YAML

import tnnspec
from tnnspec.zoo import reynolds_heeger as rh

ROOT = Path(__file__).resolve().parents[1]
GRAPHS = ROOT / "graphs"
SHALLOW_CELLS = {
    "time_decay": "time_decay", "simple_rnn": "simple_rnn", "gru": "gru", "lstm": "lstm",
    "ugrnn": "ugrnn", "intersection_rnn": "intersection_rnn",
    "reciprocal_gated": "reciprocal_gated_convrnn",
}
SHALLOW = [GRAPHS / f"convrnn_shallow_{c}.yaml" for c in SHALLOW_CELLS]
INTERMEDIATE = GRAPHS / "convrnn_intermediate_rgc.yaml"
OTHERS = [GRAPHS / f"{n}.yaml" for n in
          ("feedback_net_48", "reynolds_heeger", "macaque_markov2014", "macaque_fv91",
           "what_where_attention")]
FILES = SHALLOW + [INTERMEDIATE] + OTHERS
MODELINE = "# yaml-language-server: $schema=../schemas/tnnspec.schema.json"
# per file: (image side, channel divisor) used to keep the runs small
SMALL = {INTERMEDIATE.stem: (64, 8), **{p.stem: (96, 8) for p in SHALLOW}}


@pytest.fixture(autouse=True)
def _one_thread():
    """These graphs are many small ops: one thread is faster than several, and stable."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def small(spec: tnnspec.Spec, side: int | None = None, div: int = 1) -> tnnspec.Spec:
    """``spec`` with image inputs of ``side`` x ``side`` and every channel / feature count
    divided by ``div`` (areas, explicit conv channels, linear features, RGC cell channels),
    reloaded through the full validator."""
    data = spec.dump()

    def shrink(node):
        if isinstance(node, dict):
            return {k: (max(1, v // div) if k in ("channels", "features", "cell_channels") and isinstance(v, int)
                        else shrink(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [shrink(v) for v in node]
        return node

    data = shrink(data)
    if side is not None:
        for inp in data["inputs"].values():
            if len(inp["shape"]) == 3:
                inp["shape"] = [inp["shape"][0], side, side]
    return tnnspec.loads(tnnspec.dumps(tnnspec.Spec.model_validate(data)), file=f"small:{spec.name}", strict=True)


def load_small(path: Path) -> tnnspec.Spec:
    side, div = SMALL.get(path.stem, (None, 1))
    return small(tnnspec.load(path, strict=True), side, div)


# ------------------------------------------------------------------ every file
@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_validates_strictly_with_metadata(path):
    assert path.read_text().splitlines()[0] == MODELINE
    spec = tnnspec.load(path, strict=True)
    assert spec.warnings == []
    assert spec.description and spec.references
    for name, area in spec.areas.items():
        assert area.level is not None and area.group, f"{path.name}: area {name} needs a level and a group"
    # the raw file (before includes and templates) matches the JSON Schema too
    import jsonschema

    from tnnspec.spec.schema import json_schema

    data = YAML(typ="safe", pure=True).load(path.read_text())
    assert list(jsonschema.Draft7Validator(json_schema()).iter_errors(data)) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_forward_backward_batch_2(path):
    spec = load_small(path)
    torch.manual_seed(0)
    net = tnnspec.compile(spec)
    T = net.plan.steps
    run = net(net.example_inputs(2), record=tuple(spec.areas))
    outs = list(run.readouts.values()) or list(run.areas.values())
    for y in list(run.readouts.values()) + list(run.areas.values()):
        assert y.shape[:2] == (T, 2) and torch.isfinite(y).all()
    sum(y.square().mean() for y in outs).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


# ------------------------------------------------------------------ ConvRNNs
def tnn_first_driven_steps(spec: tnnspec.Spec) -> dict[str, int]:
    """tnn's unroll (tnn_convrnns.md §3.1, §3.3): every arrow between nodes costs one step and
    the image enters conv1 directly, so a node at feedforward depth d (conv1: d = 1) is first
    image-driven at step d - 1. The chain is conv1 -> conv2 -> ... -> conv<n> -> imnetds."""
    convs = sorted((a for a in spec.areas if a.startswith("conv")), key=lambda a: int(a[4:]))
    assert convs == [f"conv{i}" for i in range(1, len(convs) + 1)]
    depth = {a: int(a[4:]) for a in convs}
    depth["imnetds"] = len(convs) + 1
    return {a: d - 1 for a, d in depth.items()}


def test_convrnn_imnetds_arrival_is_as_tnn_documents():
    # tnn_convrnns.md §3.3: shallow chain imnetds@5, intermediate chain imnetds@10
    assert tnn_first_driven_steps(tnnspec.load(SHALLOW[0]))["imnetds"] == 5
    assert tnn_first_driven_steps(tnnspec.load(INTERMEDIATE))["imnetds"] == 10


@pytest.mark.parametrize("path", SHALLOW + [INTERMEDIATE], ids=lambda p: p.stem)
def test_convrnn_time_and_arrival(path):
    spec = tnnspec.load(path, strict=True)
    sched = spec.inputs["image"].schedule
    assert (sched.type, sched.start, sched.stop, sched.blank) == ("on_off", 0, 12, 0.5)
    assert spec.time.steps == (16 if path in SHALLOW else 17)
    assert spec.time.dt_ms == 10
    assert all(a.before_arrival == "zero_input" for a in spec.areas.values())
    plan = tnnspec.compile(small(spec, *SMALL[path.stem])).plan
    delays = dict(zip(((e.source, e.target) for e in spec.edges), plan.delays))
    assert delays[("image", "conv1")] == 0
    assert all(d == 1 for (s, _), d in delays.items() if s != "image")
    expected = tnn_first_driven_steps(spec)
    assert {a: plan.arrival[a] for a in spec.areas} == expected
    # zero_input: every area computes at every step, as in tnn
    assert all(len(step) == len(spec.areas) for step in plan.schedule)


@pytest.mark.parametrize("path", [SHALLOW[2], SHALLOW[-1], INTERMEDIATE], ids=lambda p: p.stem)
def test_convrnn_first_image_driven_step_measured(path):
    """Run two different images through the same weights: each area's output is identical
    before the image can reach it and differs from then on."""
    spec = tnnspec.load(path, strict=True)
    expected = tnn_first_driven_steps(spec)
    net = tnnspec.compile(small(spec, *SMALL[path.stem])).eval()
    T = max(expected.values()) + 2
    x1 = net.example_inputs(2, seed=1)
    x2 = net.example_inputs(2, seed=2)
    with torch.no_grad():
        r1 = net(x1, steps=T, record=tuple(spec.areas))
        r2 = net(x2, steps=T, record=tuple(spec.areas))
    for area, step in expected.items():
        diff = (r1.areas[area] - r2.areas[area]).flatten(1).abs().amax(1)
        first = int(torch.nonzero(diff > 0)[0])
        assert first == step, f"{area}: first image-driven at {first}, tnn says {step}"


def test_convrnn_shallow_cells():
    for cell, path in zip(SHALLOW_CELLS.values(), SHALLOW):
        spec = tnnspec.load(path)
        assert [spec.areas[f"conv{i}"].cell.type for i in (3, 4, 5)] == [cell] * 3, path.name
        assert [spec.areas[a].cell.type for a in ("conv1", "conv2", "imnetds")] == ["identity"] * 3
    # the full-size pyramid of tnn_convrnns.md §5.3: 56 -> 28 -> 14 -> 7 -> 4 (TF 'SAME' pool)
    from tnnspec.graph.plan import build_plan

    plan = build_plan(tnnspec.load(SHALLOW[2]))
    assert [plan.shapes.output[f"conv{i}"] for i in range(1, 6)] == [
        (64, 56, 56), (128, 28, 28), (256, 14, 14), (256, 7, 7), (512, 4, 4)]
    assert plan.shapes.output["imnetds"] == (1000,)


def test_convrnn_intermediate_feedback_edges():
    spec = tnnspec.load(INTERMEDIATE, strict=True)
    feedback = {(e.source, e.target) for e in spec.edges if e.type == "feedback"}
    assert feedback == {("conv8", "conv5"), ("conv9", "conv6"), ("conv10", "conv7"),
                        ("conv7", "conv6"), ("conv10", "conv9")}
    from tnnspec.graph.plan import build_plan

    plan = build_plan(spec)
    assert [plan.shapes.output[f"conv{i}"][1] for i in range(1, 11)] == [56, 56, 56, 28, 28, 14, 7, 7, 7, 4]
    for i, e in enumerate(spec.edges):
        if e.type == "feedback":
            assert e.transform[0].op_name == "resample" and e.transform[0].op.align_corners
            # resized to the receiver's drive, one step late
            assert plan.shapes.edge[i] == plan.shapes.drive[e.target]
            assert plan.delays[i] == 1
    # feedback terms arrive one step after the source's first image-driven step
    t = plan.arrival["conv10"] + 1
    reads = {r.name: r.at for s in plan.schedule[t] for r in s.reads}
    assert reads["conv10__conv7"] == t - 1 and reads["conv10__conv9"] == t - 1


# ------------------------------------------------------------------ Feedback Network
def test_feedback_net_readout_at_every_iteration():
    spec = tnnspec.load(GRAPHS / "feedback_net_48.yaml", strict=True)
    assert spec.time.steps == 4
    assert [spec.areas[f"lstm{i}"].channels for i in range(1, 5)] == [16, 32, 64, 64]
    assert all(spec.areas[f"lstm{i}"].cell.type == "lstm" for i in range(1, 5))
    net = tnnspec.compile(spec).eval()
    assert all(a == 0 for a in net.plan.arrival.values())
    assert [net.plan.shapes.output[f"lstm{i}"][1] for i in range(1, 5)] == [32, 16, 8, 8]
    with torch.no_grad():
        logits = net(net.example_inputs(2)).readouts["logits"]
    assert logits.shape == (4, 2, 100)
    # the same image each iteration, yet the logits change: the states carry feedback
    assert not torch.allclose(logits[0], logits[-1])


# ------------------------------------------------------------------ Reynolds & Heeger
RH = GRAPHS / "reynolds_heeger.yaml"


def rh_net():
    return rh.model()


rh_responses = rh.responses


def c50_and_max(contrasts, r):
    """R_max from a saturating contrast, c50 by log-linear interpolation at R_max / 2."""
    rmax = r[-1]
    logc = np.log10(contrasts[:-1])
    return 10 ** np.interp(rmax / 2, r[:-1], logc), rmax


def test_reynolds_heeger_closed_form():
    """At equilibrium R = A E / (sigma + pool(A E)), the pool a 15x15 window mean (padding
    not counted) of the mean over orientations."""
    spec, net = rh_net()
    cell = spec.areas["V1"].cell
    g = 1.0 + float(spec.areas["attention_field"].ops[0].op.factor)
    stim, cue, r = rh_responses(net, 3, 5, [0.05, 0.5], attend=True)
    ae = (stim * (1 + (g - 1) * cue)).numpy()
    pooled = ae.mean(1, keepdims=True)
    k = cell.pool_kernel // 2
    n = ae.shape[-1]
    box = np.zeros_like(pooled)
    for i in range(n):
        for j in range(n):
            sl = (slice(None), slice(None), slice(max(0, i - k), i + k + 1), slice(max(0, j - k), j + k + 1))
            box[:, :, i, j] = pooled[sl].mean(axis=(2, 3))
    expected = ae / (cell.sigma + box)
    assert np.allclose(r.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_reynolds_heeger_contrast_gain_vs_response_gain():
    """Reynolds & Heeger 2009, Fig. 2-3: a large attention field with a small stimulus gives a
    contrast-gain change (the contrast-response curve shifts left, same maximum); a small
    attention field with a large stimulus gives a response-gain change (the curve scales up,
    c50 nearly unchanged)."""
    _, net = rh_net()
    contrasts = list(np.logspace(-4, 0, 33)) + [1e4]
    n = net.spec.inputs["stimulus"].shape[-1]
    c = n // 2
    out = {}
    for case, (stim_r, field_r) in {"contrast_gain": (2, n // 2), "response_gain": (n // 2, 2)}.items():
        curves = [rh_responses(net, stim_r, field_r, contrasts, attend)[2][:, 0, c, c].numpy()
                  for attend in (False, True)]
        (c50_u, max_u), (c50_a, max_a) = (c50_and_max(contrasts, r) for r in curves)
        assert np.all(np.diff(curves[0]) > 0) and np.all(np.diff(curves[1]) > 0)
        out[case] = (c50_u / c50_a, max_a / max_u)
    shift, scale = out["contrast_gain"]
    assert shift > 1.8 and abs(scale - 1) < 0.02, out        # left shift by ~(1 + g), same max
    shift, scale = out["response_gain"]
    assert scale > 1.5 and shift < 1.2, out                   # scaled up, c50 ~ unchanged
    assert out["contrast_gain"][0] > out["response_gain"][0]
    assert out["response_gain"][1] > out["contrast_gain"][1]


def test_reynolds_heeger_plot_script(tmp_path):
    pytest.importorskip("matplotlib")
    mod = runpy.run_path(str(ROOT / "tools" / "plot_reynolds_heeger.py"))
    out = mod["main"](["--out", str(tmp_path / "rh.png")])
    assert out == 0 and (tmp_path / "rh.png").stat().st_size > 10_000


# ------------------------------------------------------------------ macaque
MACAQUE = GRAPHS / "macaque_markov2014.yaml"
DATA = ROOT / "data" / "macaque" / "markov2014"


def test_macaque_file_is_what_the_generator_writes():
    mod = runpy.run_path(str(ROOT / "tools" / "make_macaque_graph.py"))
    assert mod["build"](DATA) == MACAQUE.read_text(), "run tools/make_macaque_graph.py"
    assert mod["main"](["--check"]) == 0


def test_macaque_data_copy_and_licence():
    names = ["markov2014_29x29_fln.csv", "markov2014_29x29_sln.csv", "markov2014_29_hierarchy.csv",
             "LICENSE-xjwanglab-book-MIT.txt"]
    assert all((DATA / n).is_file() for n in names)
    assert sum((DATA / n).stat().st_size for n in names) < 100_000
    assert "MIT License" in (DATA / names[-1]).read_text()
    readme = (ROOT / "data" / "macaque" / "README.md").read_text()
    assert "Cerebral Cortex" in readme and "LICENSE-xjwanglab-book-MIT.txt" in readme
    shared = ROOT.parent / "shared" / "data" / "macaque" / "markov2014"
    if shared.is_dir():  # the copy is unchanged
        for n in names:
            assert (shared / n).read_bytes() == (DATA / n).read_bytes(), n


def _matrix(name):
    with open(DATA / name, newline="") as f:
        rows = list(csv.reader(f))
    return {r[0]: dict(zip(rows[0][1:], map(float, r[1:]))) for r in rows[1:]}


def test_macaque_edges_follow_the_data():
    spec = tnnspec.load(MACAQUE, strict=True)
    fln, sln = _matrix("markov2014_29x29_fln.csv"), _matrix("markov2014_29x29_sln.csv")
    with open(DATA / "markov2014_29_hierarchy.csv", newline="") as f:
        hier = {r["area"]: float(r["hierarchy"]) for r in csv.DictReader(f)}
    areas = set(spec.areas)
    assert {"V1", "V2", "V4", "TEO", "TEpd", "MT", "DP", "7A", "8l", "8m", "46d"} == areas
    for a in areas:
        assert spec.areas[a].level == pytest.approx(1 + hier[a], abs=1e-3)
    edges = {(e.source, e.target): e for e in spec.edges if e.source in areas}
    measured = {(s, t) for t in areas for s in areas if s != t and fln[t][s] > 0}
    assert set(edges) == measured
    by_sln = 0
    for (s, t), e in edges.items():
        assert e.weight == pytest.approx(max(0.01, 1 + math.log10(fln[t][s]) / 6), abs=1e-4)
        if s in ("8l", "8m") and t == "V4":
            assert e.type == "attention" and e.mode == "relative_gain"
            continue
        up = hier[t] > hier[s]
        assert e.type == ("feedforward" if up else "feedback")  # always consistent with the levels
        if (sln[t][s] > 0.5) == up and sln[t][s] != 0.5:
            by_sln += 1
            assert "typed by the hierarchy" not in e.description
        else:
            assert "typed by the hierarchy" in e.description
    assert by_sln >= 0.7 * (len(edges) - 1)
    assert [e for e in spec.edges if e.type == "attention"] == [edges[("8l", "V4")]]  # FLN(8m -> V4) = 0


# ------------------------------------------------------------------ Felleman & Van Essen 1991
FV91 = GRAPHS / "macaque_fv91.yaml"
FV91_DATA = ROOT / "data" / "macaque" / "negyessy2006"
FV91_FILES = ["negyessy2006_macaque_visuotactile_nodes.csv", "negyessy2006_macaque_visuotactile_edges.csv",
              "LICENSE-igraphdata-macaque-CC-BY-SA-2.0-UK.txt"]


def test_fv91_file_is_what_the_generator_writes():
    mod = runpy.run_path(str(ROOT / "tools" / "make_fv91_graph.py"))
    assert mod["build"](FV91_DATA) == FV91.read_text(), "run tools/make_fv91_graph.py"
    assert mod["main"](["--check"]) == 0


def test_fv91_data_copy_and_licence():
    assert all((FV91_DATA / n).is_file() for n in FV91_FILES)
    licence = (FV91_DATA / FV91_FILES[-1]).read_text()
    assert "Attribution-Share Alike 2.0 UK" in licence and "Négyessy" in licence
    readme = (ROOT / "data" / "macaque" / "README.md").read_text()
    assert FV91_FILES[-1] in readme and "Felleman" in readme
    assert "CC BY-SA 2.0 UK" in FV91.read_text().split("tnnspec:")[0]  # the graph file says its licence
    shared = ROOT.parent / "shared" / "data" / "macaque" / "negyessy2006"
    if shared.is_dir():  # the copy is unchanged
        for n in FV91_FILES:
            assert (shared / n).read_bytes() == (FV91_DATA / n).read_bytes(), n


def test_fv91_areas_levels_and_edge_types_follow_the_data():
    spec = tnnspec.load(FV91, strict=True)
    with open(FV91_DATA / FV91_FILES[0], newline="") as f:
        visual = {r["area"] for r in csv.DictReader(f) if r["modality"] == "visual"}
    rename = {"MSTd/p": "MSTd", "46": "area46"}
    assert set(spec.areas) == {rename.get(a, a) for a in visual} and len(spec.areas) == 30
    with open(FV91_DATA / FV91_FILES[1], newline="") as f:
        data = {(rename.get(r["source"], r["source"]), rename.get(r["target"], r["target"]))
                for r in csv.DictReader(f)}
    edges = {(e.source, e.target): e for e in spec.edges if e.source != "image"}
    assert set(edges) == {(s, t) for s, t in data if s in spec.areas and t in spec.areas}
    assert len(edges) == 335
    # a few levels of FV91's Figure 4, read off the figure independently of the generator's table
    for area, level in {"V1": 1, "V2": 2, "VP": 3, "V3A": 4, "MT": 5, "V4": 5, "VOT": 6, "LIP": 7,
                        "PITv": 7, "FEF": 8, "7a": 8, "AITd": 9, "STPa": 9, "TF": 10, "area46": 10}.items():
        assert spec.areas[area].level == level, area
    for (s, t), e in edges.items():
        ls, lt = spec.areas[s].level, spec.areas[t].level
        assert e.type == ("feedforward" if lt > ls else "feedback" if lt < ls else "lateral"), (s, t)
        assert e.weight == 1
    kinds = {k: sum(e.type == k for e in edges.values()) for k in ("feedforward", "feedback", "lateral")}
    assert all(kinds.values()) and f"feedforward ({kinds['feedforward']})" in spec.description


# ------------------------------------------------------------------ What and where
def test_what_where_attention_pathways():
    spec = tnnspec.load(GRAPHS / "what_where_attention.yaml", strict=True)
    net = tnnspec.compile(spec).eval()
    shapes = net.plan.shapes
    att = {(e.source, e.target): (i, e) for i, e in enumerate(spec.edges) if e.type == "attention"}
    i, e = att[("PFC", "IT")]
    assert e.mode == "relative_gain" and shapes.edge[i] == (spec.areas["IT"].channels,)  # a gain per feature
    i, e = att[("FEF", "V4")]
    assert e.mode == "gain" and shapes.edge[i] == (1,) + shapes.drive["V4"][1:]          # a spatial map
    assert {("V4", "LIP"), ("V4", "FEF"), ("task_cue", "PFC")} <= {(e.source, e.target) for e in spec.edges}
    # the task cue changes IT (through PFC's feature attention) and never V4
    x = net.example_inputs(2)
    other = dict(x, task_cue=torch.roll(x["task_cue"], 1, dims=1))
    with torch.no_grad():
        r1 = net(x, record=("V4", "IT"))
        r2 = net(other, record=("V4", "IT"))
    assert torch.equal(r1.areas["V4"], r2.areas["V4"])
    t_it = net.plan.arrival["IT"]
    assert torch.equal(r1.areas["IT"][:t_it], r2.areas["IT"][:t_it])
    assert not torch.allclose(r1.areas["IT"][t_it], r2.areas["IT"][t_it])
