"""Registries of component *parameters*: the data half of every op and cell.

Each op and cell is one registration: a pydantic parameters model (its equation in the
docstring, each field described) and its torch builder, named by an import path
(``"package.module:Attribute"``) that is imported only when a model is compiled, so that
validating a file needs no torch. This is the split Nengo makes between a ``Connection``
and its builder::

    @register_cell("gru", builder="tnnspec.compile.cells:GRUCell")
    class GRU(CellParams):
        # docstring: the update equation (the docs page is generated from it)
        type: Literal["gru"] = "gru"
        kernel: int = Field(3, description="conv kernel size")

Plugins register theirs the same way (see :mod:`tnnspec.plugins` and docs/spec.md, "Plugins").
Learning rules (how a network learns: backprop, feedback alignment, ...) are components of a third
kind, ``learning_rule``, registered with :func:`register_learning_rule` (docs/learning_rules.md).
Validation, the JSON Schema, error suggestions and the generated docs follow the registry:
:func:`tnnspec.spec.models.rebuild` rebuilds the models that hold cells and ops.

Shape rules (``output_shape``) are plain integer arithmetic on per-sample shapes —
``(C, H, W)`` for maps, ``(F,)`` for vectors — so shapes are checked before any
torch code runs.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Literal, get_args

from pydantic import BaseModel, ConfigDict, model_validator

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """An op or cell cannot take the shape it is given; the message is shown to users."""


@dataclass(frozen=True)
class ShapeContext:
    """What an op may assume about where it sits.

    ``channels``: output channels to use when the op does not say (the target area's
    ``channels`` for edge transforms and area ops). ``target_hw``: the spatial size of the
    target area's drive, used by ``resample`` without an explicit size (may be unknown).
    """

    channels: int | None = None
    target_hw: tuple[int, int] | None = None


class Params(BaseModel):
    """Base of all component parameter models: strict, immutable plain data."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: field that a scalar shorthand fills, e.g. ``{linear: 1000}`` -> ``features=1000``
    shorthand: ClassVar[str | None] = None

    @model_validator(mode="before")
    @classmethod
    def _expand_shorthand(cls, data: Any) -> Any:
        if data is None:
            return {}
        if not isinstance(data, dict) and cls.shorthand is not None:
            return {cls.shorthand: data}
        return data


class OpParams(Params):
    """An op: a stateless (or per-step) transformation applied in an edge transform,
    an area's ``ops`` or a readout ``head``."""

    name: ClassVar[str] = ""
    #: whether the op's output depends only on its input (declared once, here: an op that
    #: differs between calls, such as dropout, or that learns from each call, such as batch
    #: norm statistics, sets this False or overrides :meth:`is_pure`)
    pure: ClassVar[bool] = True

    def is_pure(self) -> bool:
        """Whether these parameters make a pure op (the plan may reuse its outputs)."""
        return self.pure

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:  # pragma: no cover
        raise NotImplementedError


class CellParams(Params):
    """A cell: an area's recurrent state update. Subclasses add ``type: Literal[name]``."""

    name: ClassVar[str] = ""
    #: whether the cell multiplies by input-dependent values in [0, 1]
    gates: ClassVar[bool] = False
    #: whether an update changes nothing but its outputs (a cell with batch norms, whose
    #: statistics learn from each training call, sets this False)
    pure: ClassVar[bool] = True

    def output_shape(self, drive: Shape, channels: int) -> Shape:
        """Default: the cell keeps the drive's shape (and so needs ``channels`` to match)."""
        if drive and drive[0] != channels:
            raise ShapeError(f"cell '{self.name}' keeps its drive's {drive[0]} channels, "
                             f"but the area declares channels: {channels}")
        return drive


class LearningRuleParams(Params):
    """A learning rule: how the trainer turns a loss into parameter updates (the ``training:``
    section's ``learning_rule``). Subclasses add ``type: Literal[name]``; the docstring gives the
    update equation and the paper. The builder, ``builder(params)``, returns a
    :class:`tnnspec.train.learning_rules.LearningRule` (the torch half)."""

    name: ClassVar[str] = ""


