"""Pictures and text views (tnnspec.render), checked on the DOT text: no image comparison.

A small DOT reader below parses what the ``graphviz`` package writes (one statement per line)
into nodes, edges and subgraphs, so the tests can ask structural questions: which subgraph
holds a node, which attributes an edge has, how many arrows the unrolled picture draws.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import graphviz
import pytest

import tnnspec
from tnnspec.graph.checks import edge_names
from tnnspec.graph.plan import build_plan
from tnnspec.graph.timing import edge_delays
from tnnspec.render import (
    RenderError,
    area_graph,
    hierarchy_levels,
    render,
    text_summary,
    unrolled,
)
from tnnspec.render.output import NO_DOT
from tnnspec.render.unrolled import cell_name, read_edge_id

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent / "graphs_for_render"
SPECS = {
    "ventral4": ROOT / "graphs" / "ventral4.yaml",
    "streams": HERE / "streams.yaml",     # groups, skips over levels, feedback d=3, attention, norm
    "nolevels": HERE / "nolevels.yaml",   # levels inferred, zero-drive areas, two inputs
    "dense": HERE / "dense.yaml",         # 11 areas, many top-down edges
}


@pytest.fixture(scope="module", params=list(SPECS))
def spec(request):
    return tnnspec.load(SPECS[request.param])


def load(name: str):
    return tnnspec.load(SPECS[name])


# --------------------------------------------------------------------------- a small DOT reader
@dataclass
class Dot:
    graph: dict = field(default_factory=dict)
    node_defaults: dict = field(default_factory=dict)    # node [..] of the top level
    nodes: dict = field(default_factory=dict)            # name -> attributes (merged)
    edges: list = field(default_factory=list)            # (tail, head, attributes)
    subgraphs: dict = field(default_factory=dict)        # name -> {"attrs": {}, "members": [..]}

    def spec_edges(self):
        return [e for e in self.edges if "id" in e[2]]

    def edge(self, ident: str):
        found = [e for e in self.edges if e[2].get("id") == ident]
        assert len(found) == 1, f"{ident}: {len(found)} edges"
        return found[0]


def _id(text: str, i: int) -> tuple[str, int]:
    if text[i] == '"':
        j = i + 1
        while text[j] != '"':
            j += 2 if text[j] == "\\" else 1
        return text[i + 1:j].replace('\\"', '"'), j + 1
    if text[i] == "<":
        depth, j = 0, i
        while True:
            depth += {"<": 1, ">": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                return text[i:j], j
    m = re.compile(r"[^\s\[\]=;{}]+").match(text, i)
    assert m, text[i:]
    return m.group(0), m.end()


def _attrs(text: str) -> dict:
    out, i = {}, 0
    while i < len(text):
        if text[i] in " \t,;":
            i += 1
            continue
        key, i = _id(text, i)
        assert text[i] == "=", text
        value, i = _id(text, i + 1)
        out[key] = value
    return out


def parse(dot: graphviz.Digraph) -> Dot:
    d = Dot()
    stack: list[str] = []
    for raw in dot.source.splitlines():
        line = raw.strip()
        if not line or line.startswith("//"):
            continue
        if line.startswith(("digraph", "graph ")) and line.endswith("{"):
            continue
        if line.startswith("subgraph") or line == "{":
            name = line[len("subgraph"):].strip(" {") or f"_anon{len(d.subgraphs)}"
            d.subgraphs[name] = {"attrs": {}, "members": []}
            stack.append(name)
            continue
        if line == "}":
            if stack:
                stack.pop()
            continue
        target = d.subgraphs[stack[-1]]["attrs"] if stack else d.graph
        if line.startswith("node [") and not stack:
            d.node_defaults.update(_attrs(line[len("node ["):-1]))
        if line.startswith(("node [", "edge [", "graph [")):
            continue
        first, i = _id(line, 0)
        rest = line[i:].strip()
        if rest.startswith("="):  # graph attribute statement(s): a=b c=d
            target.update(_attrs(line))
            continue
        if rest.startswith("->"):
            k = 2
            while rest[k] == " ":
                k += 1
            head, j = _id(rest, k)
            attrs = _attrs(rest[j:].strip()[1:-1]) if "[" in rest[j:] else {}
            d.edges.append((first, head, attrs))
            continue
        attrs = _attrs(rest[1:-1]) if rest.startswith("[") else {}
        d.nodes.setdefault(first, {}).update(attrs)
        for s in stack:
            d.subgraphs[s]["members"].append(first)
    return d


# --------------------------------------------------------------------------- area graph
def test_every_area_input_and_edge_appears(spec):
    d = parse(area_graph(spec))
    for name in list(spec.inputs) + list(spec.areas):
        assert name in d.nodes
    names = edge_names(spec)
    drawn = d.spec_edges()
    assert sorted(a["id"] for _, _, a in drawn) == sorted(names)
    for i, e in enumerate(spec.edges):
        tail, head, attrs = d.edge(names[i])
        assert (tail, head, attrs["class"]) == (e.source, e.target, e.type)


def test_hierarchy_bottom_to_top_one_rank_per_level(spec):
    d = parse(area_graph(spec, layout="dot"))
    assert d.graph["rankdir"] == "BT" and d.graph["newrank"] == "true"
    levels = hierarchy_levels(spec)
    distinct = sorted(set(levels.values()))
    for k, value in enumerate(distinct):
        sub = d.subgraphs[f"level_{k}"]
        assert sub["attrs"]["rank"] == "same"
        assert {m for m in sub["members"] if not m.startswith("_")} == {n for n, v in levels.items() if v == value}
    # no node sits in two level subgraphs
    seen = [m for k in range(len(distinct)) for m in d.subgraphs[f"level_{k}"]["members"]]
    assert len(seen) == len(set(seen))
    # the invisible, heavily weighted spine joins consecutive levels
    spine = [(t, h, a) for t, h, a in d.edges if t.startswith("_spine_")]
    assert [(t, h) for t, h, _ in spine] == [(f"_spine_{k}", f"_spine_{k + 1}") for k in range(len(distinct) - 1)]
    assert all(a["style"] == "invis" and a["weight"] == "10" for _, _, a in spine)
    for k in range(len(distinct)):
        assert f"_spine_{k}" in d.subgraphs[f"level_{k}"]["members"]


def test_every_top_down_edge_has_constraint_false(spec):
    d = parse(area_graph(spec, layout="dot"))
    levels = hierarchy_levels(spec)
    names = edge_names(spec)
    for i, e in enumerate(spec.edges):
        attrs = d.edge(names[i])[2]
        down = e.type in ("feedback", "attention", "normalization") or levels[e.target] < levels[e.source]
        assert (attrs.get("constraint") == "false") == down, (names[i], e.type)


def test_levels_given_or_inferred_from_feedforward_distance():
    assert hierarchy_levels(load("nolevels")) == {"image": 0, "cue": 0, "A": 1, "E": 1, "B": 2, "C": 3, "D": 4}
    lv = hierarchy_levels(load("streams"))
    assert lv["LIP"] == 4 and lv["PFC"] == 5 and lv["image"] == 0


def test_edge_styles_per_type():
    spec = load("streams")
    d = parse(area_graph(spec))
    names = edge_names(spec)
    by_type: dict[str, list[dict]] = {}
    for i, e in enumerate(spec.edges):
        kind = "lateral_between" if e.type == "lateral" and e.source != e.target else e.type
        by_type.setdefault(kind, []).append(d.edge(names[i])[2])
    ff = by_type["feedforward"]
    assert all(a["style"] == "bold" for a in ff)
    assert all(a["style"] == "solid" and a["arrowhead"] == "normal" for a in by_type["lateral"])
    assert all(a["style"] == "dotted" for a in by_type["lateral_between"])
    assert all(a["style"] == "dashed" and a["color"].startswith("#d6") for a in by_type["feedback"])
    assert all(a["style"] == "solid" and float(a["penwidth"]) < 1 for a in by_type["skip"])
    assert all(a["arrowhead"] == "odot" for a in by_type["attention"])
    assert all(a["arrowhead"] == "tee" for a in by_type["normalization"])
    colours = {k: {a["color"] for a in v} for k, v in by_type.items()}
    assert all(len(c) == 1 for c in colours.values())
    assert len({next(iter(colours[t])) for t in ("feedforward", "feedback", "skip", "attention",
                                                 "normalization", "lateral")}) == 6
    # pen width follows weight: the weight-0.3 feedback is thinner than the weight-1 one
    assert float(d.edge("IT__V1")[2]["penwidth"]) < float(d.edge("IT__V4")[2]["penwidth"])
    # the legend has one entry per edge kind used
    legend = [a for _, _, a in d.edges if a.get("class") == "legend"]
    assert len(legend) == len(by_type)
    assert "cluster_legend" in d.subgraphs
    assert not any(a.get("class") == "legend" for _, _, a in parse(area_graph(spec, legend=False)).edges)


def test_delay_labels_only_when_unusual_or_detail():
    spec = load("streams")
    delays = edge_delays(spec)
    names = edge_names(spec)
    d = parse(area_graph(spec))
    labelled = {a["id"]: a["label"] for _, _, a in d.spec_edges() if "label" in a}
    assert labelled == {"V1__V4": "d=2", "IT__V1": "d=3"}
    dd = parse(area_graph(spec, detail=True))
    for i in range(len(spec.edges)):
        assert dd.edge(names[i])[2]["label"].startswith(f"d={delays[i]}")
    # sweep preset: a feedforward edge with an explicit delay of 1 is unusual there
    text = ROOT.joinpath("graphs/ventral4.yaml").read_text().replace(
        "target: V2, transform", "target: V2, delay: 1, transform")
    d4 = parse(area_graph(tnnspec.loads(text)))
    assert {a["id"]: a.get("label") for _, _, a in d4.spec_edges() if "label" in a} == {"V1__V2": "d=1"}


def test_detail_labels_show_shape_and_cell():
    spec = load("ventral4")
    d = parse(area_graph(spec, detail=True))
    assert "32×32×32 · identity" in d.nodes["V1"]["label"]
    assert "128×4×4 · identity" in d.nodes["IT"]["label"]
    assert "3×64×64" in d.nodes["image"]["label"]
    plain = parse(area_graph(spec))
    assert plain.nodes["V1"]["label"] == "V1"


def test_groups_are_clusters():
    spec = load("streams")
    d = parse(area_graph(spec))
    for group in ("ventral", "dorsal", "frontal"):
        sub = d.subgraphs[f"cluster_group_{group}"]
        assert set(sub["members"]) == {n for n, a in spec.areas.items() if a.group == group}
        assert sub["attrs"]["label"] == group
    assert not any(n.startswith("cluster_group") for n in parse(area_graph(spec, groups=False)).subgraphs)


def test_readouts_are_drawn():
    spec = load("streams")
    d = parse(area_graph(spec))
    assert ("IT", "_readout_category") in [(t, h) for t, h, _ in d.edges]
    assert ("LIP", "_readout_saccade") in [(t, h) for t, h, _ in d.edges]


# --------------------------------------------------------------------------- unrolled
@pytest.mark.parametrize("steps", [None, 3, 9])
def test_unrolled_one_arrow_per_delivered_signal(spec, steps):
    plan = build_plan(spec, steps)
    d = parse(unrolled(spec, steps))
    reads = [(cell_name(r.source, r.at), cell_name(s.area, t), read_edge_id(r.name, t), spec.edges[r.edge].type)
             for t, step in enumerate(plan.schedule) for s in step for r in s.reads if not r.zeros]
    drawn = [(tail, head, a["id"], a["class"]) for tail, head, a in d.spec_edges()]
    assert sorted(drawn) == sorted(reads)
    assert len(drawn) == sum(not r.zeros for step in plan.schedule for s in step for r in s.reads)


@pytest.mark.parametrize("steps", [None, 8])
def test_unrolled_cells_match_plan(spec, steps):
    plan = build_plan(spec, steps)
    d = parse(unrolled(spec, steps))
    for t, step in enumerate(plan.schedule):
        computing = {s.area for s in step}
        for area in spec.areas:
            node = d.nodes[cell_name(area, t)]
            silent = area not in computing
            assert (node["class"] == "silent") == silent, (area, t)
            assert (node["fillcolor"] != "white") == silent
            arrival = plan.arrival[area]
            zero = not silent and (arrival is None or t < arrival)
            assert (node["class"] == "zero_drive") == zero
            assert ("dashed" in node.get("style", "")) == zero
        for name in spec.inputs:
            assert cell_name(name, t) in d.nodes
    assert not any(cell_name(a, plan.steps) in d.nodes for a in spec.areas)


def test_unrolled_grid_columns_are_steps_rows_are_levels(spec):
    d = parse(unrolled(spec))
    plan = build_plan(spec)
    levels = hierarchy_levels(spec)

    def xy(node):
        x, y = d.nodes[node]["pos"].rstrip("!").split(",")
        return float(x), float(y)

    nodes = list(spec.inputs) + list(spec.areas)
    for t in range(plan.steps):
        assert len({xy(cell_name(n, t))[0] for n in nodes}) == 1
    for n in nodes:
        assert len({xy(cell_name(n, t))[1] for t in range(plan.steps)}) == 1
    xs = [xy(cell_name(nodes[0], t))[0] for t in range(plan.steps)]
    assert xs == sorted(xs) and len(set(xs)) == len(xs)
    y = {n: xy(cell_name(n, 0))[1] for n in nodes}
    assert len(set(y.values())) == len(nodes)
    for a in nodes:
        for b in nodes:
            if levels[a] < levels[b]:
                assert y[a] < y[b], (a, b)
    assert d.nodes["_step_0"]["label"].startswith("t=0")


def test_zero_input_stand_ins_have_no_arrow_and_their_own_legend():
    """A zero_input area's stand-in terms (its source has no output yet) come from no cell."""
    from tnnspec import zoo

    spec = zoo.load("convrnn_shallow_gru")
    plan = build_plan(spec, 4)
    stand_ins = [(s.area, t) for t, step in enumerate(plan.schedule) for s in step for r in s.reads if r.zeros]
    assert ("conv2", 0) in stand_ins and ("imnetds", 0) in stand_ins
    d = parse(unrolled(spec, 4))
    heads = {head for _, head, _ in d.spec_edges()}
    assert cell_name("conv2", 0) not in heads and cell_name("conv2", 1) in heads
    assert d.nodes[cell_name("conv5", 0)]["class"] == "zero_drive"  # computes before arrival
    assert "zero inputs (before arrival)" in unrolled(spec, 4).source
    assert "zero drive (before arrival)" in unrolled(load("streams")).source


