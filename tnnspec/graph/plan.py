"""The plan: a small, printable IR saying what runs at which step, reading which buffer.

``build_plan(spec, steps)`` does all the graph analysis (delays, arrival, delivery, order,
buffer lengths, shapes); the compiler only executes it. For each step the plan lists, in
evaluation order, the areas that compute and, for each, the edges that deliver a term and
the step each reads from. Areas that do not appear at a step are silent (exactly zero).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import networkx as nx

from ..spec.models import BOTTOM_UP, DRIVING, Spec
from .checks import edge_names
from .shapes import Shapes, infer_shapes
from .timing import active, arrival_steps, default_steps, delivers, edge_delays, stands_in


@dataclass(frozen=True)
class Read:
    """Edge ``edge`` delivers into its target the output of ``source`` from step ``at``; with
    ``zeros``, its transform of an all-zero output of ``source`` instead (a ``zero_input`` target
    whose source has no output at ``at``: before step 0, or silent)."""

    edge: int
    name: str
    source: str
    role: str  # 'bottom_up', 'recurrent' (lateral/feedback), 'gain', 'relative_gain', 'divide'
    at: int
    reuse: bool = False  # the term equals the one this edge delivered at the previous step
    zeros: bool = False  # the transform of zeros shaped like the source's output (rule 4)


@dataclass(frozen=True)
class AreaStep:
    """Area ``area`` computes at this step from the terms in ``reads`` (empty: zero drive).
    With ``reuse`` its output is provably the previous step's (time-invariant hoisting): the
    executor takes that output instead of computing it again. A read with ``reuse`` delivers
    exactly the term its edge delivered at the previous step (time-invariant source, pure
    transform), which the executor keeps instead of recomputing. With ``fold`` the area is
    stateless and reads only sequence inputs, so all its steps run as one batched call. With
    ``constant`` the update depends on no input (zero drives, or terms and state of such
    updates only): its value is the same for every sample of a batch. With ``drive_reuse``
    every read is reused and the edges are those of the previous step, so the drive equals the
    previous step's: the part of a cell's update that depends on the drive alone (a conv RNN's
    input conv) is the one computed then."""

    area: str
    reads: tuple[Read, ...]
    reuse: bool = False
    fold: bool = False  # computed for all its steps in one batched call before the loop
    constant: bool = False  # input-independent: the executor may compute it once for the batch
    drive_reuse: bool = False  # the drive is the previous step's (every read reused)


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
        """Number of area computations over the whole run (reused outputs not counted)."""
        return sum(1 for s in self.schedule for a in s if not a.reuse)

    @cached_property
    def folded(self) -> dict[str, tuple[int, ...]]:
        """Time-folded areas and the steps they compute at."""
        out: dict[str, list[int]] = {}
        for t, step in enumerate(self.schedule):
            for a in step:
                if a.fold:
                    out.setdefault(a.area, []).append(t)
        return {a: tuple(ts) for a, ts in out.items()}

    @cached_property
    def reused(self) -> int:
        """Number of area updates replaced by the previous step's output."""
        return sum(1 for s in self.schedule for a in s if a.reuse)

    @cached_property
    def constant(self) -> int:
        """Number of computed area updates that depend on no input (the same for every sample)."""
        return sum(1 for s in self.schedule for a in s if a.constant and not a.reuse)

    @cached_property
    def reused_terms(self) -> int:
        """Number of edge terms (transforms) of computed area updates taken from the previous step."""
        return sum(1 for s in self.schedule for a in s if not a.reuse for r in a.reads if r.reuse)

    @cached_property
    def reused_drives(self) -> int:
        """Number of computed area updates whose drive is the previous step's (cells' input terms reused)."""
        return sum(1 for s in self.schedule for a in s if a.drive_reuse and not a.reuse)

    @cached_property
    def kept_drives(self) -> frozenset[str]:
        """Areas whose drive is reused at some step (the executor keeps their cells' input terms)."""
        return frozenset(a.area for s in self.schedule for a in s if a.drive_reuse)

    @cached_property
    def kept_terms(self) -> frozenset[int]:
        """Edges whose delivered term the executor keeps for a later step to reuse."""
        return frozenset(r.edge for s in self.schedule for a in s for r in a.reads if r.reuse)

    @cached_property
    def kept(self) -> frozenset[int | str]:
        """What the executor keeps for a later step: edge terms (by edge index, ``kept_terms``)
        and cells' input terms (by area name, ``kept_drives``)."""
        return self.kept_terms | self.kept_drives

    def __str__(self) -> str:
        lines = [f"plan: {self.steps} steps, {len(self.order)} areas, {self.work} area updates"
                 + (f" ({self.reused} more reused: time-invariant)" if self.reused else ""),
                 "order within a step: " + " -> ".join(self.order),
                 "arrival: " + ", ".join(f"{a}@{'never' if s is None else s}" for a, s in self.arrival.items())]
        for t, step in enumerate(self.schedule):
            lines.append(f"t={t}:")
            active_areas = {s.area for s in step}
            for s in step:
                terms = ", ".join(f"{r.name}[" + ("zeros" if r.zeros else f"{r.source}@t{r.at}") + "]"
                                  + ("" if r.role in ("bottom_up", "recurrent") else f"({r.role})")
                                  + (" (reused)" if r.reuse else "") for r in s.reads)
                drive = terms or "zero drive"
                lines.append(f"  {s.area:<12} <- " + ("same as previous step" if s.reuse else drive)
                             + (" (time-folded)" if s.fold else "")
                             + (" (drive reused)" if s.drive_reuse and not s.reuse else "")
                             + (" (input-independent)" if s.constant and not s.reuse else ""))
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


