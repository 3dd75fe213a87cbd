"""Shape inference: every area's drive and output shape, every edge's delivered shape,
computed from the op and cell shape rules before any torch code runs.

Shapes are per sample: ``(C, H, W)`` or ``(F,)``. An area's drive shape comes from its
driving contributions (``sum``/``multiplicative``: all equal; ``concat``: channels add up);
its output from ``cell.output_shape`` then its ops. Edges whose transform resizes to the
target (``resample`` without a size) are resolved once the target's drive shape is known.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..spec.components import ShapeContext, ShapeError
from ..spec.models import DRIVING, Spec
from ..spec.diagnostics import Pos

Shape = tuple[int, ...]


@dataclass
class ShapeProblem:
    path: tuple
    message: str
    at_key: bool = False


@dataclass
class Shapes:
    inputs: dict[str, Shape] = field(default_factory=dict)
    drive: dict[str, Shape] = field(default_factory=dict)
    output: dict[str, Shape] = field(default_factory=dict)
    edge: dict[int, Shape] = field(default_factory=dict)
    readout: dict[str, Shape] = field(default_factory=dict)
    problems: list[ShapeProblem] = field(default_factory=list)

    def of(self, node: str) -> Shape | None:
        return self.inputs.get(node) or self.output.get(node)


def run_ops(ops, shape: Shape, ctx: ShapeContext, path: tuple) -> Shape:
    """Apply op shape rules in order; a ShapeError names the failing op's path."""
    for k, entry in enumerate(ops):
        try:
            shape = tuple(entry.op.output_shape(tuple(shape), ctx))
        except ShapeError as exc:
            raise _Located(path + (k,), f"{exc} (input shape {list(shape)})") from None
    return shape


class _Located(Exception):
    def __init__(self, path: tuple, message: str):
        super().__init__(message)
        self.path, self.message = path, message


def _edge_shape(spec: Spec, shapes: Shapes, i: int, target_hw) -> Shape:
    e = spec.edges[i]
    src = shapes.of(e.source)
    ctx = ShapeContext(channels=spec.areas[e.target].channels, target_hw=target_hw)
    return run_ops(e.transform, src, ctx, ("edges", i, "transform"))


def _combine(spec: Spec, name: str, shapes_in: list[tuple[int, Shape]]) -> Shape:
    area = spec.areas[name]
    first_i, first = shapes_in[0]
    if area.combine == "concat":
        for i, s in shapes_in[1:]:
            if s[1:] != first[1:] or len(s) != len(first):
                raise _Located(("edges", i), f"concat into '{name}': spatial shape {list(s)} does not match "
                                             f"{list(first)} from edges[{first_i}]")
        return (sum(s[0] for _, s in shapes_in),) + tuple(first[1:])
    for i, s in shapes_in[1:]:
        if s != first:
            raise _Located(("edges", i), f"{area.combine} into '{name}': this edge delivers shape {list(s)} "
                                         f"but edges[{first_i}] delivers {list(first)}; they must be equal")
    return first


def _area_output(spec: Spec, name: str, drive: Shape) -> Shape:
    area = spec.areas[name]
    try:
        out = tuple(area.cell.output_shape(drive, area.channels))
    except ShapeError as exc:
        raise _Located(("areas", name, "cell"), f"{exc} (drive shape {list(drive)})") from None
    out = run_ops(area.ops, out, ShapeContext(channels=area.channels), ("areas", name, "ops"))
    if out[0] != area.channels:
        raise _Located(("areas", name, "channels"),
                       f"{area.channels} declared, but the area's cell and ops output {out[0]} channels "
                       f"(output shape {list(out)})")
    return out


