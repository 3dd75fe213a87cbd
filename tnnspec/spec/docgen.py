"""The cells, ops and learning rules reference, generated from the component registry (``tnnspec docs``).

Everything here comes from each component's registration: its name, its parameters model's
docstring (the equations), its fields (name, default, constraints, description, allowed values),
its ``gates`` flag and its shape rule. A docstring is written as paragraphs separated by blank
lines, in reStructuredText literals (````x````, rendered as Markdown code):

* the first paragraph is the summary (one sentence: what it is, or its update equation), shown
  in the summary tables and as the JSON Schema description;
* the others are the full description: equations, then ``Parameters: ...`` (the torch parameter
  names), then ``Zero state: ...`` (the output at the first computed step; docs/cells.md shows it).

docs/spec.md, docs/cells.md and docs/learning_rules.md hold generated blocks between the lines
``<!-- BEGIN tnnspec docs: NAME -->`` and ``<!-- END tnnspec docs: NAME -->``; :func:`update` rewrites them (``make docs``) and a test
checks that they are current, so the docs of a new cell or op need no hand edits. No torch here.
"""

from __future__ import annotations

import inspect
import re
import textwrap
import typing
from typing import Any

from pydantic.fields import FieldInfo

from .components import BUILTIN, CELLS, LEARNING_RULES, OPS, REGISTRY, Kind, ShapeContext, ShapeError

#: a generated block: its markers are lines of their own
BLOCK = re.compile(r"^(<!-- BEGIN tnnspec docs: ([\w-]+) -->\n)(.*?)^(<!-- END tnnspec docs: \2 -->)$", re.S | re.M)
OPENING = re.compile(r"^<!-- BEGIN tnnspec docs: ([\w-]+) -->$", re.M)


class DocsError(ValueError):
    """A generated block names an unknown kind, or is not closed."""


# ------------------------------------------------------------------ docstrings
def markdown(text: str) -> str:
    """reStructuredText literals (````x````) as Markdown code (```x```)."""
    return re.sub(r"``(.+?)``", r"`\1`", text)


def paragraphs(cls: type) -> list[str]:
    """The docstring's paragraphs, each on one line, as Markdown."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    return [markdown(" ".join(p.split())) for p in re.split(r"\n\s*\n", doc) if p.strip()]


def _wrap(paragraph: str, width: int = 100) -> str:
    return textwrap.fill(paragraph, width, break_long_words=False, break_on_hyphens=False)


def summary(cls: type) -> str:
    paras = paragraphs(cls)
    return paras[0] if paras else ""


def zero_state(cls: type) -> str:
    """The ``Zero state:`` paragraph, without the gating sentence."""
    for p in paragraphs(cls):
        if p.startswith("Zero state:"):
            text = p.removeprefix("Zero state:").strip()
            return re.sub(r"\s*(Gates\.|Does not gate\b.*)$", "", text).strip()
    return ""


def _cell(text: str) -> str:
    """Text for a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------ fields
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, float):
        return re.sub(r"e-0*(\d)", r"e-\1", repr(v))
    return str(v)


def _literals(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(a) for a in typing.get_args(annotation)]
    return [x for arg in typing.get_args(annotation) for x in _literals(arg)]


def _bounds(info: FieldInfo) -> str:
    symbols = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤"}
    found = [f"{symbols[k]} {getattr(m, k):g}" for m in info.metadata for k in symbols
             if getattr(m, k, None) is not None]
    return ", ".join(found)


_DEFAULT_NOTE = re.compile(r"\s*\(default: ([^()]*(?:\([^()]*\)[^()]*)*)\)\s*$")


def field_rows(model: type) -> list[tuple[str, str, str]]:
    """``(key, default, meaning)`` of each field but ``type``: a ``None`` default whose description
    ends ``(default: X)`` shows X; allowed values and bounds are added to the meaning."""
    rows = []
    for key, info in model.model_fields.items():
        if key == "type" and kind_of(model) in ("cell", "learning_rule"):
            continue
        meaning = info.description or ""
        if info.is_required():
            default = "required"
        else:
            value = info.get_default(call_default_factory=True)
            note = _DEFAULT_NOTE.search(meaning) if value is None else None
            if note:
                default, meaning = note.group(1), meaning[:note.start()]
            else:
                default = "none" if value is None else f"`{_value(value)}`"
        choices = _literals(info.annotation)
        if choices:
            meaning += ": " + _or([f"`{c}`" for c in choices])
        bounds = _bounds(info)
        if bounds:
            meaning += f" ({bounds})"
        rows.append((key, default, markdown(meaning)))
    return rows


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def kind_of(model: type) -> Kind | None:
    for (kind, _), reg in REGISTRY.items():
        if reg.params is model:
            return kind
    return None


def drive_channels(cls: type) -> str:
    """``any`` when the cell maps any drive channels to the area's, else ``channels`` (the drive
    must already have them), found from its shape rule on a sample drive."""
    params = cls.model_construct()
    try:
        params.output_shape((3, 8, 8), 5)
    except ShapeError:
        return "`channels`"
    return "any"


# ------------------------------------------------------------------ blocks
def names(kind: Kind, origin: str | None = None) -> list[str]:
    """Registered names of one kind, in registration order; ``origin`` keeps one package's."""
    table = {"cell": CELLS, "op": OPS, "learning_rule": LEARNING_RULES}[kind]
    return [n for n in table if origin is None or REGISTRY[(kind, n)].origin == origin]


def _from(kind: Kind, name: str) -> str:
    origin = REGISTRY[(kind, name)].origin
    return "" if origin == BUILTIN else f"From the plugin package `{origin}`.\n\n"


