"""Lesions and perturbations: per call (``net(x, perturb=...)``) and in the file (``enabled: false``).

Each is checked against an independent construction: a cut edge against a hand-edited file
without it, a scaled edge against the file's own ``weight``, a silenced area against what the
time rules say (exact zeros, no delivery), a clamp against its value.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

import tnnspec

V4 = "graphs/ventral4.yaml"


def _load(data: dict):
    return tnnspec.loads(json.dumps(data), file="edited.json")


def _without_edge(data: dict, source: str, target: str) -> dict:
    data = copy.deepcopy(data)
    data["edges"] = [e for e in data["edges"] if not (e["source"] == source and e["target"] == target)]
    return data


def _nets(spec, optimize="default"):
    torch.manual_seed(0)
    net = tnnspec.compile(spec, optimize=optimize).eval()
    return net, net.example_inputs(batch_size=3, seed=1)


def _same_weights(dst, src):
    """Load ``src``'s weights into ``dst`` (dst may lack some edges)."""
    state = {k: v for k, v in src.state_dict().items() if k in dst.state_dict()}
    dst.load_state_dict(state)


@pytest.mark.parametrize("optimize", ["none", "default"])
@pytest.mark.parametrize("edge", [("IT", "V4"), ("V4", "V4"), ("V1", "V1")])
def test_cut_edge_equals_file_without_it(optimize, edge):
    spec = tnnspec.load(V4)
    net, x = _nets(spec, optimize)
    edited = tnnspec.compile(_load(_without_edge(spec.dump(), *edge)), optimize="none").eval()
    _same_weights(edited, net)
    name = f"{edge[0]}__{edge[1]}"
    with torch.no_grad():
        cut = net(x, perturb={name: "cut"}, record=("V1", "V4"))
        ref = edited(x, record=("V1", "V4"))
    for k in ref.readouts:
        assert torch.equal(cut.readouts[k], ref.readouts[k])
    for k in ref.areas:
        assert torch.equal(cut.areas[k], ref.areas[k])


def test_enabled_false_in_the_file_equals_the_per_call_cut_and_the_edited_file():
    spec = tnnspec.load(V4)
    data = spec.dump()
    for e in data["edges"]:
        if e["source"] == "IT" and e["target"] == "V4":
            e["enabled"] = False
    off = tnnspec.compile(_load(data)).eval()
    net, x = _nets(spec)
    off.load_state_dict(net.state_dict())  # the cut edge keeps its module: weights still load
    edited = tnnspec.compile(_load(_without_edge(spec.dump(), "IT", "V4"))).eval()
    _same_weights(edited, net)
    with torch.no_grad():
        a = off(x).readouts["logits"]
        b = net(x, perturb={"IT__V4": "cut"}).readouts["logits"]
        c = edited(x).readouts["logits"]
    assert torch.equal(a, b) and torch.equal(a, c)
    assert "perturbations: cut IT__V4" in str(off.plan)


def test_scale_equals_the_files_edge_weight():
    spec = tnnspec.load(V4)
    data = spec.dump()
    for e in data["edges"]:
        if e["source"] == "V1" and e["target"] == "V2":
            e["weight"] = 0.25
    weighted = tnnspec.compile(_load(data), optimize="none").eval()
    net, x = _nets(spec, "none")
    weighted.load_state_dict(net.state_dict())
    with torch.no_grad():
        a = net(x, perturb={"V1__V2": 0.25}).readouts["logits"]
        b = weighted(x).readouts["logits"]
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)  # (y * w) vs (y * 1) * w: one rounding


def test_window_cut_changes_nothing_before_the_window_and_something_in_it():
    net, x = _nets(tnnspec.load(V4))
    with torch.no_grad():
        full = net(x, record=("V4",))
        cut = net(x, perturb={"V2__V4": {"cut": True, "steps": [2, 3]}}, record=("V4",))
    assert torch.equal(cut.areas["V4"][:2], full.areas["V4"][:2])
    assert not torch.equal(cut.areas["V4"][2], full.areas["V4"][2])


