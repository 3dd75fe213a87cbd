"""Compile stage: torch modules that execute a plan (see :mod:`tnnspec.graph.plan`).

``tnnspec.compile`` is both this package and the function users call
(``tnnspec.compile(spec)``): the package module is made callable so the two names
cannot shadow each other.
"""

from __future__ import annotations

import sys
import types

from . import cells as _cells  # noqa: F401  (registers cell builders)
from . import ops as _ops  # noqa: F401  (registers op builders)
from .network import Network, Run


def compile_spec(spec, **options) -> Network:
    """Compile a validated :class:`~tnnspec.Spec` (or a path to a spec file) into a
    :class:`Network`. Options (see :class:`Network`): ``tbptt``, ``checkpoint``, ``hoist``,
    ``fold``, ``channels_last``, ``cuda_graphs``, ``fuse_batchnorm``, ``packed_weights``,
    ``share_constants``, ``cache_constants``."""
    from ..api import load
    from ..spec.models import Spec

    if not isinstance(spec, Spec):
        spec = load(spec)
    return Network(spec, **options)


class _CallableModule(types.ModuleType):
    def __call__(self, spec, **options) -> Network:
        return compile_spec(spec, **options)


sys.modules[__name__].__class__ = _CallableModule
__all__ = ["Network", "Run", "compile_spec"]
