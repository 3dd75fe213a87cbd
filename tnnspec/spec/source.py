"""Safe YAML/JSON reading into a *located* tree.

Files are parsed with ruamel.yaml's composer (YAML 1.2, so ``on``/``no`` stay strings)
and turned into plain ``dict``/``list``/scalar values by our own code:

* only the YAML core tags (map, seq, str, int, float, bool, null) are accepted —
  a tag such as ``!!python/object`` is refused, nothing is ever imported or evaluated;
* duplicate keys are an error (never last-one-wins);
* a mapping key that is not a string in YAML 1.1 as well as 1.2 (``on``, ``no``, ``y``, ``1``,
  ``null``), and a plain value that YAML 1.1 tools such as PyYAML read differently (``yes``,
  ``1e3``, ``010``), is an error (:mod:`tnnspec.spec.yaml11`), so a file reads the same with
  every YAML loader;
* a file in an older format version is migrated on the node graph before it is converted
  (:mod:`tnnspec.spec.migrate`), with a warning per change;
* every mapping key, mapping value and list item remembers where its text is
  (:class:`~tnnspec.spec.diagnostics.Pos`), so later checks can point at it.

:class:`LMap` and :class:`LList` are ``dict``/``list`` subclasses carrying positions; they
pass through pydantic like ordinary containers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.resolver import VersionedResolver

from .diagnostics import Diagnostic, Pos, Report, SpecError
from .yaml11 import key_problem, value_problem

CORE = "tag:yaml.org,2002:"
MERGE_KEY = "<<"


class LMap(dict):
    """A mapping that remembers where it, its keys and its values are in a file."""

    pos: Pos
    key_pos: dict
    val_pos: dict
    #: on a file's top level: the format version the file was written in (its own ``tnnspec``
    #: value, or the including file's for an included file without one), before migration
    source_version: str | None = None

    def __init__(self, *args, pos: Pos | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pos = pos or Pos("<memory>")
        self.key_pos = {}
        self.val_pos = {}

    def set(self, key, value, key_pos: Pos, val_pos: Pos) -> None:
        self[key] = value
        self.key_pos[key] = key_pos
        self.val_pos[key] = val_pos

    def where_key(self, key) -> Pos:
        return self.key_pos.get(key, self.pos)

    def where_value(self, key) -> Pos:
        return self.val_pos.get(key, self.pos)

    def copy(self) -> "LMap":
        new = LMap(self, pos=self.pos)
        new.key_pos = dict(self.key_pos)
        new.val_pos = dict(self.val_pos)
        return new


class LList(list):
    """A list that remembers where it and each of its items are in a file."""

    pos: Pos
    item_pos: list

    def __init__(self, *args, pos: Pos | None = None):
        super().__init__(*args)
        self.pos = pos or Pos("<memory>")
        self.item_pos = []

    def where_item(self, index: int) -> Pos:
        if 0 <= index < len(self.item_pos):
            return self.item_pos[index]
        return self.pos


def node_pos(node, file: str) -> Pos:
    mark = node.start_mark
    return Pos(file, mark.line + 1, mark.column + 1)


def _scalar(node: ScalarNode, file: str, report: Report, value: bool = True) -> Any:
    try:
        read = _typed_scalar(node, file, report)
    except ValueError:
        kind = node.tag.replace(CORE, "")
        report.error(node_pos(node, file), f"'{node.value}' is not a valid {kind} (tagged !!{kind})")
        return None
    if value and node.style is None and node.tag in _PORTABLE_TAGS and not file.endswith(".json"):
        problem = value_problem(node.value, read)
        if problem:
            report.error(node_pos(node, file), problem)
    return read


_PORTABLE_TAGS = {CORE + t for t in ("str", "int", "float", "bool", "null")}
_RESOLVER = VersionedResolver()


def plain_reading(text: str) -> Any:
    """What tnnspec's YAML 1.2 makes of ``text`` written as a plain scalar."""
    tag = _RESOLVER.resolve(ScalarNode, text, (True, False))
    if tag == CORE + "str":
        return text
    if tag not in _PORTABLE_TAGS:  # e.g. a timestamp: not a string either
        return object()
    try:
        value = _typed_scalar(ScalarNode(tag, text), "", Report())
    except ValueError:
        return text
    return value if value is not None or tag == CORE + "null" else object()


def _check_key(node: ScalarNode, file: str, report: Report) -> None:
    problem = key_problem(node.value, plain_reading(node.value))
    if problem:
        report.error(node_pos(node, file), problem)


