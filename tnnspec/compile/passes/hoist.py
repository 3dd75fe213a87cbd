"""Plan pass ``hoist``: time-invariant work is done once.

A static image (or an ``on_off`` input between its switches) shows the same frame at
consecutive steps, so what depends on it alone repeats. The pass marks, from the plain plan:

- an area update as ``reuse`` when the area is pure (no cell state, pure ops and edges), reads
  the same edges as at the previous step with the same scales, and each term's source output
  equals its output one step earlier: the output is then the previous step's, exactly (the
  interpreter keeps it from before the area's probe, and calls the probe once per step);
- a read as ``reuse`` when its edge's transform is pure and its source output equals the one
  the edge read at the previous step: the transform is the one computed then;
- an area update as ``drive_reuse`` when every read is reused: the drive equals the previous
  step's, so a cell's input term (a conv RNN's input convolution) is the one computed then.

Invariant: outputs are bit-identical to the plain plan's (the kept values are what the same
computation returned one step earlier, within the same call). Clamped outputs are never
"equal to the previous step" (their value comes from the call). Under truncated BPTT the
network does not apply this pass: a kept value could reach back across a cut window
(equal values, different gradients).
"""

from __future__ import annotations

from dataclasses import replace

from ...graph.plan import Plan, replace_plan

NAME = "hoist"


def hoist(plan: Plan) -> Plan:
    T = plan.steps
    same: dict[str, list[bool]] = {}  # node -> output(t) == output(t - 1), exactly
    for name, frames in plan.frames.items():
        same[name] = [t > 0 and frames[t] == frames[t - 1] and frames[t].kind != "frame" for t in range(T)]
    for name in plan.order:
        same[name] = [False] * T
    previous: dict[str, object] = {}
    schedule = []
    for t, step in enumerate(plan.schedule):
        out = []
        for s in step:
            before = previous.get(s.area) if t > 0 and _computed_at(plan, s.area, t - 1) else None
            invariant = [before is not None and not s.clamp and not before.clamp and not r.zeros and r.at >= 1
                         and same[r.source][r.at]
                         and any(b.edge == r.edge and not b.zeros for b in before.reads) for r in s.reads]
            same_edges = before is not None and [(r.edge, r.scale) for r in before.reads] == \
                [(r.edge, r.scale) for r in s.reads]
            if s.area in plan.pure_areas and same_edges and all(invariant):
                s = replace(s, reuse=True)
                same[s.area][t] = True
            else:
                reads = tuple(replace(r, reuse=True) if inv and r.edge in plan.pure_edges else r
                              for r, inv in zip(s.reads, invariant))
                drive_reuse = bool(reads) and same_edges and all(r.reuse for r in reads)
                s = replace(s, reads=reads, drive_reuse=drive_reuse)
            previous[s.area] = s
            out.append(s)
        schedule.append(tuple(out))
    kept = (frozenset(r.edge for step in schedule for s in step for r in s.reads if r.reuse)
            | frozenset(s.area for step in schedule for s in step if s.drive_reuse)
            | frozenset(("output", s.area) for step in schedule for s in step if s.reuse))
    return replace_plan(plan, NAME, schedule=tuple(schedule), kept=kept)


def _computed_at(plan: Plan, area: str, t: int) -> bool:
    return any(s.area == area for s in plan.schedule[t])