def test_zero_drive_and_silent_cells_in_streams():
    spec = load("streams")
    d = parse(unrolled(spec))
    assert d.nodes[cell_name("PFC", 0)]["class"] == "zero_drive"   # computes on a zero drive until t=3
    assert d.nodes[cell_name("PFC", 3)]["class"] == "active"
    assert d.nodes[cell_name("IT", 2)]["class"] == "silent"
    assert d.nodes[cell_name("IT", 3)]["class"] == "active"
    # the delay-2 skip crosses two columns, the delay-3 feedback three
    assert d.edge(read_edge_id("V1__V4", 2))[:2] == (cell_name("V1", 0), cell_name("V4", 2))
    assert d.edge(read_edge_id("IT__V1", 6))[:2] == (cell_name("IT", 3), cell_name("V1", 6))
    # a blank input frame (on_off, stop at t=5) is marked
    assert d.nodes[cell_name("image", 5)]["class"] == "input_blank"
    assert d.nodes[cell_name("image", 4)]["class"] == "input"


# --------------------------------------------------------------------------- text
def test_text_summary_lists_areas_by_level_with_edges(spec):
    text = text_summary(spec)
    levels = hierarchy_levels(spec)
    lines = text.splitlines()
    headers = [ln for ln in lines if ln.startswith("level ")]
    assert [float(h.split()[1]) for h in headers] == sorted(set(levels.values()))
    for name in list(spec.inputs) + list(spec.areas):
        assert any(ln.startswith(f"  {name} ") for ln in lines), name
    delays = edge_delays(spec)
    for i, e in enumerate(spec.edges):
        other = "(self)" if e.source == e.target else e.source
        pattern = re.compile(rf"<- {re.escape(other)}\s+{e.type}\s+d={delays[i]}\b")
        assert any(pattern.search(ln) for ln in lines), (i, e)