def test_silenced_area_outputs_exact_zeros_and_disconnects_what_only_it_feeds():
    net, x = _nets(tnnspec.load(V4))
    with torch.no_grad():
        run = net(x, perturb={"V4": "silence"}, record=("V4", "IT"))
    assert torch.equal(run.areas["V4"], torch.zeros_like(run.areas["V4"]))
    # IT is reached only through V4: it never arrives, so it is silent too (the plan prunes it)
    plan = net.call_plan(perturb={"V4": "silence"})
    assert plan.arrival["IT"] is None and all(s.area not in ("V4", "IT") for step in plan.schedule for s in step)
    assert torch.equal(run.areas["IT"], torch.zeros_like(run.areas["IT"]))
    assert torch.equal(run.readouts["logits"], torch.zeros_like(run.readouts["logits"]))


def test_silence_window_holds_the_cell_state():
    """A silenced gru area keeps its state through the window (time rule 6) and resumes from it."""
    text = """
tnnspec: "1.0"
name: gru_chain
time: {steps: 5, default_delay: sweep}
inputs: {x: {shape: [2, 4, 4]}}
areas:
  A: {level: 1, channels: 2, cell: {type: gru, kernel: 3}}
edges:
  - {type: feedforward, source: x, target: A}
"""
    net = tnnspec.compile(tnnspec.loads(text), optimize="none").eval()
    x = torch.randn(2, 2, 4, 4)
    with torch.no_grad():
        run = net(x, perturb={"A": {"silence": True, "steps": [2, 3]}}, record=("A",))
        a = run.areas["A"]
        # by hand: three gru updates from the zero state (steps 0, 1, 4)
        h = torch.zeros(2, 2, 4, 4)
        expect = []
        for t in range(5):
            if t in (2, 3):
                expect.append(torch.zeros_like(h))
                continue
            h, _ = net.areas["A"].cell(x, h, t)
            expect.append(h)
    torch.testing.assert_close(a, torch.stack(expect), rtol=0, atol=0)


def test_clamp_replaces_the_output_and_reaches_the_next_area():
    net, x = _nets(tnnspec.load(V4), "none")
    with torch.no_grad():
        full = net(x, record=("V2", "V4"))
        run = net(x, perturb={"V2": {"clamp": 0.5, "steps": [3]}}, record=("V2", "V4"))
    assert torch.equal(run.areas["V2"][3], torch.full_like(run.areas["V2"][3], 0.5))
    assert torch.equal(run.areas["V2"][:3], full.areas["V2"][:3])
    assert torch.equal(run.areas["V4"][:3], full.areas["V4"][:3])
    assert not torch.equal(run.areas["V4"][3], full.areas["V4"][3])  # V2 -> V4 is same-step (sweep)
    per_sample = torch.randn(3, *net.plan.shapes.output["V2"])
    run = net(x, perturb={"V2": {"clamp": per_sample}}, record=("V2",))
    assert torch.equal(run.areas["V2"], per_sample.expand(6, *per_sample.shape))


def test_perturbations_with_gradients():
    net, x = _nets(tnnspec.load(V4), "default")
    net.train()
    loss = net(x, perturb={"IT__V4": "cut", "V1__V2": 0.5}).readouts["logits"].sum()
    loss.backward()
    assert net.edges["IT__V4"].conv.weight.grad is None  # the cut edge is not in the graph
    assert net.edges["V1__V2"].conv.weight.grad is not None


def test_bad_perturbations_are_listed_together():
    net, x = _nets(tnnspec.load(V4))
    with pytest.raises(ValueError) as err:
        net(x, perturb={"nope": "cut", "V4": "cut", "V1__V2": {"scale": "a"}, "IT": {"silence": True, "steps": [9]}})
    message = str(err.value)
    for part in ("'nope' is neither an edge", "'V4': expected 'silence'", "'scale' takes a number",
                 "steps [9] are outside 0..5"):
        assert part in message
    with pytest.raises(ValueError, match="clamp value of 'V4'"):
        net(x, perturb={"V4": {"clamp": torch.zeros(7)}})
