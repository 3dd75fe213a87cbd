"""Graph-semantic validation (tier 2): what pydantic alone cannot see.

Endpoints exist, names are unique, delay-0 edges form no loop, every area is reachable from
an input, readouts read reachable areas, edge types agree with hierarchy levels (warnings),
and shapes agree at every combine.
"""

from __future__ import annotations

from collections import Counter

import networkx as nx
from pydantic import ValidationError

from ..spec.diagnostics import Report, did_you_mean
from ..spec.errors import dotted
from ..spec.load import SourceMap
from ..spec.models import BOTTOM_UP, Spec
from .shapes import Shapes, infer_shapes
from .timing import arrival_steps, edge_delays, graph

TOP_DOWN = ("feedback", "attention")


def edge_names(spec: Spec) -> list[str]:
    """Module names of the edges: ``name``, else ``<source>__<target>``, else (when that pair
    carries several edges) ``<source>__<target>__<type>``."""
    base = [e.name or f"{e.source}__{e.target}" for e in spec.edges]
    counts = Counter(base)
    return [b if e.name or counts[b] == 1 else f"{b}__{e.type}" for b, e in zip(base, spec.edges)]


def check(spec: Spec, source: SourceMap, report: Report) -> tuple[dict, Shapes | None]:
    """Run all semantic checks, adding diagnostics to ``report``; returns (arrival, shapes)."""
    where = source.where
    ok_edges = True
    for name in spec.inputs:
        if name in spec.areas:
            report.error(where(("areas", name), key=True),
                         f"areas.{name}: '{name}' is also an input name; names must be unique")
            ok_edges = False
    for i, e in enumerate(spec.edges):
        if e.source not in spec.areas and e.source not in spec.inputs:
            known = list(spec.areas) + list(spec.inputs)
            report.error(where(("edges", i, "source")),
                         f"edges[{i}].source: unknown area or input '{e.source}'{_hint(e.source, known)}")
            ok_edges = False
        if e.target not in spec.areas:
            hint = " (inputs cannot be targets)" if e.target in spec.inputs else _hint(e.target, spec.areas)
            report.error(where(("edges", i, "target")), f"edges[{i}].target: unknown area '{e.target}'{hint}")
            ok_edges = False
    names = edge_names(spec)
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if n in seen:
            report.error(where(("edges", i)), f"edges[{i}]: module name '{n}' is already used by edges[{seen[n]}]; "
                                              "give one of them a distinct 'name'")
        seen.setdefault(n, i)
    for rname, r in spec.readouts.items():
        if r.source not in spec.areas:
            report.error(where(("readouts", rname, "source")),
                         f"readouts.{rname}.source: unknown area '{r.source}'{_hint(r.source, spec.areas)}")
    _check_neural(spec, names, where, report)
    if not ok_edges:
        return {}, None

    delays = edge_delays(spec)
    _check_zero_delay_loops(spec, delays, where, report)
    _check_levels(spec, where, report)
    arrival = arrival_steps(spec, delays)
    for name in spec.areas:
        if arrival[name] is None:
            report.error(where(("areas", name), key=True),
                         f"areas.{name}: unreachable — no path of feedforward, lateral, feedback or skip edges "
                         "leads to it from any input")
    for rname, r in spec.readouts.items():
        if r.source in spec.areas and arrival[r.source] is None:
            report.error(where(("readouts", rname, "source")),
                         f"readouts.{rname}.source: area '{r.source}' is unreachable from any input")
    if spec.time.steps is not None:
        for rname, r in spec.readouts.items():
            a = arrival.get(r.source)
            if a is not None and a >= spec.time.steps:
                report.warning(where(("readouts", rname, "source")),
                               f"readouts.{rname}: input first reaches '{r.source}' at step {a}, but time.steps "
                               f"is {spec.time.steps}; the readout never sees the input")
    _check_cells(spec, where, report)
    shapes = infer_shapes(spec, arrival)
    for p in shapes.problems:
        report.error(where(p.path, key=p.at_key), f"{dotted(list(p.path))}: {p.message}")
    return arrival, shapes


