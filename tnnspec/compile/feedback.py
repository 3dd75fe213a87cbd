"""Feedback pathways of learning rules other than backprop, on only inside a training step.

A learning rule (:mod:`tnnspec.train.learning_rules`) switches them on with :func:`active` around
the forward and backward pass of one training step, as a network switches its kernel passes on
only inside its forward (:mod:`tnnspec.compile.passes`). Within that block:

* every conv and linear layer of tnnspec's (:class:`tnnspec.compile.packing.Conv2d`, which all
  built-in conv ops and cells use, :class:`tnnspec.compile.ops.Linear` and
  :class:`tnnspec.compile.ops.ConvTranspose2d`) asks :func:`matrix` for feedback weights ``B`` of
  its weight's shape; when it gets them it runs :func:`conv` / :func:`linear`: the same forward
  computation (the same ATen call), whose backward passes the error to the layer's input through
  ``B`` (``δ_in = Bᵀ δ_out``; for a conv, the transposed convolution with ``B``) while the weight
  and bias gradients are the usual ones (``δ_out x_inᵀ``, ``Σ δ_out``): feedback alignment, sign
  symmetry, Kolen-Pollack;
* with a :class:`Tap` (direct feedback alignment) the interpreter detaches what an area reads from
  other areas and what a readout head reads, and records each area's output at each step, where
  the rule injects its error.

Outside the block — inference, evaluation, a user's own calls — nothing here runs, and the
network computes exactly as before. Not under ``torch.compile`` (the trainer refuses the
combination) nor activation checkpointing (its recomputation would run outside the block).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import torch_compat


class Feedback:
    """The feedback weights of one training step: ``lookup(weight)`` gives ``B`` for a parameter
    (or None: that layer backpropagates through ``W``); weights made from several parameters (a
    fused conv's concatenated kernels) are announced with :meth:`derive`."""

    def __init__(self, lookup: Callable[[Tensor], Tensor | None]):
        self._lookup = lookup
        self._derived: dict[int, tuple[Tensor, Tensor | None]] = {}

    def matrix(self, weight: Tensor) -> Tensor | None:
        found = self._derived.get(id(weight))
        if found is not None and found[0] is weight:  # (the tensor is held, so its id is not reused)
            return found[1]
        return self._lookup(weight)

    def derive(self, weight: Tensor, parts: list[Tensor]) -> None:
        """``weight`` is ``torch.cat(parts)``: its feedback weights are the parts' (a part without
        any backpropagates through itself)."""
        found = [self.matrix(p) for p in parts]
        if all(b is None for b in found):
            self._derived[id(weight)] = (weight, None)
            return
        b = torch.cat([p.detach() if b is None else b for p, b in zip(parts, found)])
        self._derived[id(weight)] = (weight, b)


@dataclass
class Tap:
    """Direct feedback alignment's view of one forward pass: each area's output at each step
    (``(area, step, tensor)``, tensors that need a gradient only)."""

    outputs: list[tuple[str, int, Tensor]] = field(default_factory=list)

    def output(self, area: str, step: int, y: Tensor) -> None:
        if y.requires_grad:
            self.outputs.append((area, step, y))


@dataclass(frozen=True)
class _Session:
    feedback: Feedback | None
    tap: Tap | None


_ACTIVE: contextvars.ContextVar[_Session | None] = contextvars.ContextVar("tnnspec_feedback", default=None)


@contextmanager
def active(feedback: Feedback | None = None, tap: Tap | None = None):
    """Within this block, layers use ``feedback`` and the interpreter uses ``tap``."""
    token = _ACTIVE.set(_Session(feedback, tap))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def matrix(weight: Tensor) -> Tensor | None:
    """The feedback weights for ``weight`` now (None outside :func:`active`, or for a layer that
    backpropagates)."""
    if torch.compiler.is_compiling():  # (first: a traced ContextVar read would break the graph)
        return None
    session = _ACTIVE.get()
    if session is None or session.feedback is None:
        return None
    return session.feedback.matrix(weight)


def derive(weight: Tensor, parts: list[Tensor]) -> None:
    """Announce ``weight = torch.cat(parts)`` (a no-op outside :func:`active`)."""
    if torch.compiler.is_compiling():
        return
    session = _ACTIVE.get()
    if session is not None and session.feedback is not None:
        session.feedback.derive(weight, parts)


def tap() -> Tap | None:
    """The tap of the training step running now, if any."""
    if torch.compiler.is_compiling():
        return None
    session = _ACTIVE.get()
    return None if session is None else session.tap


# ---------------------------------------------------------------- autograd functions
def _autocast(x: Tensor, *tensors: Tensor | None) -> tuple:
    """The tensors as autocast would give them to a conv or linear (the ATen call inside the
    function runs with autocast off)."""
    device = x.device.type
    if not torch.is_autocast_enabled(device):
        return (x, *tensors)
    dtype = torch.get_autocast_dtype(device)
    return tuple(t if t is None or not t.is_floating_point() else t.to(dtype) for t in (x, *tensors))


class _Conv(torch.autograd.Function):
    """``conv(x, W, b)`` forward; backward: ``x`` through ``B``, ``W`` and ``b`` as usual."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback, geometry):
        stride, padding, dilation, groups, transposed, output_padding = geometry
        with torch.autocast(x.device.type, enabled=False):
            if transposed:
                y = F.conv_transpose2d(x, weight, bias, stride, padding, output_padding, groups, dilation)
            else:
                y = F.conv2d(x, weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, feedback)
        ctx.geometry, ctx.has_bias = geometry, bias is not None
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight, feedback = ctx.saved_tensors
        stride, padding, dilation, groups, transposed, output_padding = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        args = (list(stride), list(padding), list(dilation), transposed, list(output_padding), groups)
        gx = gw = gb = None
        if need_w or (need_b and ctx.has_bias):
            out = weight.shape[1] * groups if transposed else weight.shape[0]
            _, gw, gb = torch.ops.aten.convolution_backward(grad, x, weight, [out] if ctx.has_bias else None,
                                                            *args, [False, need_w, need_b and ctx.has_bias])
        if need_x:
            gx = torch.ops.aten.convolution_backward(grad, x, feedback, None, *args, [True, False, False])[0]
        return gx, gw, gb, None, None


class _Linear(torch.autograd.Function):
    """``x Wᵀ + b`` forward; backward: ``x`` through ``B``, ``W`` and ``b`` as usual."""

    @staticmethod
    def forward(ctx, x, weight, bias, feedback):
        with torch.autocast(x.device.type, enabled=False):
            y = F.linear(x, weight, bias)
        ctx.save_for_backward(x, feedback)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, feedback = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = grad.matmul(feedback) if need_x else None
        flat = grad.reshape(-1, grad.shape[-1])
        gw = flat.t().mm(x.reshape(-1, x.shape[-1])) if need_w else None
        gb = flat.sum(0) if need_b else None
        return gx, gw, gb, None


def conv(module: nn.Module, x: Tensor, weight: Tensor, bias: Tensor | None, stride, feedback: Tensor) -> Tensor:
    """What ``module``'s conv computes with ``weight``, ``bias`` and ``stride`` (its padding, padding
    mode, dilation and groups), passing the error to ``x`` through ``feedback``."""
    padding = module.padding
    if module.padding_mode != "zeros" or isinstance(padding, str):
        mode = module.padding_mode if module.padding_mode != "zeros" else "constant"
        x = F.pad(x, torch_compat._reversed_padding(module), mode=mode)
        padding = (0,) * len(module.kernel_size)
    x, weight, bias, feedback = _autocast(x, weight, bias, feedback)
    geometry = (tuple(stride), tuple(padding), tuple(module.dilation), module.groups, False,
                (0,) * len(module.kernel_size))
    return _Conv.apply(x, weight, bias, feedback.to(weight.dtype), geometry)


def conv_transpose(module: nn.ConvTranspose2d, x: Tensor, feedback: Tensor) -> Tensor:
    """``module(x)`` (a transposed conv, its own output padding), the error to ``x`` through ``feedback``."""
    x, weight, bias, feedback = _autocast(x, module.weight, module.bias, feedback)
    geometry = (tuple(module.stride), tuple(module.padding), tuple(module.dilation), module.groups, True,
                tuple(module.output_padding))
    return _Conv.apply(x, weight, bias, feedback.to(weight.dtype), geometry)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None, feedback: Tensor) -> Tensor:
    """``F.linear(x, weight, bias)``, the error to ``x`` through ``feedback``."""
    x, weight, bias, feedback = _autocast(x, weight, bias, feedback)
    return _Linear.apply(x, weight, bias, feedback.to(weight.dtype))


__all__ = ["Feedback", "Tap", "active", "conv", "conv_transpose", "derive", "linear", "matrix", "tap"]
