"""The tnnspec file format, version 1.1, as pydantic models (plain data, no torch).

A file has the top-level keys ``tnnspec`` (format version), ``name``, ``time``, ``inputs``,
``areas`` (a mapping keyed by area name), ``edges`` (a list of typed pathways) and
``readouts``. ``include``, ``parameters`` and ``templates`` are resolved before these
models see the data (see :mod:`tnnspec.spec.resolve`). docs/spec.md documents every field;
the JSON Schema in schemas/ is generated from these models.

Cells and ops come from the component registry (:mod:`tnnspec.spec.components`): the fields that
hold them are unions over the registry (:class:`RegistryUnion`), generated when a model is built,
and :func:`rebuild` rebuilds those models after plugins or scripts register more.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, PrivateAttr, Tag,
                      create_model, model_serializer, model_validator)

from . import cells as _cells  # noqa: F401  (registers cells)
from . import ops as _ops  # noqa: F401  (registers ops)
from .components import CELLS, OPS, CellParams, OpParams, RegistryUnion, registry_version
from .neural import Neural
from .training import Training

FORMAT_VERSIONS = ("1.0", "1.1")  # a 1.0 file is migrated when read (tnnspec.spec.migrate)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9-]*(?:_[A-Za-z0-9-]+)*_?$"
PACKAGE_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$"  # a distribution name (PEP 508)

Name = Annotated[str, Field(pattern=NAME_PATTERN, description=(
    "a name: letters, digits, '-' and single '_' (no '__', no '.'), starting with a letter or digit"))]

PackageName = Annotated[str, Field(pattern=PACKAGE_PATTERN, description=(
    "a distribution name, as given to pip install (no version)"))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- ops: `relu`, `{conv: {...}}`
class OpEntry(Strict):
    """One op in a list: written ``name``, ``{name: {params}}`` or ``{name: scalar}``."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {data: {}} if isinstance(data, str) else data

    @property
    def op(self) -> OpParams:
        return getattr(self, self.op_name)

    @property
    def op_name(self) -> str:
        return next(iter(type(self).model_fields))

    @model_serializer(mode="wrap")
    def _compact(self, handler):
        data = handler(self)
        params = data[self.op_name]
        return self.op_name if params in ({}, None) else data


def _op_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, OpEntry):
        return value.op_name
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    return None


def _op_entry_model(name: str, params: type[OpParams]) -> type[OpEntry]:
    doc = (params.__doc__ or "").strip().split("\n")[0] or f"the {name} op"
    return create_model(f"{params.__name__}Op", __base__=OpEntry, __doc__=doc, __module__=__name__,
                        **{name: (params, Field(description=doc))})


#: one entry model per registered op, kept in step with the registry by :func:`rebuild`
OP_ENTRIES: dict[str, type[OpEntry]] = {}


def _sync_op_entries() -> None:
    """Give every registered op its entry model (a module attribute, so that specs pickle, deepcopy
    and torch.save), and drop the entries of unregistered ops."""
    for name in [n for n in OP_ENTRIES if n not in OPS or OP_ENTRIES[n].model_fields[n].annotation is not OPS[n]]:
        globals().pop(OP_ENTRIES.pop(name).__name__, None)
    for name, cls in OPS.items():
        if name in OP_ENTRIES:
            continue
        entry = _op_entry_model(name, cls)
        if entry.__name__ in globals():
            raise ValueError(f"op '{name}': its parameters class name '{cls.__name__}' is already used "
                             f"in {__name__}; give the class another name")
        OP_ENTRIES[name] = entry
        globals()[entry.__name__] = entry


class OpUnion(RegistryUnion):
    """Any registered op, written ``relu``, ``{conv: {...}}`` or ``{linear: 1000}``."""

    @classmethod
    def annotation(cls) -> Any:
        return Annotated[
            Union[tuple(Annotated[m, Tag(n)] for n, m in OP_ENTRIES.items())],  # type: ignore[misc]
            Discriminator(_op_tag, custom_error_type="op_form",
                          custom_error_message="an op is written as a name (relu) or a one-key mapping "
                                               "({conv: {kernel: 3}})"),
        ]


