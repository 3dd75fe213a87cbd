"""The unrolled (space-time) picture: what the plan delivers, step by step.

One column per step ``t = 0 .. T-1``, one row per input or area (ordered by hierarchy level,
inputs at the bottom), a node per (area, step), and exactly one arrow per delivered signal
in ``plan.schedule``: a :class:`~tnnspec.graph.plan.Read` of ``source`` at step ``at`` into
``area`` at step ``t`` is an arrow from cell ``(source, at)`` to cell ``(area, t)`` — within a
column for delay 0, across ``d`` columns for delay ``d``. A ``zeros`` read (a ``zero_input``
area's stand-in for a source without output) has no source cell and no arrow.

Cells: an area that computes is white; one that computes before its arrival step
(``before_arrival: zero_drive`` or ``zero_input``) has a dashed outline; a silent one (not in the plan's
step) is greyed. Input cells are yellow, white when an ``on_off`` schedule shows a blank frame.

Every node and every arrow is placed here (positions in points): an arrow is straight unless
it would cross another cell or lie on top of a parallel arrow, in which case it bows sideways
just enough. graphviz only draws the result (``neato -n2``), so even long, dense runs render
in well under a second; :class:`PinnedDigraph` passes ``-n2`` by itself.
"""

from __future__ import annotations

import math

import graphviz

from ..graph.plan import Plan, build_plan
from ..spec.models import Spec
from .style import (EDGE_STYLE, EDGE_TYPES, FONT, INPUT_BORDER, INPUT_FILL, LATERAL_BETWEEN, SILENT_BORDER,
                    SILENT_FILL, SILENT_FONT, edge_style, hierarchy_levels)

PT = 72.0          # points per inch
ROW_GAP = 0.8      # inches between row centres
CELL_H = 0.32      # inches
ARROW_SIZE = 0.7
ARROW_LENGTH = {"normal": 1.0, "vee": 1.0, "odot": 0.8, "dot": 0.8, "tee": 0.5}  # x 10pt x arrowsize
BOW_STEP = 14.0    # points between candidate sideways offsets of an arrow


class PinnedDigraph(graphviz.Digraph):
    """A Digraph whose nodes and arrows carry their final positions (``pos``, in points):
    ``pipe``/``render`` lay it out with ``neato -n2``, which draws them as given.
    From the command line: ``neato -n2 -Tsvg picture.dot -o picture.svg``."""

    def pipe(self, *args, **kwargs):
        kwargs.setdefault("neato_no_op", 2)
        return super().pipe(*args, **kwargs)

    def render(self, *args, **kwargs):
        kwargs.setdefault("neato_no_op", 2)
        return super().render(*args, **kwargs)


def cell_name(node: str, step: int) -> str:
    """The graphviz node name of ``node`` (an input or area) at ``step``."""
    return f"{node}__t{step}"


def read_edge_id(name: str, step: int) -> str:
    """The ``id`` of the arrow delivering edge ``name`` into its target at ``step``."""
    return f"{name}@t{step}"


