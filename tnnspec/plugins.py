"""Plugins: cells, ops and learning rules from other packages, found through Python entry points.

A package adds components without editing tnnspec: it registers each one (its parameters
model and its torch builder, :func:`register_cell` / :func:`register_op`) in a module that it
names under the entry-point group ``tnnspec.cells``, ``tnnspec.ops`` or ``tnnspec.learning_rules``
(:func:`register_learning_rule`, docs/learning_rules.md) of its ``pyproject.toml``::

    [project.entry-points."tnnspec.cells"]
    leaky_tanh = "tnnspec_example_plugin"          # a module: importing it registers
    # or "package.module:function"                 # a callable: called with no arguments

The installed plugins are loaded once per process, on first need (loading or checking a file,
the JSON Schema, the generated docs, compiling a component), not at ``import tnnspec``; then the
models that hold cells and ops are rebuilt, so that validation, ``tnnspec schema`` and error
suggestions include the plugins' components. A plugin that fails to load is a
:class:`PluginError` naming its package and entry point (``TNNSPEC_DISABLE_PLUGINS=1`` skips
entry points altogether). Builders named by import path (``"pkg.torch_cells:MyCell"``) are
imported only when compiling, so validating a file that uses a plugin needs no torch.

A file states the plugin packages it needs with ``requires: [tnnspec-mylab-cells]``; a missing one
is a located error with the ``pip install`` line (see docs/spec.md, "Plugins").

What a plugin module imports from here (no torch): :class:`CellParams`, :class:`OpParams`,
:func:`register_cell`, :func:`register_op`, :class:`ShapeError`, :class:`ShapeContext`,
:func:`require_map` and :func:`pair`. Its torch builders subclass
:class:`tnnspec.compile.registry.Cell` (or return an ``nn.Module`` for an op, given
:class:`tnnspec.compile.registry.OpContext`). A learning rule registers a :class:`LearningRuleParams`
with :func:`register_learning_rule`; its builder returns a
:class:`tnnspec.train.learning_rules.LearningRule`.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, field
from importlib import metadata

from .spec.components import (REGISTRY, CellParams, LearningRuleParams, OpParams, ShapeContext, ShapeError, pair,
                              register_cell, register_learning_rule, register_op, registering_as, require_map)

GROUPS = ("tnnspec.cells", "tnnspec.ops", "tnnspec.learning_rules")
DISABLE_ENV = "TNNSPEC_DISABLE_PLUGINS"

__all__ = ["CellParams", "OpParams", "LearningRuleParams", "register_cell", "register_op", "register_learning_rule",
           "ShapeError", "ShapeContext",
           "require_map", "pair", "load_plugins", "plugins", "PluginError", "Plugin", "distribution_installed",
           "GROUPS", "DISABLE_ENV"]


class PluginError(Exception):
    """An installed plugin failed to load; the message names its package and entry point."""


@dataclass
class Plugin:
    """One entry point of an installed plugin package, and what loading it registered."""

    distribution: str
    version: str
    group: str
    name: str
    value: str
    components: list[str] = field(default_factory=list)  # "cell leaky_tanh", "op clip"
    error: str | None = None


_lock = threading.RLock()
_state: dict = {"plugins": None, "error": None, "loading": False}


def disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def load_plugins() -> list[Plugin]:
    """Load the installed plugins (entry points of :data:`GROUPS`), the first time only, and rebuild
    the models if any component was registered since they were built. Returns the plugins found;
    raises :class:`PluginError` (every call) when one failed to load."""
    from .spec import models

    with _lock:
        if _state["loading"]:  # a plugin that loads a spec while it registers
            return []
        if _state["plugins"] is None:
            _state["loading"] = True
            try:
                _state["plugins"], _state["error"] = _discover()
            finally:
                _state["loading"] = False
        models.rebuild()
        if _state["error"] is not None:
            raise _state["error"]
        return list(_state["plugins"])


def plugins() -> list[Plugin]:
    """The plugins found (loading them if not yet), including failed ones, without raising."""
    try:
        load_plugins()
    except PluginError:
        pass
    return list(_state["plugins"] or [])


def _reset() -> None:
    """Forget what was discovered, so that the next :func:`load_plugins` looks again (tests; the
    components already registered stay registered)."""
    with _lock:
        _state.update(plugins=None, error=None, loading=False)


def _entry_points() -> list[tuple[str, metadata.EntryPoint]]:
    found = []
    for group in GROUPS:
        for ep in metadata.entry_points(group=group):
            found.append((group, ep))
    return sorted(found, key=lambda ge: (_dist_name(ge[1]).lower(), ge[0], ge[1].name))


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.name if dist is not None else "<unknown package>"


def _discover() -> tuple[list[Plugin], PluginError | None]:
    if disabled():
        return [], None
    found: list[Plugin] = []
    failures: list[str] = []
    loaded_values: set[str] = set()
    for group, ep in _entry_points():
        dist = getattr(ep, "dist", None)
        plugin = Plugin(_dist_name(ep), dist.version if dist is not None else "?", group, ep.name, ep.value)
        found.append(plugin)
        if ep.value in loaded_values:  # two entry points naming one module: import it once
            continue
        loaded_values.add(ep.value)
        before = set(REGISTRY)
        try:
            with registering_as(plugin.distribution):
                obj = ep.load()
                if callable(obj) and not isinstance(obj, type):
                    obj()
        except Exception as exc:  # any failure of third-party code: reported, not a traceback
            plugin.error = f"{type(exc).__name__}: {exc}"
            failures.append(f"plugin package '{plugin.distribution}' ({plugin.version}): entry point "
                            f"'{ep.name} = {ep.value}' in group '{group}' failed to load: {plugin.error}")
        plugin.components = [f"{kind} {name}" for kind, name in REGISTRY if (kind, name) not in before]
    error = None
    if failures:
        error = PluginError("\n".join(failures) + f"\n(fix or uninstall the package; {DISABLE_ENV}=1 skips "
                                                  "all plugins)")
    return found, error


_NORMALIZE = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    """PEP 503 form of a distribution name (``TNNSpec_Mylab.cells`` -> ``tnnspec-mylab-cells``)."""
    return _NORMALIZE.sub("-", name).lower()


def distribution_installed(name: str) -> metadata.Distribution | None:
    """The installed distribution called ``name`` (any spelling of it), or None."""
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        pass
    want = normalize(name)
    for dist in metadata.distributions():
        if normalize(dist.metadata["Name"] or "") == want:
            return dist
    return None


def provides_components(dist: metadata.Distribution) -> bool:
    """Whether a distribution declares entry points in :data:`GROUPS`."""
    return any(ep.group in GROUPS for ep in dist.entry_points)
