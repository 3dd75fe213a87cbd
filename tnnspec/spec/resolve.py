"""Includes, parameters and templates: resolved on the located tree, before validation.

* ``include: [other.yaml, ...]`` — each path relative to the including file; the included
  file may hold ``parameters``, ``templates``, ``inputs``, ``areas``, ``edges``, ``readouts``,
  ``requires`` (and its own ``include``). Names defined twice are an error; included edges
  (and required plugin packages) come first.
* ``parameters: {width: 64}`` — a value written exactly ``$width`` is replaced by 64.
* ``templates: {block: {...area keys...}}`` — an area with ``use: block`` starts from the
  template; keys written in the area replace the template's.

Positions survive: a value that came from a template or an included file still points at
the file and line where its text is.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from .diagnostics import Pos, Report, did_you_mean
from .source import LList, LMap, note_file, read_file

PARAM_REF = re.compile(r"^\$([A-Za-z_][A-Za-z0-9_]*)$")
MERGED_SECTIONS = ("parameters", "templates", "inputs", "areas", "readouts")
INCLUDABLE = set(MERGED_SECTIONS) | {"edges", "include", "tnnspec", "description", "requires"}


def resolve(tree: LMap, report: Report) -> LMap:
    """Return a new tree with includes merged, templates applied and parameters substituted."""
    tree = _merge_includes(tree, report, seen=(_canonical(tree.pos.file),))
    for section in ("parameters", "templates"):
        if section in tree and not isinstance(tree[section], LMap):
            report.error(tree.where_value(section), f"{section}: expected a mapping of name -> "
                                                    f"{'value' if section == 'parameters' else 'area keys'}")
    params = tree.get("parameters") if isinstance(tree.get("parameters"), LMap) else LMap()
    templates = tree.get("templates") if isinstance(tree.get("templates"), LMap) else LMap()
    out = LMap(pos=tree.pos)
    for key, value in tree.items():
        if key in ("include", "parameters", "templates", "$schema"):
            continue
        if key == "areas" and isinstance(value, LMap):
            value = _apply_templates(value, templates, report)
        out.set(key, _substitute(value, params, report, tree.where_value(key)),
                tree.where_key(key), tree.where_value(key))
    return out


def _merge_includes(tree: LMap, report: Report, seen: tuple[str, ...]) -> LMap:
    includes = tree.get("include")
    if includes is None:
        return tree
    paths = includes if isinstance(includes, LList) else LList([includes], pos=tree.where_value("include"))
    if not isinstance(includes, LList):
        paths.item_pos = [tree.where_value("include")]
    merged = LMap(pos=tree.pos)
    for i, rel in enumerate(paths):
        where = paths.where_item(i)
        if not isinstance(rel, str):
            report.error(where, "include: expected a file path (a string)")
            continue
        path = Path(tree.pos.file).parent / rel
        note_file(path)  # watched even when missing: creating it changes the spec
        if _canonical(path) in seen:
            chain = " -> ".join(Path(s).name for s in seen + (_canonical(path),))
            report.error(where, f"include cycle: {chain}")
            continue
        if not path.is_file():
            what = "is a directory, not a file" if path.is_dir() else "not found"
            report.error(where, f"include: '{rel}' {what} (looked for {path})")
            continue
        sub_report = Report()
        try:  # an included file without a `tnnspec` version is read in the including file's
            sub = read_file(path, sub_report, version_hint=getattr(tree, "source_version", None))
        except Exception as exc:  # SpecError from the included file
            report.extend(getattr(exc, "diagnostics", []))
            continue
        report.extend(sub_report.diagnostics)
        if not isinstance(sub, LMap):
            report.error(Pos(str(path)), "an included file must be a mapping")
            continue
        for key in sub:
            if key not in INCLUDABLE:
                report.error(sub.where_key(key), f"'{key}' cannot appear in an included file; "
                                                 f"allowed: {', '.join(sorted(INCLUDABLE))}")
        _merge_into(merged, _merge_includes(sub, report, seen + (_canonical(path),)), report)
    _merge_into(merged, tree, report)
    for key in ("tnnspec", "description"):  # the including file's own header wins
        if key in tree:
            merged.set(key, tree[key], tree.where_key(key), tree.where_value(key))
    return merged


def _canonical(path) -> str:
    return str(Path(path).resolve())


def _merge_into(dest: LMap, src: LMap, report: Report) -> None:
    for key, value in src.items():
        if key in MERGED_SECTIONS and isinstance(value, LMap):
            section = dest.get(key)
            if not isinstance(section, LMap):
                section = LMap(pos=value.pos)
                dest.set(key, section, src.where_key(key), value.pos)
            for name, item in value.items():
                if name in section:
                    first = section.where_key(name)
                    report.error(value.where_key(name), f"{key}: '{name}' is defined twice "
                                                        f"(also at {first})")
                    continue
                section.set(name, item, value.where_key(name), value.where_value(name))
        elif key in ("edges", "requires") and isinstance(value, LList):
            items = dest.get(key)
            if not isinstance(items, LList):
                items = LList(pos=value.pos)
                dest.set(key, items, src.where_key(key), value.pos)
            for i, item in enumerate(value):
                if key == "requires" and item in items:
                    continue  # a plugin package required by several files
                items.append(item)
                items.item_pos.append(value.where_item(i))
        elif key == "include":
            continue
        elif key not in dest or key not in ("tnnspec", "description"):
            dest.set(key, value, src.where_key(key), src.where_value(key))


def _apply_templates(areas: LMap, templates: LMap, report: Report) -> LMap:
    out = LMap(pos=areas.pos)
    for name, area in areas.items():
        if isinstance(area, LMap) and "use" in area:
            tname = area["use"]
            template = templates.get(tname) if isinstance(tname, str) else None
            if template is not None and not isinstance(template, LMap):
                report.error(templates.where_value(tname),
                             f"templates.{tname}: a template must be a mapping of area keys")
                area = LMap({k: v for k, v in area.items() if k != "use"}, pos=area.pos)
            elif not isinstance(template, LMap):
                known = list(templates)
                hint = did_you_mean(str(tname), known) or (
                    f"; defined templates: {', '.join(known)}" if known else "; no templates are defined")
                report.error(area.where_value("use"), f"areas.{name}.use: unknown template '{tname}'{hint}")
                area = LMap({k: v for k, v in area.items() if k != "use"}, pos=area.pos)
            else:
                merged = template.copy()
                merged.pos = area.pos
                for key, value in area.items():
                    if key != "use":
                        merged.set(key, value, area.where_key(key), area.where_value(key))
                area = merged
        out.set(name, area, areas.where_key(name), areas.where_value(name))
    return out


def _substitute(value: Any, params: LMap, report: Report, where: Pos) -> Any:
    if isinstance(value, str):
        match = PARAM_REF.match(value)
        if not match:
            return value
        key = match.group(1)
        if key not in params:
            known = list(params)
            hint = did_you_mean(key, known) or (
                f"; defined parameters: {', '.join(known)}" if known else "; no parameters are defined")
            report.error(where, f"unknown parameter '${key}'{hint}")
            return value
        return params[key]
    if isinstance(value, LMap):
        out = value.copy()
        for k in value:
            out[k] = _substitute(value[k], params, report, value.where_value(k))
        return out
    if isinstance(value, LList):
        out = LList(pos=value.pos)
        out.item_pos = list(value.item_pos)
        out.extend(_substitute(v, params, report, value.where_item(i)) for i, v in enumerate(value))
        return out
    return value
