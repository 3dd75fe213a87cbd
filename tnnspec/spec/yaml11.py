"""What YAML 1.1 tools make of a plain scalar, so that a file reads the same everywhere.

tnnspec reads files as YAML 1.2, but PyYAML (most Python users' loader) and many other tools
still speak YAML 1.1, where the plain scalars ``yes``, ``no``, ``on``, ``off``, ``y``, ``n``
(in any of their spellings) are booleans, ``010`` is octal, ``1:20`` is a base-60 integer and
``1e3`` is a string. A file is portable when every plain scalar means the same in both:

* a **mapping key** (a format key, or a name the user chose: an area, an input, a parameter)
  must be a string in YAML 1.1 *and* 1.2 — written plain or quoted, since quoting the key does
  not quote the name where it is used (``source: on``), nor survive a tool that rewrites the file;
* a plain **value** must read the same in both (quoted values are strings everywhere).

:func:`read_11` implements the YAML 1.1 implicit resolution of PyYAML (and the ``y``/``n``
booleans of the YAML 1.1 type repository, which other 1.1 tools read as booleans).
"""

from __future__ import annotations

import math
import re
from typing import Any

BOOL_11 = {w: w.lower() in ("y", "yes", "true", "on") for w in (
    "y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF").split()}
NULL_11 = {"", "~", "null", "Null", "NULL"}
INT_11 = re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+
    |[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$""", re.VERBOSE)
FLOAT_11 = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.VERBOSE)
TIMESTAMP_11 = re.compile(r"""^(?:[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]
    |[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?
     (?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?
     (?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)$""", re.VERBOSE)


class Timestamp(str):
    """A YAML 1.1 timestamp (a date), kept as its text."""


def _sexagesimal(text: str) -> float:
    value = 0.0
    for part in text.split(":"):
        value = value * 60 + float(part)
    return value


def read_11(text: str) -> Any:
    """The value a YAML 1.1 loader (PyYAML's ``safe_load``) gives the plain scalar ``text``."""
    if text in BOOL_11:
        return BOOL_11[text]
    if text in NULL_11:
        return None
    if INT_11.match(text):
        clean = text.replace("_", "")
        sign = -1 if clean[0] == "-" else 1
        clean = clean.lstrip("+-")
        if clean == "0":
            return 0
        if clean.startswith("0b"):
            return sign * int(clean[2:], 2)
        if clean.startswith("0x"):
            return sign * int(clean[2:], 16)
        if ":" in clean:
            return sign * int(_sexagesimal(clean))
        if clean.startswith("0"):
            return sign * int(clean, 8)
        return sign * int(clean)
    if FLOAT_11.match(text):
        clean = text.replace("_", "").lower()
        sign = -1.0 if clean[0] == "-" else 1.0
        clean = clean.lstrip("+-")
        if clean == ".inf":
            return sign * math.inf
        if clean == ".nan":
            return math.nan
        if ":" in clean:
            return sign * _sexagesimal(clean)
        return sign * float(clean)
    if TIMESTAMP_11.match(text):
        return Timestamp(text)
    return text


def same(a: Any, b: Any) -> bool:
    """Equal values of the same type (``True`` is not ``1``; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, Timestamp):
        return "a date"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    return f"the string '{value}'"


def float_text(value: float) -> str:
    """``value`` written so that YAML 1.1 and 1.2 both read it as this float (``1.0e-10``)."""
    text = repr(float(value))
    if "e" in text:
        mantissa, exp = text.split("e")
        if "." not in mantissa:
            mantissa += ".0"
        if exp[0] not in "+-":
            exp = "+" + exp
        text = f"{mantissa}e{exp}"
    return text


def key_problem(text: str, read_12: Any) -> str | None:
    """Why the mapping key ``text`` (whose YAML 1.2 plain reading is ``read_12``) is not
    portable, or None."""
    v11 = read_11(text)
    if isinstance(v11, str) and not isinstance(v11, Timestamp) and isinstance(read_12, str):
        return None
    if not isinstance(v11, str) or isinstance(v11, Timestamp):
        how = f"is {describe(v11)} to YAML 1.1 tools such as PyYAML"
    else:
        how = f"is {describe(read_12)} in YAML 1.2"
    hint = ""
    if text in ("on", "off"):
        hint = ("; an on_off schedule's keys are 'start' and 'stop' since format 1.1 "
                "(`tnnspec upgrade FILE` rewrites a format 1.0 file)")
    return (f"key '{text}' {how}, not a string: rename it (quoting it is not enough: the name is "
            f"also written unquoted where it is used, and tools that rewrite a file drop the quotes){hint}")


def value_problem(text: str, read_12: Any) -> str | None:
    """Why the plain value ``text`` (read as ``read_12`` by tnnspec's YAML 1.2) reads
    differently in YAML 1.1, or None."""
    v11 = read_11(text)
    if same(v11, read_12) and not isinstance(v11, Timestamp):
        return None
    if isinstance(read_12, str):
        if isinstance(v11, bool):
            fix = f"write {str(v11).lower()} for a boolean, or quote it (\"{text}\") for text"
        elif isinstance(v11, (int, float)):
            fix = f"write {v11!r} for a number, or quote it (\"{text}\") for text"
        else:
            fix = f"quote it (\"{text}\")"
    elif isinstance(read_12, float):
        fix = f"write {float_text(read_12)}"
    elif isinstance(read_12, int) and not isinstance(read_12, bool):
        fix = f"write {read_12}"
    else:
        fix = "write it so that both read the same"
    return (f"'{text}' is {describe(read_12)} in YAML 1.2 (tnnspec) but {describe(v11)} in "
            f"YAML 1.1 (PyYAML and other tools); {fix}")


def portable_yaml():
    """A ruamel.yaml dumper whose output reads the same in YAML 1.1 and 1.2: floats keep a point
    and a signed exponent (``1.0e-10``, not ``1e-10``) and strings that either version would read
    as something else (``yes``, ``on``, ``1:20``, ``1e3``) are quoted."""
    from ruamel.yaml import YAML
    from ruamel.yaml.representer import SafeRepresenter

    class PortableRepresenter(SafeRepresenter):
        pass

    def represent_float(rep, value):
        if math.isnan(value) or math.isinf(value):
            return SafeRepresenter.represent_float(rep, value)
        return rep.represent_scalar("tag:yaml.org,2002:float", float_text(value))

    def represent_str(rep, value):
        from .source import plain_reading

        v11 = read_11(value)
        if not isinstance(v11, str) or isinstance(v11, Timestamp) or not isinstance(plain_reading(value), str):
            return rep.represent_scalar("tag:yaml.org,2002:str", value, style='"')
        return SafeRepresenter.represent_str(rep, value)

    PortableRepresenter.add_representer(float, represent_float)
    PortableRepresenter.add_representer(str, represent_str)
    yaml = YAML(typ="safe", pure=True)
    yaml.Representer = PortableRepresenter
    yaml.default_flow_style = None
    yaml.sort_keys = False
    return yaml
