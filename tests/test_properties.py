"""Property tests (hypothesis) over random valid specs.

(a) a random valid spec round-trips through ``dumps``/``loads`` and its dump validates against
    the JSON Schema in ``schemas/``;
(b) a random single mutation of a valid spec's plain data is reported as a located
    :class:`tnnspec.SpecError`, never as any other exception;
(c) a random graph compiles, runs, backpropagates, and each area's first non-zero output step
    is its planned arrival step.

Random specs: a chain input -> A0 -> A1 -> ... of 2-6 areas with increasing levels, extra
bottom-up edges (feedforward or skip, from the input or a lower area), lateral self-loops and
feedback edges (delay >= 1), some ``from_step``s, identity cells, size-preserving conv transforms,
tiny shapes.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator
from ruamel.yaml import YAML

import tnnspec
from tnnspec.graph.timing import edge_delays

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    schema = json.loads((ROOT / "schemas" / "tnnspec.schema.json").read_text(encoding="utf-8"))
    Draft7Validator.check_schema(schema)
    return Draft7Validator(schema)


# ------------------------------------------------------------------------------------ random specs
def _conv(draw) -> dict | str:
    kernel = draw(st.sampled_from([1, 3]))
    return "conv" if kernel == 3 and draw(st.booleans()) else {"conv": {"kernel": kernel}}


@st.composite
def specs(draw, for_compile: bool = False, before_arrival: bool = False) -> dict:
    """A valid spec as plain data (what a user would write). With ``for_compile`` every area is
    silent before its arrival unless ``before_arrival`` asks for the other modes too."""
    n = draw(st.integers(2, 6))
    names = [f"A{i}" for i in range(n)]
    levels = sorted(draw(st.sets(st.integers(1, 20), min_size=n, max_size=n)))
    channels = draw(st.integers(1, 3))
    size = draw(st.integers(3, 6))
    areas = {}
    for name, level in zip(names, levels):
        area: dict = {"level": level, "channels": draw(st.integers(1, 4))}
        if draw(st.booleans()):
            area["group"] = draw(st.sampled_from(["ventral", "dorsal"]))
        if (before_arrival or not for_compile) and draw(st.booleans()):
            area["before_arrival"] = draw(st.sampled_from(["zero_drive", "zero_input"]))
        if draw(st.integers(0, 3)) == 0:
            area["ops"] = [draw(st.sampled_from(["tanh", "identity", {"scale": 2.0}]))]
        areas[name] = area

    edges: list[dict] = []
    seen: set[tuple] = set()

    def add(kind: str, source: str, target: str, delay: int | None) -> int:
        if (kind, source, target) in seen:
            return 0
        seen.add((kind, source, target))
        edge = {"type": kind, "source": source, "target": target, "transform": [_conv(draw)]}
        if delay is not None:
            edge["delay"] = delay
        from_step = draw(st.sampled_from([0, 0, 0, 1, 2]))
        if from_step:
            edge["from_step"] = from_step
        edges.append(edge)
        return from_step

    def bottom_up_delay():  # None: the time.default_delay applies
        return draw(st.one_of(st.none(), st.integers(0, 3)))

    chain = ["image"] + names
    horizon = 2  # every area is reached along the chain, whose delays add up to less than this
    for source, target in zip(chain, chain[1:]):
        delay = bottom_up_delay()
        horizon += (2 if delay is None else delay)  # default delays here are at most 2
        horizon += add("feedforward", source, target, delay)  # and from_step delays arrival at most this
    for i in range(1, n):  # extra bottom-up edges from the input or a lower area
        for source in draw(st.lists(st.sampled_from(chain[:i]), max_size=2, unique=True)):
            add(draw(st.sampled_from(["feedforward", "skip"])), source, names[i], bottom_up_delay())
    for name in names:
        if draw(st.booleans()):
            add("lateral", name, name, draw(st.integers(1, 3)))
    for j in range(1, n):
        for target in draw(st.lists(st.sampled_from(names[:j]), max_size=1)):
            add("feedback", names[j], target, draw(st.integers(1, 3)))

    spec: dict = {"tnnspec": "1.1", "name": draw(st.sampled_from(["rand", "net-1", "a_b"]))}
    time: dict = {}
    default = draw(st.sampled_from([None, "biological", "sweep", 0, 1, 2, {"feedforward": 1, "skip": 0}]))
    if default is not None:
        time["default_delay"] = default
    if for_compile:
        time["steps"] = horizon
    elif draw(st.booleans()):
        time["dt_ms"] = draw(st.sampled_from([1.0, 5, 10, 12.5]))
    if time:
        spec["time"] = time
    schedule = "static" if for_compile else draw(st.sampled_from(
        ["static", {"type": "on_off", "start": 1, "stop": 3, "blank": 0.5}, None]))
    spec["inputs"] = {"image": {"shape": [channels, size, size]}}
    if schedule is not None:
        spec["inputs"]["image"]["schedule"] = schedule
    spec["areas"] = areas
    spec["edges"] = edges
    spec["readouts"] = {"out": {"source": names[-1], "head": [{"pool": {"type": "avg"}}, {"linear": 3}]}}
    return spec


def _text(data) -> str:
    """Plain data as YAML text, block style, so every key has its own line."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def _load(data) -> tnnspec.Spec:
    spec = tnnspec.loads(_text(data))
    assert spec.warnings == []
    return spec


