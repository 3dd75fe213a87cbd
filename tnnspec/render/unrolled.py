"""The unrolled (space-time) picture: what the plan delivers, step by step.

One column per step ``t = 0 .. T-1``, one row per input or area (ordered by hierarchy level,
inputs at the bottom), a node per (area, step), and exactly one arrow per delivered signal
in ``plan.schedule``: a :class:`~tnnspec.graph.plan.Read` of ``source`` at step ``at`` into
``area`` at step ``t`` is an arrow from cell ``(source, at)`` to cell ``(area, t)`` — within a
column for delay 0, across ``d`` columns for delay ``d``.

Cells: an area that computes is white; one that computes on a zero drive before its arrival
step (``before_arrival: zero_drive``) has a dashed outline; a silent one (not in the plan's
step) is greyed. Nodes are pinned (``pos="x,y!"``, neato) so the grid is exact.
"""

from __future__ import annotations

import graphviz

from ..graph.plan import Plan, build_plan
from ..spec.models import Spec
from .style import (EDGE_STYLE, EDGE_TYPES, FONT, INPUT_BORDER, INPUT_FILL, LATERAL_BETWEEN, SILENT_BORDER,
                    SILENT_FILL, SILENT_FONT, edge_style, hierarchy_levels)

ROW_GAP = 0.8  # inches between rows


def cell_name(node: str, step: int) -> str:
    """The graphviz node name of ``node`` (an input or area) at ``step``."""
    return f"{node}__t{step}"


def read_edge_id(name: str, step: int) -> str:
    """The ``id`` of the arrow delivering edge ``name`` into its target at ``step``."""
    return f"{name}@t{step}"


def cell_states(spec: Spec, plan: Plan) -> dict[tuple[str, int], str]:
    """(area, step) -> 'active', 'zero_drive' (computes on zero drive before arrival) or 'silent'."""
    out: dict[tuple[str, int], str] = {}
    for t, step in enumerate(plan.schedule):
        computing = {s.area for s in step}
        for area in spec.areas:
            if area not in computing:
                out[area, t] = "silent"
            else:
                arrival = plan.arrival.get(area)
                out[area, t] = "zero_drive" if arrival is None or t < arrival else "active"
    return out


def unrolled(spec: Spec, steps: int | None = None, *, legend: bool = True,
             plan: Plan | None = None) -> graphviz.Digraph:
    """The space-time picture of ``spec`` unrolled over ``steps`` steps (default: the spec's
    horizon) as a :class:`graphviz.Digraph` laid out by neato with pinned positions."""
    plan = plan if plan is not None else build_plan(spec, steps)
    T = plan.steps
    levels = hierarchy_levels(spec)
    area_index = {name: i for i, name in enumerate(spec.areas)}
    rows = list(spec.inputs) + sorted(spec.areas, key=lambda a: (levels[a], area_index[a]))
    longest = max(len(n) for n in rows)
    col_gap = max(1.15, 0.11 * longest + 0.65)
    dt = spec.time.dt_ms

    g = graphviz.Digraph(name=f"{spec.name}_unrolled", engine="neato",
                         comment=f"tnnspec unrolled graph of {spec.name}, {T} steps")
    g.attr(splines="true", overlap="true", outputorder="edgesfirst", fontname=FONT, fontsize="16",
           label=f"{spec.name} unrolled over {T} steps of {dt:g} ms", labelloc="t")
    g.attr("node", fontname=FONT, fontsize="10", shape="box", style="rounded,filled", width="0.75",
           height="0.32", margin="0.04,0.02")
    g.attr("edge", arrowsize="0.7")

    def pos(col: float, row: float) -> str:
        return f"{col * col_gap:.3f},{row * ROW_GAP:.3f}!"

    states = cell_states(spec, plan)
    for r, node in enumerate(rows):
        for t in range(T):
            if node in spec.inputs:
                sched = spec.inputs[node].schedule
                shown = sched.type != "on_off" or (sched.on <= t and (sched.off is None or t < sched.off))
                attrs = dict(fillcolor=INPUT_FILL, color=INPUT_BORDER) if shown else \
                    dict(fillcolor="white", color=INPUT_BORDER, fontcolor="#888888")
                label = node if shown else f"{node} (blank)"
                g.node(cell_name(node, t), label=label, pos=pos(t, r), style="filled",
                       tooltip=f"input {node} at t={t}" + ("" if shown else ": blank frame"),
                       **{"class": "input"}, **attrs)
                continue
            state = states[node, t]
            if state == "silent":
                attrs = dict(fillcolor=SILENT_FILL, fontcolor=SILENT_FONT, color=SILENT_BORDER)
                tip = f"{node} at t={t}: silent (output exactly zero)"
            elif state == "zero_drive":
                attrs = dict(fillcolor="white", style="rounded,dashed,filled", color="#555555")
                tip = f"{node} at t={t}: computes on a zero drive (before its arrival step)"
            else:
                attrs = dict(fillcolor="white", color="#555555")
                tip = f"{node} at t={t}: computes"
            g.node(cell_name(node, t), label=node, pos=pos(t, r), tooltip=tip, **{"class": state}, **attrs)

    # column headers
    for t in range(T):
        g.node(f"_step_{t}", label=f"t={t}\\n{t * dt:g} ms", shape="plaintext", style="", fontsize="10",
               fontcolor="#555555", pos=pos(t, len(rows) - 0.35), **{"class": "step"})

    # one arrow per delivered signal
    used: list[str] = []
    for t, step in enumerate(plan.schedule):
        for s in step:
            for read in s.reads:
                e = spec.edges[read.edge]
                attrs = edge_style(spec, read.edge, weights=False)
                used.append("lateral_between" if e.type == "lateral" and e.source != e.target else e.type)
                g.edge(cell_name(read.source, read.at), cell_name(s.area, t), id=read_edge_id(read.name, t),
                       tooltip=f"{read.name}: {read.source}@t{read.at} -> {s.area}@t{t} ({e.type})",
                       **{"class": e.type}, **attrs)

    if legend:
        _legend(g, used, x0=T * col_gap - 0.2, top=(len(rows) - 1) * ROW_GAP,
                zero_drive=any(v == "zero_drive" for v in states.values()),
                silent=any(v == "silent" for v in states.values()))
    return g


