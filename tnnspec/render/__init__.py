"""Pictures and text views of a spec.

- :func:`area_graph` — areas ranked by hierarchy level, edges styled by type (a graphviz Digraph);
- :func:`unrolled` — the space-time picture: one column per step, one arrow per delivered signal;
- :func:`text_summary` — a terminal rendering, areas by level with their edges and delays;
- :func:`render` — write a Digraph to .svg/.png/.pdf (needs graphviz's ``dot``) or .dot text.
"""

from __future__ import annotations

from .area_graph import area_graph
from .output import RenderError, render
from .style import hierarchy_levels
from .text import text_summary
from .unrolled import PinnedDigraph, unrolled

__all__ = ["area_graph", "unrolled", "text_summary", "render", "RenderError", "hierarchy_levels", "PinnedDigraph"]