# ------------------------------------------------------------------------------------ (a) round trip
@settings(max_examples=30, **SETTINGS)
@given(data=specs())
def test_round_trip_and_schema(data, validator):
    spec = _load(data)
    text = tnnspec.dumps(spec)
    again = tnnspec.loads(text)
    assert again == spec
    assert tnnspec.dumps(again) == text
    dumped = YAML(typ="safe", pure=True).load(text)
    errors = sorted(validator.iter_errors(dumped), key=str)
    assert not errors, errors[0]
    # what the user wrote validates too (op and cell shorthands, default_delay forms)
    assert not list(validator.iter_errors(json.loads(json.dumps(data))))


# ------------------------------------------------------------------------------------ (b) mutations
REQUIRED = [("tnnspec",), ("name",), ("inputs",), ("areas",), ("inputs", "image", "shape"),
            ("areas", "*", "channels"), ("edges", "#", "source"), ("edges", "#", "target"),
            ("edges", "#", "type"), ("readouts", "out", "source")]
NAME_DICTS = {"inputs", "areas", "readouts"}  # their keys are names, not field names


def _paths(node, path=()):
    """Every (path, value) below ``node``."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield path + (k,), v
            yield from _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield path + (i,), v
            yield from _paths(v, path + (i,))


def _parent(data, path):
    node = data
    for seg in path[:-1]:
        node = node[seg]
    return node


def _other_type(value):
    """A value of a different type that no field accepts in place of ``value``."""
    if isinstance(value, bool):
        return "maybe"
    if isinstance(value, (int, float)):
        return "not-a-number"
    if isinstance(value, str):
        return {"bogus_key": 1}
    if isinstance(value, list):
        return "not-a-list"
    return "not-a-mapping"


@st.composite
def mutations(draw):
    data = draw(specs())
    spec = _load(data)
    plain = spec.dump()
    mutated = copy.deepcopy(plain)
    kind = draw(st.sampled_from(["delete", "retype", "rename", "dangling", "negative", "zero_loop"]))
    area_names = list(plain["areas"])
    if kind == "delete":
        template = draw(st.sampled_from(REQUIRED))
        path = tuple(draw(st.sampled_from(area_names)) if s == "*" else
                     draw(st.integers(0, len(plain["edges"]) - 1)) if s == "#" else s for s in template)
        del _parent(mutated, path)[path[-1]]
    elif kind == "retype":
        path, value = draw(st.sampled_from(list(_paths(plain))))
        _parent(mutated, path)[path[-1]] = _other_type(value)
    elif kind == "rename":
        keys = [p for p, _ in _paths(plain) if isinstance(p[-1], str)
                and not (len(p) == 2 and p[0] in NAME_DICTS)]
        path = draw(st.sampled_from(keys))
        parent = _parent(mutated, path)
        parent[path[-1] + "x"] = parent.pop(path[-1])
    elif kind == "dangling":
        i = draw(st.integers(0, len(plain["edges"]) - 1))
        end = draw(st.sampled_from(["source", "target"]))
        mutated["edges"][i][end] = draw(st.sampled_from(["nowhere", "A9", "A0x"]))
    elif kind == "negative":
        targets = [("areas", a, "channels") for a in area_names] + [("inputs", "image", "shape", 1)]
        targets += [("edges", i, "delay") for i, e in enumerate(plain["edges"]) if "delay" in e]
        targets += [("edges", i, "transform", 0, "conv", "kernel") for i, e in enumerate(plain["edges"])
                    if isinstance(e["transform"][0], dict)]
        if "dt_ms" in plain.get("time", {}):
            targets.append(("time", "dt_ms"))
        path = draw(st.sampled_from(targets))
        _parent(mutated, path)[path[-1]] = -draw(st.integers(1, 5))
    else:  # zero_loop: reverse a delay-0 edge between areas, or a delay-0 lateral self-loop
        delays = edge_delays(spec)
        zero = [e for e, d in zip(plain["edges"], delays) if d == 0 and e["source"] in area_names]
        if zero and draw(st.booleans()):
            e = draw(st.sampled_from(zero))
            back = {"type": "feedback", "source": e["target"], "target": e["source"], "delay": 0}
        else:
            a = draw(st.sampled_from(area_names))
            back = {"type": "lateral", "source": a, "target": a, "delay": 0, "transform": ["conv"]}
        mutated["edges"].insert(draw(st.integers(0, len(mutated["edges"]))), back)
    return kind, mutated


@settings(max_examples=120, **SETTINGS)
@given(case=mutations())
def test_mutation_is_a_located_spec_error(case):
    kind, mutated = case
    text = _text(mutated)
    try:
        tnnspec.loads(text, file="mutant.yaml")
    except tnnspec.SpecError as exc:
        errors = exc.errors
    else:
        raise AssertionError(f"{kind}: mutated spec was accepted:\n{text}")
    assert errors, kind
    n_lines = len(text.splitlines())
    for d in errors:
        assert d.file == "mutant.yaml" and 1 <= d.line <= n_lines + 1 and d.column >= 1, (kind, str(d))
        assert d.message and "Traceback" not in d.message


# ------------------------------------------------------------------------------------ (c) compile and run
@settings(max_examples=40, **SETTINGS)
@given(data=specs(for_compile=True), seed=st.integers(0, 2**16))
def test_compiled_run_matches_arrival(data, seed, one_thread):
    torch.manual_seed(seed)
    spec = _load(data)
    net = tnnspec.compile(spec)
    x = net.example_inputs(2)
    run = net(x, record=tuple(spec.areas))
    T = net.plan.steps
    out = run.readouts["out"]
    assert out.shape == (T, 2, 3)
    out.sum().backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    for name in spec.areas:
        y = run.areas[name]
        assert y.shape[:2] == (T, 2)
        active = [t for t in range(T) if y[t].abs().sum() > 0]
        arrival = net.plan.arrival[name]
        assert arrival is not None and arrival < T
        assert active and active[0] == arrival, (name, active[:3], arrival, net.plan.arrival)
        assert active == list(range(arrival, T)), (name, active)  # active from arrival on


@settings(max_examples=30, **SETTINGS)
@given(data=specs(for_compile=True, before_arrival=True), seed=st.integers(0, 2**16))
def test_hoisting_and_pruning_change_no_output(data, seed, one_thread):
    """Time-invariant hoisting (areas and edge terms) and readout pruning are exact on random
    graphs, also with areas that compute before their arrival (zero drives, zero stand-ins)."""
    torch.manual_seed(seed)
    spec = _load(data)
    no_hoist = tuple(n for n in tnnspec.compile.DEFAULT if n != "hoist")
    hoisted, plain = tnnspec.compile(spec), tnnspec.compile(spec, optimize=no_hoist)
    plain.load_state_dict(hoisted.state_dict())
    x = hoisted.example_inputs(2)
    with torch.no_grad():
        a, b = hoisted(x, record=tuple(spec.areas)), plain(x, record=tuple(spec.areas))
        last = hoisted(x, readout_steps="last").readouts["out"]
    for name in spec.areas:
        assert torch.equal(a.areas[name], b.areas[name]), name
    assert torch.equal(a.readouts["out"], b.readouts["out"])
    assert torch.equal(last[0], b.readouts["out"][-1])
