"""The area graph at cortex scale: pen width by weight, hiding weak edges, the rows layout.

Widths and hidden edges are checked on the DOT text (no graphviz needed); the rows layout on
the positions and box sizes graphviz reports after drawing (``-Tjson``), so that the real
label sizes count when boxes are checked for overlaps.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
from test_render import parse

import tnnspec
from tnnspec.cli.main import main
from tnnspec.graph.checks import edge_names
from tnnspec.render import area_graph, hierarchy_levels
from tnnspec.render.area_graph import choose_layout, shown_edges
from tnnspec.render.layout import ROW_TOLERANCE, level_rows, text_width
from tnnspec.render.style import (
    EDGE_STYLE,
    LATERAL_BETWEEN,
    PEN_MIN,
    edge_style,
    width_scale,
)

ROOT = Path(__file__).resolve().parents[1]
MACAQUE = ROOT / "graphs" / "macaque_markov2014.yaml"

SMALL = """\
tnnspec: "1.1"
name: small
time: {dt_ms: 10, default_delay: biological}
inputs:
  image: {shape: [3, 8, 8]}
areas:
  A: {level: 1, channels: 4}
  B: {level: 2, channels: 4}
  C: {level: 3, channels: 4}
edges:
  - {type: feedforward, source: image, target: A, transform: [{conv: {kernel: 1}}]}
  - {type: skip, source: image, target: B, weight: 0.01, transform: [{conv: {kernel: 1}}]}
  - {type: feedforward, source: A, target: B, weight: 0.4, transform: [{conv: {kernel: 1}}]}
  - {type: feedback, source: C, target: B, weight: 0.5, transform: [{conv: {kernel: 1}}]}
  - {type: lateral, source: B, target: B, weight: 0.5, transform: [{conv: {kernel: 1}}]}
  - {type: feedforward, source: A, target: C, weight: 0.9, transform: [{conv: {kernel: 1}}]}
  - {type: feedforward, source: B, target: C, weight: 0.2, transform: [{conv: {kernel: 1}}]}
  - {type: feedback, source: B, target: A, weight: 0.6, transform: [{conv: {kernel: 1}}]}
  - {type: feedback, source: C, target: A, weight: 0.05, transform: [{conv: {kernel: 1}}]}
"""


def weighted(weights: list[float]) -> tnnspec.Spec:
    """image -> A, then one feedforward edge from A into area Tk per weight."""
    areas = "\n".join(f"  T{k}: {{level: 2, channels: 4}}" for k in range(len(weights)))
    edges = "\n".join(f"  - {{type: feedforward, source: A, target: T{k}, weight: {w}, "
                      f"transform: [{{conv: {{kernel: 1}}}}]}}" for k, w in enumerate(weights))
    return tnnspec.loads(f"""\
tnnspec: "1.1"
name: weighted
time: {{dt_ms: 10}}
inputs:
  image: {{shape: [3, 8, 8]}}
