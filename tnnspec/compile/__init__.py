"""Compile stage: the interpreter of a plan (:class:`Network`) and its optimisation passes.

``tnnspec.compile`` is both this package and the function users call
(``tnnspec.compile(spec)``): the package module is made callable so the two names
cannot shadow each other.
"""

from __future__ import annotations

import sys
import types

from . import cells as _cells  # noqa: F401  (the built-in cell builders)
from . import ops as _ops  # noqa: F401  (the built-in op builders)
from .network import Network, Run
from .passes import DEFAULT, PASSES


def compile_spec(spec, optimize="default", tbptt: int | None = None, checkpoint: bool | str = False) -> Network:
    """Compile a validated :class:`~tnnspec.Spec` (or a path to a spec file) into a
    :class:`Network`. ``optimize``: ``"default"`` (the exact passes), ``"none"`` (the plain
    interpreter) or an iterable of pass names (:data:`PASSES`); ``tbptt`` and ``checkpoint``
    change what is computed for gradients (see :class:`Network`)."""
    from ..api import load
    from ..spec.models import Spec

    if not isinstance(spec, Spec):
        spec = load(spec)
    return Network(spec, optimize=optimize, tbptt=tbptt, checkpoint=checkpoint)


class _CallableModule(types.ModuleType):
    def __call__(self, spec, optimize="default", tbptt: int | None = None, checkpoint: bool | str = False) -> Network:
        return compile_spec(spec, optimize=optimize, tbptt=tbptt, checkpoint=checkpoint)


sys.modules[__name__].__class__ = _CallableModule
__all__ = ["Network", "Run", "compile_spec", "PASSES", "DEFAULT"]
