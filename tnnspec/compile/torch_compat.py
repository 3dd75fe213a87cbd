"""The one module of tnnspec that touches private PyTorch APIs, each behind a probe.

A probe asks once (and caches the answer) whether this PyTorch has the private API and whether
it works: it is tried on a tiny input inside ``try``/``except``. Where a probe fails, the public
fallback runs:

- the hook registries of ``nn.Module`` (``_forward_hooks``, ... and
  ``nn.modules.module._global_*_hooks``): :func:`hooked`, :func:`module_hooked`,
  :func:`global_hooks_registered`, :func:`forward_hooked`. Fallback: "hooked", the safe answer
  (no in-place ReLU, no zero marks).
- ``Tensor._version``: :func:`version_counter`. Fallback ``None``: kept values
  (:mod:`tnnspec.compile.kept`) are value-checked at every call instead of once per forward.
- ``torch.utils._pytree``: :func:`tree_flatten`, :func:`tree_unflatten`, :func:`tree_map`.
  Fallback: an own flatten over dict, OrderedDict, list, tuple and namedtuple; anything else,
  ``None`` included, is a leaf (as in torch 2.13; older releases give ``None`` no leaves).
- ``torch.ops.mkldnn_prepacked.conv2d_{prepack,run}``: :func:`onednn_prepacked_available`,
  :func:`onednn_prepack`, :func:`onednn_prepacked_conv`. Fallback: the plain ``conv2d``.
- ``torch.ops.mkldnn._reorder_convolution_weight`` and ``_convolution_pointwise``:
  :func:`onednn_fast_available`, :func:`onednn_reorder_weight`, :func:`onednn_conv_pointwise`.
  Fallback: the plain ``conv2d``.
- ``torch.backends.mkldnn.conv.fp32_precision`` (missing in older releases):
  :func:`fp32_precision_default`. Fallback: ``torch.get_float32_matmul_precision() == "highest"``.
- ``nn.modules.batchnorm._BatchNorm``: :func:`batchnorm_types`. Fallback: the public classes.
- ``Module._modules``: :func:`children_dict`. Fallback: ``dict(module.named_children())``.

(``nn.Conv2d._conv_forward`` is not needed: :func:`conv2d_forward` is its public equivalent.)

``TNNSPEC_PUBLIC_TORCH_ONLY=1`` in the environment makes every probe report "unavailable", so
the fallbacks run (tests use it to check that they give the same values). It is read at each
call, except within a :class:`~tnnspec.compile.Network` forward pass, which reads it once at
its start (:func:`pinned`; reading the environment costs microseconds, and the hook check runs
at every ReLU).
"""

from __future__ import annotations

import collections
import contextvars
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ENV = "TNNSPEC_PUBLIC_TORCH_ONLY"

_PINNED: contextvars.ContextVar[bool | None] = contextvars.ContextVar("tnnspec_public_only", default=None)
_probes: dict[str, bool] = {}


def _from_env() -> bool:
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


def public_only() -> bool:
    """Whether ``TNNSPEC_PUBLIC_TORCH_ONLY`` forces the public fallbacks (read now, or at the
    start of the enclosing :func:`pinned` block)."""
    pinned_value = _PINNED.get()
    return _from_env() if pinned_value is None else pinned_value


@contextmanager
def pinned():
    """Within this block :func:`public_only` is the value the environment has at its start
    (``tnnspec.compile.kept.session`` enters it once per forward pass)."""
    token = _PINNED.set(_from_env())
    try:
        yield
    finally:
        _PINNED.reset(token)


def _probe(name: str, check: Callable[[], bool]) -> bool:
    """``check()`` run once (an exception means no), cached; False while :func:`public_only`.
    While ``torch.compile`` traces, the answer cached before (the tracer cannot read context
    variables; a probe never asked before answers no)."""
    if torch.compiler.is_compiling():
        return _probes.get(name, False)
    if public_only():
        return False
    ok = _probes.get(name)
    if ok is None:
        try:
            with torch.inference_mode(False):  # a first call may come under inference mode, whose
                ok = bool(check())  # tensors have no version counter: the probe must not see that
        except Exception:  # noqa: BLE001  (any failure of a private API means: not usable)
            ok = False
        _probes[name] = ok
    return ok


# --------------------------------------------------------------------------- hooks
_KINDS = ("forward", "forward_pre", "backward", "backward_pre")
_GLOBALS = nn.modules.module