def prune(plan: Plan, spec: Spec, demand: set[tuple[str, int]]) -> Plan:
    """The plan restricted to the area updates that can reach ``demand`` ((area, step) pairs):
    a backward walk over the reads, through cell state (an area with state needs all its
    earlier updates) and reused outputs. Outputs of the pruned plan at demanded steps equal
    the full plan's; updates nobody can see are not computed (and their probes not called)."""
    needed = set(demand)
    stateful = {a for a, area in spec.areas.items() if area.cell.name != "identity"}
    for t in range(plan.steps - 1, -1, -1):
        for s in reversed(plan.schedule[t]):  # later areas in a step may read earlier ones
            if (s.area, t) not in needed:
                continue
            if s.area in stateful or s.reuse:
                needed.update((s.area, u) for u in range(t))
            elif any(r.reuse for r in s.reads):  # the kept term is computed at an earlier update
                needed.add((s.area, t - 1))
            needed.update((r.source, r.at) for r in s.reads if not r.zeros)
    schedule = tuple(tuple(s for s in step if (s.area, t) in needed) for t, step in enumerate(plan.schedule))
    return replace(plan, schedule=schedule, order=plan.order)


def _foldable(spec: Spec, schedule, pure, incoming) -> set[str]:
    """Areas whose every step can be computed up front in one batched call: stateless (pure),
    not multiplicative, and at every step they compute, driven by all their incoming edges and
    only by sequence inputs."""
    sequences = {n for n, i in spec.inputs.items() if i.schedule.type == "sequence"}
    steps: dict[str, list[AreaStep]] = {}
    for step in schedule:
        for s in step:
            steps.setdefault(s.area, []).append(s)
    return {a for a, ss in steps.items()
            if pure[a] and spec.areas[a].combine != "multiplicative"
            and all(len(s.reads) == len(incoming[a]) and s.reads
                    and all(r.source in sequences and r.role == "bottom_up" and not r.zeros for r in s.reads)
                    for s in ss)}


