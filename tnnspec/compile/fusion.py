"""Kernel pass ``fuse_batchnorm``: convolution + BatchNorm as one convolution for inference.

In eval mode a BatchNorm is the affine map ``y = (x − μ)·γ/√(σ² + ε) + β`` with its running
statistics ``μ, σ²``; after a convolution ``x = W ⋆ u + b`` it folds into the convolution:

    W' = W · s,   b' = (b − μ) · s + β,   s = γ / √(σ² + ε)   (per output channel)

so one convolution replaces a convolution and a full pass over its output. Fusion applies to
inference calls only (eval mode, gradients off): the folded weights are computed once and kept
until one of W, b, γ, β, μ, σ² changes (:mod:`tnnspec.compile.kept`: version counters and
storage at every call, values once per forward, so weight updates, ``load_state_dict``,
``.to()`` and edits through ``.data`` are all seen). Folding at every
call instead would cost more than it saves where the weights are large and the activations
small (CORnet-S's 1024-channel 3×3 conv at batch 1). Outputs equal the unfused pair to float
rounding. In train mode, with gradients on, or for a BatchNorm without running statistics,
nothing is fused. Forward hooks of a fused pair's modules are not called.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from . import torch_compat
from .kept import kept, mark_derived, store
from .packing import Conv2d

FOLDS = "batchnorm_folds"  # the kept store of a fused norm

FUSABLE_NORMS = (nn.BatchNorm2d,)


def fusable(conv: nn.Module, norm: nn.Module) -> bool:
    """A 2-d convolution directly followed by a BatchNorm over its output channels."""
    return (isinstance(conv, nn.Conv2d) and type(norm) in FUSABLE_NORMS
            and norm.num_features == conv.out_channels)


def active(norm: nn.Module) -> bool:
    """Whether the norm is an eval-mode affine map right now (fusion applies)."""
    return not norm.training and norm.running_mean is not None and norm.running_var is not None


def folded(weight: Tensor, bias: Tensor | None, norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """``(W', b')`` of the module docstring."""
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean if bias is None else bias - norm.running_mean
    new_bias = shift * scale + (norm.bias if norm.bias is not None else 0.0)
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), new_bias


def conv_with(conv: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``conv``'s geometry (padding mode, stride, explicit 'same' padding) with other weights."""
    if hasattr(conv, "conv_with"):
        return conv.conv_with(x, weight, bias)
    if isinstance(conv, Conv2d):  # tnnspec's own: packed weights apply to the folded ones too
        return conv.conv_at(x, weight, bias)
    return torch_compat.conv2d_forward(conv, x, weight, bias)


def cached_fold(weight: Tensor, bias: Tensor | None, norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """:func:`folded`, kept on ``norm`` (each fused norm follows exactly one conv weight) while
    its inputs are unchanged (:mod:`tnnspec.compile.kept`)."""
    tensors = (weight, bias, norm.weight, norm.bias, norm.running_mean, norm.running_var)
    entry = kept(store(norm, FOLDS), 0, tensors)
    if "fold" not in entry.values:
        entry.values["fold"] = tuple(mark_derived(t) for t in folded(weight, bias, norm))
    return entry.values["fold"]


def applies(conv: nn.Module, norm: nn.Module, fuse: bool) -> bool:
    """Fusion applies to this call: asked for, still a conv and a BatchNorm (not swapped), an
    eval-mode norm, no gradients, and no hook on either module that would be skipped."""
    return (fuse and not torch.is_grad_enabled() and fusable(conv, norm) and active(norm)
            and not torch_compat.hooked((conv, norm)))


def conv_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d, x: Tensor, fuse: bool = True,
              run: Callable[[Tensor, Tensor, Tensor | None], Tensor] | None = None) -> Tensor:
    """``norm(conv(x))``, as one convolution when fusion :func:`applies`. ``run(x, weight, bias)``
    applies the convolution with other geometry than ``conv``'s own (a per-step stride)."""
    if applies(conv, norm, fuse):
        weight, bias = cached_fold(conv.weight, conv.bias, norm)
        return run(x, weight, bias) if run is not None else conv_with(conv, x, weight, bias)
    return norm(run(x, conv.weight, conv.bias) if run is not None else conv(x))
