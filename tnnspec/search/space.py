"""The search-space file of an architecture search (docs/search.md, "The search-space file").

A space names a graph file and says what may vary in it: values of the graph's own ``parameters:``, edges and areas
that may be absent, and the cell type of an area. It also says how a trial is scored (objectives, constraints), how
it is trained, and which sampler and pruner drive the search.

* :meth:`SearchSpace.suggest` asks an Optuna-like trial for one value per choice, by name (``param.k``,
  ``edge.V1->V1``, ``area.V4``, ``cell.V1``), always all of them in file order, so every trial has the same
  (fixed) space, which TPE and NSGA-II handle best;
* :meth:`SearchSpace.materialise` applies the values and returns a plain graph file (no includes, templates or
  parameters left) that is validated like any graph and named by its sha256, so a trial's network can be rebuilt
  from its file alone, and equal values always give the same file.

Every mistake in a space file is a located diagnostic (``file:line:col``), all of them in one :class:`SpecError`, as
for graph files. Optuna is never imported here: the engine owns it, and a space can be checked without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..spec.diagnostics import Diagnostic, Pos, Report, SpecError, did_you_mean, one_of
from ..spec.source import LList, LMap, parse_text, read_file

if TYPE_CHECKING:
    from ..spec.models import Spec
    from ..spec.training import Training

#: metric name -> its default direction
METRICS: dict[str, str] = {
    "val_accuracy": "maximize",
    "val_loss": "minimize",
    "occlusion_accuracy": "maximize",
    "neural_score": "maximize",
    "params": "minimize",
    "flops": "minimize",
    "latency_ms": "minimize",
}
FORMAT_VERSIONS = ("1",)
DIRECTIONS = ("maximize", "minimize")
SAMPLERS = ("tpe", "nsga2", "random")
PRUNERS = ("median", "none")
DISTRIBUTIONS = ("choice", "int", "float")
TOP_KEYS = ("tnnspec_search", "name", "description", "graph", "parameters", "optional_edges", "optional_areas",
            "cells", "constraints", "objectives", "training", "sampler", "pruner", "neural")
SPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # it names files: no '/', no spaces


@dataclass(frozen=True)
class Objective:
    """One quantity a search optimises; ``levels`` are the occlusion levels of ``occlusion_accuracy``."""

    metric: str
    direction: str
    levels: tuple[float, ...] = ()


@dataclass
class TrialGraph:
    """A trial's graph: its values, the plain graph file text, the spec it loads to, and its content address."""

    values: dict
    text: str
    spec: "Spec"
    digest: str
    filename: str


@dataclass(frozen=True)
class _Dim:
    """One value a trial chooses: its trial-value name, how it is sampled, what it changes, where it is written."""

    name: str  # "param.k", "edge.V1->V1", "area.V4", "cell.V1"
    section: str  # "param" | "edge" | "area" | "cell"
    target: str  # the parameter, edge key, or area it changes
    kind: str  # "choice" | "int" | "float"
    pos: Pos
    choices: tuple = ()
    low: float = 0
    high: float = 0
    step: float | None = None
    log: bool = False

    def problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be this dimension's value (None when it can)."""
        if self.kind == "choice":
            if any(type(c) is type(value) and c == value for c in self.choices):
                return None
            return f"not one of the choices {list(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                self.kind == "int" and not isinstance(value, int)):
            return f"expected {'an integer' if self.kind == 'int' else 'a number'}"
        if not self.low <= value <= self.high:
            return f"outside the range [{self.low}, {self.high}]"
        if self.step is not None:
            k = (value - self.low) / self.step
            if abs(k - round(k)) > 1e-9:
                return f"not on the grid low + k * step (step {self.step})"
        return None

    def first(self) -> Any:
        return self.choices[0] if self.kind == "choice" else self.low


