"""A terminal rendering of a spec: areas by hierarchy level with their edges and delays."""

from __future__ import annotations

from ..graph.checks import edge_names
from ..graph.plan import build_plan
from ..graph.timing import edge_delays
from ..spec.models import Spec
from .style import hierarchy_levels, level_text


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _shape(shape) -> str:
    return "x".join(str(s) for s in shape) if shape else "?"


def text_summary(spec: Spec, steps: int | None = None) -> str:
    """Areas from the inputs (level 0) upwards, each with its shape, cell and ops, then its
    incoming (``<-``) and outgoing (``->``) edges with type, delay in steps and weight."""
    plan = build_plan(spec, steps)
    levels = hierarchy_levels(spec)
    delays = edge_delays(spec)
    names = edge_names(spec)
    dt = spec.time.dt_ms
    default = spec.time.default_delay
    default_text = default if isinstance(default, (str, int)) else \
        ", ".join(f"{k} {v}" for k, v in default.items())
    lines = [f"{spec.name}: {_plural(len(spec.inputs), 'input')}, {_plural(len(spec.areas), 'area')}, "
             f"{_plural(len(spec.edges), 'edge')}, {_plural(len(spec.readouts), 'readout')}",
             f"time: {plan.steps} steps of {dt:g} ms (default delay: {default_text}); "
             f"{plan.work} area updates"]
    nodes = list(spec.inputs) + list(spec.areas)
    width = max(6, max(len(n) for n in nodes))
    order = {n: i for i, n in enumerate(nodes)}
    type_width = max((len(e.type) for e in spec.edges), default=0)

    def edge_line(i: int, arrow: str, other: str) -> str:
        e = spec.edges[i]
        extra = []
        if e.weight != 1:
            extra.append(f"weight {e.weight:g}")
        if e.from_step:
            extra.append(f"from t={e.from_step}")
        if e.type == "attention":
            extra.append(e.mode)
        if names[i] != f"{e.source}__{e.target}":
            extra.append(f"'{names[i]}'")
        tail = f"  ({', '.join(extra)})" if extra else ""
        return f"      {arrow} {other:<{width}}  {e.type:<{type_width}}  d={delays[i]}{tail}"

    for value in sorted(set(levels.values())):
        members = sorted((n for n in nodes if levels[n] == value), key=order.get)
        lines.append("")
        lines.append(f"level {level_text(value)}")
        for n in members:
            if n in spec.inputs:
                inp = spec.inputs[n]
                sched = inp.schedule
                how = sched.type
                if sched.type == "on_off":
                    how += f" (start t={sched.start}" + (f", stop t={sched.stop})" if sched.stop is not None else ")")
                lines.append(f"  {n:<{width}}  input {_shape(inp.shape)}, {how}")
            else:
                area = spec.areas[n]
                bits = [_shape(plan.shapes.output.get(n)), f"cell {area.cell.type}"]
                if area.ops:
                    bits.append("ops " + ", ".join(op.op_name for op in area.ops))
                if area.combine != "sum":
                    bits.append(f"combine {area.combine}")
                if area.group:
                    bits.append(f"group {area.group}")
                if area.level is None:
                    bits.append("level inferred")
                arrival = plan.arrival.get(n)
                bits.append("never reached" if arrival is None else f"arrives t={arrival}")
                if area.before_arrival != "silent":
                    bits.append(area.before_arrival.replace("_", " ") + " before arrival")
                lines.append(f"  {n:<{width}}  " + ", ".join(bits))
            for i, e in enumerate(spec.edges):
                if e.target == n:
                    lines.append(edge_line(i, "<-", "(self)" if e.source == n else e.source))
            for i, e in enumerate(spec.edges):
                if e.source == n and e.target != n:
                    lines.append(edge_line(i, "->", e.target))
            for rname, r in spec.readouts.items():
                if r.source == n:
                    lines.append(f"      => readout {rname}" + (" (cumulative)" if r.cumulative else ""))
    return "\n".join(lines)
