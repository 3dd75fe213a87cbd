"""The plan: a small, printable IR saying what runs at which step, reading which buffer.

``build_plan(spec, steps)`` does all the graph analysis (delays, arrival, delivery, order,
buffer lengths, shapes); the compiler only executes it. For each step the plan lists, in
evaluation order, the areas that compute and, for each, the edges that deliver a term and
the step each reads from. Areas that do not appear at a step are silent (exactly zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from ..spec.models import BOTTOM_UP, DRIVING, Spec
from .checks import edge_names
from .shapes import Shapes, infer_shapes
from .timing import active, arrival_steps, default_steps, delivers, edge_delays


@dataclass(frozen=True)
class Read:
    """Edge ``edge`` delivers into its target the output of ``source`` from step ``at``."""

    edge: int
    name: str
    source: str
    role: str  # 'bottom_up', 'recurrent' (lateral/feedback), 'gain', 'relative_gain', 'divide'
    at: int


@dataclass(frozen=True)
class AreaStep:
    """Area ``area`` computes at this step from the terms in ``reads`` (empty: zero drive)."""

    area: str
    reads: tuple[Read, ...]


@dataclass(frozen=True)
class Plan:
    steps: int
    order: tuple[str, ...]  # evaluation order of areas within a step
    arrival: dict[str, int | None]
    delays: tuple[int, ...]
    edge_names: tuple[str, ...]
    history: dict[str, int]  # how many past steps of each node's output must be kept
    schedule: tuple[tuple[AreaStep, ...], ...]
    shapes: Shapes

    @cached_property
    def work(self) -> int:
        """Number of area computations over the whole run."""
        return sum(len(s) for s in self.schedule)

    def __str__(self) -> str:
        lines = [f"plan: {self.steps} steps, {len(self.order)} areas, {self.work} area updates",
                 "order within a step: " + " -> ".join(self.order),
                 "arrival: " + ", ".join(f"{a}@{'never' if s is None else s}" for a, s in self.arrival.items())]
        for t, step in enumerate(self.schedule):
            lines.append(f"t={t}:")
            active_areas = {s.area for s in step}
            for s in step:
                terms = ", ".join(f"{r.name}[{r.source}@t{r.at}]" + ("" if r.role in ("bottom_up", "recurrent")
                                                                     else f"({r.role})") for r in s.reads)
                drive = terms or "zero drive"
                lines.append(f"  {s.area:<12} <- {drive}")
            silent = [a for a in self.order if a not in active_areas]
            if silent:
                lines.append(f"  silent: {', '.join(silent)}")
        return "\n".join(lines)


def _role(edge) -> str:
    if edge.type in BOTTOM_UP:
        return "bottom_up"
    if edge.type in DRIVING:
        return "recurrent"
    if edge.type == "attention":
        return edge.mode
    return "divide"


def evaluation_order(spec: Spec, delays) -> tuple[str, ...]:
    """Areas in a topological order of the delay-0 edges (ties: hierarchy level, then file order)."""
    g = nx.DiGraph()
    g.add_nodes_from(spec.areas)
    for i, e in enumerate(spec.edges):
        if delays[i] == 0 and e.source in spec.areas and e.target != e.source:
            g.add_edge(e.source, e.target)
    rank = {name: (area.level if area.level is not None else 0.0, i)
            for i, (name, area) in enumerate(spec.areas.items())}
    return tuple(nx.lexicographical_topological_sort(g, key=lambda n: rank[n]))


def build_plan(spec: Spec, steps: int | None = None) -> Plan:
    """The plan for ``steps`` steps (default: the spec's horizon). Assumes a validated spec."""
    delays = edge_delays(spec)
    arrival = arrival_steps(spec, delays)
    T = steps if steps is not None else default_steps(spec, arrival)
    if T < 1:
        raise ValueError(f"steps must be >= 1, got {T}")
    order = evaluation_order(spec, delays)
    names = edge_names(spec)
    incoming = {a: [i for i, e in enumerate(spec.edges) if e.target == a] for a in spec.areas}
    # driving terms first (in file order), then gains, then divisive terms
    rank = {"bottom_up": 0, "recurrent": 0, "gain": 1, "relative_gain": 1, "divide": 2}
    for a in incoming:
        incoming[a].sort(key=lambda i: rank[_role(spec.edges[i])])
    history: dict[str, int] = {}
    schedule = []
    for t in range(T):
        step = []
        for a in order:
            if not active(spec, arrival, a, t):
                continue
            reads = tuple(Read(i, names[i], spec.edges[i].source, _role(spec.edges[i]), t - delays[i])
                          for i in incoming[a] if delivers(spec, arrival, i, delays[i], t))
            for r in reads:
                history[r.source] = max(history.get(r.source, 0), t - r.at)
            step.append(AreaStep(a, reads))
        schedule.append(tuple(step))
    return Plan(T, order, arrival, tuple(delays), tuple(names), history, tuple(schedule),
                infer_shapes(spec, arrival))