class SearchSpace:
    """A loaded, checked search space; build it with :func:`load_space` or :func:`loads_space`."""

    file: Path | None
    name: str
    graph_file: Path
    objectives: list[Objective]
    training: "Training"
    constraints: dict
    sampler: dict
    pruner: dict
    neural: dict | None
    description: str | None
    #: warnings found while reading the space and its graph (e.g. the graph's own warnings)
    warnings: list[Diagnostic]

    def __init__(self) -> None:  # filled in by the loader
        self._dims: list[_Dim] = []
        self._label = "<string>"  # the space file as the trial graph's header names it
        self._graph_tree: LMap = LMap()  # the graph's tree with its includes merged (parameters not substituted)
        self._graph_spec: Spec | None = None
        self._graph_pos = Pos("<string>")  # where `graph:` is written
        self._training_given = False
        self.warnings = []

    def __repr__(self) -> str:
        return f"SearchSpace({self.name!r}, graph={str(self.graph_file)!r}, values={self.value_names})"

    @property
    def value_names(self) -> list[str]:
        """The trial-value names, in the order :meth:`suggest` asks for them."""
        return [d.name for d in self._dims]

    # ------------------------------------------------------------------ trials
    def suggest(self, trial) -> dict:
        """Ask ``trial`` (an ``optuna.Trial`` or anything with its three ``suggest_*`` methods) for every value."""
        values: dict[str, Any] = {}
        for d in self._dims:
            if d.kind == "choice":
                values[d.name] = trial.suggest_categorical(d.name, list(d.choices))
            elif d.kind == "int":
                values[d.name] = trial.suggest_int(d.name, int(d.low), int(d.high), step=int(d.step or 1), log=d.log)
            else:
                values[d.name] = trial.suggest_float(d.name, float(d.low), float(d.high), step=d.step, log=d.log)
        return values

    def default_values(self) -> dict:
        """The values that leave the graph as written where the space allows it: a parameter keeps its value when
        that is one of its choices (else the first choice or the low bound), every optional edge and area is
        present, and an area keeps its cell type when it is listed (else the first listed)."""
        out: dict[str, Any] = {}
        params = self._graph_tree.get("parameters") or {}
        for d in self._dims:
            if d.section in ("edge", "area"):
                out[d.name] = True
            elif d.section == "param":
                current = params.get(d.target)
                out[d.name] = current if d.problem(current) is None else d.first()
            else:
                current = self._graph_spec.areas[d.target].cell.type if self._graph_spec else None
                out[d.name] = current if d.problem(current) is None else d.first()
        return out

    def materialise(self, values: dict) -> TrialGraph:
        """The plain graph of ``values`` (missing names take :meth:`default_values`), validated like any graph file.

        Raises :class:`SpecError` naming the values when they are not this space's, or when the graph they make is
        invalid (an area left without input, a parameter value its uses do not accept, ...)."""
        from ..api import loads
        from ..spec.load import validate_tree

        vals = self._complete(values)
        changed = self._changed(vals)
        tree = self._graph_tree.copy()  # parameters first: `$name` is substituted where the graph is resolved
        params = [d for d in self._dims if d.section == "param"]
        if params:
            section = tree["parameters"].copy()
            for d in params:
                section[d.target] = vals[d.name]
            tree["parameters"] = section
        try:
            spec, _ = validate_tree(tree, str(self.graph_file), Report())
        except SpecError as exc:  # located in the graph file, where the value is used
            text = self._describe_values(changed, vals)
            raise SpecError([Diagnostic(x.file, x.line, x.column, x.severity, f"with {text}: {x.message}")
                             for x in exc.diagnostics]) from None
        data, problems = self._apply_structure(spec, vals)
        if problems:
            raise self._trial_error(changed, vals, [Diagnostic.at(self._graph_pos, "error", p) for p in problems])
        text = self._header(vals) + _yaml(data)
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        filename = f"{self.name}-{digest[:12]}.yaml"
        try:
            trial_spec = loads(text, file=filename)
        except SpecError as exc:
            raise self._trial_error(changed, vals, exc.diagnostics) from None
        return TrialGraph(values=vals, text=text, spec=trial_spec, digest=digest, filename=filename)

    def _complete(self, values: dict) -> dict:
        """``values`` checked and completed with the defaults, in file order (so equal values give equal text)."""
        report = Report()
        names = {d.name for d in self._dims}
        for key in values:
            if key not in names:
                report.error(self._graph_pos, f"trial value '{key}' is not a choice of this space"
                                              f"{did_you_mean(key, names)}; its values: {', '.join(names) or 'none'}")
        defaults = self.default_values()
        out = {}
        for d in self._dims:
            value = values.get(d.name, defaults[d.name])
            problem = d.problem(value)
            if problem:
                report.error(d.pos, f"trial value {d.name} = {value!r}: {problem}")
            out[d.name] = value
        report.raise_if_errors()
        return out

    def _changed(self, vals: dict) -> list[_Dim]:
        """The dimensions whose value differs from :meth:`default_values` (what made this graph differ)."""
        defaults = self.default_values()
        return [d for d in self._dims if vals[d.name] != defaults[d.name]
                or type(vals[d.name]) is not type(defaults[d.name])]

    @staticmethod
    def _describe_values(changed: list[_Dim], vals: dict) -> str:
        return ", ".join(f"{d.name} = {vals[d.name]}" for d in changed) or "the default values"

    def _trial_error(self, changed: list[_Dim], vals: dict, diags: list[Diagnostic]) -> SpecError:
        """Problems of a trial graph, placed at the first changed value in the space file (the trial graph is not a
        file anyone has), each message naming the values."""
        pos = changed[0].pos if changed else self._graph_pos
        text = self._describe_values(changed, vals)
        return SpecError([Diagnostic.at(pos, d.severity, f"with {text}: {d.message}")
                          for d in diags if d.severity == "error"])

    def _apply_structure(self, spec: "Spec", vals: dict) -> tuple[dict, list[str]]:
        """The graph's plain data with absent edges and areas removed and the chosen cells set."""
        from ..spec.models import FORMAT_VERSIONS as GRAPH_VERSIONS

        data = spec.dump()
        data["tnnspec"] = GRAPH_VERSIONS[-1]
        problems: list[str] = []
        removed = {d.target for d in self._dims if d.section == "area" and not vals[d.name]}
        drop = set()
        for d in self._dims:
            if d.section == "edge" and not vals[d.name]:
                hits = _match_edges(d.target, spec.edges)
                if len(hits) != 1:
                    problems.append(f"optional edge '{d.target}' matches {len(hits)} edges of this graph, not one")
                drop.update(hits)
        drop.update(i for i, e in enumerate(spec.edges) if e.source in removed or e.target in removed)
        if "edges" in data:
            data["edges"] = [e for i, e in enumerate(data["edges"]) if i not in drop]
        for area in removed:
            data["areas"].pop(area, None)
        if data.get("readouts"):
            kept = {k: r for k, r in data["readouts"].items() if r["source"] not in removed}
            if not kept:
                problems.append(f"no readout is left (every readout reads a removed area: "
                                f"{', '.join(sorted(data['readouts']))})")
            data["readouts"] = kept
        for d in self._dims:
            area = data["areas"].get(d.target) if d.section == "cell" else None
            if area is not None and vals[d.name] != spec.areas[d.target].cell.type:  # same type: keep its settings
                area["cell"] = {"type": vals[d.name]}
        if self._training_given:
            data["training"] = spec.model_copy(update={"training": self.training}).dump()["training"]
        return data, problems

    def _header(self, vals: dict) -> str:
        lines = [f"# tnnspec trial graph of the search space '{self.name}' ({self._label}),",
                 f"# made from the graph '{self._graph_spec.name if self._graph_spec else '?'}' "
                 f"({self.graph_file.name}) by tnnspec.search with the values:"]
        lines += [f"#   {k}: {json.dumps(v)}" for k, v in vals.items()] or ["#   (none)"]
        lines.append("# The file name ends with the start of the sha256 of this text; do not edit it.")
        return "\n".join(lines) + "\n"


