"""ReLUs applied in place to a tensor an op has just made.

An out-of-place ReLU allocates its output, and on the CPU a fresh allocation of a large map costs
page faults: ``torch.relu`` of an 8×512×28×28 map takes 1.4 ms, ``torch.relu_`` 0.2 ms (2-core
CPU). The published CORnets use ``nn.ReLU(inplace=True)`` for that reason. The values are the
same bits either way; what in place needs is that nothing else holds the tensor:

- it was just made by an op that returns a new tensor (:data:`MAKES_NEW`: convolutions, linear
  maps, norms, pools — never its input, a view of it, or a kept value), checked at every call,
  so a module swapped in later (an ``nn.Identity`` as an ablation) turns it off;
- no hook could have kept it or wrapped it (:func:`unhooked`: global hooks, hooks on the op
  and on its submodules), nor see it change;
- its op's backward does not read it (none of :data:`MAKES_NEW` saves its output), so autograd
  works as before; a ReLU's own backward reads the ReLU's output, in place or not.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from . import torch_compat
from .ops import PerStepNorm

#: ops whose output is a new tensor, not saved for their backward
MAKES_NEW = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm,
             nn.LayerNorm, PerStepNorm, nn.MaxPool2d, nn.AvgPool2d)


def unhooked(*modules: nn.Module | None) -> bool:
    """No forward or backward hook is registered globally, on one of ``modules`` or on one of
    their submodules (a backward hook wraps a module's output, a module run as ``torch.relu_``
    would skip its hooks, and a hook on a maker's child, e.g. ``PerStepNorm.steps[t]``, sees the
    tensor the ReLU would overwrite). False where the hook registries cannot be read
    (:func:`tnnspec.compile.torch_compat.hooked`). A leaf module costs four dict checks."""
    return not torch_compat.hooked(modules)


def relu_of_new(x: Tensor, *makers: nn.Module, relu: nn.Module | None = None) -> Tensor:
    """``relu(x)`` where ``x`` was just returned by ``makers`` (one of them made it, the others
    were called on the way, e.g. a conv and its norm): in place when that is safe. ``relu``: the
    ``nn.ReLU`` module this stands in for, whose hooks must not be skipped."""
    if all(isinstance(m, MAKES_NEW) for m in makers) and unhooked(*makers, *((relu,) if relu is not None else ())):
        return torch.relu_(x)
    return relu(x) if relu is not None else torch.relu(x)
