"""Format versions and the migrations between them.

Each change to the file format that would break an existing file comes with a migration,
registered by the version it upgrades from and the one it produces::

    @register_migration("1.0", "1.1")
    def _schedule_start_stop(doc: Document) -> None:
        ...

Migrations are chained by version (1.0 -> 1.1 -> 1.2 ...). They edit a file's YAML
round-trip node graph, as ruamel.yaml composes it, through :class:`Document`, whose edits
are also applied to the file's *text* as replacements of exactly the spans they touch: every
comment, blank line, indentation, quote and flow style elsewhere stays byte for byte. The same
migrations serve two callers:

* loading (:func:`tnnspec.spec.source.parse_text`): an older file is migrated in memory before
  it is read, with a warning per change that suggests ``tnnspec upgrade FILE``;
* ``tnnspec upgrade FILE...`` (:func:`upgrade_file`, :func:`upgrade_text`): the file is
  rewritten in the newest format (atomically).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .diagnostics import Diagnostic, Pos, SpecError

#: the first format version; every other one is reached from it through MIGRATIONS
FIRST_VERSION = "1.0"

#: from-version -> (to-version, migration)
MIGRATIONS: dict[str, tuple[str, Callable[["Document"], None]]] = {}


def register_migration(source: str, target: str):
    """Register ``fn(doc)`` as the migration from format ``source`` to ``target``."""

    def decorate(fn: Callable[["Document"], None]) -> Callable[["Document"], None]:
        if source in MIGRATIONS:
            raise ValueError(f"a migration from format {source} is already registered "
                             f"({MIGRATIONS[source][1].__name__})")
        MIGRATIONS[source] = (target, fn)
        return fn

    return decorate


def latest_version() -> str:
    """The newest format version: where the chain of migrations from FIRST_VERSION ends."""
    version, seen = FIRST_VERSION, set()
    while version in MIGRATIONS and version not in seen:
        seen.add(version)
        version = MIGRATIONS[version][0]
    return version


def known_versions() -> list[str]:
    out, version = [FIRST_VERSION], FIRST_VERSION
    while version in MIGRATIONS and MIGRATIONS[version][0] not in out:
        version = MIGRATIONS[version][0]
        out.append(version)
    return out


@dataclass(frozen=True)
class Change:
    """One edit a migration made: where, what (``inputs.image.schedule: 'on' -> 'start'``)."""

    pos: Pos
    message: str
    kind: str = "content"  # or "version" (the `tnnspec:` line)

    def __str__(self) -> str:
        return f"{self.pos}: {self.message}"


class Document:
    """A YAML file's round-trip node graph, edited by migrations.

    Read with :meth:`get`, :meth:`items`, :meth:`scalar`, :meth:`walk`; edit with
    :meth:`rename_key` and :meth:`set_scalar`. Each edit changes the node graph (so the next
    migration in a chain sees it) and records a replacement of the node's text span.
    """

    def __init__(self, root: Node, file: str = "<string>"):
        self.root = root
        self.file = file
        self.changes: list[Change] = []
        self._edits: dict[int, tuple[int, int, str]] = {}

    # ------------------------------------------------------------ reading
    @staticmethod
    def is_mapping(node) -> bool:
        return isinstance(node, MappingNode)

    @staticmethod
    def scalar(node) -> str | None:
        """The text of a scalar node (None for anything else)."""
        return node.value if isinstance(node, ScalarNode) else None

    def items(self, mapping) -> list[tuple[str, Node]]:
        """(key text, value node) of a mapping's scalar keys, in order ([] if not a mapping)."""
        if not isinstance(mapping, MappingNode):
            return []
        return [(k.value, v) for k, v in mapping.value if isinstance(k, ScalarNode)]

    def get(self, mapping, key: str) -> Node | None:
        return next((v for k, v in self.items(mapping) if k == key), None)

    def walk(self) -> Iterator[tuple[str, MappingNode]]:
        """Every mapping in the file once (an aliased one at its anchor), with its path."""
        seen: set[int] = set()

        def visit(node, path: str):
            if id(node) in seen:
                return
            seen.add(id(node))
            if isinstance(node, MappingNode):
                yield path, node
                for key, value in node.value:
                    name = key.value if isinstance(key, ScalarNode) else "?"
                    yield from visit(value, f"{path}.{name}" if path else name)
            elif isinstance(node, SequenceNode):
                for i, item in enumerate(node.value):
                    yield from visit(item, f"{path}[{i}]")

        yield from visit(self.root, "")

    def pos(self, node: Node) -> Pos:
        mark = node.start_mark
        return Pos(self.file, mark.line + 1, mark.column + 1)

    # ------------------------------------------------------------ editing
    def rename_key(self, mapping: MappingNode, old: str, new: str, path: str = "") -> bool:
        """Rename key ``old`` to ``new`` in place (order, quotes and value kept)."""
        for key, _ in mapping.value:
            if isinstance(key, ScalarNode) and key.value == old:
                if any(isinstance(k, ScalarNode) and k.value == new for k, _ in mapping.value):
                    raise SpecError([Diagnostic.at(self.pos(key), "error", (
                        f"{path or '(top level)'}: cannot rename '{old}' to '{new}': "
                        f"'{new}' is already there"))])
                key.value = new
                self._replace(key, _quoted(new, key.style))
                self.changes.append(Change(self.pos(key), f"{path or '(top level)'}: '{old}' -> '{new}'"))
                return True
        return False

    def set_scalar(self, node: ScalarNode, text: str, message: str, kind: str = "content") -> None:
        """Replace a scalar's value by the string ``text`` (quoted as the old one was, double
        quotes if it was plain)."""
        node.value = text
        node.tag = "tag:yaml.org,2002:str"
        if node.style not in ("'", '"'):
            node.style = '"'
        self._replace(node, _quoted(text, node.style))
        self.changes.append(Change(self.pos(node), message, kind))

    def _replace(self, node: Node, text: str) -> None:
        self._edits[id(node)] = (node.start_mark.index, node.end_mark.index, text)

    def apply(self, text: str) -> str:
        """``text`` (the text this document was composed from) with every edit made."""
        for start, end, new in sorted(self._edits.values(), reverse=True):
            text = text[:start] + new + text[end:]
        return text