def _yaml(data: dict) -> str:
    """Plain data as YAML, written as :func:`tnnspec.dumps` writes a spec (portable to YAML 1.1 tools)."""
    from ..spec.yaml11 import portable_yaml

    buf = io.StringIO()
    portable_yaml().dump(data, buf)
    return buf.getvalue()


def _edge_keys(edges: list) -> list[str]:
    keys = [f"{e.source}->{e.target}" for e in edges] + [f"{e.type}:{e.source}->{e.target}" for e in edges]
    return list(dict.fromkeys(keys + [e.name for e in edges if e.name]))


def _match_edges(key: str, edges: list) -> list[int]:
    """Indices of the edges ``key`` names: ``source->target``, ``type:source->target`` or the edge's ``name``."""
    text = key.strip()
    if "->" not in text:
        return [i for i, e in enumerate(edges) if e.name == text]
    kind, _, pair = text.rpartition(":")
    source, _, target = pair.partition("->")
    return [i for i, e in enumerate(edges) if e.source == source.strip() and e.target == target.strip()
            and (not kind or e.type == kind.strip())]


# ---------------------------------------------------------------------- loading
def load_space(path: str | Path) -> SearchSpace:
    """Read and check a search-space file; raises :class:`SpecError` listing every problem as file:line:col."""
    report = Report()
    tree = read_file(path, report)
    return _build(tree, str(path), Path(path).parent, Path(path), report)


def loads_space(text: str, file: str = "<string>", base_dir: Path | None = None) -> SearchSpace:
    """A search space from YAML/JSON text; a relative ``graph`` is found from ``base_dir`` (default: the folder of
    ``file`` when it names one, else the current directory)."""
    report = Report()
    tree = parse_text(text, file, report)
    if base_dir is None:
        base_dir = Path(file).parent if not file.startswith("<") else Path.cwd()
    return _build(tree, file, Path(base_dir), None, report)