def _check_neural(spec: Spec, names: list[str], where, report: Report) -> None:
    """The ``neural:`` section names areas that exist, and edge types or names to fit that exist."""
    if spec.neural is None:
        return
    for region, r in spec.neural.regions.items():
        if r.area not in spec.areas:
            report.error(where(("neural", "regions", region, "area")),
                         f"neural.regions.{region}.area: unknown area '{r.area}'{_hint(r.area, spec.areas)}")
    train = spec.neural.dynamics.train
    if isinstance(train, list):
        known = set(names) | {e.type for e in spec.edges}
        for i, item in enumerate(train):
            if item not in known:
                report.error(where(("neural", "dynamics", "train", i)),
                             f"neural.dynamics.train[{i}]: '{item}' is neither an edge type used in this graph "
                             f"nor an edge name{_hint(item, sorted(known))}")


def _hint(name: str, known) -> str:
    known = list(known)
    return did_you_mean(name, known) or (f"; known: {', '.join(known)}" if known else "")


def _check_cells(spec: Spec, where, report: Report) -> None:
    """Cells whose parameters depend on the spec's time step (e.g. leaky: dt <= tau)."""
    for name, area in spec.areas.items():
        resolve = getattr(area.cell, "resolved", None)
        if resolve is None:
            continue
        try:
            resolve(spec.time.dt_ms)
        except ValidationError as exc:
            for err in exc.errors():
                msg = err["msg"].removeprefix("Value error, ")
                report.error(where(("areas", name, "cell")),
                             f"areas.{name}.cell: {msg} (dt_ms {spec.time.dt_ms:g} from time.dt_ms)")


def _check_zero_delay_loops(spec: Spec, delays, where, report: Report) -> None:
    g = nx.MultiDiGraph()
    for i, e in enumerate(spec.edges):
        if delays[i] == 0:
            g.add_edge(e.source, e.target, key=i)
    reported: set[frozenset] = set()
    for component in nx.strongly_connected_components(g):
        nodes = set(component)
        if len(nodes) == 1:
            (n,) = nodes
            if not g.has_edge(n, n):
                continue
        cycle = nx.find_cycle(g.subgraph(nodes))
        key = frozenset(nodes)
        if key in reported:
            continue
        reported.add(key)
        loop = " -> ".join([c[0] for c in cycle] + [cycle[0][0]])
        first = cycle[0][2]
        report.error(where(("edges", first)),
                     f"edges[{first}]: loop of delay-0 edges {loop}: within one step it has no first area; "
                     "give at least one of these edges a delay >= 1")


def _check_levels(spec: Spec, where, report: Report) -> None:
    def level(n):
        return 0.0 if n in spec.inputs else spec.areas[n].level

    for i, e in enumerate(spec.edges):
        if e.source not in spec.areas and e.source not in spec.inputs:
            continue
        ls, lt = level(e.source), level(e.target)
        if ls is None or lt is None:
            continue
        if e.type in BOTTOM_UP and lt <= ls:
            report.warning(where(("edges", i, "type")),
                           f"edges[{i}]: {e.type} edge {e.source} -> {e.target} does not go up the hierarchy "
                           f"(level {ls:g} -> {lt:g}); did you mean feedback or lateral?")
        elif e.type in TOP_DOWN and lt >= ls and e.source != e.target:
            report.warning(where(("edges", i, "type")),
                           f"edges[{i}]: {e.type} edge {e.source} -> {e.target} does not go down the hierarchy "
                           f"(level {ls:g} -> {lt:g})")
        elif e.type == "lateral" and e.source != e.target and ls != lt:
            report.warning(where(("edges", i, "type")),
                           f"edges[{i}]: lateral edge {e.source} -> {e.target} joins different levels "
                           f"({ls:g} -> {lt:g})")


__all__ = ["check", "edge_names", "graph"]
