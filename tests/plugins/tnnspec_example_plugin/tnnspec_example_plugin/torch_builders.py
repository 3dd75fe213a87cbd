"""The torch halves, imported only when a model using them is compiled."""

from __future__ import annotations

import torch
from torch import nn

from tnnspec.compile.registry import Cell, OpContext


class LeakyTanhCell(Cell):
    """``h_t = (1 - α) h_{t-1} + α tanh(input_conv(x_t) + hidden_conv(h_{t-1}))``."""

    def __init__(self, params, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        c_in, c = drive_shape[0], out_shape[0]
        k = params.kernel
        self.channels = c
        self.alpha = params.alpha
        self.input_conv = nn.Conv2d(c_in, c, k, padding=k // 2, bias=params.bias)
        self.hidden_conv = nn.Conv2d(c, c, k, padding=k // 2, bias=False)

    def initial_state(self, drive):
        return drive.new_zeros((drive.shape[0], self.channels, *drive.shape[2:]))

    def forward(self, drive, state, step):
        h = (1 - self.alpha) * state + self.alpha * torch.tanh(self.input_conv(drive) + self.hidden_conv(state))
        return h, h


class ClipModule(nn.Module):
    def __init__(self, low, high):
        super().__init__()
        self.low, self.high = low, high

    def forward(self, x):
        if self.low is None and self.high is None:
            return x
        return torch.clamp(x, self.low, self.high)

    def extra_repr(self) -> str:
        return f"low={self.low}, high={self.high}"


def build_clip(params, ctx: OpContext) -> nn.Module:
    return ClipModule(params.low, params.high)
