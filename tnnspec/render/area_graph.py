"""The area graph: areas ranked by hierarchy level (inputs at the bottom), edges styled by type.

Two layouts (docs/spec.md, "Pictures"); ``layout="auto"`` picks "rows" for more than
``AUTO_ROWS_AREAS`` areas or when some level is not a whole number, else "dot":

- ``"dot"`` (graphviz conventions from the spec survey §9.6): ``rankdir=BT`` and one
  ``rank=same`` subgraph per level, so levels are rows, inputs at the bottom;
  ``newrank=true`` so that areas can also sit in a cluster per ``group``; an invisible,
  heavily weighted spine (``style=invis, weight=10``) joins consecutive levels, so a level is
  above the one below it even when no edge joins them; top-down edges (feedback, attention,
  normalization, and any edge going down in level) have ``constraint=false``: they are drawn
  but never used for ranking, so they cannot invert the hierarchy.
- ``"rows"`` (:mod:`tnnspec.render.layout`): every node is placed here — levels binned into
  evenly spaced rows with their level on a left axis, groups in column bands, the lowest
  areas centred — and graphviz only routes the edges as splines around the boxes
  (``neato -n2``, a :class:`~tnnspec.render.unrolled.PinnedDigraph`).

Pen width follows the edge weight (:func:`~tnnspec.render.style.width_scale`), and
``min_weight``/``top_k`` hide weak edges from the picture (never from the spec); the legend
states both.
"""

from __future__ import annotations

import graphviz

from ..graph.checks import edge_names
from ..graph.plan import build_plan
from ..graph.timing import edge_delays
from ..spec.models import Spec
from .layout import PT, ROW_TOLERANCE, RowsLayout, box_size, rows_layout, text_width
from .style import (
    EDGE_STYLE,
    EDGE_TYPES,
    FONT,
    INPUT_BORDER,
    INPUT_FILL,
    LATERAL_BETWEEN,
    PEN_MIN,
    WIDTH_MAX,
    WIDTH_MIN,
    WidthScale,
    delay_is_unusual,
    edge_strength,
    edge_style,
    group_colours,
    hierarchy_levels,
    html_escape,
    is_top_down,
    level_text,
    shape_text,
    width_scale,
)
from .unrolled import ARROW_LENGTH, PinnedDigraph

LAYOUTS = ("auto", "dot", "rows")
AUTO_ROWS_AREAS = 8     # layout="auto": rows above this many areas (or with fractional levels)


def level_subgraph_name(index: int) -> str:
    return f"level_{index}"


def spine_node_name(index: int) -> str:
    return f"_spine_{index}"


