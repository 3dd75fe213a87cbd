"""The area graph: areas ranked by hierarchy level (inputs at the bottom), edges styled by type.

Layout rules (docs/spec.md, "Pictures"; graphviz conventions from the spec survey §9.6):

- ``rankdir=BT`` and one ``rank=same`` subgraph per level, so levels are rows, inputs at the
  bottom; ``newrank=true`` so that areas can also sit in a cluster per ``group``;
- an invisible, heavily weighted spine (``style=invis, weight=10``) joins consecutive levels,
  so a level is above the one below it even when no edge joins them;
- top-down edges (feedback, attention, normalization, and any edge going down in level) have
  ``constraint=false``: they are drawn but never used for ranking, so they cannot invert the
  hierarchy.
"""

from __future__ import annotations

import graphviz

from ..graph.checks import edge_names
from ..graph.plan import build_plan
from ..graph.timing import edge_delays
from ..spec.models import Spec
from .style import (EDGE_STYLE, EDGE_TYPES, FONT, INPUT_BORDER, INPUT_FILL, LATERAL_BETWEEN, delay_is_unusual,
                    edge_style, group_colours, hierarchy_levels, html_escape, is_top_down, level_text,
                    shape_text)


def level_subgraph_name(index: int) -> str:
    return f"level_{index}"


def spine_node_name(index: int) -> str:
    return f"_spine_{index}"


def area_graph(spec: Spec, detail: bool = False, *, groups: bool = True, legend: bool = True,
               readouts: bool = True, weights: bool = True) -> graphviz.Digraph:
    """The area-level picture of ``spec`` as a :class:`graphviz.Digraph` (render with
    :func:`tnnspec.render.render`, or read ``.source`` for DOT text).

    ``detail``: a second label line per node (shape per sample and cell type) and a delay
    label on every edge (otherwise only on edges whose delay is over one step or differs from
    ``time.default_delay``). ``groups``: a cluster per area ``group``. ``legend``: a cluster
    showing each edge type used. ``readouts``: a note per readout. ``weights``: pen width
    scaled by the edge ``weight``.
    """
    levels = hierarchy_levels(spec)
    delays = edge_delays(spec)
    names = edge_names(spec)
    shapes = build_plan(spec, 1).shapes if detail else None
    colours = group_colours(spec) if groups else {}

    g = graphviz.Digraph(name=spec.name, comment=f"tnnspec area graph of {spec.name}")
    g.attr(rankdir="BT", newrank="true", nodesep="0.45", ranksep="0.55", fontname=FONT,
           label=spec.name, labelloc="t", fontsize="16")
    g.attr("node", fontname=FONT, fontsize="12")
    g.attr("edge", fontname=FONT, fontsize="9")

    # ---- nodes: inputs, then areas (in a cluster per group)
    for name, inp in spec.inputs.items():
        label = name
        if detail:
            label = _two_lines(name, f"{shape_text(inp.shape)} · {inp.schedule.type}")
        g.node(name, label=label, shape="box", style="filled", fillcolor=INPUT_FILL, color=INPUT_BORDER,
               tooltip=f"input {name}: {list(inp.shape)}", **{"class": "input"})

    def area_node(target: graphviz.Digraph, name: str) -> None:
        area = spec.areas[name]
        label = name
        if detail:
            out = shapes.output.get(name) if shapes else None
            label = _two_lines(name, f"{shape_text(out) if out else area.channels} · {area.cell.type}")
        tip = f"area {name}: level {level_text(levels[name])}, {area.channels} channels, cell {area.cell.type}"
        target.node(name, label=label, shape="box", style="rounded,filled", fillcolor="white",
                    color="#555555", tooltip=tip, **{"class": "area"})

    by_group: dict[str | None, list[str]] = {}
    for name, area in spec.areas.items():
        by_group.setdefault(area.group if groups else None, []).append(name)
    for group, members in by_group.items():
        if group is None:
            for name in members:
                area_node(g, name)
            continue
        fill, border = colours[group]
        with g.subgraph(name=f"cluster_group_{_safe(group)}") as c:
            c.attr(label=group, style="rounded,filled", fillcolor=fill, color=border, fontcolor="#555555",
                   fontsize="12", labeljust="l")
            for name in members:
                area_node(c, name)

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
    for i, e in enumerate(spec.edges):
        attrs = edge_style(spec, i, weights=weights)
        if is_top_down(spec, i, levels):
            attrs["constraint"] = "false"
        label = None
        if detail or delay_is_unusual(spec, i, delays[i]):
            label = f"d={delays[i]}"
            if detail and e.type == "attention":
                label += " ×(1+a)" if e.mode == "relative_gain" else " ×a"
        if label:
            attrs.update(label=label, fontcolor=attrs["color"])
        tip = f"{names[i]}: {e.type}, delay {delays[i]}" + (f", weight {e.weight:g}" if e.weight != 1 else "")
        g.edge(e.source, e.target, id=names[i], tooltip=tip, **{"class": e.type}, **attrs)

    # ---- readouts
    if readouts:
        for rname, r in spec.readouts.items():
            node = f"_readout_{rname}"
            g.node(node, label=rname, shape="note", style="filled", fillcolor="#f2f2f2", color="#999999",
                   fontsize="10", fontcolor="#555555", tooltip=f"readout {rname} of {r.source}",
                   **{"class": "readout"})
            g.edge(r.source, node, color="#999999", arrowsize="0.6", penwidth="0.8", **{"class": "readout"})

    if legend:
        _legend(g, spec)
    return g


def _legend(g: graphviz.Digraph, spec: Spec) -> None:
    used = [t for t in EDGE_TYPES if any(e.type == t for e in spec.edges)]
    entries: list[tuple[str, str, dict]] = []
    for t in used:
        if t == "lateral":
            if any(e.type == t and e.source == e.target for e in spec.edges):
                entries.append(("lateral", "lateral (self-loop)", EDGE_STYLE["lateral"]))
            if any(e.type == t and e.source != e.target for e in spec.edges):
                entries.append(("lateral_between", "lateral (between areas)", LATERAL_BETWEEN))
        else:
            entries.append((t, t, EDGE_STYLE[t]))
    if not entries:
        return
    columns = 1
    rows = [entries[k:k + columns] for k in range(0, len(entries), columns)]
    with g.subgraph(name="cluster_legend") as c:
        c.attr(label="edges   (d=N: delay in steps)", style="rounded", color="#bbbbbb", fontsize="10",
               fontcolor="#555555", labeljust="l")
        previous = None
        for row_entries in reversed(rows):  # BT: the first row ends up on top
            with c.subgraph() as row:
                row.attr(rank="same")
                for key, text, _ in row_entries:
                    row.node(f"_legend_{key}_a", label=text + "\\r", shape="plaintext", fontsize="10",
                             fontcolor="#333333")
                    row.node(f"_legend_{key}_b", label="", shape="point", width="0.01", style="invis")
            last_b = None
            for key, text, attrs in row_entries:
                a, b = f"_legend_{key}_a", f"_legend_{key}_b"
                c.edge(a, b, minlen="2", **{"class": "legend"}, **attrs)
                if last_b is not None:
                    c.edge(last_b, a, style="invis")
                last_b = b
            first = f"_legend_{row_entries[0][0]}_a"
            if previous is not None:
                c.edge(previous, first, style="invis")
            previous = first


def _two_lines(first: str, second: str) -> str:
    return (f"<{html_escape(first)}<br/><font point-size=\"9\" color=\"#555555\">"
            f"{html_escape(second)}</font>>")


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text)
