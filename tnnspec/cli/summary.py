"""``tnnspec summary``: a table of areas (level, cell, shapes, parameters, arrival) and the plan."""

from __future__ import annotations

from ..spec.models import Spec


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _fmt(shape) -> str:
    return "x".join(str(s) for s in shape) if shape else "?"


def compiled(spec: Spec):
    """The network the summary describes: the default passes, constants marked."""
    from .. import compile as compile_spec
    from ..compile.passes import DEFAULT

    return compile_spec(spec, optimize=(*DEFAULT, "share_constants"))


def edge_parameters(net, plan) -> list[int]:
    """The parameter count of each edge of the spec, in order."""
    return [_count(net.edges[name]) for name in plan.edge_names]


def area_parameters(spec: Spec, net, plan) -> dict[str, int]:
    """The parameter count of each area, its incoming edges' included (the summary's column)."""
    counts = {name: _count(net.areas[name]) for name in spec.areas}
    for e, n in zip(spec.edges, edge_parameters(net, plan)):
        counts[e.target] += n
    return counts


def summary_text(spec: Spec, steps: int | None = None, show_plan: bool = True) -> str:
    net = compiled(spec)
    plan = net.plan_for(steps)
    shapes = plan.shapes
    params = area_parameters(spec, net, plan)
    rows = [("area", "level", "cell", "drive -> output", "params (area+in-edges)", "arrival")]
    for name, area in spec.areas.items():
        level = "" if area.level is None else f"{area.level:g}"
        arrival = plan.arrival[name]
        rows.append((name, level, area.cell.name,
                     f"{_fmt(shapes.drive.get(name))} -> {_fmt(shapes.output.get(name))}",
                     f"{params[name]:,}",
                     "never" if arrival is None else str(arrival)))
    for name, r in spec.readouts.items():
        rows.append((f"readout:{name}", "", "", f"{_fmt(shapes.output.get(r.source))} -> "
                                                f"{_fmt(shapes.readout.get(name))}",
                     f"{_count(net.readouts[name]):,}", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"{spec.name}: {len(spec.inputs)} input(s), {len(spec.areas)} areas, {len(spec.edges)} edges, "
             f"{plan.steps} steps of {spec.time.dt_ms:g} ms"]
    for k, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    total = _count(net)
    slots = plan.steps * len(spec.areas)
    silent = slots - plan.work - plan.reused
    lines.append(f"total parameters: {total:,}   area updates over {plan.steps} steps: {plan.work} computed, "
                 f"{plan.reused} reused (time-invariant), {silent} silent — "
                 f"{100 * (slots - plan.work) / slots:.0f}% of {slots} saved"
                 + (f"; {plan.reused_terms} edge terms reused" if plan.reused_terms else "")
                 + (f"; {plan.reused_drives} cell input terms reused" if plan.reused_drives else "")
                 + (f"; {plan.constant} input-independent (the pass share_constants computes them once per batch)"
                    if plan.constant else ""))
    if spec.neural is not None and spec.neural.regions:
        from ..neural.fit import summary_lines

        lines += [""] + summary_lines(spec, steps)
    if show_plan:
        lines += ["", str(plan)]
    return "\n".join(lines)
