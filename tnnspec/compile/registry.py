"""Builders: the torch half of every registered op and cell.

A component is registered once, in :mod:`tnnspec.spec.components`, with its parameters model
and its builder: an op's is a function ``(params, OpContext) -> nn.Module``, a cell's a
:class:`Cell` subclass (or a function with its constructor's signature). Builders are named by
import path there and imported here on first use; :data:`OP_BUILDERS` and
:data:`CELL_BUILDERS` are read-only views ``{name: builder}`` of the registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..spec.components import Builders, CellParams, Shape

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


#: ``{name: builder}`` of every registered op / cell (imported on first access)
OP_BUILDERS: Builders = Builders("op")
CELL_BUILDERS: Builders = Builders("cell")