def _check_hook_registries() -> bool:
    g = _GLOBALS
    probe = nn.Identity()
    for kind in _KINDS:
        if not isinstance(getattr(probe, f"_{kind}_hooks"), dict):
            return False
        if not isinstance(getattr(g, f"_global_{kind}_hooks"), dict):
            return False
    # the registries are what the public register_* calls fill
    before = len(g._global_forward_hooks)
    handle = nn.modules.module.register_module_forward_hook(lambda *a: None)
    try:
        seen_globally = len(g._global_forward_hooks) == before + 1
    finally:
        handle.remove()
    handle = probe.register_forward_pre_hook(lambda *a: None)
    seen = bool(probe._forward_pre_hooks)
    handle.remove()
    handle = probe.register_full_backward_hook(lambda *a: None)
    seen_backward = bool(probe._backward_hooks)
    handle.remove()
    return seen_globally and seen and seen_backward and not probe._forward_pre_hooks and not probe._backward_hooks


def hook_registries_available() -> bool:
    """Whether the hook registries of ``nn.Module`` can be read (probe)."""
    return _probe("hooks", _check_hook_registries)


def global_hooks_registered() -> bool:
    """Whether a global module hook (forward, forward pre, backward or backward pre) is
    registered; True when that cannot be read."""
    if not hook_registries_available():
        return True
    g = _GLOBALS
    try:
        return bool(g._global_forward_hooks or g._global_forward_pre_hooks
                    or g._global_backward_hooks or g._global_backward_pre_hooks)
    except AttributeError:
        return True


def module_hooked(module: nn.Module, submodules: bool = True) -> bool:
    """Whether a forward or backward hook is registered on ``module`` (or, with ``submodules``,
    on one of its submodules); True when that cannot be read. Global hooks are not looked at."""
    if not hook_registries_available():
        return True
    try:
        return _hooked_here(module, submodules)
    except (AttributeError, RecursionError):
        return True


def _hooked_here(m: nn.Module, submodules: bool) -> bool:
    if m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks:
        return True
    if submodules and m._modules:  # a leaf (most ops) costs one dict check more
        for child in m._modules.values():  # (not m.modules(): its generator costs ~1 µs a module)
            if child is not None and _hooked_here(child, True):
                return True
    return False


def hooked(modules: Iterable[nn.Module | None]) -> bool:
    """Whether any hook is registered globally, on one of ``modules`` or on a submodule of one
    (``None`` entries are skipped); True when that cannot be read. Cheap: it runs at every
    in-place ReLU (:mod:`tnnspec.compile.inplace`)."""
    if _PINNED.get() is not False or _probes.get("hooks") is not True:  # (the fast path inlined)
        if not hook_registries_available():
            return True
    g = _GLOBALS
    try:
        if (g._global_forward_hooks or g._global_forward_pre_hooks
                or g._global_backward_hooks or g._global_backward_pre_hooks):
            return True
        for m in modules:
            if m is not None and _hooked_here(m, True):
                return True
    except (AttributeError, RecursionError):  # (a module tree with a cycle: assume hooked)
        return True
    return False


def forward_hooked(network: nn.Module) -> bool:
    """Whether a forward (or forward pre) hook is registered globally or on a module of
    ``network``; True when that cannot be read."""
    if not hook_registries_available():
        return True
    g = _GLOBALS
    try:
        if g._global_forward_hooks or g._global_forward_pre_hooks:
            return True
        return any(m._forward_hooks or m._forward_pre_hooks for m in network.modules())
    except AttributeError:
        return True


def children_dict(module: nn.Module) -> dict:
    """``module``'s children by name: its own registry where readable (no copy, fast),
    else ``dict(module.named_children())``."""
    if _probe("modules_dict", lambda: isinstance(nn.Sequential(nn.Identity())._modules, dict)):
        return module._modules
    return dict(module.named_children())


def batchnorm_types() -> tuple[type, ...]:
    """The BatchNorm classes, for ``isinstance``: ``(_BatchNorm,)``, or the public classes."""
    base = getattr(nn.modules.batchnorm, "_BatchNorm", None)
    if isinstance(base, type) and issubclass(nn.BatchNorm2d, base) and not public_only():
        return (base,)
    return tuple(getattr(nn, n) for n in ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm",
                                          "LazyBatchNorm1d", "LazyBatchNorm2d", "LazyBatchNorm3d")
                 if hasattr(nn, n))


# --------------------------------------------------------------------------- version counters
def _check_version() -> bool:
    t = torch.zeros(2)
    before = t._version
    t.add_(1)
    view = t[:1]
    view.mul_(2)
    return isinstance(before, int) and t._version == before + 2


