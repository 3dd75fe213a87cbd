"""The JSON Schema of the file format (Draft-07, for editors' YAML language server).

Generated from the pydantic models, then adjusted so that it accepts exactly what a user
may write *before* resolution: op shorthands (``relu``, ``{linear: 1000}``), cell and
schedule names as strings, ``$parameter`` references, ``include``/``parameters``/
``templates`` and an area's ``use``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .components import CELLS, LEARNING_RULES, OPS
from .models import OP_ENTRIES, Spec

SCHEMA_ID = "https://tnnspec.dev/schemas/tnnspec-1.1.schema.json"
PARAM_REF = {"type": "string", "pattern": r"^\$[A-Za-z_][A-Za-z0-9_]*$",
             "description": "a reference to a value in `parameters`"}


def json_schema() -> dict[str, Any]:
    """The schema of every registered cell and op, the installed plugins' included."""
    from ..plugins import load_plugins

    load_plugins()
    schema = Spec.model_json_schema(mode="validation")
    text = json.dumps(schema).replace("#/$defs/", "#/definitions/")
    schema = json.loads(text)
    schema["definitions"] = schema.pop("$defs")
    defs = schema["definitions"]
    _fix_tuples(schema)
    _drop_discriminators(schema)
    _op_shorthands(defs)
    _allow_param_refs(schema)
    _name_shorthands(schema)
    _preprocessing_keys(schema, defs)
    return {"$schema": "http://json-schema.org/draft-07/schema#", "$id": SCHEMA_ID,
            **schema, "title": "tnnspec 1.1 brain-area graph"}


def _walk(node: Any, fn) -> None:
    if isinstance(node, dict):
        fn(node)
        for v in list(node.values()):
            _walk(v, fn)
    elif isinstance(node, list):
        for v in node:
            _walk(v, fn)


def _fix_tuples(schema) -> None:
    def fn(node):
        if "prefixItems" in node:
            items = node.pop("prefixItems")
            node["items"] = items
            node["minItems"] = node["maxItems"] = len(items)
    _walk(schema, fn)


def _drop_discriminators(schema) -> None:
    _walk(schema, lambda node: node.pop("discriminator", None))


def _op_shorthands(defs) -> None:
    """``{linear: 1000}``: each op's value may also be its shorthand scalar (or null)."""
    for name, entry in OP_ENTRIES.items():
        params = OPS[name]
        d = defs[entry.__name__]
        prop = d["properties"][name]
        alternatives = [prop, {"type": "null"}]
        if params.shorthand:
            field = defs[params.__name__]["properties"][params.shorthand]
            alternatives.append({k: v for k, v in field.items() if k not in ("default", "title")})
        doc = (params.__doc__ or "").strip().split("\n")[0] or f"the {name} op"
        d["properties"][name] = {"anyOf": alternatives, "description": prop.get("description") or doc}


def _name_shorthands(schema) -> None:
    """Ops without required params may be written as a bare name; cells, learning rules and schedules too."""
    bare_ops = sorted(n for n, p in OPS.items() if not any(f.is_required() for f in p.model_fields.values()))
    op_refs = {f"#/definitions/{m.__name__}" for m in OP_ENTRIES.values()}
    cell_refs = {f"#/definitions/{c.__name__}" for c in CELLS.values()}
    rule_refs = {f"#/definitions/{c.__name__}" for c in LEARNING_RULES.values()}

    def fn(node):
        alts = node.get("oneOf") or node.get("anyOf")
        if not isinstance(alts, list):
            return
        refs = {a.get("$ref") for a in alts if isinstance(a, dict)}
        if refs and refs <= op_refs:
            alts.append({"type": "string", "enum": bare_ops})
        elif refs and refs <= cell_refs:
            alts.append({"type": "string", "enum": sorted(CELLS)})
        elif refs and refs <= rule_refs:
            alts.append({"type": "string", "enum": sorted(LEARNING_RULES)})
        elif refs == {"#/definitions/Static", "#/definitions/OnOff", "#/definitions/Sequence"}:
            alts.append({"type": "string", "enum": ["static", "on_off", "sequence"]})
    _walk(schema, fn)


def _allow_param_refs(schema) -> None:
    targets: list[dict] = []
    _walk(schema, lambda n: targets.append(n) if n.get("type") in ("integer", "number", "boolean") else None)
    for node in targets:
        inner = {k: node.pop(k) for k in list(node) if k not in ("description", "title", "default")}
        node["anyOf"] = [inner, PARAM_REF]


def _preprocessing_keys(schema, defs) -> None:
    area = defs["Area"]
    template = copy.deepcopy(area)
    template.pop("required", None)
    template["description"] = "an area template: any area keys, used by areas with `use: <name>`"
    defs["AreaTemplate"] = template
    area["properties"]["use"] = {"type": "string", "description": "name of a template in `templates`"}
    area["required"] = []
    area.setdefault("anyOf", [{"required": ["channels"]}, {"required": ["use"]}])
    props = schema["properties"]
    # inputs and areas may come from included files
    schema["required"] = [k for k in schema.get("required", []) if k not in ("inputs", "areas")]
    schema["anyOf"] = [{"required": ["inputs", "areas"]}, {"required": ["include"]}]
    props["include"] = {"description": "other files merged into this one (paths relative to this file)",
                        "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    props["parameters"] = {"type": "object", "description": "named values, referenced as $name",
                           "additionalProperties": True}
    props["templates"] = {"type": "object", "description": "area templates by name",
                          "additionalProperties": {"$ref": "#/definitions/AreaTemplate"}}
    props["$schema"] = {"type": "string", "description": "optional schema reference for editors"}


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"
