"""Builders: the torch half of every registered op and cell.

``@builds_op("conv")`` registers a function ``(params, ctx) -> nn.Module`` and
``@builds_cell("gru")`` a :class:`Cell` subclass, keyed by the same names as the
parameter models in :mod:`tnnspec.spec.components` (a test checks both registries
have the same keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..spec.components import CellParams, OpParams, Shape

State = Any  # a Tensor, a tuple of Tensors, or None


@dataclass(frozen=True)
class OpContext:
    """What an op builder knows: per-sample input and output shapes, and the time horizon
    (for per-step parameters such as one BatchNorm per step)."""

    in_shape: Shape
    out_shape: Shape
    steps: int


class StepOp(nn.Module):
    """Base for ops whose behaviour depends on the step (e.g. per-step norms):
    called as ``op(x, step)`` instead of ``op(x)``."""

    def forward(self, x: torch.Tensor, step: int) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class Cell(nn.Module):
    """An area's recurrent state update.

    ``forward(drive, state, step) -> (output, new_state)`` where ``state`` is whatever
    :meth:`initial_state` returned at the area's first computed step. The area's ops are
    applied to ``output``; :meth:`after_ops` may then fold the area's final output into the
    state (CORnet's additive state keeps the area output).

    A cell whose update has a part that depends on the drive alone (a conv RNN's input conv)
    sets ``has_input_term``, computes that part in :meth:`input_term` and accepts it as
    ``forward(drive, state, step, term)``: when the drive is the previous step's
    (``AreaStep.drive_reuse``), the network passes the term it kept instead of recomputing it.
    """

    gates: ClassVar[bool] = False
    has_input_term: ClassVar[bool] = False

    def input_term(self, drive: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __init__(self, params: CellParams, drive_shape: Shape, out_shape: Shape, steps: int):
        super().__init__()
        self.params = params
        self.drive_shape = tuple(drive_shape)
        self.out_shape = tuple(out_shape)
        self.steps = steps

    def initial_state(self, drive: torch.Tensor) -> State:
        return None

    def forward(self, drive: torch.Tensor, state: State, step: int) -> tuple[torch.Tensor, State]:
        raise NotImplementedError

    def after_ops(self, output: torch.Tensor, state: State) -> State:
        return state


OP_BUILDERS: dict[str, Callable[[OpParams, OpContext], nn.Module]] = {}
CELL_BUILDERS: dict[str, type[Cell]] = {}


def builds_op(name: str):
    def deco(fn):
        if name in OP_BUILDERS:
            raise ValueError(f"op builder '{name}' registered twice")
        OP_BUILDERS[name] = fn
        return fn

    return deco


def builds_cell(name: str):
    def deco(cls: type[Cell]) -> type[Cell]:
        if name in CELL_BUILDERS:
            raise ValueError(f"cell builder '{name}' registered twice")
        CELL_BUILDERS[name] = cls
        return cls

    return deco
