"""Turn pydantic validation errors into located, human diagnostics.

Pydantic reports a ``loc`` such as ``('edges', 0, 'feedback', 'dleay')``; the union tag
(``feedback``) is not in the file. We walk the loc through the located tree, skipping the
segments that are not there, to find the key or value the user wrote.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel

from .components import CELLS, LEARNING_RULES, OPS
from .diagnostics import Diagnostic, Pos, did_you_mean, one_of
from .models import NAME_PATTERN, PACKAGE_PATTERN, RegistryUnion
from .source import LList, LMap


def _walk(tree: Any, loc: tuple) -> tuple[list, Pos, Pos, Any, bool]:
    """Follow ``loc`` through the tree: (clean path, value pos, key pos, node, complete)."""
    node, path = tree, []
    value_pos = key_pos = tree.pos if isinstance(tree, (LMap, LList)) else Pos("<memory>")
    complete = True
    for seg in loc:
        if isinstance(node, LMap) and isinstance(seg, str) and seg in node:
            value_pos, key_pos = node.where_value(seg), node.where_key(seg)
            node = node[seg]
            path.append(seg)
        elif isinstance(node, LList) and isinstance(seg, int) and 0 <= seg < len(node):
            value_pos = key_pos = node.where_item(seg)
            node = node[seg]
            path.append(seg)
        elif seg == "[key]":
            value_pos = key_pos  # the problem is the mapping key itself
            continue
        else:
            complete = False
    return path, value_pos, key_pos, node, complete


def dotted(path: list) -> str:
    out = ""
    for seg in path:
        out += f"[{seg}]" if isinstance(seg, int) else (f".{seg}" if out else str(seg))
    return out or "(top level)"


def _model_at(root: type[BaseModel], path: list, tree: Any) -> type[BaseModel] | None:
    """The pydantic model class that validates the mapping at ``path``."""
    tp: Any = root
    node = tree
    for seg in path:
        model = _pick_model(tp, node)
        if model is not None:
            field = model.model_fields.get(seg) if isinstance(seg, str) else None
            if field is None:
                return None
            tp = field.annotation
        else:
            tp = _container_item(tp)
            if tp is None:
                return None
        node = node[seg] if isinstance(node, (LMap, LList)) else None
    return _pick_model(tp, node)


def _unwrap(tp: Any) -> list:
    if isinstance(tp, type) and issubclass(tp, RegistryUnion):
        return _unwrap(tp.annotation())
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return [m for arg in typing.get_args(tp) for m in _unwrap(arg)]
    return [tp]


def _pick_model(tp: Any, node: Any) -> type[BaseModel] | None:
    models = [m for m in _unwrap(tp) if isinstance(m, type) and issubclass(m, BaseModel)]
    if not models:
        return None
    if len(models) == 1:
        return models[0]
    if isinstance(node, LMap):
        for m in models:  # discriminated by `type`, or a one-key op entry
            t = m.model_fields.get("type")
            if t is not None and typing.get_args(t.annotation) == (node.get("type"),):
                return m
            if len(node) == 1 and next(iter(node)) in m.model_fields and len(m.model_fields) == 1:
                return m
    return None


def _container_item(tp: Any) -> Any:
    for t in _unwrap(tp):
        origin = typing.get_origin(t)
        if origin in (list, tuple):
            return typing.get_args(t)[0]
        if origin is dict:
            return typing.get_args(t)[1]
    return None


def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def translate(errors: list[dict], tree: Any, root: type[BaseModel],
              missing_plugins: typing.Sequence[str] = ()) -> list[Diagnostic]:
    """One diagnostic per problem; union alternatives at one place are merged. An unknown cell or
    op is said to maybe come from ``missing_plugins`` (packages the file requires that are absent)."""
    hint = _plugin_hint(missing_plugins)
    grouped: dict[tuple, list[dict]] = {}
    for err in errors:
        path, vpos, kpos, node, complete = _walk(tree, err["loc"])
        grouped.setdefault((tuple(path), err["type"] == "extra_forbidden"), []).append(
            dict(err, _path=path, _vpos=vpos, _kpos=kpos, _node=node, _complete=complete))
    # a typo in a required key gives 'missing x' and 'unknown xx': keep only the typo
    typos = {(tuple(e["_path"][:-1]), e["loc"][-1])
             for errs in grouped.values() for e in errs if e["type"] == "extra_forbidden"}
    out = []
    for (_, _), errs in grouped.items():
        types = {e["type"] for e in errs}
        if len(errs) > 1 and not types & {"extra_forbidden", "missing"}:
            e = errs[0]
            nouns = [_NOUNS.get(x["type"].split("_")[0]) for x in errs]
            msgs = (["expected " + " or ".join(dict.fromkeys(nouns))] if all(nouns)
                    else sorted({_message(x, root, tree, short=True) for x in errs}))
            out.append(Diagnostic.at(e["_vpos"], "error",
                                     f"{dotted(e['_path'])}: invalid value {_describe(e['input'])}: "
                                     + "; or ".join(msgs)))
            continue
        for e in errs:
            if e["type"] == "missing" and any(
                    parent == tuple(e["_path"]) and did_you_mean(key, [e["loc"][-1]]) for parent, key in typos):
                continue
            pos = e["_kpos"] if e["type"] == "extra_forbidden" else e["_vpos"]
            if e["type"] == "union_tag_invalid" and isinstance(e["_node"], LMap) and "type" in e["_node"]:
                pos = e["_node"].where_value("type")  # point at the unknown type itself
            message = _message(e, root, tree)
            if hint and e["type"] in ("union_tag_invalid", "op_form") and "unknown" in message:
                message += hint
            out.append(Diagnostic.at(pos, "error", message))
    return out


def _plugin_hint(missing: typing.Sequence[str]) -> str:
    if not missing:
        return ""
    names = ", ".join(f"'{m}'" for m in missing)
    if len(missing) == 1:
        return (f"; it may come from the plugin package {names}, which this file requires and which "
                f"is not installed: pip install {missing[0]}")
    return (f"; it may come from one of the plugin packages {names}, which this file requires and "
            f"which are not installed: pip install {' '.join(missing)}")


_NOUNS = {"int": "an integer", "float": "a number", "tuple": "a list", "list": "a list",
          "string": "a string", "bool": "true or false", "dict": "a mapping"}


def _message(e: dict, root, tree, short: bool = False) -> str:
    kind, path, ctx = e["type"], e["_path"], e.get("ctx") or {}
    where = dotted(path)
    msg = e["msg"]
    msg = msg[0].lower() + msg[1:] if msg else msg
    if kind == "extra_forbidden":
        key = e["loc"][-1]
        parent = path[:-1]
        model = _model_at(root, parent, tree)
        allowed = _field_names(model) if model else []
        hint = did_you_mean(key, allowed)
        listing = f"; allowed keys: {', '.join(allowed)}" if allowed and not hint else ""
        return f"{dotted(parent)}: unknown key '{key}'{hint}{listing}"
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == PACKAGE_PATTERN:
        return (f"{where}: {e['input']!r} is not a package name: give the distribution name only, "
                "as for pip install (no version), e.g. tnnspec-mylab-cells")
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return (f"{where}: invalid name {e['input']!r}: use letters, digits, '-' and single '_' "
                "(no '__', no '.'), starting with a letter or digit")
    if kind == "missing":
        key = e["loc"][-1]
        return f"{where}: missing required key '{key}'"
    if kind == "union_tag_invalid":
        tag = ctx.get("tag")
        what, known = _union_kind(path)
        return f"{where}: unknown {what} '{tag}'{did_you_mean(tag, known)}; known: {', '.join(known)}"
    if kind == "union_tag_not_found":
        what, known = _union_kind(path)
        return f"{where}: missing 'type' (the {what}: one of {', '.join(known)})"
    if kind == "op_form":
        value = e["input"]
        name = value if isinstance(value, str) else (
            next(iter(value)) if isinstance(value, dict) and len(value) == 1 else None)
        if name is not None:
            return (f"{where}: unknown op '{name}'{did_you_mean(name, OPS)}; "
                    f"known ops: {', '.join(sorted(OPS))}")
        return f"{where}: {e['msg']}"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        got = e["input"]
        choices = [c.strip().strip("'") for c in str(expected).replace(" or ", ",").split(",")]
        hint = did_you_mean(str(got), choices) if isinstance(got, str) else ""
        text = f"expected {one_of(choices)}, got {_describe(got)}{hint}"
        return text if short else f"{where}: {text}"
    if kind in ("value_error", "assertion_error"):
        text = msg.removeprefix("value error, ")
        return text if short else f"{where}: {text}"
    text = f"{msg} (got {_describe(e['input'])})" if not short else msg
    return text if short else f"{where}: {text}"


def _union_kind(path: list) -> tuple[str, list[str]]:
    from .models import Spec  # noqa: F401  (edge types live there)

    last = [p for p in path if isinstance(p, str)]
    if last and last[-1] == "cell":
        return "cell type", sorted(CELLS)
    if last and last[-1] == "learning_rule":
        return "learning rule", sorted(LEARNING_RULES)
    if last and last[-1] == "schedule":
        return "schedule type", ["on_off", "sequence", "static"]
    if last and last[-1] == "edges":
        return "edge type", ["attention", "feedback", "feedforward", "lateral", "normalization", "skip"]
    return "type", []
