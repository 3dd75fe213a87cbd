"""Perturbations: lesions and manipulations of a run, per call or written in the file.

Users cut edges, silence or clamp areas and scale connections all day (lesion studies,
ablations, microstimulation-like clamps). Each is a change of the plan, so every pass and the
interpreter see it, and cutting makes what it disconnects silent (arrival is recomputed):

========  ========================  ===============================================================
target    form                      effect at the given steps (default: every step)
========  ========================  ===============================================================
edge      ``"cut"``                 delivers nothing, exactly as if absent from the file (time rule 6)
edge      a number ``s``            its term is multiplied by ``s`` (``0.0`` still delivers a zero term)
edge      ``{"scale": s}``          the same; ``{"cut": True}`` the same as ``"cut"``
area      ``"silence"``             not active: computes nothing, outputs exactly zero, keeps its
                                    state; its edges deliver nothing (time rule 6)
area      ``{"clamp": v}``          computes as usual, but its output is replaced by ``v`` (a number,
                                    or a tensor broadcastable to ``[B, *output shape]``)
========  ========================  ===============================================================

Any dict form takes ``"steps"``: a step, a list or range of steps. In a file, ``enabled: false``
on an edge or area is ``"cut"`` / ``"silence"`` at every step.
"""

from __future__ import annotations

from dataclasses import dataclass

from .timing import NO_LESIONS, Lesions, file_lesions


@dataclass(frozen=True)
class Perturbations:
    """The plan-relevant part of a set of perturbations (hashable: plans are cached per set).
    Clamp values are not part of it: they are given to the run."""

    lesions: Lesions = NO_LESIONS
    scale: tuple[tuple[int, float, frozenset[int] | None], ...] = ()  # (edge, factor, steps)
    clamp: tuple[tuple[str, frozenset[int] | None], ...] = ()  # (area, steps)

    def __bool__(self) -> bool:
        return bool(self.lesions or self.scale or self.clamp)

    def scale_at(self, edge: int, step: int) -> float:
        return next((f for e, f, steps in self.scale if e == edge and (steps is None or step in steps)), 1.0)

    def clamped(self, area: str, step: int) -> bool:
        return any(a == area and (steps is None or step in steps) for a, steps in self.clamp)

    def describe(self, edge_names) -> str:
        """One line, e.g. ``cut IT__V4; silence V4 at 1; V1__V2 x0.5 at 2, 3``."""
        def at(steps):
            return "" if steps is None else " at " + ", ".join(map(str, sorted(steps)))
        parts = [f"cut {edge_names[e]}{at(s)}" for e, s in self.lesions.cut]
        parts += [f"silence {a}{at(s)}" for a, s in self.lesions.silenced]
        parts += [f"{edge_names[e]} x{f:g}{at(s)}" for e, f, s in self.scale]
        parts += [f"clamp {a}{at(s)}" for a, s in self.clamp]
        return "; ".join(parts)

    def with_file(self, spec) -> Perturbations:
        """These perturbations and the file's lesions (``enabled: false``) together."""
        found = file_lesions(spec)
        if not found:
            return self
        cut = dict(self.lesions.cut)
        cut.update(found.cut)  # every step
        silenced = dict(self.lesions.silenced)
        silenced.update(found.silenced)
        lesions = Lesions(cut=tuple(sorted(cut.items())), silenced=tuple(sorted(silenced.items())))
        return Perturbations(lesions, self.scale, self.clamp)


NO_PERTURBATIONS = Perturbations()


def parse(perturb, spec, edge_names, steps: int) -> tuple[Perturbations, dict]:
    """``net(x, perturb=...)``'s argument as :class:`Perturbations` and the clamp values
    (area -> number or tensor). Raises ``ValueError`` naming every problem."""
    if not perturb:
        return NO_PERTURBATIONS, {}
    if not isinstance(perturb, dict):
        raise ValueError(f"perturb: expected a dict name -> perturbation, got {type(perturb).__name__}")
    edges = {n: i for i, n in enumerate(edge_names)}
    cut, silenced, scale, clamp, values, problems = {}, {}, [], {}, {}, []
    for name, what in perturb.items():
        if name in edges and name in spec.areas:
            problems.append(f"'{name}' names both an edge and an area")
            continue
        if name not in edges and name not in spec.areas:
            problems.append(f"'{name}' is neither an edge ({', '.join(edge_names) or 'none'}) "
                            f"nor an area ({', '.join(spec.areas)})")
            continue
        kind, value, at = _form(what, name in edges)
        if kind is None:
            problems.append(f"'{name}': {value}")
            continue
        try:
            window = _steps(at, steps)
        except ValueError as e:
            problems.append(f"'{name}': {e}")
            continue
        if kind == "cut":
            cut[edges[name]] = window
        elif kind == "scale":
            scale.append((edges[name], value, window))
        elif kind == "silence":
            silenced[name] = window
        else:
            clamp[name] = window
            values[name] = value
    if problems:
        raise ValueError("perturb: " + "; ".join(problems))
    lesions = Lesions(cut=tuple(sorted(cut.items())), silenced=tuple(sorted(silenced.items())))
    return Perturbations(lesions, tuple(sorted(scale)), tuple(sorted(clamp.items()))), values


def _form(what, is_edge: bool):
    """(kind, value, steps) of one entry, or (None, problem, None)."""
    kinds = ("cut", "scale") if is_edge else ("silence", "clamp")
    if isinstance(what, str):
        if what in ("cut", "silence") and what in kinds:
            return what, None, None
        return None, f"expected {' or '.join(repr(k) for k in kinds if k in ('cut', 'silence'))}, got {what!r}", None
    if is_edge and isinstance(what, (int, float)) and not isinstance(what, bool):
        return "scale", float(what), None
    if isinstance(what, dict):
        unknown = set(what) - {*kinds, "steps"}
        given = [k for k in kinds if k in what]
        if unknown or len(given) != 1:
            return None, (f"a dict with one of {list(kinds)} and optionally 'steps'"
                          + (f" (unknown: {sorted(unknown)})" if unknown else "")), None
        kind = given[0]
        value = what[kind]
        if kind in ("cut", "silence"):
            if value is not True:
                return None, f"'{kind}' takes true, got {value!r}", None
            value = None
        elif kind == "scale":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None, f"'scale' takes a number, got {value!r}", None
            value = float(value)
        return kind, value, what.get("steps")
    return None, (f"expected 'cut', a number or a dict" if is_edge else "expected 'silence' or a dict"), None


def _steps(at, steps: int) -> frozenset[int] | None:
    if at is None:
        return None
    if isinstance(at, int) and not isinstance(at, bool):
        at = [at]
    try:
        window = frozenset(int(t) for t in at)
    except TypeError:
        raise ValueError(f"'steps' takes a step, a list or a range of steps, got {at!r}") from None
    bad = sorted(t for t in window if not 0 <= t < steps)
    if bad:
        raise ValueError(f"steps {bad} are outside 0..{steps - 1}")
    return window
