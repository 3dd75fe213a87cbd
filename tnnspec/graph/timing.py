"""The time rules of tnnspec, each written once (docs/time.md explains them).

1. Delay of an edge: its ``delay`` (steps); else ``ceil(delay_ms / dt_ms)`` — a signal is never
   delivered earlier than its latency allows; else ``time.default_delay``.
2. Arrival step of an area: the earliest step at which any input can reach it through driving
   edges (feedforward, lateral, feedback, skip), honouring each edge's delay and ``from_step``.
3. Delivery: edge e (source s, delay d) delivers at step t iff t >= from_step, t - d >= 0 and s
   is active at t - d (inputs always are; an area is active from its arrival step, or from step 0
   when it is ``zero_drive`` or ``zero_input``).
4. Computation: an area computes at step t iff it is active at t; a silent area outputs exactly
   zero before its arrival step. Into a ``zero_input`` area, an edge that does not deliver at a
   step t >= from_step only because its source has no output at t - d (t - d < 0, or a silent
   source before its arrival) delivers its transform of an all-zero source output instead.
"""

from __future__ import annotations

import heapq
import math

import networkx as nx

from dataclasses import dataclass

from ..spec.models import BOTTOM_UP, DRIVING, Spec

PRESETS = {
    "biological": {t: 1 for t in ("feedforward", "lateral", "feedback", "skip", "attention", "normalization")},
    "sweep": {"feedforward": 0, "skip": 0, "lateral": 1, "feedback": 1, "attention": 1, "normalization": 1},
}
MS_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Lesions:
    """Rule 6: edges cut and areas silenced, each at some steps (``None``: every step).
    Plain tuples, hashable, so a plan can be cached per lesion set."""

    cut: tuple[tuple[int, frozenset[int] | None], ...] = ()  # (edge index, steps)
    silenced: tuple[tuple[str, frozenset[int] | None], ...] = ()  # (area, steps)

    def __bool__(self) -> bool:
        return bool(self.cut or self.silenced)

    def is_cut(self, edge: int, step: int) -> bool:
        return any(e == edge and (steps is None or step in steps) for e, steps in self.cut)

    def is_silenced(self, area: str, step: int) -> bool:
        return any(a == area and (steps is None or step in steps) for a, steps in self.silenced)

    def always_cut(self, edge: int) -> bool:
        return (edge, None) in self.cut

    def always_silenced(self, area: str) -> bool:
        return (area, None) in self.silenced


NO_LESIONS = Lesions()


def file_lesions(spec: Spec) -> Lesions:
    """The lesions written in the file: edges and areas with ``enabled: false``."""
    return Lesions(cut=tuple((i, None) for i, e in enumerate(spec.edges) if not e.enabled),
                   silenced=tuple((a, None) for a, area in spec.areas.items() if not area.enabled))


def shown(schedule, step: int) -> bool:
    """Rule 5: whether an input with this schedule shows its image (or frame) at ``step``;
    otherwise it shows its blank value (``on_off`` only)."""
    if schedule.type != "on_off":
        return True
    return schedule.start <= step and (schedule.stop is None or step < schedule.stop)


def ms_to_steps(delay_ms: float, dt_ms: float) -> int:
    """Milliseconds to steps: ``ceil(delay_ms / dt_ms)`` (with a 1e-9 tolerance for float noise)."""
    return max(0, math.ceil(delay_ms / dt_ms - MS_TOLERANCE))


def edge_delay(spec: Spec, index: int) -> int:
    """The delay in steps of edge ``index`` (rule 1)."""
    edge = spec.edges[index]
    if edge.delay is not None:
        return edge.delay
    if edge.delay_ms is not None:
        return ms_to_steps(edge.delay_ms, spec.time.dt_ms)
    default = spec.time.default_delay
    if isinstance(default, int):
        return default
    if isinstance(default, str):
        if edge.source in spec.inputs:
            return 0
        return PRESETS[default][edge.type]
    return default.get(edge.type, 0 if edge.source in spec.inputs else 1)


def edge_delays(spec: Spec) -> list[int]:
    return [edge_delay(spec, i) for i in range(len(spec.edges))]