def cell_summary_table(origin: str | None = None) -> str:
    rows = ["| cell | update | drive | gates |", "|---|---|---|---|"]
    for n in names("cell", origin):
        cls = CELLS[n]
        rows.append(f"| `{n}` | {_cell(summary(cls))} | {drive_channels(cls)} | {'yes' if cls.gates else 'no'} |")
    return "\n".join(rows) + "\n"


def cell_zero_state_table(origin: str | None = None) -> str:
    rows = ["| type | summary | zero state | gates |", "|---|---|---|---|"]
    for n in names("cell", origin):
        cls = CELLS[n]
        rows.append(f"| `{n}` | {_cell(summary(cls))} | {_cell(zero_state(cls))} | "
                    f"{'yes' if cls.gates else 'no'} |")
    return "\n".join(rows) + "\n"


def _key_table(model: type) -> str:
    rows = field_rows(model)
    if not rows:
        return ""
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {_cell(d)} | {_cell(m)} |" for k, d, m in rows]
    return "\n".join(lines) + "\n"


def cell_sections(origin: str | None = None, level: int = 3) -> str:
    """One section per cell: its docstring, then its keys (``type`` aside)."""
    out = []
    for n in names("cell", origin):
        cls = CELLS[n]
        text = f"{'#' * level} `{n}`\n\n{_from('cell', n)}" + "\n\n".join(map(_wrap, paragraphs(cls))) + "\n"
        table = _key_table(cls)
        text += f"\n{table}" if table else "\nNo keys besides `type`.\n"
        out.append(text)
    return "\n".join(out)


def _op_parameters(model: type) -> str:
    parts = []
    for key, default, _ in field_rows(model):
        info = model.model_fields[key]
        if default == "required":
            choices = _literals(info.annotation)
            default = "required" + (": " + _or([f"`{c}`" for c in choices]) if choices else "")
        else:
            default = default.strip("`")
            if _literals(info.annotation) and default not in ("none", "null"):
                default = f"`{default}`"
        parts.append(f"`{key}` ({default})")
    return ", ".join(parts) or "—"


def ops_table(origin: str | None = None) -> str:
    rows = ["| op | shorthand | parameters (default) | equation and shape |", "|---|---|---|---|"]
    for n in names("op", origin):
        cls = OPS[n]
        shorthand = f"`{cls.shorthand}`" if cls.shorthand else "—"
        text = " ".join(paragraphs(cls))
        if REGISTRY[("op", n)].origin != BUILTIN:
            text += f" (plugin package `{REGISTRY[('op', n)].origin}`)"
        rows.append(f"| `{n}` | {shorthand} | {_cell(_op_parameters(cls))} | {_cell(text)} |")
    return "\n".join(rows) + "\n"


def learning_rule_table(origin: str | None = None) -> str:
    rows = ["| rule | update | paper |", "|---|---|---|"]
    for n in names("learning_rule", origin):
        cls = LEARNING_RULES[n]
        rows.append(f"| [`{n}`](#{n}) | {_cell(summary(cls))} | {_cell(paper(cls))} |")
    return "\n".join(rows) + "\n"


def paper(cls: type) -> str:
    """The ``Paper:`` paragraph of a docstring, without the label."""
    for p in paragraphs(cls):
        if p.startswith("Paper:"):
            return p.removeprefix("Paper:").strip()
    return ""


def learning_rule_sections(origin: str | None = None, level: int = 3) -> str:
    """One section per learning rule: its docstring, then its keys (``type`` aside)."""
    out = []
    for n in names("learning_rule", origin):
        cls = LEARNING_RULES[n]
        text = (f"{'#' * level} `{n}`\n\n{_from('learning_rule', n)}"
                + "\n\n".join(map(_wrap, paragraphs(cls))) + "\n")
        table = _key_table(cls)
        text += f"\n{table}" if table else "\nNo keys besides `type`.\n"
        out.append(text)
    return "\n".join(out)


BLOCKS = {
    "cells": lambda origin: cell_summary_table(origin) + "\n" + cell_sections(origin),
    "cell-table": cell_zero_state_table,
    "ops": ops_table,
    "learning-rules": lambda origin: learning_rule_table(origin) + "\n" + learning_rule_sections(origin),
}


def _ready() -> None:
    from ..plugins import load_plugins

    load_plugins()


def block(name: str, origin: str | None = None) -> str:
    """The text of one generated block (``cells``, ``cell-table``, ``ops`` or ``learning-rules``)."""
    _ready()
    if name not in BLOCKS:
        raise DocsError(f"unknown generated block '{name}'; known: {', '.join(BLOCKS)}")
    return BLOCKS[name](origin)


def update(text: str, origin: str | None = None) -> str:
    """``text`` with every generated block rewritten from the registry."""
    opened = OPENING.findall(text)
    closed = BLOCK.findall(text)
    if len(opened) != len(closed):
        raise DocsError("a '<!-- BEGIN tnnspec docs: NAME -->' has no matching '<!-- END tnnspec docs: NAME -->'")
    return BLOCK.sub(lambda m: m.group(1) + block(m.group(2), origin) + m.group(4), text)


def reference(origin: str | None = None) -> str:
    """A stand-alone Markdown page: every registered cell, op and learning rule (the installed
    plugins' too)."""
    _ready()
    title = "tnnspec cells and ops" + (f" from `{origin}`" if origin else "")
    out = [f"# {title}\n"]
    if names("cell", origin):
        out.append("## Cells\n\n" + block("cells", origin))
    if names("op", origin):
        out.append("## Ops\n\n" + block("ops", origin))
    if names("learning_rule", origin):
        out.append("## Learning rules\n\n" + block("learning-rules", origin))
    return "\n".join(out)
