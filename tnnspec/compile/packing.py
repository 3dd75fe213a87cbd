"""Convolution weights kept in oneDNN's blocked layout for CPU inference
(``tnnspec.compile(spec, packed_weights=True)``).

An eager ``conv2d`` on the CPU hands its weight to oneDNN in PyTorch's plain layout, and
oneDNN reorders it into its blocked layout on every call. For large kernels and small maps
that reorder costs more than the arithmetic: CORnet-S's IT conv (2048 → 2048, 3×3, on 7×7)
takes 145 ms at batch 1 with the reorder and 32 ms without (2-core CPU). With
``packed_weights`` every :class:`Conv2d` of the network reorders its weight once per input
shape and keeps it, until the weight changes (its version counter or storage; folded
BatchNorm weights (:mod:`tnnspec.compile.fusion`) are kept as long as their fold is). The
packed call is the same oneDNN convolution without the reorder; its blocking sums in another
order, so outputs equal the plain call to float rounding (~1e-5 relative).

Packing applies to inference calls only — gradients off, float32 on the CPU, no autocast, not
while ``torch.compile`` traces (inductor packs weights itself when freezing) — and only where
this PyTorch build has oneDNN's pointwise convolution op; everything else runs the plain conv.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_CACHE = "_tnnspec_packed"
_MAX_ENTRIES = 16  # (weight, input shape) pairs kept per conv before the cache starts afresh


def available() -> bool:
    """Whether this PyTorch build can run a convolution on packed weights."""
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight"))


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state-dict names) that runs on packed weights when
    ``packed_weights`` is set and the call is an inference call (module docstring).
    :meth:`conv_at` applies it with given weights and stride (fusion, per-step strides)."""

    packed_weights: bool = False

    def conv_at(self, x: Tensor, weight: Tensor, bias: Tensor | None, stride=None) -> Tensor:
        stride = self.stride if stride is None else tuple(stride)
        if self.packed_weights and self._packable(x, weight):
            return _packed_call(self, x, weight, bias, stride)
        if stride == self.stride:
            return super()._conv_forward(x, weight, bias)
        return torch.nn.functional.conv2d(x, weight, bias, stride, self.padding, self.dilation, self.groups)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return self.conv_at(input, weight, bias)

    def _packable(self, x: Tensor, weight: Tensor) -> bool:
        return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4
                and x.dtype == torch.float32 and weight.dtype == torch.float32
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling() and available())


def clear(module: nn.Module) -> None:
    """Drop every packed weight under ``module`` (they point at the old weights after ``.to()``)."""
    for m in module.modules():
        m.__dict__.pop(_CACHE, None)


def _stamp(t: Tensor | None):
    if t is None:
        return None
    return t.data_ptr() if t.is_inference() else (t._version, t.data_ptr())


def _reorder(weight: Tensor, padding, stride, dilation, groups: int, input_size) -> Tensor:
    """The weight in the blocked layout oneDNN picks for this geometry and input size."""
    return torch.ops.mkldnn._reorder_convolution_weight(weight, padding, stride, dilation, groups, input_size)


def _packed_call(conv: Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None, stride) -> Tensor:
    cache = conv.__dict__.setdefault(_CACHE, {})
    # one entry per weight tensor: a conv shared over inner steps runs with each step's folded
    # BatchNorm. The entry holds the weight itself, so its id cannot be reused while cached.
    key = (id(weight), tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last), stride)
    stamp = (_stamp(weight), _stamp(bias))
    entry = cache.get(key)
    if entry is None or entry[0] is not weight or entry[1] is not bias or entry[2] != stamp:
        if len(cache) >= _MAX_ENTRIES:
            cache.clear()
        packed = _reorder(weight.detach(), list(conv.padding), list(stride), list(conv.dilation), conv.groups,
                          list(x.shape))
        entry = cache[key] = (weight, bias, stamp, packed)
    return torch.ops.mkldnn._convolution_pointwise(x, entry[3], bias, list(conv.padding), list(stride),
                                                   list(conv.dilation), conv.groups, "none", [], "")