_sync_op_entries()
Op = OpUnion
OpList = Annotated[list[Op], Field(description="ops applied in order")]


# ---------------------------------------------------------------- cells: `{type: gru, ...}`
def _cell_from_string(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


class CellUnion(RegistryUnion):
    """Any registered cell, ``{type: gru, ...}`` or its name alone."""

    @classmethod
    def annotation(cls) -> Any:
        return Annotated[Union[tuple(CELLS.values())], Field(discriminator="type")]  # type: ignore[misc]


Cell = Annotated[CellUnion, BeforeValidator(_cell_from_string)]


# ---------------------------------------------------------------- time
EdgeType = Literal["feedforward", "lateral", "feedback", "skip", "attention", "normalization"]
DelayPreset = Literal["biological", "sweep"]


class Time(Strict):
    """How the graph is unrolled in time (docs/time.md)."""

    dt_ms: float = Field(10.0, gt=0, description="duration of one step in milliseconds")
    steps: int | None = Field(None, ge=1, description=(
        "number of steps T (default: the latest arrival step of any readout source + 1)"))
    default_delay: DelayPreset | Annotated[int, Field(ge=0)] | dict[EdgeType, Annotated[int, Field(ge=0)]] = Field(
        "biological", description=(
            "delay of edges that give none: 'biological' (every edge 1 step, edges from inputs 0), "
            "'sweep' (feedforward/skip and edges from inputs 0, others 1), an int for every edge, "
            "or a mapping edge type -> steps"))


# ---------------------------------------------------------------- inputs
class Static(Strict):
    """The same frame at every step."""

    type: Literal["static"] = "static"


class OnOff(Strict):
    """The frame is shown for steps ``start <= t < stop``; other steps show ``blank`` everywhere.
    (Format 1.0 named the keys ``on``/``off``, which YAML 1.1 tools read as booleans.)"""

    type: Literal["on_off"] = "on_off"
    start: int = Field(0, ge=0, description="first step at which the frame is shown")
    stop: int | None = Field(None, ge=1, description="first step at which it is no longer shown (None: never)")
    blank: float = Field(0.0, description="value of every pixel while the frame is not shown (in input space)")

    @model_validator(mode="after")
    def _order(self) -> "OnOff":
        if self.stop is not None and self.stop <= self.start:
            raise ValueError(f"'stop' ({self.stop}) must be after 'start' ({self.start})")
        return self


class Sequence(Strict):
    """One frame per step: the run's input has a time axis ``[B, T, ...]``."""

    type: Literal["sequence"] = "sequence"


Schedule = Annotated[Union[Static, OnOff, Sequence], Field(discriminator="type"),
                     BeforeValidator(_cell_from_string)]


class Input(Strict):
    """An external input (image, movie, task cue, efference copy)."""

    shape: list[Annotated[int, Field(gt=0)]] = Field(..., min_length=1, max_length=3, description=(
        "per-sample shape: [C, H, W] for images, [F] for vectors"))
    schedule: Schedule = Field(default_factory=Static, description="how the input is presented over steps")
    description: str | None = Field(None, description="free text")


# ---------------------------------------------------------------- areas
class Area(Strict):
    """A brain area: combines its incoming contributions, updates its cell, applies its ops."""

    channels: int = Field(..., gt=0, description="output channels (features) of the area")
    level: float | None = Field(None, description="hierarchy level (Felleman–Van Essen style); inputs are level 0")
    group: str | None = Field(None, description="stream or lobe for diagrams, e.g. ventral, dorsal, frontal")
    before_arrival: Literal["silent", "zero_drive", "zero_input"] = Field("silent", description=(
        "before any input can reach the area: 'silent' (output exactly zero, nothing computed), "
        "'zero_drive' (active from step 0; cell and ops run on an all-zero drive when no term is "
        "delivered, as CORnet does) or 'zero_input' (active from step 0; an incoming edge whose "
        "source has no output yet delivers its transform of an all-zero source output, as tnn's "
        "t = 0 stand-ins)"))
    combine: Literal["sum", "concat", "multiplicative"] = Field("sum", description=(
        "how driving contributions meet: 'sum', 'concat' (channels, in edge order) or "
        "'multiplicative' (b * (1 + l + t): bottom-up times one plus lateral and top-down)"))
    cell: Cell = Field(default_factory=lambda: CELLS["identity"](), description="the recurrent state update")
    ops: OpList = Field(default_factory=list, description="ops applied to the cell output")
    enabled: bool = Field(True, description=(
        "false: the area is lesioned — silent at every step (computes nothing, outputs exactly zero, "
        "its edges deliver nothing); its modules stay, so weights still load"))
    description: str | None = Field(None, description="free text")


# ---------------------------------------------------------------- edges
class EdgeBase(Strict):
    """A pathway: the source's output ``delay`` steps ago, through ``transform``, into the target."""

    source: Name = Field(..., description="an area or input name")
    target: Name = Field(..., description="an area name")
    delay: int | None = Field(None, ge=0, description="conduction delay in steps (default: time.default_delay)")
    delay_ms: float | None = Field(None, ge=0, description=(
        "conduction delay in milliseconds, converted to ceil(delay_ms / dt_ms) steps"))
    from_step: int = Field(0, ge=0, description="first step at which the edge delivers (absent before)")
    transform: OpList = Field(default_factory=list, description="ops applied to the delivered signal")
    weight: float = Field(1.0, description="scale of the contribution (e.g. an FLN-derived weight)")
    name: Name | None = Field(None, description="module name (default: <source>__<target>)")
    enabled: bool = Field(True, description=(
        "false: the edge is cut — it delivers nothing at any step, as if absent; its module stays, "
        "so weights still load"))
    description: str | None = Field(None, description="free text")

    @model_validator(mode="after")
    def _one_delay(self):
        if self.delay is not None and self.delay_ms is not None:
            raise ValueError("give either 'delay' (steps) or 'delay_ms', not both")
        return self


class Feedforward(EdgeBase):
    """Bottom-up drive from a lower to a higher level."""

    type: Literal["feedforward"]


class Lateral(EdgeBase):
    """Local recurrence within an area (or between areas of one level)."""

    type: Literal["lateral"]


class Feedback(EdgeBase):
    """Long-range top-down drive from a higher to a lower level."""

    type: Literal["feedback"]


class Skip(EdgeBase):
    """Bottom-up drive that skips levels."""

    type: Literal["skip"]


class Attention(EdgeBase):
    """Multiplicative modulation: the target's combined drive is multiplied by the signal
    (``gain``: d * a) or by one plus it (``relative_gain``: d * (1 + a))."""

    type: Literal["attention"]
    mode: Literal["gain", "relative_gain"] = Field("gain", description="d * a, or d * (1 + a)")


class NormPool(Strict):
    kernel: int = Field(1, ge=1, description="spatial window (odd; stride 1, same padding)")
    over_channels: bool = Field(True, description="also average over all channels")

    @model_validator(mode="after")
    def _odd(self) -> "NormPool":
        if self.kernel % 2 == 0:
            raise ValueError(f"pool kernel must be odd, got {self.kernel}")
        return self


class Normalization(EdgeBase):
    """Divisive normalization: the target's drive is divided by
    ``sigma + pool(|s| ** power)`` with ``s`` the delivered signal."""

    type: Literal["normalization"]
    pool: NormPool = Field(default_factory=NormPool, description="the normalization pool")
    sigma: float = Field(1.0, gt=0, description="semi-saturation constant")
    power: float = Field(1.0, gt=0, description="exponent applied to the pooled signal")


Edge = Annotated[Union[Feedforward, Lateral, Feedback, Skip, Attention, Normalization],
                 Field(discriminator="type")]
DRIVING = ("feedforward", "lateral", "feedback", "skip")
BOTTOM_UP = ("feedforward", "skip")


# ---------------------------------------------------------------- readouts, spec
class Readout(Strict):
    """A decoder read from an area at every step."""

    source: Name = Field(..., description="area read out")
    head: OpList = Field(default_factory=list, description="ops, e.g. [{pool: avg}, {linear: 1000}]")
    cumulative: bool = Field(False, description="sum the head's output over steps (Spoerer 2020)")
    description: str | None = Field(None, description="free text")


class Spec(Strict):
    """A tnnspec file: a brain-area graph with typed, timed edges."""

    tnnspec: str = Field(..., description=f"format version, one of {', '.join(FORMAT_VERSIONS)}")
    name: Name = Field(..., description="model name")
    description: str | None = Field(None, description="free text")
    references: list[str] = Field(default_factory=list, description="citations for the model")
    requires: list[PackageName] = Field(default_factory=list, description=(
        "plugin packages (distribution names, as for pip install) whose cells or ops this file uses"))
    time: Time = Field(default_factory=Time, description="time step, horizon and default delays")
    inputs: dict[Name, Input] = Field(..., min_length=1, description="external inputs by name")
    areas: dict[Name, Area] = Field(..., min_length=1, description="brain areas by name")
    edges: list[Edge] = Field(default_factory=list, description="typed pathways between areas")
    readouts: dict[Name, Readout] = Field(default_factory=dict, description="decoders by name")
    training: Training | None = Field(None, description="optional training settings (tnnspec train)")
    neural: Neural | None = Field(None, description="optional comparison with recordings (tnnspec fit)")

    _source: Any = PrivateAttr(None)  # where each part is written (a SourceMap), set by the loader
    _warnings: list = PrivateAttr(default_factory=list)  # warnings found when it was loaded

    @property
    def source(self):
        """The :class:`~tnnspec.spec.load.SourceMap` of the file this spec came from (or None)."""
        return self._source

    @property
    def warnings(self) -> list:
        """Warning diagnostics found when the spec was loaded."""
        return list(self._warnings)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spec) and self.dump() == other.dump()

    __hash__ = None  # type: ignore[assignment]

    def dump(self) -> dict:
        """Plain data (YAML/JSON-ready) that loads back to an equal Spec: defaults are left
        out, except ``type`` keys, which say what a mapping is."""
        full = self.model_dump(mode="json")
        return _keep_types(full, self.model_dump(mode="json", exclude_defaults=True, exclude_none=True))