def choose_layout(spec: Spec, layout: str = "auto", levels: dict[str, float] | None = None, *,
                  rows: int | None = None) -> str:
    """"dot" or "rows": ``layout`` itself, or for "auto" rows when ``rows`` is given, the spec
    has more than ``AUTO_ROWS_AREAS`` areas, or a level is not a whole number."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if rows is not None and layout == "dot":
        raise ValueError("rows= is an option of the rows layout, not of layout='dot'")
    if layout != "auto":
        return layout
    if rows is not None:
        return "rows"
    levels = levels if levels is not None else hierarchy_levels(spec)
    fractional = any(v != int(v) for v in levels.values())
    return "rows" if len(spec.areas) > AUTO_ROWS_AREAS or fractional else "dot"


def shown_edges(spec: Spec, min_weight: float | None = None, top_k: int | None = None) -> list[int]:
    """Indices of the edges drawn: every edge from an input, and every other edge whose
    |weight| is at least ``min_weight`` and among the ``top_k`` strongest (by |weight|; on a
    tie, the earlier in the file) of the edges from areas into its target."""
    if min_weight is not None and not min_weight >= 0:
        raise ValueError(f"min_weight must be a number >= 0, not {min_weight}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be a whole number >= 1, not {top_k}")
    keep: list[int] = []
    rank: dict[int, int] = {}  # place among the edges from areas into the same target, strongest 0
    if top_k is not None:
        by_target: dict[str, list[int]] = {}
        for i, e in enumerate(spec.edges):
            if e.source not in spec.inputs:
                by_target.setdefault(e.target, []).append(i)
        for incoming in by_target.values():
            for k, i in enumerate(sorted(incoming, key=lambda i: (-edge_strength(spec, i), i))):
                rank[i] = k
    for i, e in enumerate(spec.edges):
        strong = min_weight is None or edge_strength(spec, i) >= min_weight
        if e.source in spec.inputs or (strong and (top_k is None or rank[i] < top_k)):
            keep.append(i)
    return keep


def hidden_text(spec: Spec, shown: list[int], min_weight: float | None, top_k: int | None) -> str | None:
    """``37 of 94 edges hidden: weight < 0.3, top 3 per target``; None when none is hidden."""
    hidden = len(spec.edges) - len(shown)
    if hidden == 0:
        return None
    why = []
    if min_weight is not None:
        why.append(f"weight < {min_weight:g}")
    if top_k is not None:
        why.append(f"top {top_k} per target")
    return f"{hidden} of {len(spec.edges)} edges hidden: {', '.join(why)}"


def area_graph(spec: Spec, detail: bool = False, *, groups: bool = True, legend: bool = True,
               readouts: bool = True, weights: bool = True, weight_scale: str = "auto",
               min_weight: float | None = None, top_k: int | None = None, layout: str = "auto",
               rows: int | None = None, row_tolerance: float = ROW_TOLERANCE) -> graphviz.Digraph:
    """The area-level picture of ``spec`` as a :class:`graphviz.Digraph` (render with
    :func:`tnnspec.render.render`, or read ``.source`` for DOT text).

    ``detail``: a second label line per node (shape per sample and cell type) and a delay
    label on every edge (otherwise only on edges whose delay is over one step or differs from
    ``time.default_delay``). ``groups``: a cluster (or column band) per area ``group``.
    ``legend``: a box showing each edge type used. ``readouts``: a note per readout.
    ``weights``: pen width scaled by the edge ``weight``, on ``weight_scale`` ("auto", "linear"
    or "log"). ``min_weight``, ``top_k``: draw only the edges of :func:`shown_edges`.
    ``layout``: "dot", "rows" or "auto" (:func:`choose_layout`); in the rows layout, ``rows=N``
    bins the levels into at most N rows, else levels within ``row_tolerance`` share a row.

    Area nodes are named (SVG ``<title>``) after their area; a drawn edge has ``id`` = its
    name (:func:`tnnspec.graph.checks.edge_names`) and ``class`` = its type.
    """
    levels = hierarchy_levels(spec)
    kind = choose_layout(spec, layout, levels, rows=rows)
    shown = shown_edges(spec, min_weight, top_k)
    scale = width_scale(spec, weight_scale)
    if not weights:
        scale = WidthScale("none")
    notes = [t for t in (scale.legend_text(), hidden_text(spec, shown, min_weight, top_k)) if t]
    parts = _Parts(spec, levels, detail, groups, scale, shown)
    if kind == "dot":
        g = _dot_graph(spec, parts, readouts)
        if legend:
            _dot_legend(g, spec, shown, notes)
    else:
        g, geo = _rows_graph(spec, parts, readouts, rows=rows, tolerance=row_tolerance)
        if legend:
            _rows_legend(g, spec, shown, notes, scale, geo)
    return g


class _Parts:
    """What both layouts draw: node labels and attributes, edge attributes."""

    def __init__(self, spec: Spec, levels, detail: bool, groups: bool, scale: WidthScale, shown: list[int]):
        self.spec, self.levels, self.detail, self.scale, self.shown = spec, levels, detail, scale, shown
        self.delays = edge_delays(spec)
        self.names = edge_names(spec)
        self.shapes = build_plan(spec, 1).shapes if detail else None
        self.colours = group_colours(spec) if groups else {}
        self.group_of = {name: (a.group if groups else None) for name, a in spec.areas.items()}

    def lines(self, name: str) -> list[tuple[str, float]]:
        """The label of a node as (text, font size) lines."""
        spec = self.spec
        if not self.detail:
            return [(name, 12.0)]
        if name in spec.inputs:
            inp = spec.inputs[name]
            return [(name, 12.0), (f"{shape_text(inp.shape)} · {inp.schedule.type}", 9.0)]
        area = spec.areas[name]
        out = self.shapes.output.get(name) if self.shapes else None
        return [(name, 12.0), (f"{shape_text(out) if out else area.channels} · {area.cell.type}", 9.0)]

    def node_attrs(self, name: str) -> dict[str, str]:
        lines = self.lines(name)
        label = name if len(lines) == 1 else _two_lines(*(t for t, _ in lines))
        if name in self.spec.inputs:
            inp = self.spec.inputs[name]
            return dict(label=label, shape="box", style="filled", fillcolor=INPUT_FILL, color=INPUT_BORDER,
                        tooltip=f"input {name}: {list(inp.shape)}", **{"class": "input"})
        area = self.spec.areas[name]
        tip = f"area {name}: level {level_text(self.levels[name])}, {area.channels} channels, cell {area.cell.type}"
        return dict(label=label, shape="box", style="rounded,filled", fillcolor="white", color="#555555",
                    tooltip=tip, **{"class": "area"})

    def edge_attrs(self, i: int, *, dot: bool) -> dict[str, str]:
        spec, e = self.spec, self.spec.edges[i]
        attrs = edge_style(spec, i, weights=self.scale.kind != "none", scale=self.scale)
        if dot and is_top_down(spec, i, self.levels):
            attrs["constraint"] = "false"
        label = None
        if self.detail or delay_is_unusual(spec, i, self.delays[i]):
            label = f"d={self.delays[i]}"
            if self.detail and e.type == "attention":
                label += " ×(1+a)" if e.mode == "relative_gain" else " ×a"
        if label:
            attrs.update(label=label, fontcolor=attrs["color"])
        tip = f"{self.names[i]}: {e.type}, delay {self.delays[i]}" + (f", weight {e.weight:g}" if e.weight != 1 else "")
        return dict(id=self.names[i], tooltip=tip, **{"class": e.type}, **attrs)

    def by_group(self) -> dict[str | None, list[str]]:
        out: dict[str | None, list[str]] = {}
        for name in self.spec.areas:
            out.setdefault(self.group_of[name], []).append(name)
        return out


# --------------------------------------------------------------------------- dot
def _dot_graph(spec: Spec, parts: _Parts, readouts: bool) -> graphviz.Digraph:
    levels = parts.levels
    g = graphviz.Digraph(name=spec.name, comment=f"tnnspec area graph of {spec.name}")
    g.attr(rankdir="BT", newrank="true", nodesep="0.45", ranksep="0.55", fontname=FONT,
           label=spec.name, labelloc="t", fontsize="16")
    g.attr("node", fontname=FONT, fontsize="12")
    g.attr("edge", fontname=FONT, fontsize="9")

    # ---- nodes: inputs, then areas (in a cluster per group)
    for name in spec.inputs:
        g.node(name, **parts.node_attrs(name))
    for group, members in parts.by_group().items():
        if group is None:
            for name in members:
                g.node(name, **parts.node_attrs(name))
            continue
        fill, border = parts.colours[group]
        with g.subgraph(name=f"cluster_group_{_safe(group)}") as c:
            c.attr(label=group, style="rounded,filled", fillcolor=fill, color=border, fontcolor="#555555",
                   fontsize="12", labeljust="l")
            for name in members:
                c.node(name, **parts.node_attrs(name))

    # ---- one rank=same subgraph per level, plus the invisible spine
    distinct = sorted(set(levels.values()))
    for k, value in enumerate(distinct):
        with g.subgraph(name=level_subgraph_name(k)) as s:
            s.attr(rank="same")
            s.node(spine_node_name(k), label="", shape="point", style="invis", width="0", height="0")
            for name, lv in levels.items():
                if lv == value:
                    s.node(name)
    for k in range(len(distinct) - 1):
        g.edge(spine_node_name(k), spine_node_name(k + 1), style="invis", weight="10")

    # ---- the spec's edges
    for i in parts.shown:
        e = spec.edges[i]
        g.edge(e.source, e.target, **parts.edge_attrs(i, dot=True))

    if readouts:
        for rname, r in spec.readouts.items():
            node = f"_readout_{rname}"
            g.node(node, **_readout_attrs(rname, r.source))
            g.edge(r.source, node, color="#999999", arrowsize="0.6", penwidth="0.8", **{"class": "readout"})
    return g


def _legend_entries(spec: Spec, shown: list[int]) -> list[tuple[str, str, dict]]:
    drawn = [spec.edges[i] for i in shown]
    entries: list[tuple[str, str, dict]] = []
    for t in EDGE_TYPES:
        if t == "lateral":
            if any(e.type == t and e.source == e.target for e in drawn):
                entries.append(("lateral", "lateral (self-loop)", EDGE_STYLE["lateral"]))
            if any(e.type == t and e.source != e.target for e in drawn):
                entries.append(("lateral_between", "lateral (between areas)", LATERAL_BETWEEN))
        elif any(e.type == t for e in drawn):
            entries.append((t, t, EDGE_STYLE[t]))
    return entries


def _dot_legend(g: graphviz.Digraph, spec: Spec, shown: list[int], notes: list[str]) -> None:
    entries = _legend_entries(spec, shown)
    if not entries:
        return
    label = "edges   (d=N: delay in steps)"
    if notes:
        label = "\\l".join([label, *notes]) + "\\l"
    with g.subgraph(name="cluster_legend") as c:
        c.attr(label=label, style="rounded", color="#bbbbbb", fontsize="10", fontcolor="#555555", labeljust="l")
        previous = None
        for key, text, attrs in reversed(entries):  # BT: the first entry ends up on top
            a, b = f"_legend_{key}_a", f"_legend_{key}_b"
            with c.subgraph() as row:
                row.attr(rank="same")
                row.node(a, label=text + "\\r", shape="plaintext", fontsize="10", fontcolor="#333333")
                row.node(b, label="", shape="point", width="0.01", style="invis")
            c.edge(a, b, minlen="2", **{"class": "legend"}, **attrs)
            if previous is not None:
                c.edge(previous, a, style="invis")
            previous = a


# --------------------------------------------------------------------------- rows
def _rows_graph(spec: Spec, parts: _Parts, readouts: bool, *, rows: int | None,
                tolerance: float) -> tuple[PinnedDigraph, RowsLayout]:
    nodes = list(spec.inputs) + list(spec.areas)
    size = {n: box_size(parts.lines(n)) for n in nodes}
    loops = {e.source for e in spec.edges if e.source == e.target}  # hidden ones too: boxes never move
    geo = rows_layout(list(spec.inputs), list(spec.areas), parts.levels, parts.group_of, size, loops=loops,
                      tolerance=tolerance, rows=rows)

    g = PinnedDigraph(name=spec.name, engine="neato",
                      comment=f"tnnspec area graph of {spec.name}; positions are final: lay out with  neato -n2 -Tsvg")
    g.attr(splines="true", outputorder="edgesfirst", esep="+4", fontname=FONT, label=spec.name, labelloc="t",
           fontsize="16")
    g.attr("node", fontname=FONT, fontsize="12")
    g.attr("edge", fontname=FONT, fontsize="9", arrowsize="0.8")

    def node(target, name: str) -> None:
        (x, y), (w, h) = geo.pos[name], size[name]
        target.node(name, pos=f"{x:.1f},{y:.1f}!", width=f"{w / PT:.3f}", height=f"{h / PT:.3f}",
                    **parts.node_attrs(name))

    for name in spec.inputs:
        node(g, name)
    pad, head = 10.0, 30.0
    for group, members in parts.by_group().items():
        if group is None:
            for name in members:
                node(g, name)
            continue
        band, (fill, border) = geo.bands[group], parts.colours[group]
        x0, x1 = band.x0 - pad, band.x1 + pad
        y0 = geo.row_y[band.lo] - geo.row_h[band.lo] / 2 - pad
        y1 = geo.row_y[band.hi] + geo.row_h[band.hi] / 2 + head
        with g.subgraph(name=f"cluster_group_{_safe(group)}") as c:
            c.attr(label="", style="rounded,filled", fillcolor=fill, color=border, bb=f"{x0:.1f},{y0:.1f},{x1:.1f},{y1:.1f}")
            for name in members:
                node(c, name)
        # the group's name: a node, so that it is drawn over the edges and the edges avoid it
        w = text_width(group, 12) + 6
        g.node(f"_group_{_safe(group)}", label=group, shape="box", style="filled", fillcolor=fill, color=fill,
               penwidth="0", fontsize="12", fontcolor="#555555", margin="0.02,0", fixedsize="true",
               width=f"{w / PT:.3f}", height=f"{15 / PT:.3f}", pos=f"{x0 + 4 + w / 2:.1f},{y1 - 10:.1f}!",
               tooltip=f"group {group}", **{"class": "group"})

    # ---- the level axis on the left
    left = min([geo.bbox()[0]] + [b.x0 - pad for g, b in geo.bands.items() if g is not None]) - 16
    texts = ["input" if r == 0 else row.label(_short) for r, row in enumerate(geo.rows)]
    for r, text in enumerate(texts):
        if r == 0 and not spec.inputs:
            continue
        _text(g, f"_level_row_{r}", text, left, geo.row_y[r], align="r", cls="axis", colour="#777777")
    top = geo.row_y[-1] + geo.row_h[-1] / 2 + head + 10
    _text(g, "_level_axis", "level", left, top, align="r", cls="axis", colour="#777777", size=10)

    # ---- the spec's edges: graphviz routes them around the boxes
    for i in parts.shown:
        e = spec.edges[i]
        g.edge(e.source, e.target, **parts.edge_attrs(i, dot=False))

    if readouts and spec.readouts:
        y = top + 10 + 0.5 * PT
        taken: list[tuple[float, float]] = []
        for rname, r in spec.readouts.items():
            w = max(0.75 * PT, text_width(rname, 10) + 24)
            x = geo.pos[r.source][0]
            while any(abs(x - tx) < (w + tw) / 2 + 8 for tx, tw in taken):
                x += 12
            taken.append((x, w))
            name = f"_readout_{rname}"
            g.node(name, pos=f"{x:.1f},{y:.1f}!", width=f"{w / PT:.3f}", height="0.4",
                   **_readout_attrs(rname, r.source))
            geo.pos[name], geo.size[name] = (x, y), (w, 0.4 * PT)
            g.edge(r.source, name, color="#999999", arrowsize="0.6", penwidth="0.8", **{"class": "readout"})
    return g, geo


def _rows_legend(g: PinnedDigraph, spec: Spec, shown: list[int], notes: list[str], scale: WidthScale,
                 geo: RowsLayout) -> None:
    entries = _legend_entries(spec, shown)
    if not entries:
        return
    x0 = max([geo.bbox()[2]] + [b.x1 + 10 for g, b in geo.bands.items() if g is not None]) + 40
    y = geo.row_y[-1] + geo.row_h[-1] / 2
    step, line = 22.0, 40.0
    _text(g, "_legend_title", "edges   (d=N: delay in steps)", x0, y, cls="legend", colour="#555555", size=10)
    y -= step

    def sample(key: str, text: str, attrs: dict) -> None:
        nonlocal y
        a, b = f"_legend_{key}_a", f"_legend_{key}_b"
        for name, x in ((a, x0), (b, x0 + line)):
            g.node(name, label="", shape="point", style="invis", width="0.01", height="0.01", fixedsize="true",
                   pos=f"{x:.1f},{y:.1f}!")
        tip = ARROW_LENGTH.get(attrs.get("arrowhead", "normal"), 1.0) * 10 * 0.8
        g.edge(a, b, pos=f"e,{x0 + line:.1f},{y:.1f} {x0:.1f},{y:.1f} {x0 + 10:.1f},{y:.1f} "
                         f"{x0 + line - tip - 10:.1f},{y:.1f} {x0 + line - tip:.1f},{y:.1f}",
               **{"class": "legend"}, **attrs)
        _text(g, f"_legend_{key}_t", text, x0 + line + 10, y, cls="legend")
        y -= step

    for key, text, attrs in entries:
        sample(key, text, attrs)
    for k, note in enumerate(notes):
        y -= 4
        _text(g, f"_legend_note_{k}", note, x0, y, cls="legend", colour="#555555", size=10)
        y -= step
        if k == 0 and scale.kind != "none":
            base = dict(EDGE_STYLE["feedforward"])
            for end, value, factor in (("lo", scale.lo, WIDTH_MIN), ("hi", scale.hi, WIDTH_MAX)):
                pen = max(PEN_MIN, float(base["penwidth"]) * factor)
                sample(f"width_{end}", f"weight {value:.3g}", dict(base, penwidth=f"{pen:.2f}"))


def _text(g: graphviz.Digraph, name: str, text: str, x: float, y: float, *, align: str = "l",
          cls: str = "legend", colour: str = "#333333", size: float = 10) -> None:
    """A plaintext label starting (``align="l"``) or ending (``"r"``) at ``x``; its box is no
    taller than the text, so that stacked labels never count as touching nodes (which would
    make graphviz give up routing splines)."""
    w = text_width(text, size) + 8
    cx = x + w / 2 if align == "l" else x - w / 2
    g.node(name, label=text + ("\\l" if align == "l" else "\\r"), shape="plaintext", fontsize=f"{size:g}",
           fontcolor=colour, width=f"{w / PT:.3f}", height=f"{1.22 * size / PT:.3f}", fixedsize="true", margin="0.04,0",
           pos=f"{cx:.1f},{y:.1f}!", **{"class": cls})


# --------------------------------------------------------------------------- shared
def _readout_attrs(rname: str, source: str) -> dict[str, str]:
    return dict(label=rname, shape="note", style="filled", fillcolor="#f2f2f2", color="#999999", fontsize="10",
                fontcolor="#555555", tooltip=f"readout {rname} of {source}", **{"class": "readout"})


def _two_lines(first: str, second: str) -> str:
    return (f"<{html_escape(first)}<br/><font point-size=\"9\" color=\"#555555\">"
            f"{html_escape(second)}</font>>")


def _short(level: float) -> str:
    return f"{level:.3g}"


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)
