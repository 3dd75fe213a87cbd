"""The plan: a small, closed, printable IR of what runs at which step, reading what.

``build_plan(spec, steps)`` does all the graph analysis (delays, arrival, delivery, order,
buffer lengths, shapes, input frames, lesions) and returns a :class:`Plan` that holds
everything the interpreter (:class:`tnnspec.compile.Network`) needs: the interpreter never
reads the spec. For each step the plan lists, in evaluation order, the areas that compute;
for each, its combine mode, whether its cell starts from its initial state, and the edges
that deliver a term with the step each reads from. Areas that do not appear at a step are
silent (exactly zero). Each input has one :class:`Frame` per step.

The plain plan says what to compute. Optimisation passes (:mod:`tnnspec.compile.passes`)
rewrite it into a plan that computes the same values with less work — fields marked "set by
a pass" below are never set by :func:`build_plan`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

import networkx as nx

from ..spec.models import BOTTOM_UP, DRIVING, Spec
from .checks import edge_names
from .perturb import NO_PERTURBATIONS, Perturbations
from .shapes import Shapes, infer_shapes
from .timing import active, arrival_steps, default_steps, delivers, edge_delays, shown, stands_in


@dataclass(frozen=True)
class Read:
    """Edge ``edge`` delivers into its target the output of ``source`` from step ``at``; with
    ``zeros``, its transform of an all-zero output of ``source`` instead (a ``zero_input`` target
    whose source has no output at ``at``: before step 0, or silent). The term is multiplied by
    ``scale`` (a perturbation; the edge's own ``weight`` is applied by its module)."""

    edge: int
    name: str
    source: str
    role: str  # 'bottom_up', 'recurrent' (lateral/feedback), 'gain', 'relative_gain', 'divide'
    at: int
    zeros: bool = False  # the transform of zeros shaped like the source's output (rule 4)
    scale: float = 1.0  # a per-call perturbation of the term
    reuse: bool = False  # set by a pass: the transform is the one this edge computed at the previous step


@dataclass(frozen=True)
class AreaStep:
    """Area ``area`` computes at this step: it combines the terms in ``reads`` (empty: an
    all-zero drive) by ``combine``, updates its cell — from the cell's initial state when
    ``initial``, else from the state its previous update left — and applies its ops. With
    ``clamp`` its output is then replaced by the call's clamp value (its state is not)."""

    area: str
    reads: tuple[Read, ...]
    combine: str = "sum"  # 'sum', 'concat' (Plan.concat gives the slots) or 'multiplicative'
    initial: bool = False
    clamp: bool = False
    reuse: bool = False  # set by a pass: the output is exactly the previous step's
    drive_reuse: bool = False  # set by a pass: the drive is the previous step's (cells' input terms kept)
    constant: bool = False  # set by a pass: the update depends on no input (same for every sample)


@dataclass(frozen=True)
class Frame:
    """What an input shows at one step: its image (``image``), its frame t of a sequence
    (``frame``), or its blank value everywhere (``blank``)."""

    kind: str
    blank: float = 0.0

    def __str__(self) -> str:
        return {"image": "image", "frame": "frame t"}.get(self.kind, f"blank {self.blank:g}")


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
    frames: dict[str, tuple[Frame, ...]]  # input -> its frame at each step
    concat: dict[str, tuple[int, ...]]  # concat areas: their driving edges in stacking order
    readouts: dict[str, tuple[str, bool]]  # readout -> (source area, cumulative)
    heads: tuple[tuple[str, ...], ...]  # per step: the readouts whose head runs
    emit: tuple[int, ...] | None = None  # steps whose readouts are returned (None: every step)
    record: tuple[str, ...] = ()  # areas whose outputs are returned at every step
    stateful: frozenset[str] = frozenset()  # areas with a cell state
    pure_areas: frozenset[str] = frozenset()  # stateless areas whose output depends only on their reads
    pure_edges: frozenset[int] = frozenset()  # edges whose transform depends only on its input
    impure: frozenset[str] = frozenset()  # areas whose update has side effects (batch norm statistics
    # in training, in the cell, ops or incoming transforms): every update must run
    impure_heads: frozenset[str] = frozenset()  # readouts whose head has such side effects
    perturbations: Perturbations = NO_PERTURBATIONS
    passes: tuple[str, ...] = ()  # the passes that rewrote this plan, in order
    kept: frozenset = field(default=frozenset())  # set by a pass: edges (by index), areas (cells' input
    # terms, by name) and ("output", area) (outputs before the probe) the interpreter keeps for the next step
    pruned: frozenset = field(default=frozenset())  # set by a pass: (area, step) updates dropped as
    # unneeded (their outputs are never read; the interpreter gives them zeros, as silent ones)

    @cached_property
    def work(self) -> int:
        """Number of area computations over the whole run (reused outputs not counted)."""
        return sum(1 for s in self.schedule for a in s if not a.reuse)

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

    def __str__(self) -> str:
        lines = [f"plan: {self.steps} steps, {len(self.order)} areas, {self.work} area updates"
                 + (f" ({self.reused} more reused: time-invariant)" if self.reused else ""),
                 "order within a step: " + " -> ".join(self.order),
                 "arrival: " + ", ".join(f"{a}@{'never' if s is None else s}" for a, s in self.arrival.items())]
        if self.passes:
            lines.append("passes: " + ", ".join(self.passes))
        if self.perturbations:
            lines.append("perturbations: " + self.perturbations.describe(self.edge_names))
        if self.emit is not None or self.record:
            lines.append("returns: readouts at " + ("every step" if self.emit is None else
                                                     "steps " + ", ".join(map(str, self.emit)))
                         + (f"; areas {', '.join(self.record)} at every step" if self.record else ""))
        for t, step in enumerate(self.schedule):
            lines.append(f"t={t}:")
            for name, frames in self.frames.items():
                if frames[t].kind != "image" or any(f.kind != "image" for f in frames):
                    lines.append(f"  {name:<12} shows {frames[t]}")
            active_areas = {s.area for s in step}
            for s in step:
                terms = ", ".join(f"{r.name}[" + ("zeros" if r.zeros else f"{r.source}@t{r.at}") + "]"
                                  + ("" if r.role in ("bottom_up", "recurrent") else f"({r.role})")
                                  + (f" x{r.scale:g}" if r.scale != 1.0 else "")
                                  + (" (reused)" if r.reuse else "") for r in s.reads)
                drive = terms or "zero drive"
                if s.combine != "sum" and len(s.reads) > 1:
                    drive = f"{s.combine}({drive})"
                lines.append(f"  {s.area:<12} <- " + ("same as previous step" if s.reuse else drive)
                             + (" (drive reused)" if s.drive_reuse and not s.reuse else "")
                             + (" (input-independent)" if s.constant and not s.reuse else "")
                             + (" (clamped)" if s.clamp else ""))
            silent = [a for a in self.order if a not in active_areas and (a, t) not in self.pruned]
            if silent:
                lines.append(f"  silent: {', '.join(silent)}")
            unneeded = [a for a in self.order if (a, t) in self.pruned]
            if unneeded:
                lines.append(f"  not needed: {', '.join(unneeded)}")
            pruned = [r for r in self.readouts if r not in self.heads[t]]
            if pruned:
                lines.append(f"  no head: {', '.join(pruned)}")
        return "\n".join(lines)


def role(edge) -> str:
    if edge.type in BOTTOM_UP:
        return "bottom_up"
    if edge.type in DRIVING:
        return "recurrent"
    if edge.type == "attention":
        return edge.mode
    return "divide"


def pure_ops(chain) -> bool:
    """An op chain whose output depends only on its input (every op declares it:
    :meth:`~tnnspec.spec.components.OpParams.is_pure`)."""
    return all(e.op.is_pure() for e in chain)


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


def frames(spec: Spec, steps: int) -> dict[str, tuple[Frame, ...]]:
    """Each input's frame at each step (time rule 5, :func:`tnnspec.graph.timing.shown`)."""
    out = {}
    for name, inp in spec.inputs.items():
        sched = inp.schedule
        if sched.type == "sequence":
            out[name] = (Frame("frame"),) * steps
        else:
            out[name] = tuple(Frame("image") if shown(sched, t) else Frame("blank", float(sched.blank))
                              for t in range(steps))
    return out


def build_plan(spec: Spec, steps: int | None = None, perturbations: Perturbations = NO_PERTURBATIONS,
               emit: tuple[int, ...] | None = None, record: tuple[str, ...] = ()) -> Plan:
    """The plain plan for ``steps`` steps (default: the spec's horizon), with the file's lesions
    and ``perturbations`` (:mod:`tnnspec.graph.perturb`), returning readouts at the steps in
    ``emit`` (None: every step) and the areas in ``record``. Assumes a validated spec."""
    delays = edge_delays(spec)
    base_arrival = arrival_steps(spec, delays)  # the horizon and shapes do not depend on lesions
    T = steps if steps is not None else default_steps(spec, base_arrival)
    if T < 1:
        raise ValueError(f"steps must be >= 1, got {T}")
    perturbations = perturbations.with_file(spec)
    lesions = perturbations.lesions
    arrival = arrival_steps(spec, delays, lesions) if lesions else base_arrival
    order = evaluation_order(spec, delays)
    names = edge_names(spec)
    incoming: dict[str, list[int]] = {a: [] for a in spec.areas}
    for i, e in enumerate(spec.edges):
        incoming[e.target].append(i)
    # driving terms first (in file order), then gains, then divisive terms
    rank = {"bottom_up": 0, "recurrent": 0, "gain": 1, "relative_gain": 1, "divide": 2}
    for a in incoming:
        incoming[a].sort(key=lambda i: rank[role(spec.edges[i])])
    history: dict[str, int] = {}
    schedule = []
    stateful = frozenset(a for a, area in spec.areas.items() if area.cell.name != "identity")
    updated: set[str] = set()
    for t in range(T):
        step = []
        for a in order:
            if not active(spec, arrival, a, t, lesions):
                continue
            reads = []
            for i in incoming[a]:
                delivered = delivers(spec, arrival, i, delays[i], t, lesions)
                if delivered or stands_in(spec, arrival, i, delays[i], t, lesions):
                    reads.append(Read(i, names[i], spec.edges[i].source, role(spec.edges[i]), t - delays[i],
                                      zeros=not delivered, scale=perturbations.scale_at(i, t)))
                    if delivered:
                        history[spec.edges[i].source] = max(history.get(spec.edges[i].source, 0), delays[i])
            step.append(AreaStep(a, tuple(reads), spec.areas[a].combine, initial=a not in updated,
                                 clamp=perturbations.clamped(a, t)))
            updated.add(a)
        schedule.append(tuple(step))
    pure_edges = frozenset(i for i, e in enumerate(spec.edges) if pure_ops(e.transform))
    pure_areas = frozenset(a for a, area in spec.areas.items()
                           if a not in stateful and pure_ops(area.ops) and all(i in pure_edges for i in incoming[a]))
    impure = frozenset(a for a, area in spec.areas.items()
                       if not (area.cell.pure and pure_ops(area.ops) and all(i in pure_edges for i in incoming[a])))
    impure_heads = frozenset(n for n, r in spec.readouts.items() if not pure_ops(r.head))
    concat = {a: tuple(i for i in incoming[a] if spec.edges[i].type in DRIVING)
              for a, area in spec.areas.items() if area.combine == "concat"}
    readouts = {n: (r.source, r.cumulative) for n, r in spec.readouts.items()}
    return Plan(T, order, arrival, tuple(delays), tuple(names), history, tuple(schedule),
                infer_shapes(spec, base_arrival), frames(spec, T), concat, readouts,
                heads=(tuple(readouts),) * T, emit=emit, record=tuple(record), stateful=stateful,
                pure_areas=pure_areas, pure_edges=pure_edges, impure=impure, impure_heads=impure_heads,
                perturbations=perturbations)


def replace_plan(plan: Plan, name: str, **changes) -> Plan:
    """``plan`` with ``changes``, rewritten by the pass ``name`` (recorded in ``plan.passes``)."""
    return replace(plan, passes=plan.passes + (name,), **changes)
