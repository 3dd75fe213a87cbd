"""Optimisation passes: each computes what the plain interpreter computes, with less work.

``tnnspec.compile(spec, optimize=...)`` chooses them: ``"default"`` (the exact passes below),
``"none"`` (the plain interpreter of :class:`~tnnspec.compile.Network`, the reference
semantics), or an iterable of names. Two kinds:

- **plan passes** rewrite the plan (:mod:`tnnspec.graph.plan`) into one that computes the same
  values with less work; the interpreter executes any plan, rewritten or not;
- **kernel passes** change how a module computes its output (a convolution on a weight packed
  once, a ReLU in place), never what it computes; they are on only while a
  :class:`~tnnspec.compile.Network` runs with them (:func:`on`), so a module called on its own,
  or swapped in by a user, computes plainly.

Each pass states its invariant in its module's docstring; ``exact`` passes are bit-identical
to the plain interpreter, the others equal to float rounding. ``tests/test_differential.py``
checks every combination against the plain interpreter, after changes between calls.
Nothing a pass computes is kept from one call to the next, except weights derived from
parameters (packed, folded), which are kept behind a bitwise check of what they derive from
(:mod:`tnnspec.compile.kept`).
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Pass:
    name: str
    kind: str  # 'plan' or 'kernel'
    exact: bool  # bit-identical to the plain interpreter
    default: bool  # in optimize="default"
    module: str  # where it lives (its invariant is that module's docstring)
    summary: str


PASSES: dict[str, Pass] = {p.name: p for p in (
    Pass("hoist", "plan", True, True, "tnnspec.compile.passes.hoist",
         "time-invariant work once: an area output, edge transform or cell input term that provably "
         "equals the previous step's is taken from it"),
    Pass("prune", "plan", True, True, "tnnspec.compile.passes.prune",
         "with readout_steps, skip every update that cannot reach the requested readouts or recorded areas"),
    Pass("share_constants", "plan", False, False, "tnnspec.compile.passes.share_constants",
         "updates that depend on no input run once at batch size 1 and are broadcast"),
    Pass("zero_convs", "kernel", True, True, "tnnspec.compile.packing",
         "a convolution of an all-zero tensor the plan made (zero drive, zero stand-in) is its bias"),
    Pass("packed_weights", "kernel", True, True, "tnnspec.compile.packing",
         "CPU inference convolutions on weights reordered once for oneDNN (the primitive conv2d runs)"),
    Pass("packed_weights_fast", "kernel", False, False, "tnnspec.compile.packing",
         "CPU inference convolutions through oneDNN's inference kernel on weights packed for it"),
    Pass("fuse_batchnorm", "kernel", False, False, "tnnspec.compile.fusion",
         "inference: a convolution followed by an eval-mode BatchNorm runs as one convolution"),
    Pass("inplace_relu", "kernel", True, True, "tnnspec.compile.inplace",
         "a ReLU works in place on a tensor an op has just made and nobody else holds"),
    Pass("maxpool_nhwc", "kernel", True, True, "tnnspec.compile.ops",
         "CPU max pools without gradient run ATen's channels-last kernel (same selection rule)"),
)}
EXCLUSIVE = (("packed_weights", "packed_weights_fast"),)
DEFAULT = tuple(name for name, p in PASSES.items() if p.default)


def resolve(optimize) -> tuple[str, ...]:
    """The pass names ``optimize`` asks for, in the table's order; raises ``ValueError``."""
    if optimize is None or optimize == "none":
        return ()
    if optimize == "default":
        return DEFAULT
    if isinstance(optimize, str):
        optimize = (optimize,)
    names = set(optimize)
    unknown = sorted(names - set(PASSES))
    if unknown:
        raise ValueError(f"optimize: unknown pass(es) {unknown}; passes: {list(PASSES)} "
                         "(or 'default', 'none')")
    for group in EXCLUSIVE:
        if len(names & set(group)) > 1:
            raise ValueError(f"optimize: {' and '.join(group)} exclude each other")
    return tuple(name for name in PASSES if name in names)


_RUNNING: contextvars.ContextVar[frozenset] = contextvars.ContextVar("tnnspec_passes", default=frozenset())


@contextmanager
def running(names):
    """Kernel passes ``names`` are on within this block (a network's forward)."""
    token = _RUNNING.set(frozenset(names))
    try:
        yield
    finally:
        _RUNNING.reset(token)


def on(name: str) -> bool:
    """Whether kernel pass ``name`` is on now. Never while ``torch.compile`` traces: the
    compiler makes its own kernels."""
    return not torch.compiler.is_compiling() and name in _RUNNING.get()


__all__ = ["PASSES", "DEFAULT", "Pass", "resolve", "running", "on"]