def test_text_summary_ventral4_snippet():
    text = text_summary(load("ventral4"))
    assert text.splitlines()[0] == "ventral4: 1 input, 4 areas, 9 edges, 1 readout"
    assert "      <- IT      feedback     d=1" in text
    assert "      => readout logits" in text


# --------------------------------------------------------------------------- rendering
def test_render_dot_text_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    g = area_graph(load("ventral4"))
    out = render(g, tmp_path / "v4.dot")
    assert out.read_text(encoding="utf-8") == g.source


def test_render_svg_png_pdf(tmp_path, has_dot):
    spec = load("streams")
    for picture in (area_graph(spec), area_graph(spec, detail=True), unrolled(spec)):
        svg = render(picture, tmp_path / "p.svg").read_text(encoding="utf-8")
        assert "<svg" in svg
        png = render(picture, tmp_path / "p.png").read_bytes()
        assert png.startswith(b"\x89PNG")
    assert 'id="IT__V1"' in render(area_graph(spec), tmp_path / "g.svg").read_text(encoding="utf-8")
    assert render(unrolled(spec), tmp_path / "u.pdf").read_bytes().startswith(b"%PDF")


def test_render_error_when_dot_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")  # graphviz cannot find 'dot' -> ExecutableNotFound
    with pytest.raises(RenderError) as exc:
        render(area_graph(load("ventral4")), tmp_path / "v4.svg")
    assert str(exc.value) == ("the graphviz 'dot' program is not installed; install it (apt-get install "
                              "graphviz) or write .dot text instead") == NO_DOT
    assert not (tmp_path / "v4.svg").exists()