def version_counter(t: Tensor) -> int | None:
    """``t``'s version counter (bumped by every in-place op), or None where it cannot be read
    (then kept values are value-checked at every call)."""
    if not _probe("version", _check_version):
        return None
    try:
        return t._version
    except (AttributeError, RuntimeError):
        return None


def version_counters_available() -> bool:
    return _probe("version", _check_version)


# --------------------------------------------------------------------------- pytrees
class _Spec:
    """The structure of a tree flattened by the fallback (:func:`tree_flatten`)."""

    __slots__ = ("kind", "type", "keys", "children")

    def __init__(self, kind: str, type_=None, keys=None, children=()):
        self.kind, self.type, self.keys, self.children = kind, type_, keys, tuple(children)

    @property
    def num_leaves(self) -> int:
        if self.kind == "leaf":
            return 1
        return sum(c.num_leaves for c in self.children)

    def __eq__(self, other):
        return (isinstance(other, _Spec) and (self.kind, self.type, self.keys, self.children)
                == (other.kind, other.type, other.keys, other.children))

    def __repr__(self):
        return f"_Spec({self.kind}, {getattr(self.type, '__name__', None)}, {self.keys}, {list(self.children)})"


_LEAF = _Spec("leaf")


def _own_flatten(tree, leaves: list) -> _Spec:
    kind = type(tree)
    if kind is dict or kind is collections.OrderedDict:
        keys = tuple(tree)
        return _Spec("dict", kind, keys, [_own_flatten(tree[k], leaves) for k in keys])
    if kind is list or kind is tuple or (isinstance(tree, tuple) and hasattr(kind, "_fields")):
        return _Spec("seq", kind, None, [_own_flatten(x, leaves) for x in tree])
    leaves.append(tree)
    return _LEAF


def _own_unflatten(spec: _Spec, leaves) -> Any:
    if spec.kind == "leaf":
        return next(leaves)
    children = [_own_unflatten(c, leaves) for c in spec.children]
    if spec.kind == "dict":
        return spec.type(zip(spec.keys, children))
    if spec.type is list or spec.type is tuple:
        return spec.type(children)
    return spec.type(*children)  # a namedtuple


def _check_pytree() -> bool:
    from torch.utils import _pytree

    Pair = collections.namedtuple("Pair", "a b")
    tree = {"x": (1, [2, None]), 3: Pair({}, 4)}
    leaves, spec = _pytree.tree_flatten(tree)
    back = _pytree.tree_unflatten(list(leaves), spec)
    return [x for x in leaves if x is not None] == [1, 2, 4] and back == tree and type(back[3]) is Pair


def pytree_available() -> bool:
    return _probe("pytree", _check_pytree)


def tree_flatten(tree) -> tuple[list, Any]:
    """The leaves of ``tree`` (nested dicts, lists, tuples, namedtuples) and its structure, for
    :func:`tree_unflatten`. Whether ``None`` is a leaf depends on the torch release (a leaf in
    2.13 and in the fallback); callers must accept either."""
    if pytree_available():
        from torch.utils import _pytree

        return _pytree.tree_flatten(tree)
    leaves: list = []
    spec = _own_flatten(tree, leaves)
    return leaves, spec


def tree_unflatten(leaves: Iterable, spec) -> Any:
    """The tree of structure ``spec`` (from :func:`tree_flatten`) holding ``leaves``."""
    if isinstance(spec, _Spec):
        leaves = list(leaves)
        if len(leaves) != spec.num_leaves:
            raise ValueError(f"tree_unflatten: {len(leaves)} leaves for a structure of {spec.num_leaves}")
        return _own_unflatten(spec, iter(leaves))
    from torch.utils import _pytree

    return _pytree.tree_unflatten(list(leaves), spec)


def tree_map(fn: Callable, tree) -> Any:
    """``tree`` with ``fn`` applied to every leaf."""
    leaves, spec = tree_flatten(tree)
    return tree_unflatten([fn(x) for x in leaves], spec)


# --------------------------------------------------------------------------- oneDNN convolutions
def _tiny_conv():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 6, generator=g)
    w = torch.randn(4, 3, 3, 3, generator=g)
    b = torch.randn(4, generator=g)
    return x, w, b


def _check_prepacked() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    x, w, b = _tiny_conv()
    with torch.no_grad():
        context = onednn_prepack(w, b, [1, 1], [1, 1], [1, 1], 1, list(x.shape))
        y = onednn_prepacked_conv(x, context)
        return torch.allclose(y, F.conv2d(x, w, b, 1, 1), rtol=1e-4, atol=1e-4)