def _typed_scalar(node: ScalarNode, file: str, report: Report) -> Any:
    tag, text = node.tag, node.value
    if tag == CORE + "str":
        # ruamel's round-trip composer marks the folds of a `>` scalar with '\a' (BEL), which
        # never belongs to the text (YAML does not allow it in a folded scalar)
        return text.replace("\a", "") if node.style == ">" else text
    if tag == CORE + "null":
        return None
    if tag == CORE + "bool":
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if tag == CORE + "int":
        clean = text.replace("_", "")
        try:
            return int(clean, 10)
        except ValueError:
            return int(clean, 0)
    if tag == CORE + "float":
        low = text.lower().replace("_", "")
        if low.endswith(".inf"):
            return -math.inf if low.startswith("-") else math.inf
        if low.endswith(".nan"):
            return math.nan
        return float(low)
    report.error(node_pos(node, file), _bad_tag(tag))
    return None


def _bad_tag(tag: str) -> str:
    shown = tag.replace(CORE, "!!")
    return (f"YAML tag '{shown}' is not allowed: tnnspec files are plain data "
            "(mappings, lists, strings, numbers, booleans, null); nothing is imported or evaluated")


MAX_DEPTH = 64


def _convert(node, file: str, report: Report, depth: int = 0) -> Any:
    if depth > MAX_DEPTH:
        raise _TooDeep(node_pos(node, file))
    if isinstance(node, ScalarNode):
        return _scalar(node, file, report)
    if isinstance(node, SequenceNode):
        if node.tag != CORE + "seq":
            report.error(node_pos(node, file), _bad_tag(node.tag))
            return None
        out = LList(pos=node_pos(node, file))
        for item in node.value:
            out.append(_convert(item, file, report, depth + 1))
            out.item_pos.append(node_pos(item, file))
        return out
    if isinstance(node, MappingNode):
        if node.tag != CORE + "map":
            report.error(node_pos(node, file), _bad_tag(node.tag))
            return None
        return _mapping(node, file, report, depth)
    report.error(node_pos(node, file), "unsupported YAML node")
    return None


class _TooDeep(Exception):
    def __init__(self, pos: Pos):
        self.pos = pos


def _mapping(node: MappingNode, file: str, report: Report, depth: int) -> LMap:
    out = LMap(pos=node_pos(node, file))
    merged: list[LMap] = []
    for key_node, value_node in node.value:
        kpos = node_pos(key_node, file)
        if not isinstance(key_node, ScalarNode):
            report.error(kpos, "mapping keys must be plain strings")
            continue
        if key_node.tag == CORE + "merge" or key_node.value == MERGE_KEY:
            value = _convert(value_node, file, report, depth + 1)
            sources = value if isinstance(value, list) else [value]
            merged.extend(s for s in sources if isinstance(s, LMap))
            continue
        _check_key(key_node, file, report)
        key = _scalar(key_node, file, report, value=False)
        if not isinstance(key, str):
            key = str(key) if key is not None else "null"
        if key in out:
            first = out.key_pos[key]
            report.error(kpos, f"duplicate key '{key}' (first defined at line {first.line}); "
                               "each key may appear once")
            continue
        out.set(key, _convert(value_node, file, report, depth + 1), kpos, node_pos(value_node, file))
    for source in merged:  # YAML merge keys: explicit keys win
        for key, value in source.items():
            if key not in out:
                out.set(key, value, source.where_key(key), source.where_value(key))
    return out


