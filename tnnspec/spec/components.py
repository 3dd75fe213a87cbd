"""Registries of component *parameters*: the data half of every op and cell.

Each op and cell is a pydantic model registered here by name. The spec stage only
needs these models (they validate the file and make up the JSON Schema); the torch
half lives in :mod:`tnnspec.compile` and is registered under the same name.
This is the split Nengo makes between a ``Connection`` and its builder.

Shape rules (``output_shape``) are plain integer arithmetic on per-sample shapes —
``(C, H, W)`` for maps, ``(F,)`` for vectors — so shapes are checked before any
torch code runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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


OPS: dict[str, type[OpParams]] = {}
CELLS: dict[str, type[CellParams]] = {}


def register_op(name: str):
    """Class decorator: register an op parameter model under ``name``."""

    def deco(cls: type[OpParams]) -> type[OpParams]:
        if name in OPS:
            raise ValueError(f"op '{name}' registered twice")
        cls.name = name
        OPS[name] = cls
        return cls

    return deco


def register_cell(name: str):
    """Class decorator: register a cell parameter model under ``name``."""

    def deco(cls: type[CellParams]) -> type[CellParams]:
        if name in CELLS:
            raise ValueError(f"cell '{name}' registered twice")
        cls.name = name
        CELLS[name] = cls
        return cls

    return deco


def pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``; ``[3, 5]`` -> ``(3, 5)``."""
    if isinstance(value, int):
        return (value, value)
    return (int(value[0]), int(value[1]))


def require_map(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a feature map [C, H, W], got shape {list(shape)}")
    return shape  # type: ignore[return-value]