def _check_fast() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    x, w, b = _tiny_conv()
    with torch.no_grad():
        packed = onednn_reorder_weight(w, [1, 1], [1, 1], [1, 1], 1, list(x.shape))
        y = onednn_conv_pointwise(x, packed, b, [1, 1], [1, 1], [1, 1], 1)
        return torch.allclose(y, F.conv2d(x, w, b, 1, 1), rtol=1e-4, atol=1e-4)


def onednn_prepacked_available() -> bool:
    """Whether oneDNN's prepacked convolution context (``torch.ops.mkldnn_prepacked``) works here."""
    return _probe("prepacked", _check_prepacked)


def onednn_fast_available() -> bool:
    """Whether oneDNN's inference convolution on a reordered weight (``torch.ops.mkldnn``) works here."""
    return _probe("fast", _check_fast)


def onednn_prepack(weight: Tensor, bias: Tensor | None, stride, padding, dilation, groups: int, input_size):
    """oneDNN's convolution context for this geometry and input size (the weight reordered as
    ``conv2d``'s own primitive wants it). Only where :func:`onednn_prepacked_available`."""
    return torch.ops.mkldnn_prepacked.conv2d_prepack(weight, bias, stride, padding, dilation, groups, input_size,
                                                     "none")


def onednn_prepacked_conv(x: Tensor, context) -> Tensor:
    """The convolution of ``x`` through a context from :func:`onednn_prepack`."""
    return torch.ops.mkldnn_prepacked.conv2d_run(x, context)


def onednn_reorder_weight(weight: Tensor, padding, stride, dilation, groups: int, input_size) -> Tensor:
    """``weight`` in the blocked layout oneDNN's inference convolution picks. Only where
    :func:`onednn_fast_available`."""
    return torch.ops.mkldnn._reorder_convolution_weight(weight, padding, stride, dilation, groups, input_size)


def onednn_conv_pointwise(x: Tensor, packed: Tensor, bias: Tensor | None, padding, stride, dilation,
                          groups: int) -> Tensor:
    """oneDNN's inference convolution on a weight from :func:`onednn_reorder_weight`."""
    return torch.ops.mkldnn._convolution_pointwise(x, packed, bias, padding, stride, dilation, groups, "none",
                                                   [], "")


def fp32_precision_default() -> bool:
    """Whether float32 CPU convolutions run at full float32 precision (oneDNN's
    ``fp32_precision`` is ``"none"`` or ``"ieee"``). Where that setting cannot be read, the
    public ``torch.get_float32_matmul_precision() == "highest"`` answers (under
    ``TNNSPEC_PUBLIC_TORCH_ONLY`` too)."""
    if not public_only():
        conv = getattr(torch.backends.mkldnn, "conv", None)
        precision = getattr(conv, "fp32_precision", None)
        if isinstance(precision, str):
            return precision in ("none", "ieee")
    return torch.get_float32_matmul_precision() == "highest"


def conv2d_forward(conv: nn.Conv2d, x: Tensor, weight: Tensor, bias: Tensor | None, stride=None) -> Tensor:
    """What ``nn.Conv2d``'s (private) ``_conv_forward`` computes, from public calls: ``conv``'s
    geometry and padding mode with the given weights (and ``stride``, default ``conv.stride``)."""
    stride = conv.stride if stride is None else tuple(stride)
    if conv.padding_mode == "zeros":
        return F.conv2d(x, weight, bias, stride, conv.padding, conv.dilation, conv.groups)
    return F.conv2d(F.pad(x, _reversed_padding(conv), mode=conv.padding_mode), weight, bias, stride, 0,
                    conv.dilation, conv.groups)


def _reversed_padding(conv: nn.Conv2d) -> list[int]:
    """F.pad's (left, right, top, bottom) for ``conv.padding`` (as ``nn.Conv2d`` computes it)."""
    pads: list[int] = []
    for i in reversed(range(len(conv.kernel_size))):
        if conv.padding == "valid":
            pads += [0, 0]
        elif conv.padding == "same":
            total = conv.dilation[i] * (conv.kernel_size[i] - 1)
            pads += [total // 2, total - total // 2]
        else:
            pads += [conv.padding[i], conv.padding[i]]
    return pads


__all__ = [
    "ENV", "public_only", "pinned", "hook_registries_available", "global_hooks_registered", "module_hooked",
    "hooked", "forward_hooked", "children_dict", "batchnorm_types", "version_counter",
    "version_counters_available", "pytree_available", "tree_flatten", "tree_unflatten", "tree_map",
    "onednn_prepacked_available", "onednn_fast_available", "onednn_prepack", "onednn_prepacked_conv",
    "onednn_reorder_weight", "onednn_conv_pointwise", "fp32_precision_default", "conv2d_forward",
]