def _keep_types(full: Any, compact: Any) -> Any:
    if isinstance(full, dict) and isinstance(compact, dict):
        out = {k: _keep_types(full.get(k), v) for k, v in compact.items()}
        if "type" in full and "type" not in out:
            out = {"type": full["type"], **out}
        return out
    if isinstance(full, list) and isinstance(compact, list):
        return [_keep_types(f, c) for f, c in zip(full, compact)]
    return compact


# ---------------------------------------------------------------- rebuilding after registration
#: the models whose fields hold cells or ops, holders first (a model's schema embeds theirs)
COMPONENT_HOLDERS: tuple[type[BaseModel], ...] = (
    Area, EdgeBase, Feedforward, Lateral, Feedback, Skip, Attention, Normalization, Readout, Training, Spec)
_built = {"version": registry_version()}


def __getattr__(name: str) -> Any:
    """A plugin op's entry model (``ClipOp``), made when the plugins load: unpickling a spec in a
    fresh process asks for it before anything has loaded them."""
    if name.endswith("Op") and not name.startswith("_"):
        from ..plugins import load_plugins

        load_plugins()
        if name in globals():
            return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def rebuild(force: bool = False) -> bool:
    """Rebuild the models that hold cells and ops when the registry changed since they were built
    (a plugin or a script registered a component), so that validation, :meth:`Spec.model_json_schema`
    and error messages include every registered component. Returns whether it rebuilt.
    :func:`tnnspec.plugins.load_plugins` calls it; loading and compiling call that."""
    version = registry_version()
    if version == _built["version"] and not force:
        return False
    _sync_op_entries()
    for model in COMPONENT_HOLDERS:
        model.model_rebuild(force=True)
    _built["version"] = version
    return True
