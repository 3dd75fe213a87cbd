"""Compile stage: torch modules that execute a plan (see :mod:`tnnspec.graph.plan`)."""

from . import cells as _cells  # noqa: F401  (registers cell builders)
from . import ops as _ops  # noqa: F401  (registers op builders)