def test_render_error_from_executable_not_found(tmp_path, monkeypatch):
    def missing(self, *args, **kwargs):
        raise graphviz.ExecutableNotFound(("dot", "-Tpng"))

    monkeypatch.setattr(graphviz.Digraph, "pipe", missing)
    with pytest.raises(RenderError, match="'dot' program is not installed"):
        render(unrolled(load("ventral4")), tmp_path / "u.png")


def test_render_unknown_suffix(tmp_path):
    with pytest.raises(RenderError, match=r"unknown picture format '\.jpeg'"):
        render(area_graph(load("ventral4")), tmp_path / "v4.jpeg")


def test_readme_images_script_is_wired(has_dot, tmp_path):
    import runpy

    mod = runpy.run_path(str(ROOT / "tools" / "render_readme_images.py"))
    written = mod["render_all"](ROOT / "graphs", tmp_path)
    names = {p.name for p in written}
    assert {"ventral4_graph.svg", "ventral4_graph.png", "ventral4_unrolled.svg", "ventral4_unrolled.png"} <= names
    assert {"macaque_markov2014_graph.svg", "macaque_markov2014_graph.png"} <= names  # area graph only
    assert not any(n.startswith("macaque_markov2014_unrolled") for n in names)


def test_no_dot_on_path_is_really_simulated(monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert shutil.which("dot") is None


def _bezier_points(pos: str, n: int = 40):
    parts = pos.split()
    pts = [tuple(map(float, p.split(","))) for p in parts if not p.startswith("e,")]
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts[:4]
    for i in range(n + 1):
        s = i / n
        u = 1 - s
        yield (u ** 3 * x0 + 3 * u * u * s * x1 + 3 * u * s * s * x2 + s ** 3 * x3,
               u ** 3 * y0 + 3 * u * u * s * y1 + 3 * u * s * s * y2 + s ** 3 * y3)


@pytest.mark.parametrize("name", ["ventral4", "streams", "nolevels"])
def test_unrolled_arrows_avoid_other_cells(name):
    """Arrows are routed here (neato -n2 only draws them): none crosses the core of a third cell,
    and arrows between the same two cells do not lie on top of each other."""
    spec = load(name)
    g = unrolled(spec)
    assert g.engine == "neato"
    d = parse(g)
    cells = {n: tuple(map(float, a["pos"].rstrip("!").split(","))) for n, a in d.nodes.items()
             if "__t" in n and "pos" in a}
    half_w = float(d.node_defaults["width"]) * 72 / 2
    half_h = float(d.node_defaults["height"]) * 72 / 2
    by_pair: dict = {}
    for tail, head, a in d.spec_edges():
        pts = list(_bezier_points(a["pos"]))
        for n, (cx, cy) in cells.items():
            if n in (tail, head):
                continue
            inner = [p for p in pts if abs(p[0] - cx) < half_w * 0.5 and abs(p[1] - cy) < half_h * 0.5]
            assert not inner, (a["id"], n)
        by_pair.setdefault((tail, head), []).append(pts[len(pts) // 2])
    parallel = [mids for mids in by_pair.values() if len(mids) > 1]
    if name == "streams":
        assert parallel  # V1 -> V1 lateral and normalization
    for mids in parallel:
        for i in range(len(mids)):
            for j in range(i):
                assert abs(mids[i][0] - mids[j][0]) + abs(mids[i][1] - mids[j][1]) > 8


def test_unrolled_dot_text_names_its_layout(tmp_path):
    text = render(unrolled(load("ventral4")), tmp_path / "u.dot").read_text(encoding="utf-8")
    assert "neato -n2" in text.splitlines()[0]