def _pure_ops(chain) -> bool:
    """An op chain whose output depends only on its input: no op that differs between calls
    (dropout) or learns from each call (batch norm statistics)."""
    return not any(e.op_name == "dropout" or (e.op_name == "norm" and e.op.type == "batch") for e in chain)


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
    incoming: dict[str, list[int]] = {a: [] for a in spec.areas}
    for i, e in enumerate(spec.edges):
        incoming[e.target].append(i)
    # driving terms first (in file order), then gains, then divisive terms
    rank = {"bottom_up": 0, "recurrent": 0, "gain": 1, "relative_gain": 1, "divide": 2}
    for a in incoming:
        incoming[a].sort(key=lambda i: rank[_role(spec.edges[i])])
    history: dict[str, int] = {}
    schedule = []
    same = {n: [False] * T for n in list(spec.inputs) + list(spec.areas)}  # output(t) == output(t - 1)
    for name, inp in spec.inputs.items():
        sched = inp.schedule
        for t in range(1, T):
            same[name][t] = sched.type == "static" or (sched.type == "on_off" and t not in (sched.on, sched.off))
    pure_edge = [_pure_ops(e.transform) for e in spec.edges]
    # an area whose output depends only on what it reads this step: no cell state, pure ops and edges
    pure = {a: area.cell.name == "identity" and _pure_ops(area.ops) and all(pure_edge[i] for i in incoming[a])
            for a, area in spec.areas.items()}
    previous: dict[str, AreaStep] = {}
    # input-independent updates: (node, step) -> bool; silent outputs are zero, an input is
    # constant only while an on_off schedule shows its blank
    constant: dict[tuple[str, int], bool] = {
        (name, t): inp.schedule.type == "on_off" and not (
            inp.schedule.on <= t and (inp.schedule.off is None or t < inp.schedule.off))
        for name, inp in spec.inputs.items() for t in range(T)}
    stateful = {a for a, area in spec.areas.items() if area.cell.name != "identity"}
    state_constant = {a: True for a in spec.areas}
    for t in range(T):
        step = []
        for a in order:
            if not active(spec, arrival, a, t):
                previous.pop(a, None)
                continue
            reads = []
            for i in incoming[a]:
                delivered = delivers(spec, arrival, i, delays[i], t)
                if delivered or stands_in(spec, arrival, i, delays[i], t):
                    reads.append(Read(i, names[i], spec.edges[i].source, _role(spec.edges[i]), t - delays[i],
                                      zeros=not delivered))
            reads = tuple(reads)
            before = previous.get(a)
            invariant = [before is not None and not r.zeros and r.at >= 1 and same[r.source][r.at]
                         and any(b.edge == r.edge and not b.zeros for b in before.reads) for r in reads]
            reuse = (pure[a] and before is not None and [r.edge for r in before.reads] == [r.edge for r in reads]
                     and all(invariant))
            if reuse:
                same[a][t] = True
                history[a] = max(history.get(a, 0), 1)
            else:  # edge-level hoisting: terms of unchanged sources through pure transforms
                reads = tuple(replace(r, reuse=True) if inv and pure_edge[r.edge] else r
                              for r, inv in zip(reads, invariant))
            for r in reads:
                if not r.zeros:
                    history[r.source] = max(history.get(r.source, 0), t - r.at)
            const = (all(r.zeros or constant.get((r.source, r.at), True) for r in reads)
                     and (state_constant[a] or a not in stateful))
            constant[(a, t)] = state_constant[a] = const
            drive_reuse = (not reuse and bool(reads) and all(r.reuse for r in reads)
                           and [r.edge for r in before.reads] == [r.edge for r in reads])
            previous[a] = AreaStep(a, reads, reuse, constant=const, drive_reuse=drive_reuse)
            step.append(previous[a])
        schedule.append(tuple(step))
    folded = _foldable(spec, schedule, pure, incoming)
    schedule = [tuple(replace(s, fold=True) if s.area in folded else s for s in step) for step in schedule]
    return Plan(T, order, arrival, tuple(delays), tuple(names), history, tuple(schedule),
                infer_shapes(spec, arrival))
