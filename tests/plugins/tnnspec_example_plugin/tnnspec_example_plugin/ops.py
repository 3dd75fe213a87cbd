"""The ``clip`` op: registered by :func:`register`, which the entry point names (no torch here)."""

from __future__ import annotations

from pydantic import Field, model_validator

from tnnspec.plugins import OpParams, register_op


class Clip(OpParams):
    """Clamp each value to ``[low, high]``: ``y = min(max(x, low), high)``.

    A bound left out (null) is no bound on that side; any shape in, the same shape out.
    """

    shorthand = "high"
    low: float | None = Field(None, description="lower bound (default: none)")
    high: float | None = Field(None, description="upper bound (default: none)")

    @model_validator(mode="after")
    def _order(self) -> "Clip":
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(f"clip: low ({self.low}) must be below high ({self.high})")
        return self

    def output_shape(self, shape, ctx):
        return shape


def register() -> None:
    register_op("clip", Clip, builder="tnnspec_example_plugin.torch_builders:build_clip")