def graph(spec: Spec, delays: list[int] | None = None) -> nx.MultiDiGraph:
    """The spec as a networkx MultiDiGraph: nodes are inputs and areas, edges keyed by index."""
    delays = edge_delays(spec) if delays is None else delays
    g = nx.MultiDiGraph()
    for name, inp in spec.inputs.items():
        g.add_node(name, kind="input", level=0.0)
    for name, area in spec.areas.items():
        g.add_node(name, kind="area", level=area.level)
    for i, e in enumerate(spec.edges):
        if e.source in g and e.target in g:
            g.add_edge(e.source, e.target, key=i, type=e.type, delay=delays[i], from_step=e.from_step)
    return g


def arrival_steps(spec: Spec, delays: list[int] | None = None,
                  lesions: Lesions = NO_LESIONS) -> dict[str, int | None]:
    """Rule 2: earliest step each node can be reached from an input (None: never).

    A Dijkstra search over the networkx graph where crossing edge e from a node reached at
    step a reaches its target at ``max(a + delay, from_step)`` — monotone in ``a``, so the
    greedy order is exact. O(E log V); no path enumeration. With lesions (rule 6), the first
    step from there at which the edge is not cut and its source not silenced (still monotone).
    """
    g = graph(spec, delays)
    best: dict[str, int] = {}
    heap = [(0, name) for name in spec.inputs]
    heapq.heapify(heap)
    while heap:
        step, node = heapq.heappop(heap)
        if node in best:
            continue
        best[node] = step
        for _, target, key, data in g.out_edges(node, keys=True, data=True):
            if data["type"] not in DRIVING or target in best:
                continue
            if lesions.always_cut(key) or (node in spec.areas and lesions.always_silenced(node)):
                continue
            t, d = max(step + data["delay"], data["from_step"]), data["delay"]
            while lesions.is_cut(key, t) or lesions.is_silenced(node, t - d):
                t += 1  # windows are finite sets of steps
            heapq.heappush(heap, (t, target))
    return {name: best.get(name) for name in list(spec.inputs) + list(spec.areas)}


def active(spec: Spec, arrival: dict[str, int | None], node: str, step: int,
           lesions: Lesions = NO_LESIONS) -> bool:
    """Rule 3/4/6: whether ``node`` produces a (possibly zero-driven) output at ``step``."""
    if step < 0:
        return False
    if node in spec.inputs:
        return True
    if lesions.is_silenced(node, step):
        return False
    area = spec.areas[node]
    if area.before_arrival != "silent":
        return True
    a = arrival[node]
    return a is not None and step >= a


def delivers(spec: Spec, arrival, index: int, delay: int, step: int, lesions: Lesions = NO_LESIONS) -> bool:
    """Rule 3/6: whether edge ``index`` delivers a term at ``step``."""
    edge = spec.edges[index]
    return (step >= edge.from_step and not lesions.is_cut(index, step)
            and active(spec, arrival, edge.source, step - delay, lesions))


def stands_in(spec: Spec, arrival, index: int, delay: int, step: int, lesions: Lesions = NO_LESIONS) -> bool:
    """Rule 4/6: whether edge ``index`` delivers its transform of an all-zero source output at
    ``step`` (its target is ``zero_input`` and only the source's missing output stops delivery)."""
    edge = spec.edges[index]
    return (spec.areas[edge.target].before_arrival == "zero_input" and step >= edge.from_step
            and not lesions.is_cut(index, step)
            and not active(spec, arrival, edge.source, step - delay, lesions))


def default_steps(spec: Spec, arrival: dict[str, int | None]) -> int:
    """T when ``time.steps`` is not given: latest arrival of a readout source (or any area) + 1."""
    if spec.time.steps is not None:
        return spec.time.steps
    names = [r.source for r in spec.readouts.values()] or list(spec.areas)
    reached = [arrival[n] for n in names if arrival.get(n) is not None]
    return (max(reached) if reached else 0) + 1


def is_bottom_up(edge_type: str) -> bool:
    return edge_type in BOTTOM_UP