def _legend(g: graphviz.Digraph, used: list[str], *, x0: float, top: float, zero_drive: bool,
            silent: bool) -> None:
    entries: list[tuple[str, str, dict]] = []
    for t in EDGE_TYPES:
        if t in used:
            entries.append((t, "lateral (same area)" if t == "lateral" else t, EDGE_STYLE[t]))
        if t == "lateral" and "lateral_between" in used:
            entries.append(("lateral_between", "lateral (between areas)", LATERAL_BETWEEN))
    y = top
    step = 0.36
    for key, text, attrs in entries:
        a, b = f"_legend_{key}_a", f"_legend_{key}_b"
        g.node(a, label="", shape="point", style="invis", width="0.01", pos=f"{x0:.3f},{y:.3f}!")
        g.node(b, label="", shape="point", style="invis", width="0.01", pos=f"{x0 + 0.55:.3f},{y:.3f}!")
        _text(g, f"_legend_{key}_t", text, x0 + 0.7, y)
        g.edge(a, b, **{"class": "legend"}, **attrs)
        y -= step
    y -= 0.1
    cells = [("active", "computes", dict(fillcolor="white", color="#555555"))]
    if zero_drive:
        cells.append(("zero_drive", "zero drive (before arrival)",
                      dict(fillcolor="white", color="#555555", style="rounded,dashed,filled")))
    if silent:
        cells.append(("silent", "silent (output 0)",
                      dict(fillcolor=SILENT_FILL, color=SILENT_BORDER, fontcolor=SILENT_FONT)))
    for key, text, attrs in cells:
        g.node(f"_legend_cell_{key}", label="", width="0.3", height="0.2", pos=f"{x0 + 0.2:.3f},{y:.3f}!",
               **{"class": "legend"}, **attrs)
        _text(g, f"_legend_cell_{key}_t", text, x0 + 0.7, y)
        y -= step


def _text(g: graphviz.Digraph, name: str, text: str, left: float, y: float) -> None:
    """A plaintext node whose left edge is at ``left`` (neato centres nodes on ``pos``)."""
    width = 0.09 * len(text) + 0.2
    g.node(name, label=text + "\\l", shape="plaintext", style="", fontsize="10", fontcolor="#333333",
           width=f"{width:.2f}", height="0.2", fixedsize="true", pos=f"{left + width / 2:.3f},{y:.3f}!")