def _quoted(text: str, style) -> str:
    if style == "'":
        return "'" + text.replace("'", "''") + "'"
    if style == '"':
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def migrate(doc: Document, version_hint: str | None = None) -> tuple[str | None, str | None]:
    """Run every migration from the document's format version (its ``tnnspec`` value, else
    ``version_hint``) to the newest, updating the ``tnnspec`` value. Returns (from, to);
    an unknown version is left alone (the loader reports it)."""
    if not isinstance(doc.root, MappingNode):
        return None, None
    node = doc.get(doc.root, "tnnspec")
    version = doc.scalar(node) if node is not None else version_hint
    current = version
    while current in MIGRATIONS:
        current, fn = MIGRATIONS[current]
        fn(doc)
    if isinstance(node, ScalarNode) and current != version:
        doc.set_scalar(node, current, f"tnnspec: format {version} -> {current}", kind="version")
    return version, current


# ---------------------------------------------------------------- the migrations
@register_migration("1.0", "1.1")
def _schedule_start_stop(doc: Document) -> None:
    """1.1: the on_off schedule's ``on``/``off`` are ``start``/``stop`` (YAML 1.1 tools such as
    PyYAML read the keys ``on``/``off`` as booleans)."""
    for path, mapping in doc.walk():
        if doc.scalar(doc.get(mapping, "type")) == "on_off":
            doc.rename_key(mapping, "on", "start", path)
            doc.rename_key(mapping, "off", "stop", path)


# ---------------------------------------------------------------- upgrading files
@dataclass
class Upgrade:
    """What upgrading one file does."""

    file: str
    source_version: str | None
    target_version: str | None
    text: str
    new_text: str
    changes: list[Change] = field(default_factory=list)

    @property
    def needed(self) -> bool:
        return self.new_text != self.text


def plan_upgrade(text: str, file: str = "<string>") -> Upgrade:
    """The upgrade of one file's text to the newest format (nothing is written). Raises
    :class:`SpecError` for a file that cannot be read, has no format version or an unknown one."""
    from .source import compose

    bom = text.startswith("\ufeff")
    body = text[1:] if bom else text
    root = compose(body, file)
    if not isinstance(root, MappingNode):
        raise SpecError([Diagnostic(file, 1, 1, "error", "top level is not a mapping: not a tnnspec file")])
    doc = Document(root, file)
    node = doc.get(root, "tnnspec")
    if node is None:
        raise SpecError([Diagnostic.at(doc.pos(root), "error", (
            "no 'tnnspec' format version, so the migrations to apply are unknown: add the version "
            f"the file was written for (e.g. tnnspec: \"{FIRST_VERSION}\") at the top and run again"))])
    version = doc.scalar(node)
    if version not in known_versions():
        raise SpecError([Diagnostic.at(doc.pos(node), "error", (
            f"tnnspec: format version '{version}' is not known; known: {', '.join(known_versions())}"))])
    try:
        source, target = migrate(doc)
    except RecursionError:
        raise SpecError([Diagnostic(file, 1, 1, "error", "nesting too deep to upgrade")]) from None
    new = doc.apply(body)
    changes = sorted(doc.changes, key=lambda c: (c.pos.line, c.pos.col))
    return Upgrade(file, source, target, text, ("\ufeff" if bom else "") + new, changes)


def upgrade_text(text: str, file: str = "<string>") -> str:
    """``text`` rewritten in the newest format, comments and layout kept."""
    return plan_upgrade(text, file).new_text


def read_text_exact(path: str | Path) -> str:
    """A file's text with its line endings as they are (no newline translation)."""
    with open(path, encoding="utf-8", newline="") as f:
        return f.read()


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: a failure leaves the
    old file as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def upgrade_file(path: str | Path, check: bool = False) -> Upgrade:
    """Upgrade a file in place to the newest format (atomically; ``check``: write nothing).
    Included files are files too: name them to upgrade them."""
    name = str(path)
    try:
        text = read_text_exact(path)
    except FileNotFoundError:
        raise SpecError([Diagnostic(name, 1, 1, "error", "file not found")]) from None
    except IsADirectoryError:
        raise SpecError([Diagnostic(name, 1, 1, "error", "is a directory, not a spec file")]) from None
    except UnicodeDecodeError as exc:
        raise SpecError([Diagnostic(name, 1, 1, "error", f"file is not UTF-8 text ({exc.reason})")]) from None
    up = plan_upgrade(text, name)
    if up.needed and not check:
        write_atomic(path, up.new_text)
    return up