def infer_shapes(spec: Spec, arrival: dict[str, int | None]) -> Shapes:
    """Infer all shapes; problems are collected (with spec paths), not raised."""
    shapes = Shapes(inputs={n: tuple(i.shape) for n, i in spec.inputs.items()})
    driving: dict[str, list[int]] = {name: [] for name in spec.areas}
    for i, e in enumerate(spec.edges):
        if e.target in driving and e.type in DRIVING and (e.source in spec.inputs or e.source in spec.areas):
            driving[e.target].append(i)
    failed: set[int] = set()
    pending = [n for n in spec.areas if arrival.get(n) is not None]

    def try_area(name: str, allow_partial: bool) -> bool:
        known = []
        for i in driving[name]:
            if i in failed or shapes.of(spec.edges[i].source) is None:
                continue
            try:
                known.append((i, _edge_shape(spec, shapes, i, None)))
            except _Located as exc:
                if "resample needs" in exc.message:
                    continue  # resolved once the target's size is known
                failed.add(i)
                shapes.problems.append(ShapeProblem(exc.path, exc.message))
        if not known:
            return False
        if spec.areas[name].combine == "concat" and not allow_partial and len(known) < len(driving[name]):
            return False
        try:
            shapes.drive[name] = _combine(spec, name, known)
            shapes.output[name] = _area_output(spec, name, shapes.drive[name])
        except _Located as exc:
            shapes.problems.append(ShapeProblem(exc.path, exc.message))
            shapes.drive.pop(name, None)
            shapes.output[name] = None  # type: ignore[assignment]  (stop retrying)
        return True

    while pending:
        progressed = [n for n in pending if try_area(n, allow_partial=False)]
        if not progressed:
            progressed = [n for n in pending if try_area(n, allow_partial=True)]
        if not progressed:
            if not shapes.problems:  # otherwise these follow from a problem already reported
                for n in pending:
                    shapes.problems.append(ShapeProblem(("areas", n), f"cannot infer the shape of area '{n}': "
                                                        "no incoming edge has a known shape", at_key=True))
            break
        pending = [n for n in pending if n not in progressed]
    shapes.output = {k: v for k, v in shapes.output.items() if v is not None}
    _check_all_edges(spec, shapes, failed, driving_edges=True)
    _settle_concat_drives(spec, shapes, driving)
    _check_all_edges(spec, shapes, failed, driving_edges=False)  # gains and divisors see the settled drive
    _check_readouts(spec, shapes)
    return shapes


def _settle_concat_drives(spec: Spec, shapes: Shapes, driving: dict[str, list[int]]) -> None:
    """A concat area's drive stacks every driving edge, including those from its own output
    (lateral, feedback loops) whose shapes were not known when its drive was first inferred:
    recount its channels now that every edge's shape is known."""
    for name, edges in driving.items():
        if spec.areas[name].combine != "concat" or name not in shapes.drive:
            continue
        got = [shapes.edge.get(i) for i in edges]
        if any(g is None for g in got):
            continue
        drive = (sum(g[0] for g in got),) + tuple(shapes.drive[name][1:])
        if drive == shapes.drive[name]:
            continue
        try:
            out = _area_output(spec, name, drive)
        except _Located as exc:
            shapes.problems.append(ShapeProblem(exc.path, exc.message))
            continue
        if out != shapes.output.get(name):
            shapes.problems.append(ShapeProblem(("areas", name), (
                f"concat into '{name}': with all {len(edges)} driving edges its drive is {list(drive)} and its "
                f"output {list(out)}, not {list(shapes.output.get(name) or [])} as inferred from the edges that "
                "do not depend on it; the shapes around this loop do not settle"), at_key=True))
            continue
        shapes.drive[name] = drive


def _check_all_edges(spec: Spec, shapes: Shapes, failed: set[int], driving_edges: bool) -> None:
    for i, e in enumerate(spec.edges):
        if (e.type in DRIVING) != driving_edges:
            continue
        if i in failed or shapes.of(e.source) is None or e.target not in shapes.drive:
            continue
        drive = shapes.drive[e.target]
        try:
            got = _edge_shape(spec, shapes, i, tuple(drive[1:3]) if len(drive) == 3 else None)
        except _Located as exc:
            shapes.problems.append(ShapeProblem(exc.path, exc.message))
            continue
        shapes.edge[i] = got
        area = spec.areas[e.target]
        bad = None
        if e.type in DRIVING:
            if area.combine == "concat":
                bad = got[1:] != drive[1:] and "spatial size must match the target's drive"
            elif got != drive:
                bad = "must equal the target's drive shape"
        elif e.type == "attention":
            ok = got == drive or (len(got) == len(drive) and all(g in (1, d) for g, d in zip(got, drive))) \
                or (len(got) == 1 and got[0] in (1, drive[0]))
            bad = not ok and "an attention gain must have the drive's shape or broadcast to it " \
                             "([C], [1, H, W], [C, 1, 1])"
        elif e.type == "normalization":
            want_c = 1 if e.pool.over_channels else drive[0]
            ok = len(got) == len(drive) and got[1:] == drive[1:] and (got[0] == drive[0] or want_c == 1)
            bad = not ok and "the normalization signal must have the drive's spatial size"
        if bad:
            shapes.problems.append(ShapeProblem(
                ("edges", i), f"{e.type} edge {e.source} -> {e.target} delivers shape {list(got)} but the "
                              f"drive of '{e.target}' has shape {list(drive)}: {bad}"))


def _check_readouts(spec: Spec, shapes: Shapes) -> None:
    for name, r in spec.readouts.items():
        src = shapes.output.get(r.source)
        if src is None:
            continue
        try:
            shapes.readout[name] = run_ops(r.head, src, ShapeContext(), ("readouts", name, "head"))
        except _Located as exc:
            shapes.problems.append(ShapeProblem(exc.path, exc.message))


__all__ = ["Shapes", "infer_shapes", "ShapeProblem", "Pos"]
