"""Interoperability with other graph formats.

:func:`import_tnn` converts a graph of the neuroailab tnn / convrnns JSON format into a readable,
validated tnnspec file (docs/import_tnn.md).
"""

from __future__ import annotations

from .tnn import CELL_CHOICES, UNROLL_MODES, ImportResult, import_tnn

__all__ = ["CELL_CHOICES", "UNROLL_MODES", "ImportResult", "import_tnn"]