areas:
  A: {{level: 1, channels: 4}}
{areas}
edges:
  - {{type: feedforward, source: image, target: A, weight: {max(weights)}, transform: [{{conv: {{kernel: 1}}}}]}}
{edges}
""")


@pytest.fixture(scope="module")
def macaque():
    return tnnspec.load(MACAQUE)


def pens(g) -> dict[str, float]:
    return {a["id"]: float(a["penwidth"]) for _, _, a in parse(g).spec_edges()}


# --------------------------------------------------------------------------- widths
WEIGHTS = [0.01, 0.03, 0.1, 0.3, 0.6, 1.0]


@pytest.mark.parametrize("scale", ["auto", "linear", "log"])
def test_width_grows_with_weight(scale):
    spec = weighted(WEIGHTS)
    p = pens(area_graph(spec, weight_scale=scale))
    widths = [p[f"A__T{k}"] for k in range(len(WEIGHTS))]
    assert widths == sorted(widths) and widths[0] < widths[-1]
    assert widths[-1] == float(EDGE_STYLE["feedforward"]["penwidth"])  # the strongest: its type's width
    assert min(p.values()) >= PEN_MIN
    if scale != "linear":  # log: every step of weight shows
        assert len(set(widths)) == len(widths)


def test_linear_is_proportional_and_log_spreads_small_weights():
    spec = weighted(WEIGHTS)
    lin, log = pens(area_graph(spec, weight_scale="linear")), pens(area_graph(spec, weight_scale="log"))
    assert lin["A__T4"] == pytest.approx(0.6 * lin["A__T5"], abs=0.01)
    assert lin["A__T3"] == pytest.approx(0.3 * lin["A__T5"], abs=0.01)
    assert lin["A__T0"] == lin["A__T1"] == PEN_MIN  # 1% and 3% of 2 pt: at the floor
    # log: equal ratios of weight give equal steps of width
    assert log["A__T2"] - log["A__T0"] == pytest.approx(log["A__T5"] - log["A__T2"], abs=0.02)
    assert log["A__T1"] > lin["A__T1"] and log["A__T3"] > lin["A__T3"]
    # auto: log over 1.5 decades (here 2), linear within them
    assert pens(area_graph(spec)) == log
    assert width_scale(spec).kind == "log"
    narrow = weighted([0.05, 0.2, 1.0])  # 1.3 decades
    assert width_scale(narrow).kind == "linear"
    assert pens(area_graph(narrow)) == pens(area_graph(narrow, weight_scale="linear"))


def test_legend_states_the_scale():
    g = area_graph(weighted(WEIGHTS))
    assert "line width: weight, log scale, 0.01 … 1" in g.source
    g = area_graph(weighted([0.2, 0.5, 1.0]), layout="rows")
    assert "line width: weight, linear, 0.2 … 1" in g.source
    assert "_legend_width_lo_t" in g.source and "_legend_width_hi_t" in g.source


@pytest.mark.parametrize("name", ["ventral4", "cornet_rt"])
def test_all_weights_one_keep_todays_widths(name):
    """Every weight is 1: every edge has its type's pen width, written as before, and the
    legend says nothing about widths."""
    spec = tnnspec.load(ROOT / "graphs" / f"{name}.yaml")
    assert {e.weight for e in spec.edges} == {1.0}
    for layout in ("dot", "rows"):
        g = area_graph(spec, layout=layout)
        d = parse(g)
        for i, e in enumerate(spec.edges):
            style = LATERAL_BETWEEN if e.type == "lateral" and e.source != e.target else EDGE_STYLE[e.type]
            assert d.edge(edge_names(spec)[i])[2]["penwidth"] == style["penwidth"]
        assert "line width" not in g.source
    assert width_scale(spec).kind == "none"
    for i, e in enumerate(spec.edges):  # edge_style itself, called as other pictures call it
        assert edge_style(spec, i)["penwidth"] == edge_style(spec, i, weights=False)["penwidth"]


# --------------------------------------------------------------------------- hiding edges
def drawn(g) -> list[str]:
    return sorted(a["id"] for _, _, a in parse(g).spec_edges())


@pytest.mark.parametrize("layout", ["dot", "rows"])
def test_min_weight_and_top_k_draw_exactly_these_edges(layout):
    spec = tnnspec.loads(SMALL)
    before = spec.model_dump()
    inputs = ["image__A", "image__B"]  # always drawn, however weak (image -> B: 0.01)
    cases = {
        (None, None): (sorted(edge_names(spec)), None),
        (0.45, None): (sorted(inputs + ["C__B", "B__B", "A__C", "B__A"]), "3 of 9 edges hidden: weight < 0.45"),
        # B's incoming: C__B 0.5 and B__B 0.5 tie; C__B comes first in the file
        (None, 1): (sorted(inputs + ["C__B", "A__C", "B__A"]), "4 of 9 edges hidden: top 1 per target"),
        (None, 2): (sorted(inputs + ["C__B", "B__B", "A__C", "B__C", "B__A", "C__A"]),
                    "1 of 9 edges hidden: top 2 per target"),
        (0.3, 2): (sorted(inputs + ["C__B", "B__B", "A__C", "B__A"]),
                   "3 of 9 edges hidden: weight < 0.3, top 2 per target"),
    }
    for (w, k), (expected, note) in cases.items():
        g = area_graph(spec, min_weight=w, top_k=k, layout=layout)
        assert drawn(g) == expected, (w, k)
        assert len(parse(g).spec_edges()) == len(expected)
        if note:
            assert g.source.count(note) == 1, (w, k)
        else:
            assert "hidden" not in g.source
    assert spec.model_dump() == before  # hiding is a picture option only
    assert len(spec.edges) == 9


def test_top_k_ties_follow_file_order():
    spec = tnnspec.loads(SMALL)
    assert [edge_names(spec)[i] for i in shown_edges(spec, top_k=1)] == \
        ["image__A", "image__B", "C__B", "A__C", "B__A"]
    lines = SMALL.splitlines()
    a, b = lines.index(next(ln for ln in lines if "source: C, target: B" in ln)), \
        lines.index(next(ln for ln in lines if "source: B, target: B" in ln))
    lines[a], lines[b] = lines[b], lines[a]
    swapped = tnnspec.loads("\n".join(lines) + "\n")
    assert [edge_names(swapped)[i] for i in shown_edges(swapped, top_k=1)] == \
        ["image__A", "image__B", "B__B", "A__C", "B__A"]
    # the same answer every time
    assert len({tuple(shown_edges(spec, top_k=1)) for _ in range(5)}) == 1


def test_bad_hiding_values_are_refused():
    spec = tnnspec.loads(SMALL)
    for kwargs in ({"min_weight": -0.1}, {"min_weight": float("nan")}, {"top_k": 0}, {"top_k": 1.5},
                   {"layout": "circo"}, {"weight_scale": "sqrt"}, {"rows": 0, "layout": "rows"},
                   {"rows": 3, "layout": "dot"}):
        with pytest.raises(ValueError):
            area_graph(spec, **kwargs)


@pytest.mark.parametrize("top_k", [1, 2])
def test_hiding_does_not_move_the_boxes(macaque, top_k):
    dense = tnnspec.load(ROOT / "tests" / "graphs_for_render" / "dense.yaml")  # with self-loops
    for spec in (macaque, dense):
        full, some = parse(area_graph(spec)), parse(area_graph(spec, top_k=top_k))
        for name in list(spec.inputs) + list(spec.areas):
            assert full.nodes[name]["pos"] == some.nodes[name]["pos"]
        assert len(some.spec_edges()) < len(full.spec_edges())


# --------------------------------------------------------------------------- rows
def test_level_rows():
    levels = {"a": 1.0, "b": 2.0, "c": 2.0, "d": 3.0}
    assert [r.names for r in level_rows(levels, list(levels))] == [("a",), ("b", "c"), ("d",)]
    cont = {"V1": 1.0, "V2": 1.546, "V4": 2.309, "DP": 2.82, "MT": 2.889, "8m": 3.036, "8l": 3.19}
    rows = level_rows(cont, list(cont))
    assert [r.names for r in rows] == [("V1",), ("V2",), ("V4",), ("DP", "MT", "8m"), ("8l",)]
    assert all(r.hi - r.lo <= ROW_TOLERANCE for r in rows)
    assert [r.names for r in level_rows(cont, list(cont), tolerance=0.0)] == [(n,) for n in cont]
    two = level_rows(cont, list(cont), rows=2)  # equal bins over 1 .. 3.19
    assert [r.names for r in two] == [("V1", "V2"), ("V4", "DP", "MT", "8m", "8l")]
    four = level_rows(cont, list(cont), rows=4)  # bins of 0.5475 from 1; the second one is empty
    assert [r.names for r in four] == [("V1", "V2"), ("V4",), ("DP", "MT", "8m", "8l")]
    assert len(level_rows(cont, list(cont), rows=50)) == len(cont)
    assert [r.names for r in level_rows({"x": 2.0, "y": 2.0}, ["x", "y"], rows=3)] == [("x", "y")]


def test_auto_layout(macaque):
    load = tnnspec.load
    assert choose_layout(load(ROOT / "graphs" / "ventral4.yaml")) == "dot"   # 4 areas, whole levels
    assert choose_layout(load(ROOT / "tests" / "graphs_for_render" / "streams.yaml")) == "dot"
    assert choose_layout(load(ROOT / "tests" / "graphs_for_render" / "dense.yaml")) == "rows"  # 11 areas
    spec = macaque
    assert choose_layout(spec) == "rows" and area_graph(spec).engine == "neato"
    small = tnnspec.loads(SMALL.replace("level: 2,", "level: 1.5,"))  # a fractional level
    assert choose_layout(small) == "rows"
    assert choose_layout(tnnspec.loads(SMALL)) == "dot" and choose_layout(tnnspec.loads(SMALL), rows=2) == "rows"
    assert area_graph(tnnspec.loads(SMALL)).engine == "dot"


@pytest.fixture(scope="module")
def macaque_drawn(macaque):
    """Positions and box sizes (points) after graphviz drew the macaque graph, plain and with
    --detail."""
    if not __import__("shutil").which("dot"):
        pytest.skip("graphviz 'dot' not installed")
    spec = macaque
    out = {}
    for detail in (False, True):
        g = area_graph(spec, detail=detail)
        layout = json.loads(g.pipe(format="json"))
        boxes, text = {}, {}
        for o in layout["objects"]:
            if "pos" in o and "width" in o:
                x, y = map(float, o["pos"].split(","))
                boxes[o["name"]] = (x, y, float(o["width"]) * 72, float(o["height"]) * 72, o.get("shape"))
                text[o["name"]] = max((op["width"] for op in o.get("_ldraw_", []) if op["op"] == "T"), default=0)
        pinned = {n: float(a["width"]) * 72 for n, a in parse(g).nodes.items() if "width" in a}
        out[detail] = (boxes, g.pipe(format="svg").decode(), pinned, text)
    return spec, out


@pytest.mark.parametrize("detail", [False, True])
def test_rows_are_levels(macaque_drawn, detail):
    spec, out = macaque_drawn
    boxes = out[detail][0]
    levels = hierarchy_levels(spec)
    y = {n: boxes[n][1] for n in levels}
    for a in spec.areas:
        assert y["image"] < y[a]
        for b in spec.areas:
            if levels[a] == levels[b]:
                assert y[a] == y[b]
            elif levels[a] < levels[b]:
                assert y[a] <= y[b], (a, b)  # higher level: higher on the page (or the same row)
                if levels[b] - levels[a] > ROW_TOLERANCE:
                    assert y[a] < y[b], (a, b)
    rows = sorted({y[a] for a in spec.areas})
    assert len(rows) == 6
    gaps = [b - a for a, b in itertools.pairwise(rows)]
    assert max(gaps) - min(gaps) < 1  # evenly spaced
    # one label per row on the left axis, left of every box
    labels = {n: b for n, b in boxes.items() if n.startswith("_level_row_")}
    assert len(labels) == len(rows) + 1
    assert sorted(b[1] for b in labels.values()) == sorted(rows + [y["image"]])
    left = min(boxes[n][0] - boxes[n][2] / 2 for n in levels)
    assert all(b[0] < left for b in labels.values())


@pytest.mark.parametrize("detail", [False, True])
def test_groups_are_column_bands_and_v1_is_centred(macaque_drawn, detail):
    spec, out = macaque_drawn
    boxes = out[detail][0]
    groups: dict[str, list[str]] = {}
    for name, area in spec.areas.items():
        groups.setdefault(area.group, []).append(name)
    assert list(groups) == ["early", "ventral", "dorsal", "frontal"]

    def x_range(names):
        return (min(boxes[n][0] - boxes[n][2] / 2 for n in names), max(boxes[n][0] + boxes[n][2] / 2 for n in names))

    bands = [x_range(groups[g]) for g in ("ventral", "dorsal", "frontal")]
    for (_, right), (left, _) in itertools.pairwise(bands):
        assert right < left  # side by side, in the file's order, never interleaved
    xs = [boxes[n][0] for n in spec.areas]
    centre = (min(xs) + max(xs)) / 2
    assert abs(boxes["V1"][0] - centre) < 0.03 * (max(xs) - min(xs))
    assert boxes["V1"][0] == boxes["V2"][0] == pytest.approx(boxes["image"][0], abs=0.5)


@pytest.mark.parametrize("detail", [False, True])
def test_no_two_boxes_overlap(macaque_drawn, detail):
    spec, out = macaque_drawn
    boxes = out[detail][0]
    solid = [n for n in boxes if n in spec.inputs or n in spec.areas or n.startswith(("_readout_", "_group_"))]
    assert len(solid) == 1 + 11 + 1 + 4
    for i, a in enumerate(solid):
        for b in solid[:i]:
            (xa, ya, wa, ha, _), (xb, yb, wb, hb, _) = boxes[a], boxes[b]
            apart = abs(xa - xb) >= (wa + wb) / 2 + 4 or abs(ya - yb) >= (ha + hb) / 2 + 4
            assert apart, (a, b)
    # the positions were computed for boxes that hold their labels: graphviz did not grow any
    pinned, text = out[detail][2], out[detail][3]
    for name in list(spec.inputs) + list(spec.areas):
        assert pinned[name] >= text[name] + 2 * 0.11 * 72, name
        assert boxes[name][2] <= pinned[name] + 1, name
    if detail:
        assert boxes["V1"][2] > out[False][0]["V1"][2]


def test_svg_keeps_titles_ids_and_classes(macaque_drawn):
    spec, out = macaque_drawn
    svg = out[False][1]
    for name in spec.areas:
        assert f"<title>{name}</title>" in svg
    for name, e in zip(edge_names(spec), spec.edges):
        assert f'<g id="{name}" class="edge {e.type}">' in svg
    assert "61 of 95" not in svg and "line width: weight, linear, 0.179 … 1" in svg


def test_small_graphs_in_rows_still_read_bottom_up():
    """Self-loops, readouts, no groups: the rows layout places everything without overlaps."""
    for path in (ROOT / "tests" / "graphs_for_render" / "dense.yaml", ROOT / "graphs" / "ventral4.yaml"):
        spec = tnnspec.load(path)
        for groups in (True, False):
            d = parse(area_graph(spec, layout="rows", groups=groups))
            pos = {n: tuple(map(float, a["pos"].rstrip("!").split(","))) for n, a in d.nodes.items() if "pos" in a}
            levels = hierarchy_levels(spec)
            for a in levels:
                for b in levels:
                    if levels[a] < levels[b]:
                        assert pos[a][1] < pos[b][1]
            boxes = {n: (pos[n], float(d.nodes[n]["width"]) * 72, float(d.nodes[n]["height"]) * 72)
                     for n in list(levels) + [f"_readout_{r}" for r in spec.readouts]}
            names = list(boxes)
            for i, a in enumerate(names):
                for b in names[:i]:
                    (pa, wa, ha), (pb, wb, hb) = boxes[a], boxes[b]
                    assert abs(pa[0] - pb[0]) >= (wa + wb) / 2 or abs(pa[1] - pb[1]) >= (ha + hb) / 2, (a, b)


# --------------------------------------------------------------------------- command line
def run(argv, capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cli_top_k_writes_a_picture(tmp_path, capsys):
    out = tmp_path / "m.dot"
    code, text = run(["render", str(MACAQUE), "--top-k", "3", "--min-weight", "0.2", "-o", str(out)], capsys)
    assert code == 0 and out.exists(), text
    assert "edges hidden: weight < 0.2, top 3 per target" in out.read_text(encoding="utf-8")
    code, text = run(["render", str(MACAQUE), "--rows", "4", "--layout", "rows", "--weight-scale", "log",
                      "-o", str(tmp_path / "r.dot")], capsys)
    assert code == 0, text
    assert "log scale" in (tmp_path / "r.dot").read_text(encoding="utf-8")


def test_cli_top_k_svg(tmp_path, capsys, has_dot):
    out = tmp_path / "m.svg"
    code, text = run(["render", str(MACAQUE), "--top-k", "3", "-o", str(out)], capsys)
    assert code == 0, text
    svg = out.read_text(encoding="utf-8")
    assert svg.count('class="edge feedforward"') + svg.count('class="edge feedback"') + \
        svg.count('class="edge attention"') == 1 + 3 * 11  # image -> V1 and 3 per area
    assert "61 of 95 edges hidden: top 3 per target" in svg


@pytest.mark.parametrize("args,message", [
    (["--top-k", "0"], "argument --top-k: must be at least 1"),
    (["--top-k", "-2"], "argument --top-k: must be at least 1"),
    (["--top-k", "two"], "argument --top-k: 'two' is not a whole number"),
    (["--min-weight", "-0.5"], "argument --min-weight: must be a finite number >= 0"),
    (["--min-weight", "nan"], "argument --min-weight: must be a finite number >= 0"),
    (["--rows", "0"], "argument --rows: must be at least 1"),
    (["--layout", "circo"], "argument --layout: invalid choice"),
    (["--top-k", "3", "--unrolled"], "--top-k: only for the area graph"),
    (["--rows", "3", "--layout", "dot"], "--rows is an option of --layout rows"),
])
def test_cli_bad_values(tmp_path, capsys, args, message):
    out = tmp_path / "m.dot"
    code, text = run(["render", str(MACAQUE), *args, "-o", str(out)], capsys)
    assert code == 2
    assert message in text and "Traceback" not in text
    assert not out.exists()


def test_text_width_is_generous():
    assert text_width("V1", 12) > 12
    assert text_width("WWW", 12) > text_width("iii", 12) * 2
    assert math.isclose(text_width("ab", 10) * 2, text_width("ab", 20))
