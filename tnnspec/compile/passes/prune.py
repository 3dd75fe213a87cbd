"""Plan pass ``prune``: compute only what the requested outputs need.

Invariant: every readout the plan returns (``plan.emit``) and every recorded area equals the
unpruned plan's, and so does every side effect: updates and heads with batch norms (whose
statistics learn from each training call, ``plan.impure``) always run. The pass walks the reads
backward from those outputs — through cell state (a stateful area needs all its earlier
updates) and kept terms (a reused output or term needs the update that computed it) — and
drops every area update nobody can see, and every readout head whose value is not returned (a
cumulative readout needs its heads up to the last step returned). Dropped updates are not
computed, and their probes are not called. The first update of an area that remains starts
from the cell's initial state.
"""

from __future__ import annotations

from dataclasses import replace

from ...graph.plan import Plan, replace_plan

NAME = "prune"


def prune(plan: Plan) -> Plan:
    if plan.emit is None:  # every step is returned: nothing to drop
        return plan
    heads = []
    demand = set()
    for t in range(plan.steps):
        names = tuple(n for n, (source, cumulative) in plan.readouts.items()
                      if t in plan.emit or (cumulative and t <= max(plan.emit)) or n in plan.impure_heads)
        heads.append(names)
        demand.update((plan.readouts[n][0], t) for n in names)
    demand.update((a, t) for a in plan.record for t in range(plan.steps))
    demand.update((s.area, t) for t, step in enumerate(plan.schedule) for s in step if s.area in plan.impure)
    needed = set(demand)
    for t in range(plan.steps - 1, -1, -1):
        for s in reversed(plan.schedule[t]):  # later areas in a step may read earlier ones
            if (s.area, t) not in needed:
                continue
            if s.area in plan.stateful or s.reuse:
                needed.update((s.area, u) for u in range(t))
            elif any(r.reuse for r in s.reads) or s.drive_reuse:  # kept terms come from an earlier update
                needed.add((s.area, t - 1))
            needed.update((r.source, r.at) for r in s.reads if not r.zeros)
    first = set()
    schedule = []
    for t, step in enumerate(plan.schedule):
        kept = []
        for s in step:
            if (s.area, t) in needed:
                kept.append(s if s.initial or s.area in first else replace(s, initial=True))
                first.add(s.area)
        schedule.append(tuple(kept))
    schedule = tuple(schedule)
    pruned = frozenset((s.area, t) for t, step in enumerate(plan.schedule) for s in step if (s.area, t) not in needed)
    return replace_plan(plan, NAME, schedule=schedule, heads=tuple(heads), pruned=plan.pruned | pruned)
