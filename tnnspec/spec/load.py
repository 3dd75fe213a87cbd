"""Loading a spec: parse -> version check -> resolve -> structural validation.

Graph-level checks (endpoints, delay-0 cycles, shapes) need the graph stage and run in
:func:`tnnspec.load`; this module is the structural tier only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..plugins import load_plugins
from .diagnostics import Diagnostic, Pos, Report, SpecError
from .errors import translate
from .models import FORMAT_VERSIONS, PACKAGE_PATTERN, Spec
from .resolve import resolve
from .source import LList, LMap, parse_text, read_file


class SourceMap:
    """Where each part of a loaded spec is written: ``where(("edges", 3, "target"))``."""

    def __init__(self, tree: Any, file: str, warnings: list[Diagnostic] | None = None):
        self.tree = tree
        self.file = file
        self.warnings: list[Diagnostic] = list(warnings or [])  # found while reading the file

    def where(self, path: tuple | list, key: bool = False) -> Pos:
        node, pos = self.tree, Pos(self.file)
        if isinstance(node, LMap):
            pos = node.pos
        for seg in path:
            if isinstance(node, LMap) and seg in node:
                pos = node.where_key(seg) if key else node.where_value(seg)
                node = node[seg]
            elif isinstance(node, list) and isinstance(seg, int) and 0 <= seg < len(node):
                pos = node.where_item(seg)
                node = node[seg]
            else:
                break
        return pos


def _check_version(tree: LMap, file: str) -> None:
    if "tnnspec" not in tree:
        raise SpecError([Diagnostic.at(tree.pos, "error",
                                       f"missing 'tnnspec' format version at the top, e.g. tnnspec: \"{FORMAT_VERSIONS[-1]}\"")])
    raw = tree["tnnspec"]
    version = str(raw)
    if version not in FORMAT_VERSIONS:
        raise SpecError([Diagnostic.at(tree.where_value("tnnspec"), "error",
                                       f"tnnspec: format version '{version}' is not supported; "
                                       f"supported: {', '.join(FORMAT_VERSIONS)}")])
    tree["tnnspec"] = version


def validate_tree(tree: Any, file: str, report: Report | None = None) -> tuple[Spec, SourceMap]:
    """Structural tier on a parsed tree: returns the Spec and its source map (with the warnings
    of ``report``, e.g. from reading an older format version), or raises."""
    if not isinstance(tree, LMap):
        kind = "a list" if isinstance(tree, list) else f"a {type(tree).__name__} value"
        raise SpecError([Diagnostic(file, 1, 1, "error",
                                    f"top level must be a mapping with keys tnnspec, name, inputs, areas, "
                                    f"edges, ...; got {kind}")])
    _check_version(tree, file)
    load_plugins()  # the installed plugins' cells and ops, once per process
    report = report if report is not None else Report()
    resolved = resolve(tree, report)
    report.raise_if_errors()
    missing = _check_requires(resolved, report)
    try:
        spec = Spec.model_validate(resolved)
    except ValidationError as exc:
        raise SpecError(report.diagnostics + translate(exc.errors(), resolved, Spec, missing)) from None
    source = SourceMap(resolved, file, report.warnings)
    _strict_numbers(spec, resolved, [], report, source)
    report.raise_if_errors()
    return spec, source


def _check_requires(tree: LMap, report: Report) -> list[str]:
    """A located error for each plugin package in ``requires`` that is not installed (or that
    registers no cells or ops); returns the missing ones, which messages about unknown cells and
    ops then name."""
    from ..plugins import distribution_installed, provides_components

    requires = tree.get("requires")
    if not isinstance(requires, LList):
        return []  # not a list: the model reports it
    missing = []
    for i, name in enumerate(requires):
        if not isinstance(name, str) or not re.match(PACKAGE_PATTERN, name):
            continue  # the model reports it
        dist = distribution_installed(name)
        if dist is None:
            missing.append(name)
            report.error(requires.where_item(i), f"requires[{i}]: this file needs the plugin package "
                                                 f"'{name}', which is not installed: pip install {name}")
        elif not provides_components(dist):
            report.error(requires.where_item(i), f"requires[{i}]: the package '{name}' is installed but is "
                                                 "not a tnnspec plugin (it declares no 'tnnspec.cells' or "
                                                 "'tnnspec.ops' entry points)")
    return missing


def _strict_numbers(value: Any, node: Any, path: list, report: Report, source: "SourceMap") -> None:
    """Pydantic's lax mode turns ``true`` into 1 and ``2.0`` into 2; a spec file must say what
    it means, so an integer field given a boolean or a float (and a number field given a
    boolean) is an error."""
    from .errors import dotted

    if isinstance(value, BaseModel):
        if isinstance(node, LMap):
            for name in type(value).model_fields:
                if name in node:
                    _strict_numbers(getattr(value, name), node[name], path + [name], report, source)
        return
    if isinstance(value, dict) and isinstance(node, LMap):
        for key in value:
            if key in node:
                _strict_numbers(value[key], node[key], path + [key], report, source)
        return
    if isinstance(value, (list, tuple)) and isinstance(node, list):
        for i, (v, n) in enumerate(zip(value, node)):
            _strict_numbers(v, n, path + [i], report, source)
        return
    wrong = None
    if type(value) is int and (isinstance(node, bool) or isinstance(node, float)):
        wrong = "an integer"
    elif type(value) is float and isinstance(node, bool):
        wrong = "a number"
    if wrong:
        report.error(source.where(path), f"{dotted(path)}: expected {wrong}, got {str(node).lower() if isinstance(node, bool) else node}")



def parse_spec_file(path: str | Path) -> tuple[Spec, SourceMap]:
    report = Report()
    return validate_tree(read_file(path, report), str(path), report)


def parse_spec_text(text: str, file: str = "<string>") -> tuple[Spec, SourceMap]:
    report = Report()
    return validate_tree(parse_text(text, file, report), file, report)
