"""The building blocks of a compiled network: op chains, edges, areas and readouts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec.components import ShapeContext
from ..spec.models import Area, Normalization
from . import passes, torch_compat
from .fusion import applies, conv_norm, fusable
from .inplace import relu_of_new
from .registry import CELL_BUILDERS, OP_BUILDERS, OpContext, StepOp


class OpChain(nn.Module):
    """Ops applied in order; children are named by op type (``conv``, ``norm``, ``conv_1``...).
    With the pass ``fuse_batchnorm`` on, a conv followed by a BatchNorm runs as one conv in eval
    mode (:mod:`tnnspec.compile.fusion`); with ``inplace_relu``, a ReLU right after an op that
    makes a new tensor (a conv, a norm, ...) works in place (:mod:`tnnspec.compile.inplace`)."""

    def __init__(self, ops, in_shape, ctx: ShapeContext, steps: int):
        super().__init__()
        self.names: list[str] = []
        shape = tuple(in_shape)
        counts: dict[str, int] = {}
        for entry in ops:
            out = tuple(entry.op.output_shape(shape, ctx))
            module = OP_BUILDERS[entry.op_name](entry.op, OpContext(shape, out, steps))
            n = counts.get(entry.op_name, 0)
            counts[entry.op_name] = n + 1
            name = entry.op_name if n == 0 else f"{entry.op_name}_{n}"
            self.add_module(name, module)
            self.names.append(name)
            shape = out
        self.out_shape = shape
        modules = [getattr(self, n) for n in self.names]
        self.fusable_at = frozenset(i for i in range(len(modules) - 1) if fusable(modules[i], modules[i + 1]))
        self.relu_at = frozenset(i for i in range(1, len(modules)) if type(modules[i]) is nn.ReLU)

    def forward(self, x: torch.Tensor, step: int = 0) -> torch.Tensor:
        if self.fusable_at and not self.training and passes.on("fuse_batchnorm"):
            return self._fused(x, step)
        modules = torch_compat.children_dict(self)  # (not getattr: nn.Module's __getattr__ is slow here)
        before = None
        inplace = bool(self.relu_at) and passes.on("inplace_relu")
        for i, name in enumerate(self.names):
            module = modules[name]
            if inplace and i in self.relu_at and type(module) is nn.ReLU:
                x = relu_of_new(x, before, relu=module)
            else:
                x = module(x, step) if isinstance(module, StepOp) else module(x)
            before = module
        return x

    def _fused(self, x: torch.Tensor, step: int) -> torch.Tensor:
        i = 0
        modules = torch_compat.children_dict(self)
        inplace = passes.on("inplace_relu")
        while i < len(self.names):
            module = modules[self.names[i]]
            if i in self.fusable_at and applies(module, modules[self.names[i + 1]], True):  # one conv
                x = conv_norm(module, modules[self.names[i + 1]], x)
                i += 2
            elif inplace and i in self.relu_at and type(module) is nn.ReLU:
                x = relu_of_new(x, modules[self.names[i - 1]], relu=module)
                i += 1
            else:
                x = module(x, step) if isinstance(module, StepOp) else module(x)
                i += 1
        return x


class EdgeModule(OpChain):
    """An edge's transform; its contribution is scaled by ``weight`` when that is not 1."""

    def __init__(self, edge, in_shape, ctx: ShapeContext, steps: int):
        super().__init__(edge.transform, in_shape, ctx, steps)
        self.weight = float(edge.weight)

    def forward(self, x: torch.Tensor, step: int = 0) -> torch.Tensor:
        y = super().forward(x, step)
        return y if self.weight == 1.0 else y * self.weight


class DivisiveTerm(nn.Module):
    """``d / (sigma + pool(|s| ** power))``: a normalization edge's effect on its target's drive."""

    def __init__(self, edge: Normalization):
        super().__init__()
        self.sigma, self.power = float(edge.sigma), float(edge.power)
        self.kernel, self.over_channels = edge.pool.kernel, edge.pool.over_channels

    def forward(self, drive: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
        pooled = signal.abs() if self.power == 1.0 else signal.abs() ** self.power
        if self.over_channels:
            pooled = pooled.mean(dim=1, keepdim=True)
        if self.kernel > 1:
            pooled = F.avg_pool2d(pooled, self.kernel, stride=1, padding=self.kernel // 2,
                                  count_include_pad=False)
        return drive / (self.sigma + pooled)


class AreaModule(nn.Module):
    """An area: its cell, its ops, and an identity ``probe`` called once per step
    (hook-based tools count these calls to read per-step activations)."""

    def __init__(self, area: Area, drive_shape, out_shape, steps: int, dt_ms: float):
        super().__init__()
        params = area.cell
        if hasattr(params, "resolved"):  # cells that integrate in time take the spec's dt
            params = params.resolved(dt_ms)
        cell_out = tuple(params.output_shape(tuple(drive_shape), area.channels))
        self.cell = CELL_BUILDERS[params.name](params, tuple(drive_shape), cell_out, steps)
        self.ops = OpChain(area.ops, cell_out, ShapeContext(channels=area.channels), steps)
        self.probe = nn.Identity()
        self.drive_shape = tuple(drive_shape)
        self.out_shape = tuple(out_shape)


class ReadoutModule(OpChain):
    """A readout head, applied at every step."""

    def __init__(self, readout, in_shape, steps: int):
        super().__init__(readout.head, in_shape, ShapeContext(), steps)
        self.cumulative = readout.cumulative


def gain_view(gain: torch.Tensor, drive: torch.Tensor) -> torch.Tensor:
    """Give a [B, C] gain the trailing singleton dims it needs to scale a [B, C, H, W] drive."""
    while gain.dim() < drive.dim():
        gain = gain.unsqueeze(-1)
    return gain