def write_trial_graph(tg: TrialGraph, out_dir: str | Path) -> Path:
    """Write ``tg`` to ``out_dir/graphs/<filename>`` atomically (a reader never sees half a file, and parallel
    workers writing the same trial graph agree); returns the path. Nothing is written when it is already there."""
    folder = Path(out_dir) / "graphs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / tg.filename
    data = tg.text.encode("utf-8")
    try:
        if path.read_bytes() == data:
            return path
    except OSError:
        pass
    fd, tmp = tempfile.mkstemp(prefix=f".{tg.filename}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _build(tree: Any, file: str, base_dir: Path, path: Path | None, report: Report) -> SearchSpace:
    if not isinstance(tree, LMap):
        raise SpecError([Diagnostic(file, 1, 1, "error", "a search-space file is a mapping: tnnspec_search, graph, "
                                                         "parameters, optional_edges, objectives, ...")])
    from ..plugins import load_plugins

    load_plugins()  # a plugin's cells and learning rules may be named
    space = SearchSpace()
    space.file = path
    space._label = Path(file).name
    for key in tree:
        if key not in TOP_KEYS:
            report.error(tree.where_key(key), f"unknown key '{key}'{did_you_mean(key, TOP_KEYS)}; "
                                              f"allowed: {', '.join(TOP_KEYS)}")
    _check_version(tree, report)
    graph_spec = space._graph_spec = _graph(space, tree, base_dir, report)
    space.description = tree.get("description") if isinstance(tree.get("description"), str) else None
    if "description" in tree and space.description is None:
        report.error(tree.where_value("description"), "description: expected text")
    space.name = _name(tree, file, graph_spec, report)
    space._dims = (_parameters(tree, space._graph_tree, graph_spec, report) + _optional_edges(tree, graph_spec, report)
                   + _optional_areas(tree, graph_spec, report) + _cells(tree, graph_spec, report))
    space.neural = _neural(tree, report)
    space.objectives = _objectives(tree, space.neural is not None, report)
    space.constraints = _constraints(tree, report)
    space.sampler = _sampler(tree, report)
    space.pruner = _pruner(tree, report)
    space.training = _training(tree, graph_spec, report)
    space._training_given = "training" in tree
    report.raise_if_errors()
    space.warnings = report.warnings
    return space


def _check_version(tree: LMap, report: Report) -> None:
    if "tnnspec_search" not in tree:
        hint = ("; this looks like a graph file — a search space names its graph with graph: FILE"
                if "tnnspec" in tree else "")
        report.error(tree.pos, f"missing 'tnnspec_search' format version at the top, e.g. tnnspec_search: \"1\"{hint}")
        return
    version = str(tree["tnnspec_search"])
    if version not in FORMAT_VERSIONS:
        report.error(tree.where_value("tnnspec_search"), f"tnnspec_search: format version '{version}' is not "
                                                         f"supported; supported: {', '.join(FORMAT_VERSIONS)}")


def _graph(space: SearchSpace, tree: LMap, base_dir: Path, report: Report):
    """Find, check and read the graph; returns its Spec (None when it is missing or invalid)."""
    from ..api import check_file
    from ..spec.resolve import _canonical, _merge_includes

    space.graph_file = Path()
    space._graph_pos = tree.where_value("graph") if "graph" in tree else tree.pos
    if "graph" not in tree:
        report.error(tree.pos, "missing 'graph': the graph file searched over, e.g. graph: ../graphs/ventral4.yaml "
                               "or graph: zoo:ventral4")
        return None
    raw, pos = tree["graph"], tree.where_value("graph")
    if not isinstance(raw, str) or not raw.strip():
        report.error(pos, "graph: expected a file path (relative to this file) or zoo:<name>")
        return None
    if raw.startswith("zoo:"):
        from .. import zoo

        try:
            path = zoo.path(raw[4:].strip())
        except KeyError as exc:
            report.error(pos, f"graph: {exc.args[0]}")
            return None
    else:
        path = Path(raw) if Path(raw).is_absolute() else base_dir / raw
        if not path.is_file():
            what = "is a directory, not a graph file" if path.is_dir() else "not found"
            report.error(pos, f"graph: '{raw}' {what} (looked for {path})")
            return None
    space.graph_file = path
    spec, diags = check_file(path)
    if spec is None:
        errors = [d for d in diags if d.severity == "error"]
        report.error(pos, f"graph: '{raw}' is not a valid graph file ({len(errors)} error(s), listed at their place)")
        report.extend(diags)
        return None
    report.extend(d for d in diags if d.severity == "warning")
    graph_tree = read_file(path, Report())
    space._graph_tree = _merge_includes(graph_tree, Report(), seen=(_canonical(graph_tree.pos.file),))
    return spec


def _name(tree: LMap, file: str, graph_spec, report: Report) -> str:
    if "name" in tree:
        name = tree["name"]
        if isinstance(name, str) and SPACE_NAME.match(name):
            return name
        report.error(tree.where_value("name"), f"name: invalid study name {name!r}: use letters, digits, '.', '-' "
                                               "and '_', starting with a letter or digit (it names files)")
        return "search"
    if not file.startswith("<"):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(file).stem).strip("-._")
        if stem:
            return stem
    return f"{graph_spec.name}-search" if graph_spec is not None else "search"


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _is_number(value: Any, integer: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if integer else math.isfinite(value)


def _mapping(tree: LMap, key: str, report: Report, what: str) -> LMap | None:
    value = tree.get(key)
    if value is None:
        return None
    if not isinstance(value, LMap):
        report.error(tree.where_value(key), f"{key}: expected a mapping of {what}, got {_describe(value)}")
        return None
    return value


def _list(tree: LMap, key: str, report: Report, what: str) -> LList | None:
    value = tree.get(key)
    if value is None:
        return None
    if not isinstance(value, LList):
        report.error(tree.where_value(key), f"{key}: expected a list of {what}, got {_describe(value)}")
        return None
    return value


# ---------------------------------------------------------------------- choices
def _parameters(tree: LMap, graph_tree: LMap, graph_spec, report: Report) -> list[_Dim]:
    section = _mapping(tree, "parameters", report, "graph parameter -> distribution")
    if section is None:
        return []
    known = graph_tree.get("parameters") if isinstance(graph_tree.get("parameters"), LMap) else {}
    dims = []
    for name, raw in section.items():
        if graph_spec is not None and name not in known:
            listing = f"; the graph's parameters: {', '.join(known)}" if known else "; the graph has no parameters:"
            report.error(section.where_key(name), f"parameters.{name}: the graph has no parameter '{name}'"
                                                  f"{did_you_mean(name, known)}{listing}")
        dim = _distribution(name, raw, section.where_value(name), section.where_key(name), report)
        if dim is not None:
            dims.append(dim)
    return dims


def _distribution(pname: str, raw: Any, pos: Pos, key_pos: Pos, report: Report) -> _Dim | None:
    where = f"parameters.{pname}"
    if not isinstance(raw, LMap):
        report.error(pos, f"{where}: expected a distribution — {{choice: [a, b]}}, {{int: [low, high]}} or "
                          f"{{float: [low, high]}} — got {_describe(raw)}")
        return None
    allowed = DISTRIBUTIONS + ("step", "log")
    unknown = [k for k in raw if k not in allowed]
    for k in unknown:
        report.error(raw.where_key(k), f"{where}: unknown distribution key '{k}'{did_you_mean(k, allowed)}; a "
                                       "distribution is one of choice, int or float, with optional step and log")
    kinds = [k for k in raw if k in DISTRIBUTIONS]
    if not kinds:
        if not unknown:
            report.error(raw.pos, f"{where}: no distribution given: write choice: [a, b], int: [low, high] or "
                                  "float: [low, high]")
        return None
    if len(kinds) > 1:
        report.error(raw.where_key(kinds[1]), f"{where}: two distributions ('{kinds[0]}' and '{kinds[1]}'); "
                                              "give one")
        return None
    kind, value, vpos = kinds[0], raw[kinds[0]], raw.where_value(kinds[0])
    name = f"param.{pname}"
    if kind == "choice":
        for k in ("step", "log"):
            if k in raw:
                report.error(raw.where_key(k), f"{where}: '{k}' applies to int and float ranges, not to a choice")
        if not isinstance(value, LList):
            report.error(vpos, f"{where}.choice: expected a list of values, got {_describe(value)}")
            return None
        if not value:
            report.error(vpos, f"{where}.choice: empty list; give at least one value")
            return None
        ok = True
        for i, item in enumerate(value):
            if isinstance(item, (dict, list)):
                report.error(value.where_item(i), f"{where}.choice[{i}]: a choice is a plain value (number, text, "
                                                  f"true/false or null), got {_describe(item)}")
                ok = False
            elif any(type(item) is type(x) and item == x for x in value[:i]):
                report.error(value.where_item(i), f"{where}.choice[{i}]: {item!r} is listed twice")
                ok = False
        return _Dim(name, "param", pname, "choice", key_pos, choices=tuple(value)) if ok else None
    return _range(pname, kind, raw, key_pos, report)


def _range(pname: str, kind: str, raw: LMap, key_pos: Pos, report: Report) -> _Dim | None:
    where = f"parameters.{pname}"
    value, vpos = raw[kind], raw.where_value(kind)
    integer = kind == "int"
    noun = "an integer" if integer else "a number"
    if not isinstance(value, LList) or len(value) != 2:
        report.error(vpos, f"{where}.{kind}: expected [low, high], got {_describe(value)}")
        return None
    ok = True
    for i, label in enumerate(("low", "high")):
        if not _is_number(value[i], integer):
            report.error(value.where_item(i), f"{where}.{kind}: {label} must be {noun}, got {_describe(value[i])}")
            ok = False
    log = raw.get("log", False)
    if not isinstance(log, bool):
        report.error(raw.where_value("log"), f"{where}.log: expected true or false, got {_describe(log)}")
        ok, log = False, False
    step = raw.get("step")
    if "step" in raw:
        if not _is_number(step, integer):
            report.error(raw.where_value("step"), f"{where}.step: expected {noun}, got {_describe(step)}")
            ok = False
        elif step <= 0:
            report.error(raw.where_value("step"), f"{where}.step: must be > 0, got {step}")
            ok = False
        elif log and (not integer or step != 1):
            report.error(raw.where_key("step"), f"{where}: step cannot be combined with log: true (a log range "
                                                "is sampled without a grid)")
            ok = False
    if not ok:
        return None
    low, high = value
    if low > high:
        report.error(vpos, f"{where}.{kind}: low ({low}) is greater than high ({high})")
        return None
    if log and low <= 0:
        report.error(vpos, f"{where}.{kind}: log: true needs low > 0, got low = {low}")
        return None
    if not integer:
        low, high, step = float(low), float(high), None if step is None else float(step)
    elif step is None:
        step = 1
    return _Dim(f"param.{pname}", "param", pname, kind, key_pos, low=low, high=high, step=step, log=log)


def _optional_edges(tree: LMap, graph_spec, report: Report) -> list[_Dim]:
    items = _list(tree, "optional_edges", report, "edge keys such as V1->V2")
    if items is None:
        return []
    dims, seen = [], {}
    edges = graph_spec.edges if graph_spec is not None else []
    for i, key in enumerate(items):
        pos = items.where_item(i)
        where = f"optional_edges[{i}]"
        if not isinstance(key, str) or not key.strip():
            report.error(pos, f"{where}: expected an edge key — 'source->target', 'type:source->target' or the "
                              f"edge's name — got {_describe(key)}")
            continue
        if graph_spec is not None:
            hits = _match_edges(key, edges)
            if not hits:
                keys = _edge_keys(edges)
                hint = did_you_mean(key, keys)
                pairs = list(dict.fromkeys(f"{e.source}->{e.target}" for e in edges))
                listing = "" if hint else f"; its edges: {', '.join(pairs[:30])}{', ...' if len(pairs) > 30 else ''}"
                report.error(pos, f"{where}: the graph has no edge '{key}'{hint}{listing}")
                continue
            if len(hits) > 1:
                kinds = ", ".join(edges[h].type for h in hits)
                report.error(pos, f"{where}: '{key}' matches {len(hits)} edges ({kinds}); name one by its `name` or "
                                  "as 'type:source->target'")
                continue
            if hits[0] in seen:
                report.error(pos, f"{where}: the same edge as optional_edges[{seen[hits[0]]}]")
                continue
            seen[hits[0]] = i
        dims.append(_Dim(f"edge.{key}", "edge", key, "choice", pos, choices=(True, False)))
    return dims


def _optional_areas(tree: LMap, graph_spec, report: Report) -> list[_Dim]:
    items = _list(tree, "optional_areas", report, "area names")
    if items is None:
        return []
    dims, seen = [], set()
    for i, name in enumerate(items):
        pos = items.where_item(i)
        where = f"optional_areas[{i}]"
        if not isinstance(name, str):
            report.error(pos, f"{where}: expected an area name, got {_describe(name)}")
            continue
        if name in seen:
            report.error(pos, f"{where}: '{name}' is listed twice")
            continue
        seen.add(name)
        if graph_spec is not None and name not in graph_spec.areas:
            if name in graph_spec.inputs:
                report.error(pos, f"{where}: '{name}' is an input, not an area; only areas can be optional")
            else:
                report.error(pos, f"{where}: the graph has no area '{name}'{did_you_mean(name, graph_spec.areas)}; "
                                  f"its areas: {', '.join(graph_spec.areas)}")
            continue
        dims.append(_Dim(f"area.{name}", "area", name, "choice", pos, choices=(True, False)))
    return dims


def _cells(tree: LMap, graph_spec, report: Report) -> list[_Dim]:
    from pydantic import ValidationError

    from ..spec.components import CELLS

    section = _mapping(tree, "cells", report, "area -> list of cell types")
    if section is None:
        return []
    dims = []
    for area, names in section.items():
        where = f"cells.{area}"
        ok = True
        if graph_spec is not None and area not in graph_spec.areas:
            report.error(section.where_key(area), f"{where}: the graph has no area '{area}'"
                                                  f"{did_you_mean(area, graph_spec.areas)}; its areas: "
                                                  f"{', '.join(graph_spec.areas)}")
            ok = False
        vpos = section.where_value(area)
        if not isinstance(names, LList) or not names:
            report.error(vpos, f"{where}: expected a non-empty list of cell types, e.g. [identity, gru], got "
                               f"{'an empty list' if isinstance(names, list) else _describe(names)}")
            continue
        for i, name in enumerate(names):
            ipos = names.where_item(i)
            if not isinstance(name, str):
                report.error(ipos, f"{where}[{i}]: expected a cell type name, got {_describe(name)}")
                ok = False
            elif name not in CELLS:
                report.error(ipos, f"{where}[{i}]: unknown cell type '{name}'{did_you_mean(name, CELLS)}; known: "
                                   f"{', '.join(sorted(CELLS))}")
                ok = False
            elif name in names[:i]:
                report.error(ipos, f"{where}[{i}]: '{name}' is listed twice")
                ok = False
            else:
                try:
                    CELLS[name]()
                except ValidationError as exc:
                    needs = ", ".join(str(e["loc"][0]) for e in exc.errors() if e["type"] == "missing")
                    report.error(ipos, f"{where}[{i}]: the cell type '{name}' has required settings ({needs}), so it "
                                       "cannot be chosen by name alone")
                    ok = False
        if ok:
            dims.append(_Dim(f"cell.{area}", "cell", area, "choice", section.where_key(area), choices=tuple(names)))
    return dims


# ---------------------------------------------------------------------- scoring and running
def _objectives(tree: LMap, has_neural: bool, report: Report) -> list[Objective]:
    if "objectives" not in tree:
        return [Objective("val_accuracy", METRICS["val_accuracy"])]
    items = _list(tree, "objectives", report, "{metric: ...} mappings")
    if items is None:
        return []
    if not items:
        report.error(tree.where_value("objectives"), "objectives: empty list; give at least one, e.g. "
                                                     "- {metric: val_accuracy}")
        return []
    out: list[Objective] = []
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        where, ipos = f"objectives[{i}]", items.where_item(i)
        if isinstance(item, str):  # `- flops` for `- {metric: flops}`
            item = LMap({"metric": item}, pos=ipos)
            item.key_pos["metric"] = item.val_pos["metric"] = ipos
        if not isinstance(item, LMap):
            report.error(ipos, f"{where}: expected {{metric: NAME}} (with optional direction and levels), got "
                               f"{_describe(item)}")
            continue
        for key in item:
            if key not in ("metric", "direction", "levels"):
                report.error(item.where_key(key), f"{where}: unknown key '{key}'"
                                                  f"{did_you_mean(key, ('metric', 'direction', 'levels'))}; "
                                                  "allowed: metric, direction, levels")
        metric = item.get("metric")
        if "metric" not in item:
            report.error(item.pos, f"{where}: missing 'metric'; one of {', '.join(METRICS)}")
            continue
        mpos = item.where_value("metric")
        if not isinstance(metric, str) or metric not in METRICS:
            report.error(mpos, f"{where}.metric: unknown metric {_describe(metric)}{did_you_mean(str(metric), METRICS)}"
                               f"; known: {', '.join(METRICS)}")
            continue
        if metric in first:
            report.error(mpos, f"{where}.metric: '{metric}' is already an objective (objectives[{first[metric]}])")
            continue
        first[metric] = i
        if metric == "neural_score" and not has_neural:
            report.error(mpos, f"{where}.metric: neural_score needs the `neural:` settings of the space")
        direction = item.get("direction", METRICS[metric])
        if direction not in DIRECTIONS:
            hint = did_you_mean(str(direction), DIRECTIONS)
            report.error(item.where_value("direction"), f"{where}.direction: expected {one_of(DIRECTIONS)}, got "
                                                        f"{_describe(direction)}{hint}")
        levels = _levels(item, metric, where, report)
        out.append(Objective(metric, direction if direction in DIRECTIONS else METRICS[metric], levels))
    return out


def _levels(item: LMap, metric: str, where: str, report: Report) -> tuple[float, ...]:
    if metric != "occlusion_accuracy":
        if "levels" in item:
            report.error(item.where_key("levels"), f"{where}.levels: only occlusion_accuracy has levels")
        return ()
    if "levels" not in item:
        report.error(item.where_value("metric"), f"{where}: occlusion_accuracy needs levels, e.g. levels: [0.5, 0.75]")
        return ()
    levels, pos = item["levels"], item.where_value("levels")
    if not isinstance(levels, LList) or not levels:
        report.error(pos, f"{where}.levels: expected a non-empty list of occlusion levels in [0, 1), got "
                          f"{'an empty list' if isinstance(levels, list) else _describe(levels)}")
        return ()
    out = []
    for i, x in enumerate(levels):
        if not _is_number(x) or not 0.0 <= x < 1.0:
            report.error(levels.where_item(i), f"{where}.levels[{i}]: an occlusion level is a number in [0, 1), "
                                               f"got {_describe(x)}")
        else:
            out.append(float(x))
    return tuple(out)


def _constraints(tree: LMap, report: Report) -> dict:
    out: dict[str, Any] = {"max_params": None, "max_flops": None}
    section = _mapping(tree, "constraints", report, "max_params / max_flops")
    for key, value in (section or {}).items():
        if key not in out:
            report.error(section.where_key(key), f"constraints: unknown key '{key}'{did_you_mean(key, out)}; "
                                                 f"allowed: {', '.join(out)}")
            continue
        integer = key == "max_params"
        if value is None:
            continue
        if not _is_number(value) or value <= 0 or (integer and not float(value).is_integer()):  # 5.0e+5 is fine
            report.error(section.where_value(key), f"constraints.{key}: expected a positive "
                                                   f"{'integer' if integer else 'number'}, got {_describe(value)}")
            continue
        out[key] = int(value) if integer else float(value)
    return out


def _typed_section(tree: LMap, key: str, types: tuple[str, ...], defaults: dict, report: Report) -> dict:
    """``sampler``/``pruner``: a mapping with a ``type`` (or the type alone) and a few integer settings."""
    out = dict(defaults)
    raw = tree.get(key)
    if raw is None:
        return out
    if isinstance(raw, str):
        raw = LMap({"type": raw}, pos=tree.where_value(key))
        raw.key_pos["type"] = raw.val_pos["type"] = tree.where_value(key)
    if not isinstance(raw, LMap):
        report.error(tree.where_value(key), f"{key}: expected a mapping such as {{type: {types[0]}}}, got "
                                            f"{_describe(raw)}")
        return out
    for k, value in raw.items():
        if k not in out:
            report.error(raw.where_key(k), f"{key}: unknown key '{k}'{did_you_mean(k, out)}; allowed: "
                                           f"{', '.join(out)}")
        elif k == "type":
            if value not in types:
                report.error(raw.where_value(k), f"{key}.type: unknown {key} {_describe(value)}"
                                                 f"{did_you_mean(str(value), types)}; known: {', '.join(types)}")
            else:
                out[k] = value
        elif value is None and defaults[k] is None:
            out[k] = None
        elif not _is_number(value, integer=True) or value < 0:
            report.error(raw.where_value(k), f"{key}.{k}: expected a non-negative integer, got {_describe(value)}")
        else:
            out[k] = value
    return out


def _sampler(tree: LMap, report: Report) -> dict:
    return _typed_section(tree, "sampler", SAMPLERS, {"type": "tpe", "seed": None}, report)


def _pruner(tree: LMap, report: Report) -> dict:
    return _typed_section(tree, "pruner", PRUNERS, {"type": "median", "warmup_epochs": 1}, report)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _neural(tree: LMap, report: Report) -> dict | None:
    if tree.get("neural") is None:
        return None
    section = _mapping(tree, "neural", report, "settings for neural_score")
    return _plain(section) if section is not None else None


def _training(tree: LMap, graph_spec, report: Report):
    """The space's ``training:`` (checked by the Training model, errors located) or else the graph's own."""
    from pydantic import ConfigDict, ValidationError, create_model

    from ..cli.train import dataset_problem
    from ..spec.errors import translate
    from ..spec.training import Training

    if "training" not in tree:
        return graph_spec.training if graph_spec is not None and graph_spec.training is not None else Training()
    # validated as the `training` key of a holder model, so that messages say training.epochs, not epochs
    holder = create_model("SearchTraining", __config__=ConfigDict(extra="forbid"), training=(Training, ...))
    wrapped = LMap(pos=tree.pos)
    wrapped.set("training", tree["training"], tree.where_key("training"), tree.where_value("training"))
    section = tree["training"]
    data = section.get("data") if isinstance(section, LMap) else None
    if isinstance(data, LMap) and isinstance(data.get("name"), str):
        problem = dataset_problem(data["name"])
        if problem:
            report.error(data.where_value("name"), f"training.data.name: {problem}")
    try:
        return holder.model_validate(wrapped).training
    except ValidationError as exc:
        report.extend(translate(exc.errors(), wrapped, holder))
        return Training()
