"""Op parameter models and their shape rules (registered in :data:`components.OPS`).

Every model documents its equation; shapes are per-sample: ``(C, H, W)`` maps and
``(F,)`` vectors. ``output_shape`` raises :class:`ShapeError` with a user-facing message
when the input does not fit. No torch here (see :mod:`tnnspec.compile.ops`).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .components import OpParams, Shape, ShapeContext, ShapeError, pair, register_op, require_map

#: integers >= 1 / >= 0, alone or as an ``[h, w]`` pair
PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
PosPair = PosInt | tuple[PosInt, PosInt]
NonNegPair = NonNegInt | tuple[NonNegInt, NonNegInt]
PosFloat = Annotated[float, Field(gt=0)]


def conv_out(size: int, kernel: int, stride: int, pad_total: int, dilation: int = 1) -> int:
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def pool_out(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """Output length of a torch pooling window (``pooling_output_shape`` in ATen)."""
    if not ceil_mode:
        return conv_out(size, kernel, stride, 2 * pad)
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= size + pad:  # the last window must start inside the input or left padding
        out -= 1
    return out


def default_channels(value: int | None, ctx: ShapeContext, op: str, field: str = "channels") -> int:
    """``value`` if given, else the target area's channels, else a :class:`ShapeError`."""
    if value is not None:
        return value
    if ctx.channels is None:
        raise ShapeError(f"{op} needs '{field}' here (no target area to take them from)")
    return ctx.channels


def _only_for(params: OpParams, kind_field: str, allowed: dict[str, tuple[str, ...]]) -> None:
    """Raise if a field in ``allowed`` was set explicitly while ``kind_field`` is not one of its kinds."""
    kind = getattr(params, kind_field)
    for field, kinds in allowed.items():
        if field in params.model_fields_set and kind not in kinds:
            raise ValueError(f"'{field}' only applies to {kind_field} {' / '.join(kinds)}, not {kind}")


def _shape_str(shape: Shape) -> str:
    return str(list(shape))