def cell_states(spec: Spec, plan: Plan) -> dict[tuple[str, int], str]:
    """(area, step) -> 'active', 'zero_drive' (computes before arrival: ``zero_drive`` or
    ``zero_input``) or 'silent'."""
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
    horizon), as a :class:`PinnedDigraph` (a :class:`graphviz.Digraph` drawn by ``neato -n2``).
    ``plan``: draw this plan instead of building one."""
    plan = plan if plan is not None else build_plan(spec, steps)
    T = plan.steps
    levels = hierarchy_levels(spec)
    area_index = {name: i for i, name in enumerate(spec.areas)}
    rows = list(spec.inputs) + sorted(spec.areas, key=lambda a: (levels[a], area_index[a]))
    row_of = {n: r for r, n in enumerate(rows)}
    longest = max(len(n) for n in rows)
    cell_w = max(0.7, 0.085 * longest + 0.3)
    geo = _Grid(dx=(cell_w + max(0.45, cell_w * 0.6)) * PT, dy=ROW_GAP * PT, hw=cell_w * PT / 2,
                hh=CELL_H * PT / 2, cols=T, rows=len(rows))
    dt = spec.time.dt_ms

    g = PinnedDigraph(name=f"{spec.name}_unrolled", engine="neato",
                      comment=f"tnnspec unrolled graph of {spec.name}, {T} steps; "
                              "positions are final: lay out with  neato -n2 -Tsvg")
    g.attr(splines="false", outputorder="edgesfirst", fontname=FONT, fontsize="16",
           label=f"{spec.name} unrolled over {T} steps of {dt:g} ms", labelloc="t")
    g.attr("node", fontname=FONT, fontsize="10", shape="box", style="rounded,filled", width=f"{cell_w:.3f}",
           height=f"{CELL_H}", fixedsize="true")
    g.attr("edge", arrowsize=str(ARROW_SIZE))

    states = cell_states(spec, plan)
    blank_frames = False
    for r, node in enumerate(rows):
        for t in range(T):
            pos = geo.pos(t, r)
            if node in spec.inputs:
                shown = plan.frames[node][t].kind != "blank"
                blank_frames |= not shown
                attrs = dict(fillcolor=INPUT_FILL, color=INPUT_BORDER) if shown else \
                    dict(fillcolor="white", color=INPUT_BORDER, fontcolor="#999999")
                g.node(cell_name(node, t), label=node, pos=pos, style="filled",
                       tooltip=f"input {node} at t={t}" + ("" if shown else ": blank frame"),
                       **{"class": "input" if shown else "input_blank"}, **attrs)
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
            g.node(cell_name(node, t), label=node, pos=pos, tooltip=tip, **{"class": state}, **attrs)

    for t in range(T):  # column headers
        x, y = geo.xy(t, len(rows) - 0.4)
        g.node(f"_step_{t}", label=f"t={t}\\n{t * dt:g} ms", shape="plaintext", style="", fontsize="10",
               fontcolor="#555555", width="0.8", height="0.4", pos=f"{x:.1f},{y:.1f}!", **{"class": "step"})

    # one arrow per delivered signal
    used: list[str] = []
    taken: dict[tuple[str, str], list[float]] = {}
    for t, step in enumerate(plan.schedule):
        for s in step:
            for read in s.reads:
                if read.zeros:  # a stand-in for a source without output: no cell to draw from
                    continue
                e = spec.edges[read.edge]
                attrs = edge_style(spec, read.edge, weights=False)
                used.append("lateral_between" if e.type == "lateral" and e.source != e.target else e.type)
                tail, head = cell_name(read.source, read.at), cell_name(s.area, t)
                siblings = taken.setdefault((tail, head), [])
                bow, path = geo.route((read.at, row_of[read.source]), (t, row_of[s.area]), siblings,
                                      ARROW_LENGTH.get(attrs["arrowhead"], 1.0) * 10 * ARROW_SIZE)
                siblings.append(bow)
                g.edge(tail, head, id=read_edge_id(read.name, t), pos=path,
                       tooltip=f"{read.name}: {read.source}@t{read.at} -> {s.area}@t{t} ({e.type})",
                       **{"class": e.type}, **attrs)

    if legend:
        early = {spec.areas[a].before_arrival for (a, _), state in states.items() if state == "zero_drive"}
        _legend(g, used, x0=T * geo.dx - geo.hw + 24, top=(len(rows) - 1) * geo.dy, early=early,
                cells=[state for state in ("active", "zero_drive", "silent") if state in states.values()],
                blank=blank_frames)
    return g


class _Grid:
    """Cell centres at (col * dx, row * dy) in points; cells are hw x hh half-size boxes."""

    def __init__(self, dx: float, dy: float, hw: float, hh: float, cols: int, rows: int):
        self.dx, self.dy, self.hw, self.hh, self.cols, self.rows = dx, dy, hw, hh, cols, rows

    def xy(self, col: float, row: float) -> tuple[float, float]:
        return col * self.dx, row * self.dy

    def pos(self, col: int, row: int) -> str:
        x, y = self.xy(col, row)
        return f"{x:.1f},{y:.1f}!"

    def _inside(self, x: float, y: float, col: int, row: int, pad: float) -> bool:
        cx, cy = self.xy(col, row)
        return abs(x - cx) <= self.hw + pad and abs(y - cy) <= self.hh + pad

    def _overlap(self, pts, ends: set) -> float:
        """The cost of crossing cells other than ``ends``: per cell crossed, 1 when the path
        only grazes it, rising to 16 when it goes through its centre (over the label)."""
        depth: dict[tuple[int, int], float] = {}
        for x, y in pts:
            col, row = round(x / self.dx), round(y / self.dy)
            if 0 <= col < self.cols and 0 <= row < self.rows and (col, row) not in ends \
                    and self._inside(x, y, col, row, pad=-1.0):
                cx, cy = self.xy(col, row)
                d = max(0.0, 1 - max(abs(x - cx) / self.hw, abs(y - cy) / self.hh))
                depth[col, row] = max(depth.get((col, row), 0.0), d)
        return sum(1 + 15 * d for d in depth.values())

    def route(self, a: tuple[int, int], b: tuple[int, int], siblings: list[float],
              arrow_len: float) -> tuple[float, str]:
        """An arrow from cell ``a`` to cell ``b`` (col, row), bowed sideways by the offset that
        best trades crossing other cells against bending (0 = straight), keeping clear of
        ``siblings`` (bows already used between the same two cells). Returns (bow, edge pos)."""
        P, Q = self.xy(*a), self.xy(*b)
        length = math.dist(P, Q)
        nx_, ny_ = -(Q[1] - P[1]) / length, (Q[0] - P[0]) / length  # left normal
        M = ((P[0] + Q[0]) / 2, (P[1] + Q[1]) / 2)
        limit = max(4 * BOW_STEP, 0.45 * length)
        candidates = [0.0] + [sign * k * BOW_STEP for k in range(1, int(limit / BOW_STEP) + 1) for sign in (1, -1)]
        best = None
        for bow in candidates:
            if any(abs(bow - s) < BOW_STEP * 0.9 for s in siblings):
                continue
            C = (M[0] + 2 * bow * nx_, M[1] + 2 * bow * ny_)  # the curve's midpoint is bow off the chord
            hits = self._overlap([_quad(P, C, Q, i / 96) for i in range(1, 96)], {a, b})
            cost = 10 * hits + abs(bow) / BOW_STEP
            if best is None or cost < best[0]:
                best = (cost, bow)
            if hits == 0:
                break  # candidates grow in |bow|: nothing later is cheaper
        chosen = best[1] if best else (max(siblings, default=0.0) + BOW_STEP)
        C = (M[0] + 2 * chosen * nx_, M[1] + 2 * chosen * ny_)

        def in_box(s: float, cell) -> bool:
            return self._inside(*_quad(P, C, Q, s), *cell, pad=1.0)

        s0 = _boundary(lambda s: in_box(s, a), 0.0, 0.5)         # leaves the tail cell
        s1 = _boundary(lambda s: not in_box(s, b), 0.5, 1.0)     # enters the head cell
        tip = _quad(P, C, Q, s1)
        sb = _boundary(lambda s: math.dist(_quad(P, C, Q, s), tip) > arrow_len, s0, s1)  # arrow base
        A0, A2 = _quad(P, C, Q, s0), _quad(P, C, Q, sb)
        d0 = _dquad(P, C, Q, s0)
        A1 = (A0[0] + (sb - s0) / 2 * d0[0], A0[1] + (sb - s0) / 2 * d0[1])
        c1 = (A0[0] + 2 / 3 * (A1[0] - A0[0]), A0[1] + 2 / 3 * (A1[1] - A0[1]))
        c2 = (A2[0] + 2 / 3 * (A1[0] - A2[0]), A2[1] + 2 / 3 * (A1[1] - A2[1]))
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (A0, c1, c2, A2))
        return chosen, f"e,{tip[0]:.1f},{tip[1]:.1f} {pts}"


def _quad(P, C, Q, s: float) -> tuple[float, float]:
    u = 1 - s
    return (u * u * P[0] + 2 * u * s * C[0] + s * s * Q[0], u * u * P[1] + 2 * u * s * C[1] + s * s * Q[1])


def _dquad(P, C, Q, s: float) -> tuple[float, float]:
    return (2 * (1 - s) * (C[0] - P[0]) + 2 * s * (Q[0] - C[0]), 2 * (1 - s) * (C[1] - P[1]) + 2 * s * (Q[1] - C[1]))


def _boundary(true_before, lo: float, hi: float) -> float:
    """The s in [lo, hi] where ``true_before(s)`` turns false (first change found by scanning)."""
    n = 32
    prev = lo
    for i in range(1, n + 1):
        s = lo + (hi - lo) * i / n
        if not true_before(s):
            a, b = prev, s
            for _ in range(30):
                mid = (a + b) / 2
                a, b = (mid, b) if true_before(mid) else (a, mid)
            return (a + b) / 2
        prev = s
    return hi


def _legend(g: graphviz.Digraph, used: list[str], *, x0: float, top: float, cells: list[str],
            blank: bool, early: set[str] = frozenset({"zero_drive"})) -> None:
    """``early``: the ``before_arrival`` modes of the cells drawn as computing before arrival."""
    entries: list[tuple[str, str, dict]] = []
    for t in EDGE_TYPES:
        if t in used:
            entries.append((t, "lateral (same area)" if t == "lateral" else t, EDGE_STYLE[t]))
        if t == "lateral" and "lateral_between" in used:
            entries.append(("lateral_between", "lateral (between areas)", LATERAL_BETWEEN))
    y = top
    step = 26.0
    line = 40.0
    for key, text, attrs in entries:
        a, b = f"_legend_{key}_a", f"_legend_{key}_b"
        g.node(a, label="", shape="point", style="invis", width="0.01", height="0.01", fixedsize="true",
               pos=f"{x0:.1f},{y:.1f}!")
        g.node(b, label="", shape="point", style="invis", width="0.01", height="0.01", fixedsize="true",
               pos=f"{x0 + line:.1f},{y:.1f}!")
        _text(g, f"_legend_{key}_t", text, x0 + line + 12, y)
        tip_len = ARROW_LENGTH.get(attrs["arrowhead"], 1.0) * 10 * ARROW_SIZE
        g.edge(a, b, pos=f"e,{x0 + line:.1f},{y:.1f} {x0:.1f},{y:.1f} {x0 + 10:.1f},{y:.1f} "
                         f"{x0 + line - tip_len - 10:.1f},{y:.1f} {x0 + line - tip_len:.1f},{y:.1f}",
               **{"class": "legend"}, **attrs)
        y -= step
    y -= 8
    samples = {
        "active": ("computes", dict(fillcolor="white", color="#555555")),
        "zero_drive": ({"zero_drive": "zero drive", "zero_input": "zero inputs"}.get(
            next(iter(early)) if len(early) == 1 else "", "computes") + " (before arrival)",
            dict(fillcolor="white", color="#555555", style="rounded,dashed,filled")),
        "silent": ("silent (output 0)", dict(fillcolor=SILENT_FILL, color=SILENT_BORDER)),
        "input": ("input frame", dict(fillcolor=INPUT_FILL, color=INPUT_BORDER, style="filled")),
        "input_blank": ("blank input frame", dict(fillcolor="white", color=INPUT_BORDER, style="filled")),
    }
    for key in cells + ["input"] + (["input_blank"] if blank else []):
        text, attrs = samples[key]
        g.node(f"_legend_cell_{key}", label="", width="0.36", height="0.22",
               pos=f"{x0 + line / 2:.1f},{y:.1f}!", **{"class": "legend"}, **attrs)
        _text(g, f"_legend_cell_{key}_t", text, x0 + line + 12, y)
        y -= step


def _text(g: graphviz.Digraph, name: str, text: str, left: float, y: float) -> None:
    """A left-aligned plaintext label starting at ``left`` (nodes are centred on ``pos``)."""
    width = (6.5 * len(text) + 10) / PT
    g.node(name, label=text + "\\l", shape="plaintext", style="", fontsize="10", fontcolor="#333333",
           width=f"{width:.2f}", height="0.2", fixedsize="true",
           pos=f"{left + width * PT / 2:.1f},{y:.1f}!")
