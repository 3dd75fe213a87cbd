"""Torch builders for ops (see :mod:`tnnspec.spec.ops` for parameters and equations).

A builder that makes a single torch layer returns that layer itself, so its parameters are
plain ``weight`` / ``bias`` (and BatchNorm's buffers) for weight import; per-step norms keep
their layers in an ``nn.ModuleList`` called ``steps`` (``steps.0.weight``, ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spec import ops as P
from ..spec.components import pair
from . import feedback, passes
from .packing import Conv2d
from .registry import OpContext, StepOp


# --------------------------------------------------------------------------- convolutions
class SamePadConv(Conv2d):
    """Conv with TensorFlow SAME padding (asymmetric when the total is odd: then an explicit
    ``F.pad`` first; symmetric padding is the conv's own, which is faster)."""

    def __init__(self, *args, in_hw: tuple[int, int], **kwargs):
        super().__init__(*args, padding=0, **kwargs)
        pads = []
        for size, k, s, d in zip(in_hw, self.kernel_size, self.stride, self.dilation):
            out = -(-size // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        self.pad = (left, right, top, bottom)
        if top == bottom and left == right:
            self.padding = (top, left)
        self.explicit_pad = not (top == bottom and left == right)

    def conv_with(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This conv's geometry with the given weights (batch-norm fusion)."""
        return self._conv_forward(F.pad(x, self.pad) if self.explicit_pad else x, weight, bias)

    def forward(self, x):
        return self.conv_with(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", same_pad(l,r,t,b)={self.pad}"


def build_conv(p: P.Conv, ctx: OpContext) -> nn.Module:
    c_in, c_out = ctx.in_shape[0], ctx.out_shape[0]
    kernel, stride = pair(p.kernel), pair(p.stride)
    common = dict(kernel_size=kernel, stride=stride, dilation=p.dilation, groups=p.groups, bias=p.bias)
    if p.padding == "same":
        return SamePadConv(c_in, c_out, in_hw=tuple(ctx.in_shape[1:]), **common)
    if p.padding == "half":
        padding = (kernel[0] // 2 * p.dilation, kernel[1] // 2 * p.dilation)
    elif p.padding == "valid":
        padding = (0, 0)
    else:
        padding = pair(p.padding)
    return Conv2d(c_in, c_out, padding=padding, **common)


class ConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (same parameters and names) that, inside a learning rule's training
    step, passes the error to its input through the rule's feedback weights (:mod:`tnnspec.compile.feedback`)."""

    def forward(self, input: torch.Tensor, output_size=None) -> torch.Tensor:
        feedback_weights = feedback.matrix(self.weight) if output_size is None else None
        if feedback_weights is not None:
            return feedback.conv_transpose(self, input, feedback_weights)
        return super().forward(input, output_size)


def build_conv_transpose(p: P.ConvTranspose, ctx: OpContext) -> nn.Module:
    return ConvTranspose2d(ctx.in_shape[0], ctx.out_shape[0], kernel_size=pair(p.kernel),
                              stride=pair(p.stride), padding=pair(p.padding),
                              output_padding=pair(p.output_padding), bias=p.bias)


# --------------------------------------------------------------------------- pooling and resizing
class GlobalPool(nn.Module):
    """``(N, C, H, W) -> (N, C)``: max or mean over H and W."""

    def __init__(self, type: str):
        super().__init__()
        self.type = type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.type == "max":
            return F.adaptive_max_pool2d(x, 1).flatten(1)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def extra_repr(self) -> str:
        return f"type={self.type}"


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (same output, bit for bit) that pools a channels-last copy of an NCHW
    map when no gradient flows through it. This is the kernel pass ``maxpool_nhwc``; its
    invariant (bit-identical outputs) follows from the rule below.

    ATen has two CPU max-pool kernels with one rule — start from −inf, visit the window row by
    row, take an element ``v`` where ``v > max`` or ``v`` is NaN — its NCHW kernel one output
    at a time, its channels-last kernel vectorised over channels. Equal comparisons select the
    same elements (signed zeros and NaN payloads included), so the outputs are identical, and
    the channels-last kernel is fast enough to pay for the two layout copies: 1.3–4.5× on the
    pools of BLT, CORnet-S and the ConvRNN (2-core CPU). With a gradient the plain call runs:
    where windows overlap, the two backward kernels accumulate in different orders.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and x.dim() == 4 and not self.return_indices and x.is_contiguous()
                and not (torch.is_grad_enabled() and x.requires_grad) and passes.on("maxpool_nhwc")):
            y = F.max_pool2d(x.contiguous(memory_format=torch.channels_last), self.kernel_size, self.stride,
                             self.padding, self.dilation, ceil_mode=self.ceil_mode)
            return y.contiguous()
        return super().forward(x)


def build_pool(p: P.Pool, ctx: OpContext) -> nn.Module:
    if p.kernel is None:
        return GlobalPool(p.type)
    kernel = pair(p.kernel)
    stride = pair(p.stride) if p.stride is not None else kernel
    padding = pair(p.padding)
    if p.type == "max":
        return MaxPool2d(kernel, stride, padding, ceil_mode=p.ceil_mode)
    return nn.AvgPool2d(kernel, stride, padding, ceil_mode=p.ceil_mode, count_include_pad=p.count_include_pad)


class Resample(nn.Module):
    """``F.interpolate`` to a fixed ``size`` or by ``scale_factor``."""

    def __init__(self, mode: str, size: tuple[int, int] | None, scale_factor: tuple[float, float] | None,
                 align_corners: bool):
        super().__init__()
        self.mode = mode
        self.size = size
        self.scale_factor = scale_factor
        self.align_corners = align_corners if mode == "bilinear" else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_factor is not None:
            return F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode,
                                 align_corners=self.align_corners)
        return F.interpolate(x, size=self.size, mode=self.mode, align_corners=self.align_corners)

    def extra_repr(self) -> str:
        what = f"scale_factor={self.scale_factor}" if self.scale_factor is not None else f"size={self.size}"
        return f"mode={self.mode}, {what}, align_corners={self.align_corners}"


def build_resample(p: P.Resample, ctx: OpContext) -> nn.Module:
    scale = p.scale_pair()
    size = None if scale is not None else (int(ctx.out_shape[1]), int(ctx.out_shape[2]))
    return Resample(p.mode, size, scale, p.align_corners)


# --------------------------------------------------------------------------- normalisation
class PerStepNorm(StepOp):
    """One norm layer per time step (``steps.<t>``); steps beyond the horizon reuse the last."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.steps = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor, step: int) -> torch.Tensor:
        return self.steps[min(step, len(self.steps) - 1)](x)


def build_norm(p: P.Norm, ctx: OpContext) -> nn.Module:
    shape = tuple(ctx.in_shape)
    c = shape[0]
    if p.type == "batch":
        cls = nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d

        def make() -> nn.Module:
            return cls(c, eps=p.eps, momentum=p.momentum, affine=p.affine)

        if p.per_step:
            return PerStepNorm([make() for _ in range(max(ctx.steps, 1))])
        return make()
    if p.type == "group":
        return nn.GroupNorm(p.groups, c, eps=p.eps, affine=p.affine)
    if p.type == "layer":
        return nn.LayerNorm(list(shape), eps=p.eps, elementwise_affine=p.affine)
    return nn.InstanceNorm2d(c, eps=p.eps, affine=p.affine)


def build_lrn(p: P.LRN, ctx: OpContext) -> nn.Module:
    return nn.LocalResponseNorm(p.size, alpha=p.alpha, beta=p.beta, k=p.k)


# --------------------------------------------------------------------------- activations
def build_relu(p: P.ReLU, ctx: OpContext) -> nn.Module:
    return nn.ReLU()


def build_relu6(p: P.ReLU6, ctx: OpContext) -> nn.Module:
    return nn.ReLU6()


def build_elu(p: P.ELU, ctx: OpContext) -> nn.Module:
    return nn.ELU(alpha=p.alpha)


def build_gelu(p: P.GELU, ctx: OpContext) -> nn.Module:
    return nn.GELU()


def build_leaky_relu(p: P.LeakyReLU, ctx: OpContext) -> nn.Module:
    return nn.LeakyReLU(negative_slope=p.slope)


def build_sigmoid(p: P.Sigmoid, ctx: OpContext) -> nn.Module:
    return nn.Sigmoid()


def build_tanh(p: P.Tanh, ctx: OpContext) -> nn.Module:
    return nn.Tanh()


def build_softplus(p: P.Softplus, ctx: OpContext) -> nn.Module:
    return nn.Softplus()


def build_identity(p: P.Identity, ctx: OpContext) -> nn.Module:
    return nn.Identity()


def build_dropout(p: P.Dropout, ctx: OpContext) -> nn.Module:
    return nn.Dropout(p.p)


class Scale(nn.Module):
    """``y = factor * x + offset`` with constant (non-learned, unsaved) factor and offset."""

    def __init__(self, factor: float, offset: float = 0.0):
        super().__init__()
        self.factor = float(factor)
        self.offset = float(offset)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.factor
        return y + self.offset if self.offset else y

    def extra_repr(self) -> str:
        return f"factor={self.factor}, offset={self.offset}"


def build_scale(p: P.Scale, ctx: OpContext) -> nn.Module:
    return Scale(p.factor, p.offset)


class Power(nn.Module):
    """``y = |x| ** exponent``."""

    def __init__(self, exponent: float):
        super().__init__()
        self.exponent = float(exponent)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.abs().pow(self.exponent)

    def extra_repr(self) -> str:
        return f"exponent={self.exponent}"


def build_power(p: P.Power, ctx: OpContext) -> nn.Module:
    return Power(p.exponent)


def build_softmax(p: P.Softmax, ctx: OpContext) -> nn.Module:
    return nn.Softmax(dim=1)


class ClippedLogSoftmax(nn.Module):
    """``y = log(clamp(softmax(x, dim=1), clip_min, 1))``."""

    def __init__(self, clip_min: float):
        super().__init__()
        self.clip_min = float(clip_min)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.clamp(F.softmax(x, dim=1), self.clip_min, 1.0))

    def extra_repr(self) -> str:
        return f"clip_min={self.clip_min}"


def build_log_softmax(p: P.LogSoftmax, ctx: OpContext) -> nn.Module:
    if p.clip_min is None:
        return nn.LogSoftmax(dim=1)
    return ClippedLogSoftmax(p.clip_min)


# --------------------------------------------------------------------------- reshaping and dense
def build_flatten(p: P.Flatten, ctx: OpContext) -> nn.Module:
    return nn.Flatten(start_dim=1)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters and names) that, inside a learning rule's training step,
    passes the error to its input through the rule's feedback weights (:mod:`tnnspec.compile.feedback`)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        feedback_weights = feedback.matrix(self.weight)
        if feedback_weights is not None:
            return feedback.linear(input, self.weight, self.bias, feedback_weights)
        return F.linear(input, self.weight, self.bias)


def build_linear(p: P.Linear, ctx: OpContext) -> nn.Module:
    return Linear(ctx.in_shape[0], ctx.out_shape[0], bias=p.bias)