Kind = Literal["cell", "op", "learning_rule"]
#: a torch builder: ``"package.module:Attribute"`` (imported when first compiled) or the callable.
#: A cell's builder is called ``builder(params, drive_shape, out_shape, steps)`` and returns a
#: :class:`tnnspec.compile.registry.Cell`; an op's ``builder(params, OpContext)`` returns a module; a
#: learning rule's ``builder(params)`` returns a :class:`tnnspec.train.learning_rules.LearningRule`.
Builder = str | Callable[..., Any]
COMPONENT_NAME = r"^[a-z][a-z0-9_]*$"
BUILDER_PATH = r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$"
BUILTIN = "tnnspec"


class RegistrationError(ValueError):
    """A cell or op cannot be registered (a name taken twice, a malformed model or builder)."""


class BuilderError(ImportError):
    """A registered builder cannot be imported; the message names the component and its package."""


@dataclass(frozen=True)
class Registration:
    """One registered component: its parameters model, its builder and where it comes from."""

    kind: Kind
    name: str
    params: type[Params]
    builder: Builder
    #: the distribution that registered it: ``tnnspec`` for the built-ins, else the plugin package
    origin: str


OPS: dict[str, type[OpParams]] = {}
CELLS: dict[str, type[CellParams]] = {}
LEARNING_RULES: dict[str, type[LearningRuleParams]] = {}
REGISTRY: dict[tuple[Kind, str], Registration] = {}
_state = {"version": 0, "origin": None}
_resolved: dict[tuple[Kind, str], Callable[..., Any]] = {}


def registry_version() -> int:
    """Changes whenever a component is registered or removed (the models rebuild on a change)."""
    return _state["version"]


def _table(kind: Kind) -> dict:
    return CELLS if kind == "cell" else OPS if kind == "op" else LEARNING_RULES


_BASES = {"cell": CellParams, "op": OpParams, "learning_rule": LearningRuleParams}


def register_cell(name: str, params: type[CellParams] | None = None, *, builder: Builder):
    """Register a cell: its parameters model and its torch builder, in one call.

    As a class decorator, ``@register_cell("gru", builder="tnnspec.compile.cells:GRUCell")``,
    or a call, ``register_cell("gru", GRU, builder=...)``. The model subclasses
    :class:`CellParams` and declares ``type: Literal[name] = name``; its docstring gives the
    update equation (the docs page is generated from it) and each field a ``description``.
    """
    return _register_or_decorate("cell", name, params, builder)


def register_op(name: str, params: type[OpParams] | None = None, *, builder: Builder):
    """Register an op: its parameters model (a :class:`OpParams` subclass whose docstring gives the
    equation) and its torch builder, ``builder(params, OpContext) -> nn.Module``; as
    :func:`register_cell`."""
    return _register_or_decorate("op", name, params, builder)


def register_learning_rule(name: str, params: type[LearningRuleParams] | None = None, *, builder: Builder):
    """Register a learning rule: its parameters model (a :class:`LearningRuleParams` subclass that
    declares ``type: Literal[name] = name``; its docstring gives the update equation and the paper)
    and its torch builder, ``builder(params) -> tnnspec.train.learning_rules.LearningRule``; as
    :func:`register_cell`."""
    return _register_or_decorate("learning_rule", name, params, builder)


def _register_or_decorate(kind: Kind, name: str, params, builder: Builder):
    if params is not None:
        return _register(kind, name, params, builder)
    return lambda cls: _register(kind, name, cls, builder)