# --------------------------------------------------------------------------- convolutions
@register_op("conv", builder="tnnspec.compile.ops:build_conv")
class Conv(OpParams):
    """2-D convolution ``y = W ∗ x + b``.

    ``padding``: an int (each side), ``[ph, pw]``, ``"half"`` (``dilation * (kernel // 2)``,
    the default: keeps the size for odd kernels at stride 1), ``"valid"`` (none) or ``"same"``
    (TensorFlow SAME: output size ``ceil(in / stride)``, extra padding at the bottom/right when
    the total is odd). Otherwise ``out = floor((in + 2p - dilation (k - 1) - 1) / stride) + 1``.
    """

    shorthand = "channels"
    channels: int | None = Field(None, gt=0, description="output channels (default: the target area's channels)")
    kernel: PosPair = Field(3, description="kernel size, an int or [kh, kw]")
    stride: PosPair = Field(1, description="stride, an int or [sh, sw]")
    padding: NonNegPair | Literal["half", "valid", "same"] = Field(
        "half", description="int / [ph, pw] per side, 'half' (kernel // 2), 'valid' or 'same' (TensorFlow SAME)")
    dilation: int = Field(1, ge=1, description="dilation")
    groups: int = Field(1, ge=1, description="channel groups (groups = channels: depthwise)")
    bias: bool = Field(True, description="add a learned bias")

    def resolved_channels(self, ctx: ShapeContext) -> int:
        return default_channels(self.channels, ctx, "conv")

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        c, h, w = require_map(shape, "conv")
        out_c = self.resolved_channels(ctx)
        if c % self.groups or out_c % self.groups:
            raise ShapeError(f"conv groups={self.groups} must divide in ({c}) and out ({out_c}) channels")
        (kh, kw), (sh, sw) = pair(self.kernel), pair(self.stride)
        if self.padding == "same":
            oh, ow = -(-h // sh), -(-w // sw)
            ph = pw = 0
        else:
            if self.padding == "half":
                ph, pw = kh // 2 * self.dilation, kw // 2 * self.dilation
            elif self.padding == "valid":
                ph, pw = 0, 0
            else:
                ph, pw = pair(self.padding)
            oh = conv_out(h, kh, sh, 2 * ph, self.dilation)
            ow = conv_out(w, kw, sw, 2 * pw, self.dilation)
        if oh < 1 or ow < 1:
            extra = f" (dilation {self.dilation})" if self.dilation > 1 else ""
            raise ShapeError(f"conv kernel {kh}x{kw}{extra} does not fit input {h}x{w} "
                             f"with padding {ph}x{pw}")
        return (out_c, oh, ow)


@register_op("conv_transpose", builder="tnnspec.compile.ops:build_conv_transpose")
class ConvTranspose(OpParams):
    """Transposed 2-D convolution (the gradient of a conv w.r.t. its input), ``y = Wᵀ ⋆ x + b``.

    ``out = (in - 1) * stride - 2 * padding + kernel + output_padding`` per spatial axis
    (as ``torch.nn.ConvTranspose2d``); e.g. kernel 3, stride 2, padding 1, output_padding 1
    doubles the size.
    """

    shorthand = "channels"
    channels: int | None = Field(None, gt=0, description="output channels (default: the target area's channels)")
    kernel: PosPair = Field(3, description="kernel size, an int or [kh, kw]")
    stride: PosPair = Field(1, description="stride (the upsampling factor), an int or [sh, sw]")
    padding: NonNegPair = Field(0, description="rows/columns removed from each side of the full output, "
                                               "an int or [ph, pw]")
    output_padding: NonNegPair = Field(0, description="extra rows/columns added at the bottom/right "
                                                      "(must be smaller than the stride)")
    bias: bool = Field(True, description="add a learned bias")

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        _, h, w = require_map(shape, "conv_transpose")
        out_c = default_channels(self.channels, ctx, "conv_transpose")
        (kh, kw), (sh, sw) = pair(self.kernel), pair(self.stride)
        (ph, pw), (oph, opw) = pair(self.padding), pair(self.output_padding)
        if oph >= sh or opw >= sw:
            raise ShapeError(f"conv_transpose output_padding {oph}x{opw} must be smaller than "
                             f"the stride {sh}x{sw}")
        oh = (h - 1) * sh - 2 * ph + kh + oph
        ow = (w - 1) * sw - 2 * pw + kw + opw
        if oh < 1 or ow < 1:
            raise ShapeError(f"conv_transpose padding {ph}x{pw} removes the whole output "
                             f"for input {h}x{w}")
        return (out_c, oh, ow)


# --------------------------------------------------------------------------- pooling and resizing
@register_op("pool", builder="tnnspec.compile.ops:build_pool")
class Pool(OpParams):
    """Max or average pooling over ``kernel`` windows of each channel.

    ``max: y[c,i,j] = max_{window} x``; ``avg: y[c,i,j] = mean_{window} x`` (with
    ``count_include_pad`` the zero padding counts in the mean). Windowed output size
    ``floor((in + 2p - k) / s) + 1`` (``ceil`` with ``ceil_mode``, as torch). Without
    ``kernel`` it pools globally over H and W: ``(C, H, W) -> (C,)``, e.g. ``{pool: avg}``.
    """

    shorthand = "type"
    type: Literal["max", "avg"] = Field(..., description="'max' or 'avg' pooling")
    kernel: PosPair | None = Field(None, description="window size, an int or [kh, kw]; "
                                                     "omit for global pooling to a vector [C]")
    stride: PosPair | None = Field(None, description="stride, an int or [sh, sw] (default: the kernel)")
    padding: NonNegPair = Field(0, description="implicit padding per side (-inf for max, 0 for avg), "
                                               "at most half the kernel")
    ceil_mode: bool = Field(False, description="round the output size up instead of down")
    count_include_pad: bool = Field(True, description="avg only: count padded zeros in the mean")

    @model_validator(mode="after")
    def _check(self) -> Pool:
        _only_for(self, "type", {"count_include_pad": ("avg",)})
        if self.kernel is None:
            set_window = {"stride", "padding", "ceil_mode"} & self.model_fields_set
            if set_window:
                raise ValueError(f"global pooling (no 'kernel') takes no {', '.join(sorted(set_window))}")
        return self

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        c, h, w = require_map(shape, "pool")
        if self.kernel is None:
            return (c,)
        (kh, kw) = pair(self.kernel)
        (sh, sw) = pair(self.stride if self.stride is not None else self.kernel)
        (ph, pw) = pair(self.padding)
        if 2 * ph > kh or 2 * pw > kw:
            raise ShapeError(f"pool padding {ph}x{pw} must be at most half the kernel {kh}x{kw}")
        oh = pool_out(h, kh, sh, ph, self.ceil_mode)
        ow = pool_out(w, kw, sw, pw, self.ceil_mode)
        if oh < 1 or ow < 1:
            raise ShapeError(f"pool kernel {kh}x{kw} does not fit input {h}x{w} with padding {ph}x{pw}")
        return (c, oh, ow)


@register_op("resample", builder="tnnspec.compile.ops:build_resample")
class Resample(OpParams):
    """Resize each channel by interpolation: ``y = interp(x)`` to ``size``, or by
    ``scale_factor`` (``out = floor(in * scale)``), or, with neither, to the target area's
    spatial size (e.g. a top-down edge from a smaller area).
    ``nearest``: ``y[i] = x[floor(i / scale)]``; ``bilinear``: linear in each of H and W.
    """

    shorthand = "mode"
    mode: Literal["nearest", "bilinear"] = Field("nearest", description="'nearest' or 'bilinear' interpolation")
    size: PosPair | None = Field(None, description="output size, an int or [h, w] "
                                                   "(default: the target area's size)")
    scale_factor: PosFloat | tuple[PosFloat, PosFloat] | None = Field(
        None, description="multiplier for the size, a number or [sh, sw] (instead of 'size')")
    align_corners: bool = Field(False, description="bilinear only: align the corner pixels of input "
                                                   "and output (torch's align_corners)")

    @model_validator(mode="after")
    def _check(self) -> Resample:
        if self.size is not None and self.scale_factor is not None:
            raise ValueError("give 'size' or 'scale_factor', not both")
        _only_for(self, "mode", {"align_corners": ("bilinear",)})
        return self

    def scale_pair(self) -> tuple[float, float] | None:
        s = self.scale_factor
        if s is None:
            return None
        return (float(s), float(s)) if isinstance(s, (int, float)) else (float(s[0]), float(s[1]))

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        c, h, w = require_map(shape, "resample")
        scale = self.scale_pair()
        if self.size is not None:
            oh, ow = pair(self.size)
        elif scale is not None:
            oh, ow = math.floor(h * scale[0]), math.floor(w * scale[1])  # as torch.nn.functional.interpolate
        elif ctx.target_hw is not None:
            oh, ow = ctx.target_hw
        else:
            raise ShapeError("resample needs 'size' or 'scale_factor' here")
        if oh < 1 or ow < 1:
            raise ShapeError(f"resample of {h}x{w} by scale_factor {self.scale_factor} is empty ({oh}x{ow})")
        return (c, oh, ow)


# --------------------------------------------------------------------------- normalisation
@register_op("norm", builder="tnnspec.compile.ops:build_norm")
class Norm(OpParams):
    """Normalisation ``y = (x - mean) / sqrt(var + eps) * gamma + beta`` (biased variance).

    The statistics are taken over: ``batch`` — the batch and H, W per channel (running
    averages with ``momentum`` used in eval mode; ``per_step`` keeps one BatchNorm, with its
    own statistics and affine, per time step); ``group`` — each sample's ``groups`` channel
    groups and H, W; ``layer`` — each sample's whole ``[C, H, W]`` (``gamma``, ``beta`` of shape
    ``[C, H, W]``, as ``torch.nn.LayerNorm([C, H, W])``); ``instance`` — each sample's channel
    over H, W. ``gamma``/``beta`` are per channel except for ``layer``.
    """

    shorthand = "type"
    type: Literal["batch", "group", "layer", "instance"] = Field(
        ..., description="'batch', 'group', 'layer' (over all of [C, H, W]) or 'instance'")
    groups: int | None = Field(None, ge=1, description="group only (required): number of channel groups")
    eps: float = Field(1e-5, gt=0, description="added to the variance")
    momentum: float | None = Field(0.1, ge=0, le=1, description="batch only: running-statistics update "
                                                                "weight (null: cumulative average)")
    affine: bool = Field(True, description="learn a scale gamma and shift beta")
    per_step: bool = Field(False, description="batch only: one BatchNorm (own statistics and affine) "
                                              "per time step")

    @model_validator(mode="after")
    def _check(self) -> Norm:
        if self.type == "group" and self.groups is None:
            raise ValueError("norm type 'group' needs 'groups'")
        _only_for(self, "type", {"groups": ("group",), "momentum": ("batch",), "per_step": ("batch",)})
        return self

    def is_pure(self) -> bool:
        return self.type != "batch"  # batch norm statistics learn from each training call

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        if len(shape) not in (1, 3):
            raise ShapeError(f"norm needs a feature map [C, H, W] or a vector [F], got {_shape_str(shape)}")
        if self.type == "instance" and len(shape) != 3:
            raise ShapeError(f"instance norm needs a feature map [C, H, W], got {_shape_str(shape)}")
        if self.type == "group" and shape[0] % self.groups:  # type: ignore[operator]
            raise ShapeError(f"group norm groups={self.groups} must divide the {shape[0]} channels")
        spatial = shape[1] * shape[2] if len(shape) == 3 else 1
        per_stat = {"group": shape[0] // (self.groups or 1) * spatial, "layer": shape[0] * spatial,
                    "instance": spatial}.get(self.type)
        if per_stat == 1:  # one value: its variance is zero and torch refuses to normalise it
            over = {"group": "a channel group", "layer": "the sample", "instance": "a channel"}[self.type]
            raise ShapeError(f"{self.type} norm on {_shape_str(shape)}: {over} holds a single value, so there is "
                             "nothing to normalise over (use fewer groups, or another norm on a 1x1 map)")
        return shape


@register_op("lrn", builder="tnnspec.compile.ops:build_lrn")
class LRN(OpParams):
    """Local response normalisation across channels (AlexNet; as ``torch.nn.LocalResponseNorm``):
    ``y_c = x_c / (k + alpha / size * sum_{c' = c - size//2}^{c + (size-1)//2} x_{c'}^2) ^ beta``,
    with channels outside ``[0, C)`` counting as zero. Note ``alpha`` is divided by ``size``.
    """

    shorthand = "size"
    size: int = Field(5, ge=1, description="number of neighbouring channels summed over")
    alpha: float = Field(1e-4, description="multiplier (divided by size)")
    beta: float = Field(0.75, description="exponent")
    k: float = Field(1.0, description="additive constant")

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        require_map(shape, "lrn")
        return shape


# --------------------------------------------------------------------------- activations
class _Elementwise(OpParams):
    """Base of elementwise ops: any shape in, the same shape out."""

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        return shape


@register_op("relu", builder="tnnspec.compile.ops:build_relu")
class ReLU(_Elementwise):
    """Rectified linear unit ``y = max(x, 0)``."""


@register_op("relu6", builder="tnnspec.compile.ops:build_relu6")
class ReLU6(_Elementwise):
    """``y = min(max(x, 0), 6)``."""


@register_op("elu", builder="tnnspec.compile.ops:build_elu")
class ELU(_Elementwise):
    """Exponential linear unit ``y = x if x > 0 else alpha * (exp(x) - 1)``."""

    shorthand = "alpha"
    alpha: float = Field(1.0, description="value approached for very negative x is -alpha")


@register_op("gelu", builder="tnnspec.compile.ops:build_gelu")
class GELU(_Elementwise):
    """Gaussian error linear unit ``y = x * Phi(x)`` (``Phi``: the standard normal CDF; exact erf form)."""


@register_op("leaky_relu", builder="tnnspec.compile.ops:build_leaky_relu")
class LeakyReLU(_Elementwise):
    """``y = x if x >= 0 else slope * x``."""

    shorthand = "slope"
    slope: float = Field(0.01, description="slope for negative inputs")


@register_op("sigmoid", builder="tnnspec.compile.ops:build_sigmoid")
class Sigmoid(_Elementwise):
    """Logistic function ``y = 1 / (1 + exp(-x))``."""


@register_op("tanh", builder="tnnspec.compile.ops:build_tanh")
class Tanh(_Elementwise):
    """Hyperbolic tangent ``y = tanh(x)``."""


@register_op("softplus", builder="tnnspec.compile.ops:build_softplus")
class Softplus(_Elementwise):
    """``y = log(1 + exp(x))`` (linear for x > 20, as torch)."""


@register_op("identity", builder="tnnspec.compile.ops:build_identity")
class Identity(_Elementwise):
    """``y = x``."""


@register_op("dropout", builder="tnnspec.compile.ops:build_dropout")
class Dropout(_Elementwise):
    """Dropout: in training ``y = x * m / (1 - p)`` with ``m ~ Bernoulli(1 - p)`` per element
    (a fresh mask per call); in evaluation ``y = x``."""

    shorthand = "p"
    pure = False  # a fresh mask per call in training
    p: float = Field(0.5, ge=0, lt=1, description="probability of zeroing each element")


@register_op("scale", builder="tnnspec.compile.ops:build_scale")
class Scale(_Elementwise):
    """Constant affine map ``y = factor * x + offset`` (e.g. ``2 * sigmoid(x)`` gating)."""

    shorthand = "factor"
    factor: float = Field(..., description="constant multiplier")
    offset: float = Field(0.0, description="constant added after multiplying")


@register_op("power", builder="tnnspec.compile.ops:build_power")
class Power(_Elementwise):
    """Elementwise magnitude power ``y = |x| ^ exponent`` (e.g. energy for normalisation pools)."""

    shorthand = "exponent"
    exponent: float = Field(2.0, gt=0, description="exponent applied to |x|")


@register_op("softmax", builder="tnnspec.compile.ops:build_softmax")
class Softmax(_Elementwise):
    """``y_i = exp(x_i) / sum_j exp(x_j)`` over the channel / feature dimension."""


@register_op("log_softmax", builder="tnnspec.compile.ops:build_log_softmax")
class LogSoftmax(_Elementwise):
    """``y = log(softmax(x))`` over the channel / feature dimension; with ``clip_min``
    ``y = log(clamp(softmax(x), clip_min, 1))`` (bounded below by ``log(clip_min)``, as BLT's readout)."""

    shorthand = "clip_min"
    clip_min: float | None = Field(None, gt=0, lt=1, description="lower clamp on the probabilities "
                                                                  "before the log (e.g. 1e-10)")


# --------------------------------------------------------------------------- reshaping and dense
@register_op("flatten", builder="tnnspec.compile.ops:build_flatten")
class Flatten(OpParams):
    """Flatten each sample into a vector: ``(C, H, W) -> (C * H * W,)`` (row-major, as torch)."""

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        return (math.prod(shape),)


@register_op("linear", builder="tnnspec.compile.ops:build_linear")
class Linear(OpParams):
    """Fully connected layer ``y = W x + b`` on a vector ``(F,) -> (features,)``."""

    shorthand = "features"
    features: int | None = Field(None, gt=0, description="output features (default: the target area's channels)")
    bias: bool = Field(True, description="add a learned bias")

    def output_shape(self, shape: Shape, ctx: ShapeContext) -> Shape:
        if len(shape) != 1:
            raise ShapeError(f"linear needs a vector [F], got shape {_shape_str(shape)}; add a global "
                             "'pool' (e.g. {pool: avg}) or 'flatten' before it")
        return (default_channels(self.features, ctx, "linear", "features"),)