def _yaml_problem(exc: MarkedYAMLError, text: str, file: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    lines = text.splitlines()
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    if "\t" in source_line and ("'\\t'" in str(exc) or "tab" in str(exc).lower()):
        col = source_line.index("\t") + 1
        message = "tab character: YAML indents with spaces, never tabs"
    else:
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        message = f"YAML syntax error: {problem}"
    return Diagnostic(file, line, col, "error", message)


def _deepest_bracket(text: str, file: str) -> Pos:
    """Where flow brackets first nest deeper than MAX_DEPTH (1:1 if they never do)."""
    depth = 0
    for line_no, line in enumerate(text.splitlines(), 1):
        for col, ch in enumerate(line, 1):
            depth += ch in "[{"
            depth -= ch in "]}"
            if depth > MAX_DEPTH:
                return Pos(file, line_no, col)
    return Pos(file, 1, 1)


def _check_json(text: str, file: str) -> None:
    """A .json file must be strict JSON (no trailing commas, comments or YAML syntax)."""
    import json

    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise SpecError([Diagnostic(file, exc.lineno, exc.colno, "error",
                                    f"JSON syntax error: {exc.msg}")]) from None
    except RecursionError:
        raise SpecError([Diagnostic(file, 1, 1, "error", "JSON nested too deeply")]) from None


def compose(text: str, file: str = "<string>"):
    """The ruamel.yaml round-trip node graph of ``text`` (BOM already removed); raise
    :class:`SpecError` for a syntax error, an empty file or nesting that is too deep."""
    try:
        node = YAML(typ="rt").compose(text)
    except RecursionError:
        raise SpecError([Diagnostic.at(_deepest_bracket(text, file), "error", _too_deep(file).message)]) from None
    except MarkedYAMLError as exc:
        raise SpecError([_yaml_problem(exc, text, file)]) from None
    except YAMLError as exc:
        raise SpecError([Diagnostic(file, 1, 1, "error", f"YAML error: {exc}")]) from None
    if node is None:
        raise SpecError([Diagnostic(file, 1, 1, "error",
                                    "file is empty: a tnnspec file is a mapping that starts with "
                                    f"'tnnspec: \"{_latest()}\"'")])
    return node


def _too_deep(file: str) -> Diagnostic:
    return Diagnostic(file, 1, 1, "error", f"nesting deeper than {MAX_DEPTH} levels; a tnnspec file "
                                           "is never nested this deeply")


def _latest() -> str:
    from .migrate import latest_version

    return latest_version()


def _migrate(node, file: str, report: Report, version_hint: str | None) -> str | None:
    """Migrate an older file in memory (a warning per change); return the version it was
    written in."""
    from .migrate import Document, migrate

    doc = Document(node, file)
    try:
        source, target = migrate(doc, version_hint)
    except RecursionError:
        raise SpecError([_too_deep(file)]) from None
    upgrade = f"`tnnspec upgrade {file}`" if not file.startswith("<") else "`tnnspec upgrade FILE`"
    for change in doc.changes:
        if change.kind == "content":
            report.warning(change.pos, f"{change.message}: the file is format {source}, read as format "
                                       f"{target}; run {upgrade} to rewrite it")
    return source


def parse_text(text: str, file: str = "<string>", report: Report | None = None,
               version_hint: str | None = None) -> Any:
    """Parse YAML or JSON text into a located tree; raise :class:`SpecError` on any problem.

    A file in an older format version (its ``tnnspec`` value, or ``version_hint`` for an
    included file without one) is migrated first; the warnings go to ``report``."""
    report = report if report is not None else Report()
    if text.startswith("\ufeff"):
        text = text[1:]
    if file.endswith(".json"):
        _check_json(text, file)
    node = compose(text, file)
    version = _migrate(node, file, report, version_hint) if isinstance(node, MappingNode) else None
    try:
        tree = _convert(node, file, report)
    except _TooDeep as exc:
        raise SpecError([Diagnostic.at(exc.pos, "error", _too_deep(file).message)]) from None
    if isinstance(tree, LMap):
        tree.source_version = version
    report.raise_if_errors()
    return tree


_FILES_READ: ContextVar[list[str] | None] = ContextVar("tnnspec_files_read", default=None)


@contextmanager
def files_read() -> Iterator[list[str]]:
    """Collect the paths of the spec files read inside the block: the file itself, the files it
    includes (at any depth) and includes that were looked for but are missing, in the order first
    met, each once, as the loader names them. What a watcher must watch::

        with files_read() as files:
            spec, diagnostics = check_file(path)
    """
    files: list[str] = []
    token = _FILES_READ.set(files)
    try:
        yield files
    finally:
        _FILES_READ.reset(token)


def note_file(path: str | Path) -> None:
    """Add ``path`` to the list of the enclosing :func:`files_read` block, if any."""
    files = _FILES_READ.get()
    if files is not None and str(path) not in files:
        files.append(str(path))


def read_file(path: str | Path, report: Report | None = None, version_hint: str | None = None) -> Any:
    """Read and parse a spec file; an unreadable file is a located :class:`SpecError` too."""
    note_file(path)
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Diagnostic(name, 1, 1, "error", "file not found")]) from None
    except IsADirectoryError:
        raise SpecError([Diagnostic(name, 1, 1, "error", "is a directory, not a spec file")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Diagnostic(name, 1, 1, "error",
                                    f"file is not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise SpecError([Diagnostic(name, 1, 1, "error", f"cannot read file: {exc.strerror}")]) from None
    return parse_text(text, name, report, version_hint)
