"""Kernel passes of convolutions: ``packed_weights``, ``packed_weights_fast`` and ``zero_convs``.

An eager ``conv2d`` on the CPU hands its weight to oneDNN in PyTorch's plain layout, and
oneDNN reorders it into its blocked layout on every call. For large kernels on small maps the
reorder costs more than the arithmetic: CORnet-S's IT conv (2048 → 2048, 3×3, on 7×7) takes
140 ms at batch 1, 76 ms of them reordering the weight (2-core CPU). Packing reorders each
weight once and keeps it (:mod:`tnnspec.compile.kept` says for how long). Passes:

``packed_weights`` (in the default; invariant: bit-identical to ``conv2d``)
    oneDNN's prepacked convolution context: the same primitive that ``conv2d`` runs, on a
    weight reordered once. Outputs are bit-identical to the plain call. It applies only where
    ATen itself would pick oneDNN for the call (its ``use_mkldnn`` rule, mirrored in
    :func:`aten_picks_onednn`: e.g. not a 1×1 conv at batch 1 on one thread, where ATen runs its
    own kernel) and to contiguous NCHW inputs; elsewhere the plain conv runs.
``packed_weights_fast`` (opt-in; invariant: equal to ``conv2d`` to float rounding)
    oneDNN's inference convolution on a weight packed for it (channels-last blocking,
    brgemm kernels): faster still (~1e-5 relative).
Without either, the plain ``conv2d`` runs at every call.

Packing applies to inference calls only — gradients off, float32 on the CPU, no autocast, not
while ``torch.compile`` traces (inductor packs weights itself when freezing) — and only where
this PyTorch build has the oneDNN ops and they work (probed once by
:mod:`tnnspec.compile.torch_compat`, the one module that calls them; ``TNNSPEC_PUBLIC_TORCH_ONLY=1``
turns them off); everything else runs the plain conv.

``zero_convs`` (in the default; invariant: bit-identical). **Convolutions of all-zero inputs** (an area run on an all-zero drive before its input arrives,
``before_arrival: zero_drive``, or an edge's transform of a ``zero_input`` stand-in) are not
computed: the output is the bias broadcast (or zeros), which is exactly what the convolution
returns (every product is ±0, and 0 + b = b). This holds
for finite weights, so a weight with an inf or NaN runs the convolution; with gradients the
weight is tied to the output by ``+ 0·Σw``, so it still receives its (all-zero) gradient, and a
bias that needs a gradient runs the convolution. CPU only (the finiteness check reads a flag
back, which would stall a GPU stream). The network marks its zeros only while no forward hook
is registered, since a hook could write into one in place.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import feedback, passes, torch_compat
from .kept import forget, kept, store

_ZERO = "_tnnspec_all_zero"
_CACHE = "_tnnspec_packed"
_MAX_WEIGHTS = 16  # weights (a conv's own, folded ones) kept per conv before its cache starts afresh


def available(which: str = "exact") -> bool:
    """Whether this PyTorch build can run ``which`` packing (probed once; False under
    ``TNNSPEC_PUBLIC_TORCH_ONLY=1``)."""
    if which == "exact":
        return torch_compat.onednn_prepacked_available()
    return torch_compat.onednn_fast_available()


def aten_picks_onednn(x: Tensor, weight: Tensor, stride, dilation, groups: int) -> bool:
    """ATen's choice for a float32 CPU ``conv2d`` (``ConvParams::use_mkldnn``): oneDNN, or its
    own kernel for small batch-1 problems (and 1×1 convs on one thread)."""
    if not torch.backends.mkldnn.enabled:
        return False
    batch, kh, kw = x.shape[0], weight.shape[-2], weight.shape[-1]
    strided, dilated = any(s != 1 for s in stride), any(d != 1 for d in dilation)
    worth_threads = strided or dilated or batch >= 16 or kh != 1 or kw != 1 or torch.get_num_threads() > 1
    worth_size = groups > 1 or (kh > 3 and kw > 3) or batch > 1 or x.numel() > 20480
    return worth_threads and worth_size


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state-dict names) that runs on packed weights in
    inference calls when ``packed_weights`` is ``"exact"`` or ``"fast"`` (module docstring).
    :meth:`conv_at` applies it with given weights and stride (fusion, per-step strides)."""

    def conv_at(self, x: Tensor, weight: Tensor, bias: Tensor | None, stride=None) -> Tensor:
        stride = self.stride if stride is None else tuple(stride)
        if not torch.compiler.is_compiling() and getattr(x, _ZERO, False):
            total = self._zero_shortcut(x, weight, bias)
            if total is not None:
                return self._conv_of_zeros(x, weight, bias, stride, total)
        feedback_weights = feedback.matrix(weight)  # a learning rule's training step (compile.feedback)
        if feedback_weights is not None:
            return feedback.conv(self, x, weight, bias, stride, feedback_weights)
        how = "exact" if passes.on("packed_weights") else "fast" if passes.on("packed_weights_fast") else "off"
        if how != "off" and self._packable(x, weight, how):
            if how == "fast":
                return _fast_call(self, x, weight, bias, stride)
            if self._exact_applies(x, weight, stride):
                return torch_compat.onednn_prepacked_conv(x, _context(self, x, weight, bias, stride))
        return torch_compat.conv2d_forward(self, x, weight, bias, stride)

    def forward(self, input: Tensor) -> Tensor:  # nn.Conv2d.forward, not through its private _conv_forward
        return self.conv_at(input, self.weight, self.bias)

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        # this class's own entry point (subclasses and fusion call it with other weights)
        return self.conv_at(input, weight, bias)

    def _zero_shortcut(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor | None:
        """The weight's sum when the convolution of the all-zero ``x`` may be skipped, else None.
        A finite sum means finite weights: an inf or NaN element makes the sum inf or NaN (and
        a sum that overflows only makes the convolution run). One pass over the weight."""
        if (x.device.type != "cpu" or torch.is_autocast_enabled("cpu")
                or (bias is not None and bias.requires_grad and torch.is_grad_enabled())):
            return None
        total = weight.sum()
        return total if bool(torch.isfinite(total)) else None

    def _conv_of_zeros(self, x: Tensor, weight: Tensor, bias: Tensor | None, stride, total: Tensor) -> Tensor:
        """What the convolution returns for an all-zero ``x`` with finite weights (``total``: their sum)."""
        size = [x.shape[0], weight.shape[0]]
        for i, n in enumerate(x.shape[2:]):
            k = self.dilation[i] * (weight.shape[2 + i] - 1) + 1
            if self.padding == "same":
                size.append(n)
            else:
                pad = 0 if self.padding == "valid" else self.padding[i]
                size.append((n + 2 * pad - k) // stride[i] + 1)
        if bias is None:
            out = mark_zero(x.new_zeros(size, dtype=weight.dtype))
        else:
            # a new tensor (never a view of the bias: a ReLU after the conv may work in place)
            out = bias.detach().to(weight.dtype).reshape(1, -1, *([1] * (len(size) - 2))).expand(size).clone(
                memory_format=torch.contiguous_format)
        if torch.is_grad_enabled() and weight.requires_grad:
            out = out + total * 0.0  # finite weights: adds exact zeros; the weight gets its gradient
        return out

    def _packable(self, x: Tensor, weight: Tensor, how: str) -> bool:
        return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dim() == 4
                and x.dtype == torch.float32 and weight.dtype == torch.float32
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling() and available(how))

    def _exact_applies(self, x: Tensor, weight: Tensor, stride) -> bool:
        # plain NCHW on both sides (a channels-last call runs another primitive), default fp32 math
        return (x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last)
                and weight.is_contiguous() and torch_compat.fp32_precision_default()
                and aten_picks_onednn(x, weight, stride, self.dilation, self.groups))


