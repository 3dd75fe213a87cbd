"""The ``leaky_tanh`` cell: its parameters model, registered with its torch builder (no torch here)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tnnspec.plugins import CellParams, register_cell, require_map


@register_cell("leaky_tanh", builder="tnnspec_example_plugin.torch_builders:LeakyTanhCell")
class LeakyTanh(CellParams):
    """Leaky tanh conv RNN: ``h_t = (1 - α) h_{t-1} + α tanh(W_x * x_t + b + W_h * h_{t-1})``.

    Output ``h_t``; α is a constant in (0, 1] (α = 1 is a conv RNN with tanh).  ``W * z`` is a
    stride-1 conv with ``kernel // 2`` zero padding on each side (the map size is kept).

    Parameters: ``input_conv`` (C_in → C, bias), ``hidden_conv`` (C → C, no bias).

    Zero state: ``y = α tanh(W_x * x + b)``.  Does not gate.
    """

    type: Literal["leaky_tanh"] = "leaky_tanh"
    alpha: float = Field(0.5, gt=0, le=1, description="α, the share of the new value taken at each step")
    kernel: int = Field(3, ge=1, description="odd conv kernel size of both convs")
    bias: bool = Field(True, description="learned bias on input_conv")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"leaky_tanh kernel must be odd, got {v}")
        return v

    def output_shape(self, drive, channels):
        """Any drive channels in, the area's ``channels`` out, the map size kept."""
        _, h, w = require_map(drive, "cell 'leaky_tanh'")
        return (channels, h, w)