def _register(kind: Kind, name: str, cls: type, builder: Builder) -> type:
    base = _BASES[kind]
    what = f"{kind.replace('_', ' ')} '{name}'"
    if not isinstance(name, str) or not re.match(COMPONENT_NAME, name):
        raise RegistrationError(f"{kind} name {name!r}: use lower-case letters, digits and '_', "
                                "starting with a letter")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise RegistrationError(f"{what}: the parameters model must subclass "
                                f"tnnspec.spec.components.{base.__name__}, got {cls!r}")
    taken = REGISTRY.get((kind, name))
    if taken is not None:
        raise RegistrationError(f"{what} registered twice: already registered by "
                                f"'{taken.origin}' ({taken.params.__module__}.{taken.params.__qualname__})")
    models = sys.modules.get("tnnspec.spec.models")  # (absent while the built-ins register)
    names = _schema_names(kind, cls)
    clash = next((r for r in REGISTRY.values() if _schema_names(r.kind, r.params) & names), None)
    if clash is not None or (models is not None and names & set(vars(models))):
        raise RegistrationError(f"{what}: the class name '{cls.__name__}' is taken "
                                f"{f'by {clash.kind} {clash.name!r}' if clash else 'in tnnspec.spec.models'} "
                                "(the JSON Schema names its definitions after classes); rename the class")
    if kind in ("cell", "learning_rule"):
        field = cls.model_fields.get("type")
        if field is None or get_args(field.annotation) != (name,) or field.default != name:
            raise RegistrationError(f"{what}: the model must declare  type: Literal[{name!r}] = {name!r}")
    if isinstance(builder, str):
        if not re.match(BUILDER_PATH, builder):
            raise RegistrationError(f"{what}: builder {builder!r} is not an import path "
                                    "'package.module:Attribute'")
    elif not callable(builder):
        raise RegistrationError(f"{what}: builder must be an import path 'package.module:Attribute' "
                                f"or a callable, got {builder!r}")
    origin = _state["origin"] or (BUILTIN if cls.__module__.split(".")[0] == BUILTIN
                                  else cls.__module__.split(".")[0])
    cls.name = name
    _table(kind)[name] = cls
    REGISTRY[(kind, name)] = Registration(kind, name, cls, builder, origin)
    _state["version"] += 1
    return cls


def _schema_names(kind: Kind, cls: type) -> set[str]:
    """The JSON Schema definitions a component adds (an op also has its entry model, ``<Class>Op``)."""
    return {cls.__name__, cls.__name__ + "Op"} if kind == "op" else {cls.__name__}


def unregister(kind: Kind, name: str) -> None:
    """Remove a component (for tests that register temporary ones)."""
    REGISTRY.pop((kind, name))
    _table(kind).pop(name)
    _resolved.pop((kind, name), None)
    _state["version"] += 1


class registering_as:
    """Context: components registered inside it are recorded as coming from ``origin`` (the
    plugin loader sets the distribution name)."""

    def __init__(self, origin: str):
        self.origin = origin

    def __enter__(self):
        self.saved, _state["origin"] = _state["origin"], self.origin

    def __exit__(self, *exc):
        _state["origin"] = self.saved


def origin(kind: Kind, name: str) -> str:
    """The distribution that registered a component (``tnnspec`` for the built-ins)."""
    return REGISTRY[(kind, name)].origin


def builder(kind: Kind, name: str) -> Callable[..., Any]:
    """The torch builder of a registered component, imported on first use (raises
    :class:`BuilderError` naming the component and its package when it cannot be)."""
    found = _resolved.get((kind, name))
    if found is not None:
        return found
    reg = REGISTRY[(kind, name)]
    target = reg.builder
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        try:
            target = importlib.import_module(module)
            for part in attr.split("."):
                target = getattr(target, part)
        except Exception as exc:
            source = "tnnspec" if reg.origin == BUILTIN else f"plugin package '{reg.origin}'"
            raise BuilderError(f"{kind} '{name}' (from {source}): cannot import its builder "
                               f"'{reg.builder}': {type(exc).__name__}: {exc}") from exc
    _resolved[(kind, name)] = target
    return target


class Builders(Mapping):
    """``{name: builder}`` of one kind, read-only; builders are imported on first access."""

    def __init__(self, kind: Kind):
        self.kind = kind

    def __getitem__(self, name: str) -> Callable[..., Any]:
        if (self.kind, name) not in REGISTRY:
            from ..plugins import load_plugins

            load_plugins()  # a spec made without loading (e.g. unpickled) may use a plugin's component
            if (self.kind, name) not in REGISTRY:
                raise KeyError(name)
        return builder(self.kind, name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(_table(self.kind)))

    def __len__(self) -> int:
        return len(_table(self.kind))


class RegistryUnion:
    """A union over a component registry, generated each time a model that holds it is built:
    :func:`tnnspec.spec.models.rebuild` rebuilds those models after components are registered
    (plugins), so that validation, the JSON Schema and error messages include them."""

    @classmethod
    def annotation(cls) -> Any:  # pragma: no cover
        raise NotImplementedError

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return handler.generate_schema(cls.annotation())


def pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``[3, 5]`` -> ``(3, 5)``."""
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def require_map(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a feature map [C, H, W], got shape {list(shape)}")
    return shape  # type: ignore[return-value]
