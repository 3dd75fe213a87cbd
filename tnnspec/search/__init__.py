"""Architecture search over tnnspec graphs (docs/search.md).

:mod:`tnnspec.search.space` reads a search-space file (what may vary in a graph, how trials are scored) and turns a
trial's values into a plain, validated graph file. Importing this package is light: Optuna is imported only by the
engine that runs a search, so a space can be checked where Optuna is not installed.
"""

from __future__ import annotations

from .space import (METRICS, Objective, SearchSpace, TrialGraph, load_space, loads_space,
                    write_trial_graph)

__all__ = ["METRICS", "Objective", "SearchSpace", "TrialGraph", "load_space", "loads_space", "write_trial_graph"]