def mark_zero(t: Tensor) -> Tensor:
    """Mark a tensor tnnspec made as all zeros (and never written): a :class:`Conv2d` of it is
    not computed (module docstring)."""
    if not torch.compiler.is_compiling():
        setattr(t, _ZERO, True)
    return t


def clear(module: nn.Module) -> None:
    """Drop every packed weight and BatchNorm fold under ``module`` (they point at the old weights
    after ``.to()``)."""
    for m in module.modules():
        forget(m)


def _reorder(weight: Tensor, padding, stride, dilation, groups: int, input_size) -> Tensor:
    """``"fast"``: the weight in the blocked layout oneDNN's inference convolution picks."""
    return torch_compat.onednn_reorder_weight(weight, padding, stride, dilation, groups, input_size)


def _prepack(weight: Tensor, bias: Tensor | None, padding, stride, dilation, groups: int, input_size):
    """``"exact"``: oneDNN's convolution context for this geometry and input size, holding the
    weight reordered as ``conv2d``'s own primitive wants it."""
    return torch_compat.onednn_prepack(weight, bias, stride, padding, dilation, groups, input_size)


def _entry(conv: Conv2d, weight: Tensor, bias: Tensor | None):
    # one entry per weight tensor: a conv shared over inner steps runs with each step's folded
    # BatchNorm. The entry goes when its weight is freed (compile.kept), before the id can be reused.
    return kept(store(conv, _CACHE), id(weight), (weight, bias), _MAX_WEIGHTS)


def _context(conv: Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None, stride):
    """``"exact"``: the prepacked context for this weight and input shape, kept."""
    values = _entry(conv, weight, bias).values
    key = ("exact", tuple(x.shape), stride, torch.get_num_threads())
    context = values.get(key)
    if context is None:
        context = values[key] = _prepack(weight.detach(), None if bias is None else bias.detach(),
                                         list(conv.padding), list(stride), list(conv.dilation), conv.groups,
                                         list(x.shape))
    return context


def _fast_call(conv: Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None, stride) -> Tensor:
    values = _entry(conv, weight, bias).values
    key = ("fast", tuple(x.shape), x.is_contiguous(memory_format=torch.channels_last), stride)
    packed = values.get(key)
    if packed is None:
        packed = values[key] = _reorder(weight.detach(), list(conv.padding), list(stride), list(conv.dilation),
                                        conv.groups, list(x.shape))
    return torch_compat.onednn_conv_pointwise(x, packed, bias, list(conv.padding), list(stride),
                                              list(conv.dilation), conv.groups)
