"""Import graphs of the neuroailab tnn / convrnns JSON format as tnnspec files.

A tnn graph is ``{"nodes": [...], "edges": [...]}``. Each node runs, once per time step,
harbor (merge its inputs) -> pre_memory (ops, usually one conv or fc) -> memory (the recurrent
state) -> post_memory (ops); each edge is a bare ``{"from", "to"}`` link (the format is defined in
shared/reference/tnn_convrnns.md, section 2; the defaults of absent keys are those of the
functions the format names, in convrnns' ``utils/cell_utils.py``, ``utils/model_tool.py`` and
``utils/cells.py``). The importer maps:

* a node with ``shape`` -> an input node: a tnnspec input (``input_name``) plus an area fed
  from it with delay 0; every other node -> an area; ``shape_from`` depth -> the area's ``level``;
* the harbor and the pre_memory up to and including its first conv/fc -> the transform of every
  incoming edge (a conv over a channel concatenation is the sum of one conv per input with one
  bias, so the conv is split over the edges, ``combine: sum``, the bias on the feedforward edge);
* the memory -> the area's cell (tnn's time-decay ``memory``: ``identity`` when its decay is a
  constant 0, else ``time_decay``; a convrnns cell's keyword arguments -> that cell);
* the rest of the pre_memory (only where the memory keeps no state: ``identity``) and the
  post_memory -> the area's ops;
* each link -> an edge whose ``delay`` follows the unroll mode (``tnn``: every link 1 step;
  ``tnn_tf``: 0 along a feedforward order, 1 against it) and whose ``type`` follows the levels;
* the graph's only sink node -> a readout;
* a node whose pre_memory must act on its combined inputs before a memory with a state, or whose
  post_memory has ``residual_add``, -> several areas joined by delay-0 edges (``<node>_pre``,
  ``<node>_cell``, ``<node>``), which compute in the same step (exact).

Anything the importer cannot express exactly is an error located ``file:line:col`` in the JSON;
all problems are collected and raised together as one :class:`~tnnspec.SpecError`. Things the
user should know but that change nothing in the computation (initialisers, weight decay, seeds,
no-op ops) are written as comments and returned as notes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..spec.diagnostics import Diagnostic, Pos, Report, SpecError, did_you_mean
from ..spec.source import LList, LMap, read_file

#: ``unroll`` values: tnn's ``unroll`` (every link delays one step) and ``unroll_tf``
UNROLL_MODES = ("tnn", "tnn_tf")
#: tnnspec cells a ``cell=`` argument may name for memory nodes
CELL_CHOICES = ("simple_rnn", "gru", "lstm", "ugrnn", "intersection_rnn", "reciprocal_gated_convrnn",
                "time_decay")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*(?:_[A-Za-z0-9-]+)*_?$")
_YAML11_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}

# --------------------------------------------------------------------------- public API


@dataclass
class ImportResult:
    """What :func:`import_tnn` returns.

    ``text``: the tnnspec file (YAML with comments saying where each part came from);
    ``spec``: that text loaded and validated; ``notes``: things the user should know.
    """

    text: str
    spec: Any
    notes: list[str] = field(default_factory=list)


def import_tnn(source: str | Path | dict, *, unroll: str = "tnn", cell: str | None = None,
               name: str | None = None, input_name: str = "image",
               ff_order: Iterable[str] | None = None) -> ImportResult:
    """Convert a tnn/convrnns JSON graph into a validated tnnspec graph.

    ``source``: a path to the JSON file, or the parsed JSON (a dict). ``unroll``: ``"tnn"``
    (tnn's ``unroll``: every link delays one step) or ``"tnn_tf"`` (``unroll_tf``: links along a
    feedforward order deliver in the same step, the others one step later). ``cell``: the tnnspec
    cell (one of :data:`CELL_CHOICES`) for nodes whose ``memory`` carries a recurrent cell's keyword
    arguments but does not identify the cell (the JSON never names it). ``name``: the model name
    (default: the file's stem). ``input_name``: the name of the external input. ``ff_order``:
    for ``unroll="tnn_tf"`` on a graph with cycles, the feedforward order of the nodes (tnn's
    ``unroll_tf(ff_order=...)``); by default the nodes are ordered by ``shape_from`` depth, then
    as listed in the file.

    Raises :class:`~tnnspec.SpecError` listing every problem of the file, located in it, and
    ``ValueError`` for a bad argument.
    """
    if unroll not in UNROLL_MODES:
        raise ValueError(f"unroll must be one of {', '.join(UNROLL_MODES)}, got {unroll!r}")
    if cell is not None and cell not in CELL_CHOICES:
        raise ValueError(f"cell {cell!r} is not a cell the importer can build from a tnn memory"
                         f"{did_you_mean(cell, CELL_CHOICES)}; choose one of {', '.join(CELL_CHOICES)}")
    if name is not None and not NAME_RE.match(name):
        raise ValueError(f"name {name!r} is not a valid tnnspec name (letters, digits, '-' and single '_')")
    if not NAME_RE.match(input_name):
        raise ValueError(f"input_name {input_name!r} is not a valid tnnspec name")
    tree, file = _read(source)
    importer = _Importer(tree, file, unroll=unroll, cell=cell, input_name=input_name,
                         ff_order=list(ff_order) if ff_order is not None else None)
    text = importer.run(model_name=name or _default_name(source, file))
    spec = _load(text, file)
    notes = importer.notes + [f"{d.message} (generated file line {d.line})" for d in spec.warnings]
    return ImportResult(text=text, spec=spec, notes=notes)


# --------------------------------------------------------------------------- reading


def _read(source) -> tuple[Any, str]:
    if isinstance(source, (str, Path)):
        return read_file(source), str(source)
    if isinstance(source, dict):
        return (source if isinstance(source, LMap) else _locate(source, "<dict>")), "<dict>"
    raise TypeError(f"source must be a path or a parsed JSON dict, got {type(source).__name__}")


def _locate(value: Any, file: str) -> Any:
    """A plain JSON value as a located tree (every position is the start of the dict)."""
    if isinstance(value, dict):
        out = LMap(pos=Pos(file))
        for k, v in value.items():
            out.set(str(k), _locate(v, file), Pos(file), Pos(file))
        return out
    if isinstance(value, list):
        out = LList([_locate(v, file) for v in value], pos=Pos(file))
        out.item_pos = [Pos(file)] * len(value)
        return out
    return value


def _default_name(source, file: str) -> str:
    if not isinstance(source, (str, Path)):
        return "imported"
    stem = re.sub(r"[^A-Za-z0-9-]+", "_", Path(file).stem).strip("_")
    stem = re.sub(r"_+", "_", stem)
    if not stem or not NAME_RE.match(stem):
        return "imported"
    return stem


def _load(text: str, file: str):
    from ..api import loads

    try:
        return loads(text, file=f"<{Path(file).name} imported>")
    except SpecError as exc:  # the importer wrote something tnnspec rejects: say so, with the details
        head = Diagnostic(file, 1, 1, "error", "internal error of the tnn importer: the generated graph does "
                                                "not validate (please report this with the JSON file)")
        raise SpecError([head, *exc.diagnostics]) from None


def _where(container: Any, key: Any = None, *, key_pos: bool = False) -> Pos:
    if isinstance(container, LMap):
        if key is None:
            return container.pos
        return container.where_key(key) if key_pos else container.where_value(key)
    if isinstance(container, LList):
        return container.pos if key is None else container.where_item(key)
    return Pos("<dict>")


# --------------------------------------------------------------------------- YAML text


def _float(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        raise ValueError(f"not a finite number: {x}")
    text = repr(float(x))
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:  # YAML 1.1 wants a dot: 1e-05 -> 1.0e-05
        text = f"{mantissa}.0e{exponent}"
    return text


def _scalar(v: Any) -> str:
    if v is True or v is False:
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float(v)
    s = str(v)
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9_.-]*", s) and s.lower() not in _YAML11_WORDS:
        return s
    return json.dumps(s, ensure_ascii=False)


def _flow(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return _scalar(v)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# --------------------------------------------------------------------------- translated ops


class _Stop(Exception):
    """The current op (or node) cannot be translated; its problems are already reported."""


@dataclass
class _TOp:
    """One tnnspec op made from (part of) a tnn function spec.

    ``kind``: ``cw`` acts on each channel separately (so it commutes with a channel concat and may
    be repeated on every incoming edge), ``lin`` is the linear conv/fc of a node (over a concat it
    is the sum of one conv per input), ``x`` mixes channels in any other way. ``name`` None is a
    comment-only line (an op that does nothing).
    """

    name: str | None
    params: dict | None
    comment: str
    kind: str
    shape: tuple | None

    def text(self) -> str:
        if not self.params:
            return _scalar(self.name)
        return _flow({self.name: self.params})


def _pair(v: tuple[int, int]) -> int | list[int]:
    return v[0] if v[0] == v[1] else [v[0], v[1]]


def _tf_out(size: int, k: int, s: int, padding: str) -> int:
    """TensorFlow's output length of a conv or pool window."""
    if padding == "SAME":
        return -(-size // s)
    return -(-(size - k + 1) // s)


def _torch_pool_out(size: int, k: int, s: int, pad: int, ceil_mode: bool) -> int:
    if not ceil_mode:
        return (size + 2 * pad - k) // s + 1
    out = -(-(size + 2 * pad - k) // s) + 1
    if (out - 1) * s >= size + pad:
        out -= 1
    return out


def _shape_str(shape: tuple | None) -> str:
    """``(C, H, W)`` as tnn writes it, ``HxWxC``."""
    if shape is None:
        return "?"
    return "x".join(str(d) for d in (tuple(shape[1:]) + tuple(shape[:1]) if len(shape) == 3 else shape))


def _fmt(shape: tuple | None) -> str:
    return "?" if shape is None else str(list(shape))


# --------------------------------------------------------------------------- argument reader

_INIT = "initialisation"
_REG = "regularisation"
_TRAIN = "training-time setting"
_NAME = "name"


class _Args:
    """The keyword arguments of one tnn function spec, read with type checks.

    Every key must be one the function takes (tnn passes them on and an unknown one is a
    TypeError when TensorFlow builds the graph); keys that only matter for training
    (initialisers, weight decay, seeds) are accepted and listed in the op's comment.
    """

    def __init__(self, imp: _Importer, spec: LMap, where: str, fn: str,
                 allowed: Iterable[str], ignored: dict[str, str] | None = None):
        self.imp, self.spec, self.where, self.fn = imp, spec, where, fn
        self.ignored = dict(ignored or {})
        self.allowed = set(allowed) | set(self.ignored) | {"function"}
        self.failed = False
        self.defaults: list[str] = []

    def pos(self, key: str | None = None) -> Pos:
        return _where(self.spec, key) if key is not None else _where(self.spec)

    def error(self, key: str | None, message: str) -> None:
        self.failed = True
        label = f"{self.where}.{key}" if key else self.where
        self.imp.error(self.pos(key), f"{label}: {message}")

    def has(self, key: str) -> bool:
        return key in self.spec and self.spec[key] is not None

    def raw(self, key: str, default: Any = None) -> Any:
        return self.spec.get(key, default) if self.spec.get(key) is not None else default

    def number(self, key: str, default: Any, *, lo: float | None = None, hi: float | None = None,
               integer: bool = False, required: bool = False) -> Any:
        if key not in self.spec or self.spec[key] is None:
            if required:
                self.error(None, f"'{self.fn}' needs '{key}'")
            return default
        v = self.spec[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.error(key, f"expected a number, got {json.dumps(v) if not isinstance(v, LMap) else 'a mapping'}")
            return default
        if integer:
            if float(v) != int(v):
                self.error(key, f"expected an integer, got {v}")
                return default
            v = int(v)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"at least {lo}" if hi is None else (f"at most {hi}" if lo is None else f"in [{lo}, {hi}]")
            self.error(key, f"must be {rng}, got {v}")
            return default
        return v

    def boolean(self, key: str, default: bool) -> bool:
        if key not in self.spec or self.spec[key] is None:
            return default
        v = self.spec[key]
        if not isinstance(v, bool):
            self.error(key, f"expected true or false, got {json.dumps(v)}")
            return default
        return v

    def pair(self, key: str, default: tuple[int, int] | None, *, required: bool = False,
             allow_zero: bool = False) -> tuple[int, int] | None:
        """A kernel size: ``k``, ``[kh, kw]`` (model_tool's ``ksize``)."""
        if key not in self.spec or self.spec[key] is None:
            if required:
                self.error(None, f"'{self.fn}' needs '{key}'")
            return default
        v = self.spec[key]
        lo = 0 if allow_zero else 1
        if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == int(v) and v >= lo:
            return (int(v), int(v))
        if (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) and x >= lo
                                                         for x in v)):
            return (v[0], v[1])
        self.error(key, f"expected a size k or [kh, kw] of integers >= {lo}, got {_flow(v)}")
        return default

    def nhwc(self, key: str, default: tuple[int, int] | None, *, required: bool = False) -> tuple[int, int] | None:
        """A TensorFlow window or stride: ``s``, ``[sh, sw]`` or NHWC ``[1, sh, sw, 1]``."""
        if key not in self.spec or self.spec[key] is None:
            if required:
                self.error(None, f"'{self.fn}' needs '{key}'")
            return default
        v = self.spec[key]
        ok_int = lambda x: isinstance(x, int) and not isinstance(x, bool) and x >= 1
        if ok_int(v):
            return (v, v)
        if isinstance(v, list) and len(v) == 2 and all(ok_int(x) for x in v):
            return (v[0], v[1])
        if isinstance(v, list) and len(v) == 4 and all(ok_int(x) for x in v):
            if v[0] != 1 or v[3] != 1:
                self.error(key, f"{_flow(v)} is NHWC [batch, h, w, channels]: only the spatial entries may "
                                f"differ from 1 (tnnspec windows and strides are spatial)")
                return default
            return (v[1], v[2])
        self.error(key, f"expected an integer, [h, w] or NHWC [1, h, w, 1], got {_flow(v)}")
        return default

    def choice(self, key: str, default: Any, choices: Iterable[Any], what: str = "") -> Any:
        if key not in self.spec or self.spec[key] is None:
            return default
        v = self.spec[key]
        choices = list(choices)
        if v not in choices:
            hint = did_you_mean(v, [str(c) for c in choices]) if isinstance(v, str) else ""
            self.error(key, f"{json.dumps(v) if not isinstance(v, (LMap, LList)) else _flow(v)} is not "
                            f"supported{hint}; {what or 'supported'}: {', '.join(map(str, choices))}")
            return default
        return v

    def finish(self) -> None:
        unknown = [k for k in self.spec if k not in self.allowed]
        for k in unknown:
            self.failed = True
            hint = did_you_mean(k, sorted(self.allowed))
            self.imp.error(_where(self.spec, k, key_pos=True),
                           f"{self.where}: '{self.fn}' takes no key '{k}'{hint} (tnn would fail with a "
                           f"TypeError when building the graph)")
        if self.failed:
            raise _Stop

    def ignored_note(self) -> str:
        present = [k for k in self.ignored if self.spec.get(k) is not None]
        if not present:
            return ""
        self.imp.ignored_keys.update(present)
        return f"; not imported: {', '.join(present)}"


# --------------------------------------------------------------------------- op table

_ACTIVATIONS: dict[str, tuple[str, dict | None, str]] = {
    "relu": ("relu", None, "cw"), "relu6": ("relu6", None, "cw"), "elu": ("elu", None, "cw"),
    "sigmoid": ("sigmoid", None, "cw"), "tanh": ("tanh", None, "cw"), "softplus": ("softplus", None, "cw"),
    "softmax": ("softmax", None, "x"), "log_softmax": ("log_softmax", None, "x"),
    "leaky_relu": ("leaky_relu", {"slope": 0.2}, "cw"),
}
_CONV_IGNORED = {"kernel_init": _INIT, "kernel_init_kwargs": _INIT, "bias": _INIT, "weight_decay": _REG,
                 "is_training": _TRAIN, "init_zero": _INIT, "batch_norm_gamma_init": _INIT,
                 "bn_trainable": _TRAIN, "crossdevice_bn_kwargs": _TRAIN, "dropout_seed": _INIT,
                 "time_suffix": _TRAIN, "name": _NAME, "seed": _INIT}
_UNSUPPORTED = {
    "residual_add": "belongs in post_memory (it adds the harbor output after the memory)",
    "depthsep_conv": "is not supported (its pointwise conv_bnf fails in tnn when batch_norm is set)",
    "conv_bnf": "is not supported (it fails in tnn when batch_norm is set)",
    "squeeze_and_excitation": "has no tnnspec op", "drop_connect": "has no tnnspec op",
    "spatial_fc": "has no tnnspec op", "factored_fc": "has no tnnspec op",
    "shared_spatial_mlp": "has no tnnspec op", "shared_xy_graph_conv": "has no tnnspec op",
    "crelu": "has no tnnspec op", "selu": "has no tnnspec op", "swish": "has no tnnspec op",
    "batch_norm": "is ambiguous (tf.contrib.layers.batch_norm and tfutils' batch_norm differ); use "
                  "'batchnorm_corr'",
}


# --------------------------------------------------------------------------- memory keys

#: keys of tnn's time-decay ``memory``; any other key of a memory is a recurrent cell's keyword argument
_TD_KEYS = frozenset({"function", "memory_decay", "trainable", "no_state", "max_internal_time"})
#: keyword arguments of convrnns' ConvGRU/ConvLSTM/ConvUGRNN/ConvIntersectionRNN cells (utils/cells.py)
_CONVRNN_COMMON = frozenset({"shape", "filter_size", "out_depth", "weight_decay", "kernel_initializer",
                             "kernel_initializer_kwargs", "bias_initializer", "bias_initializer_kwargs",
                             "layer_norm", "norm_gain", "norm_shift", "activation", "max_internal_time"})
#: the keys each tnnspec cell can be built from (convrnns' constructor arguments of the matching cell)
_CELL_KEYS: dict[str, frozenset[str]] = {
    "simple_rnn": frozenset({"shape", "filter_size", "out_depth", "layer_norm", "kernel_regularizer",
                             "bias_regularizer", "activation", "kernel_initializer", "bias_initializer",
                             "max_internal_time"}),
    "gru": _CONVRNN_COMMON | {"forget_bias"},
    "lstm": _CONVRNN_COMMON | {"forget_bias", "use_peepholes", "state_is_tuple"},
    "ugrnn": (_CONVRNN_COMMON - {"activation"}) | {"forget_bias"},
    "intersection_rnn": (_CONVRNN_COMMON - {"activation"}) | {"forget_bias"},
    "reciprocal_gated_convrnn": frozenset({
        "shape", "out_depth", "cell_depth", "tau_filter_size", "gate_filter_size", "ff_filter_size",
        "in_out_filter_size", "cell_tau_filter_size", "feedback_filter_size", "feedback_entry",
        "feedback_depth_separable", "ff_depth_separable", "in_out_depth_separable", "gate_depth_separable",
        "tau_depth_separable", "ds_repeat", "tau_nonlinearity", "gate_nonlinearity", "tau_bias", "gate_bias",
        "tau_multiplier", "gate_multiplier", "tau_offset", "gate_offset", "input_activation",
        "feedback_activation", "cell_activation", "out_activation", "cell_residual", "out_residual",
        "residual_to_cell_tau", "residual_to_cell_gate", "residual_to_out_tau", "residual_to_out_gate",
        "input_to_tau", "input_to_gate", "input_to_cell", "input_to_out", "cell_to_out", "data_format",
        "kernel_initializer", "kernel_initializer_kwargs", "bias_initializer", "weight_decay", "layer_norm",
        "recurrent_keep_prob", "total_training_steps", "norm_gain", "norm_shift", "batch_norm",
        "batch_norm_cell_out", "batch_norm_decay", "batch_norm_epsilon", "bn_trainable",
        "crossdevice_bn_kwargs", "gate_tau_bn_gamma_init", "edges_init_zero", "is_training",
        "max_internal_time"}),
}


# --------------------------------------------------------------------------- nodes


@dataclass
class _Node:
    index: int
    name: str
    data: LMap
    where: str
    is_input: bool
    shape_from: str | None
    level: int = 0
    preds: list[str] = field(default_factory=list)   # JSON predecessors, in edge order
    out_shape: tuple | None = None                   # tnnspec order: (C, H, W) or (F,)


@dataclass
class _Term:
    """One incoming contribution of an area: the external input or a predecessor's output."""

    source: str            # tnnspec source name (input or area)
    node_source: str | None  # the JSON node, None for the external input
    shape: tuple | None
    ops: list[_TOp] = field(default_factory=list)
    feedforward: bool = False
    comment: str = ""
    after_harbor: tuple | None = None
    harbor_ops: list[_TOp] = field(default_factory=list)
    delay: int | None = None     # set for edges that are not a JSON link (the split of a residual node)
    etype: str | None = None
    origin: str | None = None


@dataclass
class _Area:
    node: _Node
    terms: list[_Term]
    combine: str
    cell: Any
    cell_comment: str
    ops: list[_TOp]
    channels: int | None
    harbor_comment: str
    name: str | None = None         # default: the node's
    level: float | None = None      # default: the node's
    role: str = "node"              # "node"; for a split node: "pre" (harbor, pre_memory), "cell", "sum"
    extra: list[_Area] = field(default_factory=list)  # the areas of a split node before this one
    inner_out: tuple | None = None  # for role "sum": what the "cell" area outputs


class _Importer:
    def __init__(self, tree: Any, file: str, *, unroll: str, cell: str | None, input_name: str,
                 ff_order: list[str] | None):
        self.tree, self.file, self.unroll, self.cell_arg = tree, file, unroll, cell
        self.input_name, self.ff_order = input_name, ff_order
        self.report = Report()
        self.notes: list[str] = []
        self.ignored_keys: set[str] = set()
        self.nodes: dict[str, _Node] = {}
        self.edges: list[tuple[str, str, int]] = []   # (from, to, JSON edge index), deduplicated
        self.fallback_nodes: list[str] = []
        self.cell_nodes: list[str] = []
        self.mute = False

    # ---------------------------------------------------------------- reporting
    def error(self, pos: Pos, message: str) -> None:
        if not self.mute:
            self.report.error(pos, message)

    def note(self, message: str) -> None:
        if not self.mute and message not in self.notes:
            self.notes.append(message)

    def raise_if_errors(self) -> None:
        if self.report.has_errors:
            seen, unique = set(), []
            for d in self.report.diagnostics:
                if (d.file, d.line, d.column, d.message) not in seen:
                    seen.add((d.file, d.line, d.column, d.message))
                    unique.append(d)
            raise SpecError(unique)

    def ref(self, pos: Pos) -> str:
        return f"{Path(pos.file).name}:{pos.line}" if pos.file != "<dict>" else "the dict"

    # ---------------------------------------------------------------- run
    def run(self, model_name: str) -> str:
        self._structure()
        self.raise_if_errors()
        self._graph()
        self.raise_if_errors()
        self._levels_and_delays()
        self.raise_if_errors()
        areas = self._translate_all()
        if self.cell_arg is not None and not self.cell_nodes and not self.report.has_errors:
            self.error(self.tree.where_value("nodes"),
                       f"cell '{self.cell_arg}' was given (cell=/--cell), but no node's memory carries a recurrent "
                       "cell's keys (filter_size, out_depth, ...): it would apply to no node")
        self.raise_if_errors()
        return self._emit(model_name, areas)

    # ---------------------------------------------------------------- structure
    def _structure(self) -> None:
        tree = self.tree
        if not isinstance(tree, LMap):
            raise SpecError([Diagnostic(self.file, 1, 1, "error", "a tnn graph is a JSON object with the keys "
                                                                  "'nodes' and 'edges'")])
        for key in tree:
            if key not in ("nodes", "edges"):
                self.error(_where(tree, key, key_pos=True),
                           f"unknown top-level key '{key}': a tnn graph has only 'nodes' and 'edges' "
                           "(tnn reads nothing else)")
        nodes = tree.get("nodes")
        if not isinstance(nodes, list) or not nodes:
            self.error(_where(tree, "nodes") if "nodes" in tree else tree.pos,
                       "'nodes' must be a non-empty list of node objects")
            return
        edges = tree.get("edges", None)
        if edges is None or not isinstance(edges, list):
            self.error(_where(tree, "edges") if "edges" in tree else tree.pos,
                       "'edges' must be a list of {\"from\": A, \"to\": B} links")
            edges = []
        known = {"name", "shape", "shape_from", "dtype", "input_init", "state_init", "harbor", "pre_memory",
                 "memory", "post_memory"}
        for i, nd in enumerate(nodes):
            where = f"nodes[{i}]"
            if not isinstance(nd, LMap):
                self.error(_where(nodes, i), f"{where}: a node is an object with 'name', 'harbor', "
                                             "'pre_memory', 'memory', 'post_memory', ...")
                continue
            nm = nd.get("name")
            if not isinstance(nm, str):
                self.error(_where(nd, "name") if "name" in nd else nd.pos, f"{where}: a node needs a string 'name'")
                continue
            where = f"nodes[{i}] ({nm})"
            if not NAME_RE.match(nm):
                self.error(_where(nd, "name"), f"{where}: '{nm}' is not a valid tnnspec name (letters, digits, "
                                               "'-' and single '_'; no '.', '/' or '__'): rename the node")
            if nm in self.nodes:
                first = self.nodes[nm]
                self.error(_where(nd, "name"), f"{where}: node name '{nm}' is used twice (also nodes[{first.index}])")
                continue
            for key in nd:
                if key not in known:
                    self.error(_where(nd, key, key_pos=True),
                               f"{where}: unknown node key '{key}'{did_you_mean(key, known)}; a tnn node has "
                               f"{', '.join(sorted(known))}")
            is_input = "shape" in nd
            sf = nd.get("shape_from")
            if sf is not None and not isinstance(sf, str):
                self.error(_where(nd, "shape_from"), f"{where}.shape_from: expected a node name")
                sf = None
            if not is_input and sf is None:
                self.error(nd.pos, f"{where}: a node needs 'shape_from' (the node whose output shape sets its "
                                   "harbor), or 'shape' if it is an input node; tnn raises KeyError here")
            if is_input and sf is not None:
                self.note(f"node {nm} has both 'shape' and 'shape_from': imported as an input node (its 'shape' "
                          "is used)")
            for key, allowed in (("dtype", ("float32",)),):
                if key in nd and nd[key] not in allowed:
                    self.error(_where(nd, key), f"{where}.{key}: {json.dumps(nd[key])} is not supported; tnnspec "
                                                "areas compute in the network's dtype (float32)")
            for key in ("input_init", "state_init"):
                if key in nd:
                    v = nd[key]
                    fn = v.get("function") if isinstance(v, LMap) else None
                    if fn != "zeros" or any(k not in ("function", "dtype") for k in v):
                        self.error(_where(nd, key), f"{where}.{key}: only {{\"function\": \"zeros\"}} is supported "
                                                    "(tnnspec starts states and stand-ins at zero)")
            self.nodes[nm] = _Node(i, nm, nd, where, is_input, None if is_input else sf)
        seen: dict[tuple[str, str], int] = {}
        for j, ed in enumerate(edges):
            where = f"edges[{j}]"
            if not isinstance(ed, LMap) or set(ed) != {"from", "to"}:
                self.error(_where(edges, j), f"{where}: an edge is {{\"from\": A, \"to\": B}} and nothing else "
                                             "(tnn edges carry no other attributes)")
                continue
            ok = True
            for key in ("from", "to"):
                v = ed[key]
                if not isinstance(v, str) or v not in self.nodes:
                    shown = json.dumps(v) if isinstance(v, str) else f"({_flow(v)}: not a node name)"
                    hint = did_you_mean(v, self.nodes) if isinstance(v, str) else ""
                    self.error(_where(ed, key), f"{where}.{key}: link to a missing node {shown}{hint}; nodes: "
                                                f"{', '.join(self.nodes)}")
                    ok = False
            if not ok:
                continue
            pair = (ed["from"], ed["to"])
            if pair in seen:
                self.note(f"edges[{j}] repeats {pair[0]} -> {pair[1]} (edges[{seen[pair]}]); tnn's networkx "
                          "DiGraph keeps one link: imported once")
                continue
            seen[pair] = j
            self.edges.append((pair[0], pair[1], j))
            self.nodes[pair[1]].preds.append(pair[0])

    # ---------------------------------------------------------------- graph checks
    def _graph(self) -> None:
        import networkx as nx

        g = nx.DiGraph()  # built explicitly: nx.DiGraph(data=edges) builds an empty graph on networkx >= 2
        g.add_nodes_from(self.nodes)
        g.add_edges_from((a, b) for a, b, _ in self.edges)
        assert g.number_of_edges() == len(self.edges)
        self.graph = g
        inputs = [n for n in self.nodes.values() if n.is_input]
        if not inputs:
            self.error(self.tree.where_value("nodes"), "no input node: an input node has 'shape' ([H, W, C] "
                                                       "or [D]), the size of the external input")
            return
        if self.edges:
            used = {a for a, _, _ in self.edges} | {b for _, b, _ in self.edges}
            for n in self.nodes.values():
                if n.name not in used:
                    self.error(_where(n.data, "name"), f"{n.where}: the node is in no edge; tnn's import_json "
                                                       "requires every node to appear in an edge")
        elif len(self.nodes) > 1:
            self.error(self.tree.where_value("edges") if "edges" in self.tree else self.tree.pos,
                       "a graph with several nodes needs edges")
        for n in self.nodes.values():
            if n.shape_from is not None and n.shape_from not in self.nodes:
                self.error(_where(n.data, "shape_from"), f"{n.where}.shape_from: no node '{n.shape_from}'"
                                                         f"{did_you_mean(n.shape_from, self.nodes)}")
        if self.report.has_errors:
            return
        for n in self.nodes.values():  # the shape_from chain must reach an input (tnn loops forever otherwise)
            seen, cur = [n.name], n
            while not cur.is_input:
                nxt = self.nodes[cur.shape_from]
                if nxt.name in seen:
                    self.error(_where(n.data, "shape_from"),
                               f"{n.where}.shape_from: the chain {' -> '.join(seen + [nxt.name])} never reaches "
                               "an input node (tnn's init_nodes would loop forever)")
                    break
                seen.append(nxt.name)
                cur = nxt
            if n.shape_from is not None and n.shape_from not in n.preds and n.shape_from in self.nodes:
                self.note(f"node {n.name}: shape_from '{n.shape_from}' is not one of its inputs; its harbor "
                          f"still takes that node's output size")
        reach = set()
        for i in inputs:
            reach |= {i.name} | nx.descendants(g, i.name)
        for n in self.nodes.values():
            if n.name not in reach:
                self.error(_where(n.data, "name"), f"{n.where}: no input node reaches this node through the edges "
                                                   "(tnn's check_inputs fails)")

    # ---------------------------------------------------------------- levels, order, delays
    def _depth(self, n: _Node) -> int:
        d = 1
        while not n.is_input:
            n = self.nodes[n.shape_from]
            d += 1
        return d

    def _levels_and_delays(self) -> None:
        import networkx as nx

        for n in self.nodes.values():
            n.level = self._depth(n)
        names = list(self.nodes)
        loopless = self.graph.copy()
        loopless.remove_edges_from(nx.selfloop_edges(loopless))
        self.is_dag = nx.is_directed_acyclic_graph(loopless)
        self.order_note = ""
        if self.ff_order is not None:
            unknown = [x for x in self.ff_order if x not in self.nodes]
            missing = [x for x in names if x not in self.ff_order]
            if unknown or missing or len(set(self.ff_order)) != len(self.ff_order):
                raise ValueError(f"ff_order must list every node once; unknown: {unknown}, missing: {missing}")
            order = list(self.ff_order)
            self.order_note = "the ff_order given"
        elif self.is_dag:
            order = list(nx.lexicographical_topological_sort(loopless, key=lambda x: self.nodes[x].index))
            self.order_note = "a topological order (the graph has no cycle)"
        else:
            order = sorted(names, key=lambda x: (self.nodes[x].level, self.nodes[x].index))
            self.order_note = ("shape_from depth, then file order, since the graph has cycles; tnn's unroll_tf "
                               "takes ff_order or a path heuristic there")
        self.order = {x: i for i, x in enumerate(order)}
        self.delays: dict[tuple[str, str], int] = {}
        for a, b, _ in self.edges:
            if self.unroll == "tnn":
                d = 1
            else:
                d = 0 if self.order[a] < self.order[b] else 1
            self.delays[(a, b)] = d
        if self.unroll == "tnn_tf" and not self.is_dag and self.ff_order is None:
            back = [f"{a}->{b}" for a, b, _ in self.edges if self.delays[(a, b)] == 1 and a != b]
            self.note("unroll tnn_tf on a graph with cycles: the feedforward order is taken from shape_from depth, "
                      f"then file order; links against it get delay 1 ({', '.join(back) or 'only self-links'}). "
                      "Pass ff_order (Python) if your tnn code used another order.")

    def _edge_type(self, a: str, b: str) -> str:
        if a == b:
            return "lateral"
        la, lb = self.nodes[a].level, self.nodes[b].level
        if self.nodes[b].shape_from == a or lb == la + 1:
            return "feedforward"
        if lb > la:
            return "skip"
        if lb < la:
            return "feedback"
        return "lateral"

    # ---------------------------------------------------------------- translation of all nodes
    def _input_source(self, n: _Node) -> str:
        ins = [m for m in self.nodes.values() if m.is_input]
        base = self.input_name if len(ins) == 1 else f"{self.input_name}_{n.name}"
        while base in self.nodes:
            base += "_in"
        return base

    def _input_shape(self, n: _Node) -> tuple | None:
        shp = n.data.get("shape")
        ok = isinstance(shp, list) and all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in shp)
        if not ok or len(shp) not in (1, 3):
            self.error(_where(n.data, "shape"), f"{n.where}.shape: expected [H, W, C] (an image, NHWC without the "
                                                f"batch) or [D] (a vector) of positive integers, got {_flow(shp)}")
            return None
        return (shp[2], shp[0], shp[1]) if len(shp) == 3 else (shp[0],)

    def _translate_all(self) -> list[_Area]:
        order = sorted(self.nodes.values(), key=lambda n: (n.level, n.index))
        topo = []  # shape_from order: every node after its shape_from
        done: set[str] = set()
        while len(topo) < len(order):
            for n in order:
                if n.name not in done and (n.is_input or n.shape_from in done):
                    topo.append(n)
                    done.add(n.name)
        self.input_shapes = {n.name: self._input_shape(n) for n in topo if n.is_input}
        # pass 1, as tnn's init_nodes: every harbor as its shape_from's output (messages muted)
        self.mute = True
        shapes: dict[str, tuple | None] = {}
        for n in topo:
            shapes[n.name] = self._translate(n, shapes, nominal=True).node.out_shape
        self.mute = False
        # pass 2 with all the inputs
        areas = {}
        for n in topo:
            area = self._translate(n, shapes, nominal=False)
            areas[n.name] = area
            shapes[n.name] = n.out_shape
        for area in areas.values():
            if area.channels is None and not self.report.has_errors:
                self.error(_where(area.node.data, "name"), f"{area.node.where}: the output shape of this node cannot "
                                                           "be worked out (its inputs' shapes depend on it)")
            for t in area.terms:
                if t.node_source is not None and shapes.get(t.node_source) != t.shape and shapes.get(t.node_source):
                    self.error(_where(area.node.data, "name"),
                               f"{area.node.where}: the output shape of its input {t.node_source} depends on this "
                               f"node's own output (a cycle with no conv/fc that fixes the channels)")
        return [areas[n.name] for n in sorted(self.nodes.values(), key=lambda n: n.index)]

    # ---------------------------------------------------------------- one node
    def _translate(self, n: _Node, shapes: dict, nominal: bool) -> _Area:
        d = n.data
        terms: list[_Term] = []
        if n.is_input:
            terms.append(_Term(self._input_source(n), None, self.input_shapes.get(n.name), feedforward=True,
                               comment="the external input (same step)"))
        preds = [] if nominal else sorted(n.preds)  # tnn's harbor order: the input, then sorted(predecessors)
        if nominal and not n.is_input:
            preds = [n.shape_from]
        for p in preds:
            terms.append(_Term(p, p, shapes.get(p), feedforward=(p == n.shape_from)))
        harbor_spec = d.get("harbor")
        if harbor_spec is None:
            harbor_spec = LMap(pos=d.pos)
        if not isinstance(harbor_spec, LMap):
            self.error(_where(d, "harbor"), f"{n.where}.harbor: expected an object")
            harbor_spec = LMap(pos=d.pos)
        a = _Args(self, harbor_spec, f"{n.where}.harbor", "harbor",
                  allowed={"preproc", "spatial_op", "channel_op", "activation", "ksize", "padding",
                           "out_depth_per_input", "ff_inpnm", "node_nms", "l1_inpnm"},
                  ignored={"kernel_init": _INIT, "kernel_init_kwargs": _INIT, "weight_decay": _REG,
                           "dropout": _TRAIN, "name": _NAME})
        fn = harbor_spec.get("function", "harbor")
        area = _Area(n, terms, "sum", "identity", "", [], None, "")
        if fn != "harbor":
            self.error(_where(harbor_spec, "function"), f"{n.where}.harbor.function: only tnn's 'harbor' is "
                                                        f"supported, got {json.dumps(fn)}")
            raise_stop = True
        else:
            raise_stop = False
        if a.has("preproc"):
            a.error("preproc", f"{json.dumps(a.raw('preproc'))} has no tnnspec equivalent (tnn's crop, sp_transform, "
                               "gate and depth preprocs pick inputs apart by TF tensor names); only null is supported")
        spatial_op = a.choice("spatial_op", "resize", ["resize", "emphasis", "pad", "tile", "deconv",
                                                       "sp_transform", "flatten", "factored_fc"], "spatial ops")
        channel_op = a.choice("channel_op", "concat", ["concat", "add", "multiply"], "channel ops")
        h_act = a.raw("activation")
        if h_act is not None and not _is_activation(h_act):
            a.error("activation", f"{_flow(h_act)} is not an activation tnnspec has")
            h_act = None
        try:
            a.finish()
        except _Stop:
            raise_stop = True
        n.out_shape = None
        harbor_target = self.input_shapes.get(n.name) if n.is_input else shapes.get(n.shape_from)
        # an input whose shape is unknown failed itself (reported, or to be reported once this node's own
        # problems, which may be the cause in a cycle, are): go on without it, to report this node's problems
        terms = [t for t in terms if t.shape is not None]
        area.terms = terms
        if raise_stop or harbor_target is None or not terms:
            self._validate_rest(n)
            return area
        try:
            return self._assemble(n, area, terms, tuple(harbor_target), spatial_op, channel_op, h_act,
                                  a.ignored_note())
        except _Stop:  # reported; n.out_shape stays what could be worked out (None if nothing)
            return area

    def _validate_rest(self, n: _Node) -> None:
        """Report the problems of a node whose inputs have no known shape (keys and names only)."""
        for key in ("pre_memory", "post_memory"):
            for i, spec in self._fn_list(n, key):
                if key == "post_memory" and spec["function"] == "residual_add":
                    continue
                try:
                    self._fn_ops(spec, f"{n.where}.{key}[{i}]", None)
                except _Stop:
                    pass

    def _fn_list(self, n: _Node, key: str) -> list[tuple[int, LMap]]:
        v = n.data.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            self.error(_where(n.data, key), f"{n.where}.{key}: expected a list of function specs")
            return []
        out = []
        for i, spec in enumerate(v):
            if not isinstance(spec, LMap) or not isinstance(spec.get("function"), str):
                self.error(_where(v, i), f"{n.where}.{key}[{i}]: a function spec is an object with a string "
                                         "'function' and its keyword arguments")
                continue
            out.append((i, spec))
        return out

    def _fn_ops(self, spec: LMap, where: str, shape: tuple | None) -> tuple[list[_TOp], tuple | None]:
        """Translate one function spec; raises _Stop (after reporting) if it cannot be."""
        fn = spec["function"]
        handler = _HANDLERS.get(fn)
        if handler is None:
            reason = _UNSUPPORTED.get(fn)
            if reason:
                msg = f"'{fn}' {reason}"
            else:
                msg = (f"unknown function '{fn}'{did_you_mean(fn, _HANDLERS)}; the importer maps "
                       f"{', '.join(sorted(_HANDLERS))}")
            self.error(_where(spec, "function"), f"{where}.function: {msg}")
            raise _Stop
        ops = handler(self, spec, where, fn, shape)
        out = shape
        for op in ops:
            if op.shape is not None or op.name is not None:
                out = op.shape if op.name is not None else out
        return ops, out

    def _fn_seq(self, items: list[tuple[int, LMap]], label: str, n: _Node, shape: tuple | None,
                indices: Iterable[int] | None = None) -> tuple[list[_TOp], tuple | None]:
        ops: list[_TOp] = []
        failed = False
        for i, spec in items:
            if indices is not None and i not in indices:
                continue
            try:
                more, shape = self._fn_ops(spec, f"{n.where}.{label}[{i}]", None if failed else shape)
                if failed:
                    continue
                ops.extend(more)
            except _Stop:
                failed = True
        if failed:
            raise _Stop
        return ops, shape

    # ---------------------------------------------------------------- harbor terms
    def _harbor_ops(self, n: _Node, t: _Term, target: tuple, spatial_op: str, channel_op: str,
                    h_act: str | None) -> tuple[list[_TOp], tuple]:
        ops: list[_TOp] = []
        shape = t.shape
        act_ops = ([] if h_act is None else
                   [_TOp(_ACTIVATIONS[h_act][0], _ACTIVATIONS[h_act][1], f"harbor activation {h_act}", "cw", None)])
        pos = _where(n.data, "harbor") if "harbor" in n.data else _where(n.data, "name")
        if len(target) == 3:
            if len(shape) == 1:
                self.error(pos, f"{n.where}.harbor: input {t.node_source or t.source} is a vector {_fmt(shape)}; "
                                "tnn projects and tiles it over the map, which tnnspec cannot express (no tile op)")
                raise _Stop
            c, h, w = shape
            if (h, w) != target[1:]:
                if spatial_op in ("resize", "emphasis"):
                    ops.append(_TOp("resample", {"mode": "bilinear", "size": [target[1], target[2]],
                                                 "align_corners": True},
                                    f"harbor spatial_op {spatial_op}: bilinear resize {h}x{w} -> "
                                    f"{target[1]}x{target[2]} (TF align_corners=True)", "cw", (c,) + target[1:]))
                else:
                    what = {"pad": "centre crop/zero-pad", "tile": "tiling", "deconv": "a learned (transposed) conv "
                            "with tnn's own stride rule", "sp_transform": "a learned spatial transformer",
                            "flatten": "flattening into a concat of maps", "factored_fc": "a factored readout"}
                    self.error(_where(n.data["harbor"], "spatial_op"),
                               f"{n.where}.harbor.spatial_op: '{spatial_op}' ({what[spatial_op]}) of input "
                               f"{t.node_source or t.source} ({h}x{w} -> {target[1]}x{target[2]}) cannot be "
                               "expressed; only 'resize' can")
                    raise _Stop
            elif spatial_op in ("sp_transform", "factored_fc") and not t.feedforward:
                self.error(_where(n.data["harbor"], "spatial_op"),
                           f"{n.where}.harbor.spatial_op: '{spatial_op}' is learned; tnnspec has no equivalent")
                raise _Stop
            shape = (c,) + target[1:]
            if channel_op != "concat" and c != target[0]:
                ops.append(_TOp("conv", {"channels": target[0], "kernel": 1, "padding": "same"},
                                f"harbor channel_op {channel_op}: 1x1 conv {c} -> {target[0]} channels", "x",
                                (target[0],) + target[1:]))
                ops.extend(act_ops)
                shape = (target[0],) + target[1:]
        else:
            if len(shape) == 3:
                ops.append(_TOp("flatten", None, "harbor: a map into a vector node is flattened (tnn: NHWC order)",
                                "cw", (shape[0] * shape[1] * shape[2],)))
                shape = (shape[0] * shape[1] * shape[2],)
            if channel_op != "concat" and shape[0] != target[0]:
                ops.append(_TOp("linear", {"features": target[0]},
                                f"harbor channel_op {channel_op}: fc {shape[0]} -> {target[0]}", "x", (target[0],)))
                ops.extend(act_ops)
                shape = (target[0],)
        for op in ops:
            if op.shape is None:
                op.shape = shape
        return ops, shape

    # ---------------------------------------------------------------- assemble an area
    def _assemble(self, n: _Node, area: _Area, terms: list[_Term], harbor_target: tuple, spatial_op: str,
                  channel_op: str, h_act: str | None, harbor_ignored: str) -> _Area:
        ff = next((t for t in terms if t.feedforward), terms[0])
        ff.feedforward = True  # the bias of a split conv goes here
        pre_items = self._fn_list(n, "pre_memory")
        post_items = self._fn_list(n, "post_memory")
        area.harbor_comment = (f"harbor{' (default)' if 'harbor' not in n.data else ''}: spatial_op {spatial_op}, "
                               f"channel_op {channel_op}{harbor_ignored}")
        for t in terms:  # every input through the harbor (resize, projection, flatten)
            t.ops, t.after_harbor = self._harbor_ops(n, t, harbor_target, spatial_op, channel_op, h_act)
            t.harbor_ops = list(t.ops)
        residual = [i for i, spec in post_items if spec["function"] == "residual_add"]
        for i in residual[1:]:
            self.error(_where(n.data["post_memory"], i), f"{n.where}.post_memory[{i}]: a second residual_add")
        if residual and not any(spec["function"] == "component_conv" and spec.get("return_input") is True
                                for _, spec in pre_items):
            self.error(_where(n.data["post_memory"], residual[0]),
                       f"{n.where}.post_memory[{residual[0]}]: residual_add adds the harbor output captured by a "
                       "pre_memory component_conv with return_input: true, and this node has none (tnn fails)")
            raise _Stop
        multi = len(terms) > 1
        if multi and channel_op == "multiply":
            self.error(_where(n.data["harbor"], "channel_op"),
                       f"{n.where}.harbor.channel_op: 'multiply' multiplies its {len(terms)} inputs "
                       f"({', '.join(t.node_source or t.source for t in terms)}); tnnspec's combine has no plain "
                       "product ('multiplicative' is b * (1 + l + t))")
            self._validate_rest(n)
            raise _Stop
        harbor_terms = list(terms)
        # the pre_memory on the feedforward input decides where each op can go
        ff_pre, drive = self._fn_seq(pre_items, "pre_memory", n, ff.after_harbor)
        lin = next((k for k, op in enumerate(ff_pre) if op.kind == "lin"), None)
        before = ff_pre if lin is None else ff_pre[:lin + 1]
        rest = [] if lin is None else ff_pre[lin + 1:]
        memory_failed = False
        try:
            cell, cell_comment, cell_channels, stateless = self._memory(n, drive, multi)
        except _Stop:  # reported; go on with the memory's channels so that later nodes are checked too
            memory_failed = True
            out_depth = n.data["memory"].get("out_depth") if isinstance(n.data.get("memory"), LMap) else None
            cell, cell_comment, stateless = "identity", "", False
            cell_channels = out_depth if isinstance(out_depth, int) and not isinstance(out_depth, bool) else drive[0]
        area_pre: list[_TOp] = []
        pre_area: _Area | None = None
        if not multi:
            ff.ops = ff.ops + (before if stateless else before + rest)
            area_pre = rest if stateless else []
        elif channel_op == "concat" and all(op.kind == "cw" for op in (before[:-1] if lin is not None else before)):
            # channelwise ops commute with the concat; one conv over the concatenation is the sum of one conv
            # per input with one bias
            for t in terms:
                if t is ff:
                    t.ops = t.ops + before
                    continue
                own, _ = self._fn_seq(pre_items, "pre_memory", n, t.after_harbor)
                own = own if lin is None else own[:lin] + [_split_linear(own[lin])]
                t.ops = t.ops + own
            combine = "sum" if lin is not None else "concat"
            if lin is None:
                drive = (sum((t.ops[-1].shape if t.ops else t.after_harbor)[0] for t in terms),) + tuple(drive[1:])
                cell, cell_comment, cell_channels, stateless = self._memory(n, drive, multi)
            if rest and not stateless:  # ops on the sum before a cell with a state: an area of their own
                pre_area = self._pre_area(n, area, terms, combine, rest, drive)
            else:
                area.combine, area_pre = combine, rest
        else:
            # combine the harbor outputs at an area, the whole pre_memory as its ops: after the cell when the
            # memory keeps no state, else in an area of their own before it
            combine = "concat" if channel_op == "concat" else "sum"
            c = sum(t.after_harbor[0] for t in terms) if channel_op == "concat" else harbor_target[0]
            combined = (c,) + tuple(ff.after_harbor[1:])
            pre_ops, drive = self._fn_seq(pre_items, "pre_memory", n, combined)
            if stateless:
                area.combine, area_pre = combine, pre_ops
                cell, cell_channels = "identity", drive[0]
            else:
                pre_area = self._pre_area(n, area, terms, combine, pre_ops, drive)
                cell, cell_comment, cell_channels, stateless = self._memory(n, drive, multi)
        if pre_area is not None:
            terms = [_Term(pre_area.name, None, drive, [], delay=0, etype="feedforward",
                           origin=f"the node {n.name} split: its harbor and pre_memory in {pre_area.name}, in the same "
                                  "step")]
            area.extra = [pre_area]
            area.combine = "sum"
            area.harbor_comment = f"the memory and post_memory of node {n.name} (its harbor is {pre_area.name})"
        for op in area_pre:
            op.comment += " (after the cell, which keeps no state: the same)"
        area.cell, area.cell_comment = cell, cell_comment
        out = (cell_channels,) + tuple(drive[1:])
        if residual:
            r = residual[0]
            post_ops, out = self._fn_seq(post_items, "post_memory", n, out, indices=[i for i, _ in post_items if i < r])
        else:
            post_ops, out = self._fn_seq(post_items, "post_memory", n, out)
        area.ops = area_pre + post_ops
        area.channels = out[0]
        area.terms = terms
        if residual:
            area = self._residual(n, area, harbor_terms, out, dict(post_items)[residual[0]],
                                  f"{n.where}.post_memory[{r}]", harbor_target, channel_op)
            post2, out = self._fn_seq(post_items, "post_memory", n, area.inner_out,
                                      indices=[i for i, _ in post_items if i > r])
            area.ops = post2
            area.channels = out[0]
        n.out_shape = out
        if memory_failed:
            raise _Stop
        return area

    def _split_name(self, n: _Node, suffix: str) -> str:
        name = f"{n.name}_{suffix}"
        while name in self.nodes:
            name += "_"
        return name

    def _pre_area(self, n: _Node, area: _Area, terms: list[_Term], combine: str, ops: list[_TOp],
                  drive: tuple) -> _Area:
        """The area ``<node>_pre`` of a node whose pre_memory must act on its combined inputs before a memory
        with a state (tnnspec's cell gets only what the edges deliver): it combines the inputs, applies those
        ops with no state of its own, and feeds ``<node>`` in the same step. Exact."""
        for op in ops:
            op.comment += " (on the combined inputs, before the memory)"
        name = self._split_name(n, "pre")
        return _Area(n, terms, combine, "identity", f"no state: the harbor and pre_memory of node {n.name}, whose "
                                                    "memory is in the next area", ops, drive[0],
                     area.harbor_comment + f"; node {n.name} is split: its pre_memory acts on the combined inputs "
                                           "before a memory with a state", name=name, level=n.level - 0.5, role="pre")

    def _residual(self, n: _Node, inner: _Area, terms: list[_Term], out: tuple, spec: LMap, where: str,
                  harbor_target: tuple, channel_op: str) -> _Area:
        """Split a node whose post_memory has ``residual_add``: the area ``<node>_cell`` computes the harbor ..
        memory .. ops before it; the area ``<node>`` sums that (delay 0) with the harbor inputs again, from the
        same sources with the same delays, through residual_add's resize and 1x1 projection, then applies the
        rest of the post_memory. Exact: both halves compute in the same step."""
        a = _Args(self, spec, where, "residual_add", {"strides", "padding", "batch_norm", "group_norm", "sp_resize",
                                                      "drop_connect_rate", "time_sep", "dtype"},
                  {"kernel_init": _INIT, "kernel_init_kwargs": _INIT, "is_training": _TRAIN, "init_zero": _INIT,
                   "crossdevice_bn_kwargs": _TRAIN, "batch_norm_decay": _TRAIN, "batch_norm_epsilon": _TRAIN,
                   "bn_trainable": _TRAIN, "time_suffix": _TRAIN, "num_groups": _TRAIN, "name": _NAME})
        if a.nhwc("strides", (1, 1)) != (1, 1):
            a.error("strides", "only stride 1 is supported for the residual projection")
        a.choice("padding", "SAME", ["SAME", "VALID"], "TensorFlow paddings")
        for key in ("batch_norm", "group_norm"):
            if a.boolean(key, False):
                a.error(key, "a normalised residual projection is not supported")
        if a.raw("drop_connect_rate") is not None:
            a.error("drop_connect_rate", "drop-connect has no tnnspec op")
        sp_resize = a.boolean("sp_resize", True)
        ignored = a.ignored_note()
        a.finish()
        if len(out) != 3:
            a.error(None, f"the memory's output is a vector {_fmt(out)}; residual_add needs a feature map")
            raise _Stop
        res_c = sum(t.after_harbor[0] for t in terms) if channel_op == "concat" else harbor_target[0]
        res_hw = tuple(terms[0].after_harbor[1:])
        resize = res_hw != tuple(out[1:])
        project = resize or res_c != out[0]
        if resize and not sp_resize:
            a.error("sp_resize", f"false, but the harbor is {res_hw[0]}x{res_hw[1]} and the output "
                                 f"{out[1]}x{out[2]}: tnn fails")
            raise _Stop
        if not project and len(terms) > 1 and channel_op == "concat":
            a.error(None, f"adds the concatenation of {len(terms)} inputs to the output without a projection; "
                          "a tnnspec edge cannot deliver part of the channels")
            raise _Stop
        name = self._split_name(n, "cell")
        inner.name, inner.level, inner.role = name, n.level - 0.25, "cell"
        inner.harbor_comment += (f"; its post_memory has residual_add, so the node is split: {name} computes the "
                                 f"harbor .. memory .. post_memory[:{where.split('[')[-1][:-1]}], {n.name} adds the "
                                 "harbor inputs to it")
        res_terms = []
        for t in terms:
            ops = list(t.harbor_ops)
            if resize:
                ops.append(_TOp("resample", {"mode": "bilinear", "size": [out[1], out[2]], "align_corners": True},
                                f"residual_add: resize the harbor {res_hw[0]}x{res_hw[1]} -> {out[1]}x{out[2]} "
                                "(TF align_corners=True)", "cw", (t.after_harbor[0],) + tuple(out[1:])))
            if project:
                ops.append(_TOp("conv", {"channels": out[0], "kernel": 1, "padding": "same", "bias": False},
                                f"residual_add: 1x1 projection of the harbor, {res_c} -> {out[0]} channels (no bias; "
                                f"over a concatenation: one per input){ignored}", "lin", out))
            res_terms.append(_Term(t.source, t.node_source, t.shape, ops, feedforward=t.feedforward))
        link = _Term(name, None, out, [], delay=0, etype="feedforward",
                     origin=f"{where} residual_add: {n.name} = {name} + the harbor input, in the same step")
        outer = _Area(n, [link] + res_terms, "sum", "identity", "residual_add: the sum passes through (the "
                      f"memory is {name}'s)", [], None, f"{where} residual_add and the post_memory after it",
                      role="sum", extra=inner.extra + [inner], inner_out=out)
        inner.extra = []
        return outer

    # ---------------------------------------------------------------- memory -> cell
    def _memory(self, n: _Node, drive: tuple, multi: bool) -> tuple[Any, str, int | None, bool]:
        """(cell, comment, output channels, keeps no state) for the node's memory."""
        mem = n.data.get("memory")
        where = f"{n.where}.memory"
        if mem is None:
            return "identity", "no memory given: tnn's default memory (decay 0) keeps no state", drive[0], True
        if not isinstance(mem, LMap):
            self.error(_where(n.data, "memory"), f"{where}: expected an object")
            raise _Stop
        fn = mem.get("function", "memory")
        if fn != "memory":
            self.error(_where(mem, "function"), f"{where}.function: {json.dumps(fn)} is not tnn's time-decay "
                                                "'memory' (the only memory function a JSON can name)")
            raise _Stop
        cell_keys = [k for k in mem if k not in _TD_KEYS]
        if not cell_keys:
            return self._time_decay(n, mem, where, drive)
        candidates = [c for c, keys in _CELL_KEYS.items() if set(cell_keys) <= keys]
        if self.cell_arg is not None:
            choice = self.cell_arg
            if choice == "time_decay":
                if n.name not in self.cell_nodes:
                    self.cell_nodes.append(n.name)
                cell, comment, ch, st = self._time_decay(n, mem, where, drive)
                return cell, comment + f"; --cell time_decay: its cell keys ({', '.join(cell_keys)}) not imported", ch, st
            if choice not in candidates:
                foreign = [k for k in cell_keys if k not in _CELL_KEYS[choice]]
                self.error(_where(mem, foreign[0], key_pos=True) if foreign else _where(n.data, "memory"),
                           f"{where}: keys {', '.join(foreign)} are not parameters of the '{choice}' cell given by "
                           f"cell=/--cell" + (f"; they fit {', '.join(candidates)}" if candidates else ""))
                raise _Stop
        else:
            if len(candidates) == 1:
                choice = candidates[0]
            elif not candidates:
                bad = sorted(set(cell_keys) - set().union(*_CELL_KEYS.values()))
                msg = (f"keys {', '.join(bad)} belong to no cell the importer knows" if bad else
                       f"keys {', '.join(cell_keys)} do not fit any one cell")
                self.error(_where(mem, bad[0], key_pos=True) if bad else _where(n.data, "memory"),
                           f"{where}: {msg} (cells: {', '.join(_CELL_KEYS)})")
                raise _Stop
            else:
                if not self.mute and n.name not in self.fallback_nodes:
                    self.fallback_nodes.append(n.name)
                cell, comment, ch, st = self._time_decay(n, mem, where, drive)
                return (cell, comment + f"; its keys {', '.join(cell_keys)} are a recurrent cell's that the JSON "
                        f"does not name (could be {', '.join(candidates)}): pass --cell", ch, st)
        if n.name not in self.cell_nodes:
            self.cell_nodes.append(n.name)
        if len(drive) != 3:
            self.error(_where(n.data, "memory"), f"{where}: a '{choice}' cell needs a feature map, but the "
                                                 f"pre_memory gives a vector {_fmt(drive)}")
            raise _Stop
        a = _Args(self, mem, where, choice, allowed=_CELL_KEYS[choice] - {"max_internal_time"},
                  ignored={"weight_decay": _REG, "kernel_initializer": _INIT, "kernel_initializer_kwargs": _INIT,
                           "bias_initializer": _INIT, "bias_initializer_kwargs": _INIT, "kernel_regularizer": _REG,
                           "bias_regularizer": _REG, "total_training_steps": _TRAIN, "is_training": _TRAIN,
                           "bn_trainable": _TRAIN, "crossdevice_bn_kwargs": _TRAIN, "batch_norm_decay": _TRAIN,
                           "batch_norm_epsilon": _TRAIN, "gate_tau_bn_gamma_init": _INIT, "edges_init_zero": _INIT,
                           "max_internal_time": _TRAIN, "state_is_tuple": "state layout"})
        a.ignored = {k: v for k, v in a.ignored.items() if k in _CELL_KEYS[choice]}
        if choice == "reciprocal_gated_convrnn":
            return self._rgc(n, a, drive, multi)
        return self._convrnn(n, a, choice, drive)

    def _time_decay(self, n: _Node, mem: LMap, where: str, drive: tuple) -> tuple[Any, str, int, bool]:
        a = _Args(self, mem, where, "memory", allowed={"memory_decay", "trainable", "no_state", "max_internal_time"}
                  | {k for k in mem if k not in _TD_KEYS})
        decay = a.number("memory_decay", 0, lo=None)
        trainable = a.boolean("trainable", False)
        no_state = a.boolean("no_state", False)
        a.finish()
        src = f"memory (memory_decay {decay}, trainable {str(trainable).lower()})"
        if no_state:
            return "identity", "memory no_state: the state is bypassed", drive[0], True
        if not trainable:
            if decay == 0:
                return "identity", f"{src}: s = 0*s + x keeps no state", drive[0], True
            if not 0 <= decay <= 1:
                self.error(_where(mem, "memory_decay"), f"{where}.memory_decay: {decay} is outside [0, 1], the range "
                                                        "of tnnspec's time_decay")
                raise _Stop
            return {"type": "time_decay", "decay": float(decay), "learnable": False}, f"{src}: s = {decay}*s + x", \
                drive[0], False
        start = float(decay)
        comment = f"{src}: s = l*s + x with l learned"
        if not 0 < decay < 1:
            start = 0.05 if decay <= 0 else 0.95
            self.note(f"node {n.name}: tnn learns an unbounded decay started at {decay}; tnnspec learns "
                      f"l = sigmoid(logit) in (0, 1), started here at {start}")
            comment += f" (tnn starts it at {decay}, unbounded; here l = sigmoid(logit) starts at {start})"
        return {"type": "time_decay", "decay": start, "learnable": True}, comment, drive[0], False

    def _check_shape_key(self, a: _Args, drive: tuple) -> None:
        shp = a.raw("shape")
        if shp is None:
            return
        if not (isinstance(shp, list) and len(shp) == 2) or tuple(shp) != tuple(drive[1:]):
            a.error("shape", f"{_flow(shp)} differs from the pre_memory output {drive[1]}x{drive[2]} "
                             "(the state would not fit its input)")

    def _convrnn(self, n: _Node, a: _Args, choice: str, drive: tuple) -> tuple[Any, str, int, bool]:
        self._check_shape_key(a, drive)
        kernel = a.pair("filter_size", None, required=True)
        out = a.number("out_depth", drive[0], lo=1, integer=True)
        ln = a.boolean("layer_norm", False)
        if ln:
            a.error("layer_norm", f"tnnspec's '{choice}' cell has no layer norm; set it to false in the JSON to "
                                  "import the cell without it")
        cell: dict[str, Any] = {"type": choice}
        extra = []
        if choice in ("gru", "lstm", "ugrnn", "intersection_rnn"):
            cell["forget_bias"] = float(a.number("forget_bias", 1.0))
            if "forget_bias" not in a.spec:
                extra.append("forget_bias not given: 1.0, convrnns' default" + ("; tnn's ConvGRU adds none"
                                                                                 if choice == "gru" else ""))
        if choice == "lstm" and a.boolean("use_peepholes", False):
            cell["peephole"] = True
        if choice in ("gru", "lstm"):
            a.choice("activation", "tanh", ["tanh"], f"tnnspec's {choice} uses tanh; supported")
        if choice == "simple_rnn":
            act = a.choice("activation", None, ["elu", "relu", "tanh", "sigmoid", "identity"], "activations")
            cell["activation"] = act or "elu"
            if act is None:
                extra.append("activation: ELU (convrnns' default; tnn's ConvBasicCell used tanh)")
            if "layer_norm" not in a.spec:
                extra.append("layer_norm not given: none (convrnns' ConvNormBasicCell defaults to true)")
                self.note(f"node {n.name}: simple_rnn memory without 'layer_norm': imported without layer norm "
                          "(convrnns' ConvNormBasicCell would default to layer_norm true)")
        if choice == "intersection_rnn" and out != drive[0]:
            a.error("out_depth", f"{out} differs from the pre_memory's {drive[0]} channels; the intersection RNN "
                                 "passes its input through, so they must be equal")
        ignored = a.ignored_note()
        a.finish()
        cell = {"type": choice, "kernel": _pair(kernel), **{k: v for k, v in cell.items() if k != "type"}}
        if "out_depth" not in a.spec:
            extra.append(f"out_depth not given: the pre_memory's {drive[0]}")
        comment = (f"memory: {'given by --cell' if self.cell_arg == choice else 'identified by its keys as'} "
                   f"{choice}, filter_size {kernel[0]}x{kernel[1]}, out_depth {out}"
                   + (f" ({'; '.join(extra)})" if extra else "") + ignored)
        return cell, comment, out, False

    def _rgc(self, n: _Node, a: _Args, drive: tuple, multi: bool) -> tuple[Any, str, int, bool]:
        self._check_shape_key(a, drive)
        out = a.number("out_depth", drive[0], lo=1, integer=True)
        if out != drive[0]:
            a.error("out_depth", f"{out} differs from the pre_memory's {drive[0]} channels; tnnspec's "
                                 "reciprocal_gated_convrnn keeps its drive's channels")
        cell_depth = a.number("cell_depth", None, lo=1, integer=True, required=True)
        tau = a.pair("tau_filter_size", None, required=True)
        gate = a.pair("gate_filter_size", None, required=True, allow_zero=True)
        ff = a.pair("ff_filter_size", None, required=True)
        if gate == (0, 0):
            a.error("gate_filter_size", "[0, 0] (no cell state) is not supported: tnnspec's cell always has one")
        cell_tau = a.pair("cell_tau_filter_size", None)
        if cell_tau is not None and tau is not None and cell_tau != tau:
            a.error("cell_tau_filter_size", "differs from tau_filter_size; tnnspec uses one tau kernel")
        in_out = a.pair("in_out_filter_size", (3, 3))
        input_to_out = a.boolean("input_to_out", False)
        if input_to_out and ff is not None and in_out != ff:
            a.error("in_out_filter_size", f"{_pair(in_out)} differs from ff_filter_size {_pair(ff)}; tnnspec uses "
                                          "one input kernel")
        if not a.boolean("input_to_cell", False):
            a.error("input_to_cell" if "input_to_cell" in a.spec else None,
                    "input_to_cell must be true (tnn's default is false): tnnspec's cell always feeds its input "
                    "to the cell state")
        for key in ("cell_residual", "out_residual", "residual_to_cell_tau", "residual_to_cell_gate",
                    "residual_to_out_tau", "residual_to_out_gate", "input_to_tau", "input_to_gate", "cell_to_out",
                    "ff_depth_separable", "in_out_depth_separable", "ds_repeat", "layer_norm", "batch_norm",
                    "batch_norm_cell_out"):
            if a.boolean(key, False):
                why = ("tnn also drops the cell's gate on the output, unlike tnnspec" if key == "cell_to_out" else
                       "not supported by tnnspec's reciprocal_gated_convrnn")
                a.error(key, f"true is {why}; set it to false in the JSON to import without it")
        keep = a.number("recurrent_keep_prob", 1.0, lo=0, hi=1)
        if keep != 1.0:
            a.error("recurrent_keep_prob", "annealed recurrent dropout is not supported (set 1.0)")
        nl = {}
        for key in ("tau_nonlinearity", "gate_nonlinearity"):
            nl[key] = a.choice(key, "tanh", ["sigmoid", "tanh"], "nonlinearities")
        acts = {}
        for key, default in (("cell_activation", "elu"), ("out_activation", "elu"), ("input_activation", "identity")):
            acts[key] = a.choice(key, default, ["elu", "relu", "tanh", "sigmoid", "identity"], "activations")
        if acts["cell_activation"] != acts["out_activation"]:
            a.error("out_activation", f"'{acts['out_activation']}' differs from cell_activation "
                                      f"'{acts['cell_activation']}'; tnnspec uses one activation for both")
        nums = {k: float(a.number(k, d)) for k, d in (("tau_offset", 1.0), ("tau_multiplier", -1.0),
                                                       ("gate_offset", 1.0), ("gate_multiplier", -1.0))}
        a.choice("data_format", "channels_last", ["channels_last"])
        fb = [k for k in ("feedback_filter_size", "feedback_entry", "feedback_depth_separable", "feedback_activation")
              if k in a.spec]
        if multi and fb:
            a.error(fb[0], "feedback into a reciprocal gated cell is split off inside the cell in tnn (by tensor-name "
                           "matching); tnnspec delivers feedback through edges into the drive: not expressible")
        unused = [k for k in ("tau_bias", "gate_bias") if k in a.spec]
        ignored = a.ignored_note()
        a.finish()
        cell: dict[str, Any] = {"type": "reciprocal_gated_convrnn", "cell_channels": cell_depth,
                                "tau_kernel": _pair(tau), "gate_kernel": _pair(gate), "input_kernel": _pair(ff)}
        for key in ("tau_depth_separable", "gate_depth_separable"):
            if a.boolean(key, False):
                cell[key] = True
        cell.update(nums)
        cell["tau_nonlinearity"] = nl["tau_nonlinearity"]
        cell["gate_nonlinearity"] = nl["gate_nonlinearity"]
        cell["activation"] = acts["cell_activation"]
        cell["input_activation"] = acts["input_activation"]
        if input_to_out:
            cell["input_to_out"] = True
        notes = []
        if unused:
            notes.append(f"{', '.join(unused)} unused by tnn's generic RGC")
        if fb and not multi:
            notes.append(f"{', '.join(fb)}: no feedback into this node")
        notes.append("tnnspec's input_to_cell_conv has a bias, tnn's has none")
        comment = (f"memory: identified by its keys as the reciprocal gated cell (cell_depth {cell_depth}); "
                   + "; ".join(notes) + ignored)
        return cell, comment, out, False

    # ---------------------------------------------------------------- emit
    def _emit(self, model_name: str, areas: list[_Area]) -> str:
        import networkx as nx

        from ..spec.models import FORMAT_VERSIONS

        version = FORMAT_VERSIONS[-1]
        src = Path(self.file).name if self.file != "<dict>" else "a JSON dict"
        mode = ("tnn's `unroll`: every link delays its signal by one step (~10 ms); the external input "
                "reaches its input node in the same step" if self.unroll == "tnn" else
                f"tnn's `unroll_tf`: links along the feedforward order ({self.order_note}) deliver in the same "
                "step, the others one step later")
        L: list[str] = []
        L.append(f"# Imported from {src} (a neuroailab tnn/convrnns JSON graph) by tnnspec import-tnn.")
        import textwrap

        L.extend(textwrap.wrap(f"unroll {self.unroll} -- {mode}. Every edge states its delay.", 98,
                               initial_indent="# ", subsequent_indent="# "))
        L.append("# tnn node -> tnnspec: harbor + pre_memory (up to its conv/fc) -> the incoming edges' transforms;")
        L.append("# memory -> the area's cell; post_memory -> the area's ops. Shapes are [C, H, W] (tnn: NHWC).")
        L.append("# Every area is zero_input: tnn runs every node from step 0 on zero stand-ins for its inputs.")
        if self.fallback_nodes:
            L.append(f"# NOTE: the memories of {', '.join(self.fallback_nodes)} carry a recurrent cell's keys but the "
                     "JSON does not name the cell:")
            L.append("# imported as tnn's own time-decay memory; pass --cell NAME to use a ConvRNN cell.")
        if self.ignored_keys:
            L.append(f"# Not imported (training settings, not part of a graph): {', '.join(sorted(self.ignored_keys))}.")
            self.note("initialisers, weight decay, seeds and other training settings are not part of a tnnspec "
                      f"graph and were not imported: {', '.join(sorted(self.ignored_keys))}")
        if self.fallback_nodes:
            self.note(f"memory of {', '.join(self.fallback_nodes)} is tnn's time-decay memory (its keys are a "
                      "recurrent cell's, which the JSON does not name); pass --cell NAME (e.g. gru, lstm, "
                      "simple_rnn) to use a ConvRNN cell")
        L.append(f'tnnspec: "{version}"')
        L.append(f"name: {_scalar(model_name)}")
        L.append(f"description: {json.dumps(f'Imported from {src} (tnn JSON graph), unroll {self.unroll}.')}")
        L.append("time:")
        L.append(_c("  dt_ms: 10", "tnn: ~10 ms per link"))
        loopless = self.graph.copy()
        loopless.remove_edges_from(nx.selfloop_edges(loopless))
        if self.is_dag:
            steps = len(nx.dag_longest_path(loopless)) + 1
            L.append(_c(f"  steps: {steps}", "tnn's default ntimes: the nodes on the longest path + 1"))
        else:
            L.append("  # steps: not set (the graph has cycles; tnn's default ntimes enumerates simple paths)")
            self.note("time.steps is not set: the graph has cycles (tnn's default ntimes enumerates all simple "
                      "paths); tnnspec's default is the readout's arrival + 1")
        preset = "biological" if self.unroll == "tnn" else "sweep"
        L.append(_c(f"  default_delay: {preset}", f"the preset of unroll {self.unroll}; every edge gives its delay"))
        L.append("inputs:")
        for n in sorted(self.nodes.values(), key=lambda n: n.index):
            if n.is_input:
                shp = self.input_shapes[n.name]
                L.append(f"  {_scalar(self._input_source(n))}:  # the external input of input node {n.name} "
                         f"({n.where}.shape {_flow(n.data['shape'])} NHWC, {self.ref(_where(n.data, 'shape'))})")
                L.append(f"    shape: {_flow(list(shp))}")
                L.append("    schedule: {type: static}")
        emitted = [x for ar in areas for x in (*ar.extra, ar)]
        L.append("areas:")
        for ar in emitted:
            n = ar.node
            name = ar.name or n.name
            level = ar.level if ar.level is not None else n.level
            L.append(f"  # {n.where}, {self.ref(_where(n.data))}; {ar.harbor_comment}")
            L.append(f"  {_scalar(name)}:")
            if ar.role in ("pre", "cell"):
                why = f"part of node {n.name}, below its own area"
            else:
                why = "an input node" if n.is_input else f"shape_from depth ({n.shape_from} + 1)"
            L.append(_c(f"    level: {_scalar(level)}", why))
            L.append(f"    channels: {ar.channels}")
            L.append("    before_arrival: zero_input")
            if ar.combine != "sum":
                L.append(_c(f"    combine: {ar.combine}", "the harbor's terms, in tnn's harbor order (the input, then "
                                                            "sorted names), as the edges below"))
            cell_text = ar.cell if isinstance(ar.cell, str) else _flow(ar.cell)
            L.append(f"    cell: {cell_text}")
            L.append(f"    # ^ {_one_line(ar.cell_comment)}")
            L.extend(self._op_block("    ops:", ar.ops, "      "))
        L.append("edges:")
        for ar in emitted:
            n = ar.node
            target = ar.name or n.name
            for t in ar.terms:
                if t.delay is not None:
                    delay, typ, origin, why = t.delay, t.etype, t.origin, "same step"
                elif t.node_source is None:
                    delay, typ = 0, "feedforward"
                    why = "the external input enters its input node in the same step (both unroll modes)"
                    origin = f"{n.where}.shape"
                else:
                    delay = self.delays[(t.node_source, n.name)]
                    typ = self._edge_type(t.node_source, n.name)
                    if ar.name is not None and t.node_source == n.name:
                        typ = "feedback"  # a self-link of a split node: from its sum back down to its cell half
                    j = next(j for a, b, j in self.edges if a == t.node_source and b == n.name)
                    origin = f"edges[{j}] ({self.ref(_where(self.tree['edges'], j))})"
                    why = ("every link delays one step" if self.unroll == "tnn" else
                           ("along the feedforward order: same step" if delay == 0 else "against the feedforward "
                            "order: one step later"))
                    if ar.role == "sum":
                        origin += ", residual_add's path"
                L.append(f"  # {t.source} -> {target}: {origin}; delay {delay}: {why}")
                L.append(f"  - type: {typ}")
                L.append(f"    source: {_scalar(t.source)}")
                L.append(f"    target: {_scalar(target)}")
                L.append(f"    delay: {delay}")
                L.extend(self._op_block("    transform:", t.ops, "      "))
        sinks = [x for x in self.nodes if not any(a == x and b != x for a, b, _ in self.edges)]
        deepest = [x for x in self.nodes if self.nodes[x].level == max(m.level for m in self.nodes.values())]
        final, why = ((sinks[0], "the graph's only sink node") if len(sinks) == 1 else
                      (deepest[0], ("no node is a sink (feedback); it is the only node of the greatest "
                                    "shape_from depth")) if not sinks and len(deepest) == 1 else (None, ""))
        if final is not None:
            L.append("readouts:")
            L.append(f"  output:  # {final}: {why}")
            L.append(f"    source: {_scalar(final)}")
        else:
            L.append(f"# readouts: none -- the graph has {len(sinks)} sink nodes ({', '.join(sinks)}); add one by hand")
            self.note(f"no readout written: the graph has {len(sinks)} sink nodes ({', '.join(sinks) or 'none'}), "
                      "so its final node is not identifiable")
        return "\n".join(L) + "\n"

    def _op_block(self, head: str, ops: list[_TOp], indent: str) -> list[str]:
        """``head`` and the op lines; only the comments when every op is a no-op (a key without ops would
        be null)."""
        lines = self._op_lines(ops, indent)
        return ([head] if any(op.name is not None for op in ops) else []) + lines

    def _op_lines(self, ops: list[_TOp], indent: str) -> list[str]:
        out = []
        for op in ops:
            if op.name is None:
                out.append(f"{indent}# {_one_line(op.comment)}")
                continue
            out.append(_c(f"{indent}- {op.text()}", op.comment, 56))
        return out


def _c(text: str, comment: str, column: int = 34) -> str:
    """``text`` with ``# comment`` at ``column`` (or two spaces after a longer text)."""
    if not comment:
        return text
    return f"{text}{' ' * max(2, column - len(text))}# {_one_line(comment)}"


def _split_linear(op: _TOp) -> _TOp:
    """The copy of a node's conv/fc on a non-feedforward input: no bias (one bias per node)."""
    params = dict(op.params or {})
    params["bias"] = False
    return _TOp(op.name, params, op.comment + "; no bias here: one conv over the concatenated harbor = one conv "
                                              "per input, summed, with one bias (on the feedforward edge)",
                op.kind, op.shape)


# --------------------------------------------------------------------------- function handlers


def _activation_ops(a: _Args, key: str, default: str | None, shape: tuple, label: str) -> list[_TOp]:
    act = a.spec.get(key, default) if key in a.spec else default
    if act is None:
        return []
    if not _is_activation(act):
        return []  # reported by _check_activation
    name, params, kind = _ACTIVATIONS[act]
    src = f"{label} activation {act}" + ("" if key in a.spec else " (model_tool's default: the JSON gives none)")
    return [_TOp(name, params, src, kind, shape)]


def _is_activation(value: Any) -> bool:
    return isinstance(value, str) and value in _ACTIVATIONS


def _check_activation(a: _Args, key: str) -> None:
    if key in a.spec and a.spec[key] is not None and not _is_activation(a.spec[key]):
        a.error(key, f"{_flow(a.spec[key])} is not an activation tnnspec has "
                     f"({', '.join(sorted(_ACTIVATIONS))})")


def _norm_args(a: _Args) -> dict:
    """The batch/group norm keys of a conv or fc (read before ``finish``)."""
    return {"decay": a.number("batch_norm_decay", 0.9, lo=0, hi=1), "eps": a.number("batch_norm_epsilon", 1e-5, lo=0),
            "groups": a.number("num_groups", 32, lo=1, integer=True)}


def _norm_ops(a: _Args, shape: tuple, label: str, *, bn: bool, gn: bool, time_sep: bool, args: dict) -> list[_TOp]:
    ops = []
    if bn:
        decay, eps = args["decay"], args["eps"]
        p: dict[str, Any] = {"type": "batch"}
        if abs((1 - decay) - 0.1) > 1e-12:
            p["momentum"] = round(1 - decay, 12)
        if eps != 1e-5:
            p["eps"] = float(eps)
        if time_sep:
            p["per_step"] = True
        ops.append(_TOp("norm", p, f"{label} batch_norm (momentum = 1 - decay)"
                        + (", time_sep: one per step" if time_sep else ""), "cw", shape))
    if gn:
        g = args["groups"]
        if shape[0] % g:
            a.error("num_groups", f"{g} does not divide the {shape[0]} channels")
            raise _Stop
        ops.append(_TOp("norm", {"type": "group", "groups": g}, f"{label} group_norm", "x", shape))
    return ops


def _need_map(a: _Args, shape: tuple | None) -> tuple[int, int, int]:
    if shape is None:
        raise _Stop
    if len(shape) != 3:
        a.error(None, f"'{a.fn}' needs a feature map, but its input is a vector {_fmt(shape)}")
        raise _Stop
    return shape  # type: ignore[return-value]


def _h_conv(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    allowed = {"out_depth", "ksize", "strides", "padding", "data_format", "use_bias", "activation", "batch_norm",
               "batch_norm_decay", "batch_norm_epsilon", "time_sep"}
    if fn in ("conv", "component_conv"):
        allowed |= {"group_norm", "num_groups"}
    if fn == "conv":
        allowed |= {"dropout"}
    if fn == "component_conv":
        allowed |= {"input_name", "return_input"}
    if fn == "conv_bn":
        allowed -= {"use_bias", "time_sep"}
    a = _Args(imp, spec, where, fn, allowed, _CONV_IGNORED)
    out = a.number("out_depth", None, lo=1, integer=True, required=(fn != "conv"))
    k = a.pair("ksize", (3, 3))
    s = a.nhwc("strides", (1, 1))
    pad = a.choice("padding", "SAME", ["SAME", "VALID"], "TensorFlow paddings")
    a.choice("data_format", "channels_last", ["channels_last"])
    use_bias = a.boolean("use_bias", True)
    bn = a.boolean("batch_norm", False)
    gn = a.boolean("group_norm", False)
    time_sep = a.boolean("time_sep", False)
    keep = a.number("dropout", None, lo=0, hi=1) if fn == "conv" else None
    if keep == 0:
        a.error("dropout", "keep probability 0 drops everything")
    default_act = "relu" if fn == "conv" else None
    _check_activation(a, "activation")
    extra = ""
    norm = _norm_args(a)
    if fn == "component_conv":
        if not isinstance(a.raw("input_name"), str):
            a.error(None, "'component_conv' needs 'input_name' (its feedforward input)")
        extra = f"; input_name {a.raw('input_name')} (feedforward input)"
        if a.boolean("return_input", False):
            extra += "; return_input (used only by residual_add)"
    ignored = a.ignored_note()
    a.finish()
    c, h, w = _need_map(a, shape)
    out = out or c
    oh, ow = _tf_out(h, k[0], s[0], pad), _tf_out(w, k[1], s[1], pad)
    if oh < 1 or ow < 1:
        a.error("ksize", f"kernel {k[0]}x{k[1]} does not fit its {h}x{w} input with VALID padding")
        raise _Stop
    ops: list[_TOp] = []
    if keep is not None and keep < 1:
        ops.append(_TOp("dropout", {"p": round(1 - keep, 12)}, f"{fn} dropout: keep_prob {keep} on its input",
                        "cw", shape))
    bias = use_bias and not ((bn or gn) and fn == "conv")
    params: dict[str, Any] = {"channels": out, "kernel": _pair(k)}
    if s != (1, 1):
        params["stride"] = _pair(s)
    params["padding"] = "same" if pad == "SAME" else "valid"
    if not bias:
        params["bias"] = False
    desc = (f"{where.split('.')[-1]} {fn} {k[0]}x{k[1]}" + (f"/{_pair(s)}" if s != (1, 1) else "")
            + f" {pad}, {c} -> {out} ({h}x{w} -> {oh}x{ow}){extra}{ignored}")
    ops.append(_TOp("conv", params, desc, "lin", (out, oh, ow)))
    label = f"{where.split('.')[-1]} {fn}"
    ops += _norm_ops(a, (out, oh, ow), label, bn=bn, gn=gn, time_sep=time_sep, args=norm)
    ops += _activation_ops(a, "activation", default_act, (out, oh, ow), label)
    return ops


def _h_fc(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    a = _Args(imp, spec, where, fn, {"out_depth", "use_bias", "activation", "batch_norm", "batch_norm_decay",
                                     "batch_norm_epsilon", "dropout", "time_sep"}, _CONV_IGNORED)
    out = a.number("out_depth", None, lo=1, integer=True, required=True)
    use_bias = a.boolean("use_bias", True)
    bn = a.boolean("batch_norm", False)
    time_sep = a.boolean("time_sep", False)
    keep = a.number("dropout", None, lo=0, hi=1)
    if keep == 0:
        a.error("dropout", "keep probability 0 drops everything")
    _check_activation(a, "activation")
    norm = _norm_args(a)
    ignored = a.ignored_note()
    a.finish()
    if shape is None:
        raise _Stop
    ops: list[_TOp] = []
    if len(shape) == 3:
        f = shape[0] * shape[1] * shape[2]
        ops.append(_TOp("flatten", None, f"fc flattens its {_shape_str(shape)} input (tnn flattens in NHWC order, "
                                         "tnnspec in [C, H, W] order: the same fc up to a permutation of its "
                                         "input weights)", "cw", (f,)))
        shape = (f,)
    if keep is not None and keep < 1:
        ops.append(_TOp("dropout", {"p": round(1 - keep, 12)}, f"fc dropout: keep_prob {keep} on its input",
                        "cw", shape))
    params: dict[str, Any] = {"features": out}
    if not use_bias or bn:
        params["bias"] = False
    ops.append(_TOp("linear", params, f"{where.split('.')[-1]} fc {shape[0]} -> {out}{ignored}", "lin", (out,)))
    label = f"{where.split('.')[-1]} fc"
    ops += _activation_ops(a, "activation", "relu", (out,), label)  # fc: activation, then batch norm
    ops += _norm_ops(a, (out,), label, bn=bn, gn=False, time_sep=time_sep, args=norm)
    return ops


def _h_depth_conv(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    a = _Args(imp, spec, where, fn, {"multiplier", "out_depth", "ksize", "strides", "padding", "activation",
                                     "batch_norm", "group_norm", "num_groups", "use_bias", "batch_norm_decay",
                                     "batch_norm_epsilon", "data_format", "time_sep"}, _CONV_IGNORED)
    mult = a.number("multiplier", 1, lo=1, integer=True)
    k = a.pair("ksize", (3, 3))
    s = a.nhwc("strides", (1, 1))
    pad = a.choice("padding", "SAME", ["SAME", "VALID"], "TensorFlow paddings")
    a.choice("data_format", "channels_last", ["channels_last"])
    bn, gn = a.boolean("batch_norm", False), a.boolean("group_norm", False)
    use_bias = a.boolean("use_bias", False)
    time_sep = a.boolean("time_sep", False)
    _check_activation(a, "activation")
    norm = _norm_args(a)
    ignored = a.ignored_note()
    a.finish()
    c, h, w = _need_map(a, shape)
    oh, ow = _tf_out(h, k[0], s[0], pad), _tf_out(w, k[1], s[1], pad)
    if oh < 1 or ow < 1:
        a.error("ksize", f"kernel {k[0]}x{k[1]} does not fit its {h}x{w} input with VALID padding")
        raise _Stop
    params: dict[str, Any] = {"channels": mult * c, "kernel": _pair(k)}
    if s != (1, 1):
        params["stride"] = _pair(s)
    params.update({"padding": "same" if pad == "SAME" else "valid", "groups": c})
    if not (use_bias and not (bn or gn)):
        params["bias"] = False
    shp = (mult * c, oh, ow)
    ops = [_TOp("conv", params, f"depth_conv {k[0]}x{k[1]} depthwise, multiplier {mult}{ignored}", "cw", shp)]
    label = f"{where.split('.')[-1]} depth_conv"
    ops += _norm_ops(a, shp, label, bn=bn, gn=gn, time_sep=time_sep, args=norm)
    ops += _activation_ops(a, "activation", "relu6", shp, label)
    return ops


def _h_dropout(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    a = _Args(imp, spec, where, fn, {"keep_prob", "rate", "noise_shape"}, {"seed": _INIT, "name": _NAME})
    keep = a.number("keep_prob", None, lo=0, hi=1)
    rate = a.number("rate", None, lo=0, hi=1)
    if a.has("noise_shape"):
        a.error("noise_shape", "is not supported (tnnspec's dropout draws one mask value per element)")
    if keep is None and rate is None:
        a.error(None, "'dropout' needs 'keep_prob' (or 'rate')")
    p = (1 - keep) if keep is not None else rate
    if p is not None and p >= 1:
        a.error("keep_prob" if keep is not None else "rate", "drops everything")
    a.finish()
    if shape is None:
        raise _Stop
    label = where.split(".")[-1]
    if p == 0:
        return [_TOp(None, None, f"{label} dropout keep_prob 1.0: does nothing, left out", "cw", shape)]
    return [_TOp("dropout", {"p": round(p, 12)}, f"{label} dropout keep_prob {round(1 - p, 12)}", "cw", shape)]


def _h_elementwise(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    allowed = {"alpha"} if fn == "leaky_relu" else ({"axis", "dim"} if fn in ("softmax", "log_softmax") else set())
    a = _Args(imp, spec, where, fn, allowed, {"name": _NAME})
    params = None
    if fn == "leaky_relu":
        params = {"slope": float(a.number("alpha", 0.2))}
    for key in ("axis", "dim"):
        if a.has(key) and a.spec[key] not in (-1,):
            a.error(key, "only the last (channel) axis is supported")
    a.finish()
    if shape is None:
        raise _Stop
    label = where.split(".")[-1]
    if fn == "identity":
        return [_TOp(None, None, f"{label} identity (names a TF tensor): nothing to do, left out", "cw", shape)]
    name, _, kind = _ACTIVATIONS[fn]
    return [_TOp(name, params, f"{label} {fn}", kind, shape)]


def _h_lrn(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    a = _Args(imp, spec, where, fn, {"depth_radius", "bias", "alpha", "beta"}, {"name": _NAME})
    r = a.number("depth_radius", 5, lo=0, integer=True)
    k = a.number("bias", 1.0)
    alpha = a.number("alpha", 1.0)
    beta = a.number("beta", 0.5)
    a.finish()
    _need_map(a, shape)
    size = 2 * r + 1
    return [_TOp("lrn", {"size": size, "alpha": float(alpha) * size, "beta": float(beta), "k": float(k)},
                 f"{where.split('.')[-1]} lrn depth_radius {r}, alpha {alpha} (tnnspec: size 2r+1, alpha x size "
                 "since torch divides alpha by size)", "x", shape)]


def _h_pool(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    kind = "max" if "max" in fn else "avg"
    if fn in ("max_pool", "avg_pool"):
        a = _Args(imp, spec, where, fn, {"ksize", "strides", "padding", "data_format"}, {"name": _NAME})
        k = a.nhwc("ksize", None, required=True)
        s = a.nhwc("strides", None, required=True)
        pad = a.choice("padding", None, ["SAME", "VALID"], "TensorFlow paddings")
        if pad is None and "padding" not in a.spec:
            a.error(None, f"'{fn}' needs 'padding' (SAME or VALID)")
        a.choice("data_format", "NHWC", ["NHWC"])
    else:  # max_pool2d / avg_pool2d (tf.contrib.layers, model_tool)
        a = _Args(imp, spec, where, fn, {"kernel_size", "stride", "padding", "data_format"},
                  {"name": _NAME, "scope": _NAME, "outputs_collections": _NAME})
        k = a.pair("kernel_size", None, required=True)
        s = a.pair("stride", (2, 2))
        pad = a.choice("padding", "VALID", ["SAME", "VALID"], "TensorFlow paddings")
        a.choice("data_format", "NHWC", ["NHWC"])
    a.finish()
    c, h, w = _need_map(a, shape)
    params: dict[str, Any] = {"type": kind, "kernel": _pair(k)}
    if s != k:
        params["stride"] = _pair(s)
    outs, pads, ceil = [], [], False
    for size, kk, ss in ((h, k[0], s[0]), (w, k[1], s[1])):
        o = _tf_out(size, kk, ss, pad)
        if o < 1:
            a.error("ksize" if "ksize" in a.spec else "kernel_size", f"window {kk} does not fit its input {size}")
            raise _Stop
        total = max((o - 1) * ss + kk - size, 0) if pad == "SAME" else 0
        top, bottom = total // 2, total - total // 2
        outs.append(o)
        pads.append(top)
        ceil = ceil or bottom > top
    # TF SAME puts the odd padding row at the bottom: torch's ceil_mode does the same when it counts alike
    if pad == "SAME" and all(p == 0 for p in pads):
        ceil = ceil or all(_torch_pool_out(sz, kk, ss, 0, True) == o
                           for sz, kk, ss, o in ((h, k[0], s[0], outs[0]), (w, k[1], s[1], outs[1])))
    for sz, kk, ss, p, o in ((h, k[0], s[0], pads[0], outs[0]), (w, k[1], s[1], pads[1], outs[1])):
        if 2 * p > kk or _torch_pool_out(sz, kk, ss, p, ceil) != o:
            a.error("padding", f"TensorFlow's {pad} {kind} pool {kk}/{ss} on {sz} cannot be written as a torch pool "
                               "(padding and ceil_mode)")
            raise _Stop
    if any(pads):
        params["padding"] = _pair((pads[0], pads[1]))
    if ceil:
        params["ceil_mode"] = True
    if kind == "avg" and pad == "SAME" and (any(pads) or ceil):
        params["count_include_pad"] = False
    return [_TOp("pool", params, f"{where.split('.')[-1]} {fn} {k[0]}x{k[1]}/{_pair(s)} {pad} "
                                 f"({h}x{w} -> {outs[0]}x{outs[1]})", "cw", (c, outs[0], outs[1]))]


def _h_global_pool(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    a = _Args(imp, spec, where, fn, {"kind", "keep_dims"}, {"name": _NAME})
    kind = a.choice("kind", "avg", ["avg", "max"], "kinds")
    keep = a.boolean("keep_dims", False)
    a.finish()
    c, h, w = _need_map(a, shape)
    label = where.split(".")[-1]
    if keep:
        return [_TOp("pool", {"type": kind, "kernel": _pair((h, w))}, f"{label} global_pool {kind}, keep_dims",
                     "cw", (c, 1, 1))]
    return [_TOp("pool", kind, f"{label} global_pool {kind} -> a vector of {c}", "cw", (c,))]


def _h_flatten(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    a = _Args(imp, spec, where, fn, set(), {"name": _NAME, "scope": _NAME, "outputs_collections": _NAME})
    a.finish()
    if shape is None:
        raise _Stop
    label = where.split(".")[-1]
    if len(shape) == 1:
        return [_TOp(None, None, f"{label} flatten of a vector: nothing to do, left out", "cw", shape)]
    f = shape[0] * shape[1] * shape[2]
    return [_TOp("flatten", None, f"{label} flatten (tnn: NHWC order; tnnspec: [C, H, W] order)", "cw", (f,))]


def _h_batchnorm(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    a = _Args(imp, spec, where, fn, {"decay", "epsilon", "data_format", "time_suffix", "activation"},
              {"is_training": _TRAIN, "init_zero": _INIT, "constant_init": _INIT, "bn_trainable": _TRAIN,
               "use_crossgpu_bn": _TRAIN, "num_dev": _TRAIN, "use_crtpu_bn": _TRAIN, "name": _NAME})
    decay = a.number("decay", 0.9, lo=0, hi=1)
    eps = a.number("epsilon", 1e-5, lo=0)
    a.choice("data_format", "channels_last", ["channels_last"])
    ignored = a.ignored_note()
    a.finish()
    if shape is None:
        raise _Stop
    p: dict[str, Any] = {"type": "batch"}
    if abs((1 - decay) - 0.1) > 1e-12:
        p["momentum"] = round(1 - decay, 12)
    if eps != 1e-5:
        p["eps"] = float(eps)
    return [_TOp("norm", p, f"{where.split('.')[-1]} batchnorm_corr (momentum = 1 - decay; its 'activation' only "
                            f"picks gamma's initial value){ignored}", "cw", shape)]


def _h_groupnorm(imp: _Importer, spec: LMap, where: str, fn: str, shape: tuple | None) -> list[_TOp]:
    a = _Args(imp, spec, where, fn, {"G", "epsilon", "data_format", "trainable"},
              {"weight_decay": _REG, "gamma_init": _INIT, "beta_init": _INIT, "name": _NAME})
    g = a.number("G", 32, lo=1, integer=True)
    eps = a.number("epsilon", 1e-5, lo=0)
    affine = a.boolean("trainable", True)
    a.choice("data_format", "channels_last", ["channels_last"])
    ignored = a.ignored_note()
    a.finish()
    c, _, _ = _need_map(a, shape)
    if c % g:
        a.error("G", f"{g} groups do not divide the {c} channels")
        raise _Stop
    p: dict[str, Any] = {"type": "group", "groups": g}
    if eps != 1e-5:
        p["eps"] = float(eps)
    if not affine:
        p["affine"] = False
    return [_TOp("norm", p, f"{where.split('.')[-1]} groupnorm{ignored}", "x", shape)]


_HANDLERS = {
    "conv": _h_conv, "component_conv": _h_conv, "conv_bn": _h_conv, "fc": _h_fc, "depth_conv": _h_depth_conv,
    "dropout": _h_dropout, "lrn": _h_lrn, "local_response_normalization": _h_lrn,
    "max_pool": _h_pool, "avg_pool": _h_pool, "max_pool2d": _h_pool, "avg_pool2d": _h_pool,
    "global_pool": _h_global_pool, "flatten": _h_flatten, "batchnorm_corr": _h_batchnorm,
    "groupnorm": _h_groupnorm, "identity": _h_elementwise,
    **{name: _h_elementwise for name in _ACTIVATIONS},
}
