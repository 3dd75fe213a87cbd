"""Values derived from weights (packed conv weights, folded BatchNorm) kept across calls, and
the rule that keeps them true. Nothing else is kept from one call to the next.

A kept value is used while the tensors it was derived from are unchanged. Two checks decide:

- at every call, the tensors' identity, version counter and storage address — cheap, and they
  catch optimiser steps, in-place edits under ``no_grad``, ``load_state_dict`` and ``.to()``
  (where :mod:`~tnnspec.compile.torch_compat` cannot read version counters, the value check
  below runs at every call instead);
- once per forward pass of a :class:`~tnnspec.compile.network.Network` (a *session*), and at
  every call made outside one, their values against a copy taken when the value was derived.
  An edit through ``.data`` — the usual way to lesion a weight — bumps no version counter and
  can keep the storage, so only the values show it.

The copy costs one more float per weight element; the value check one read of weight and copy
per forward, less than the oneDNN weight reorder it saves (2048×2048×3×3: 28 ms against 76 ms,
2-core CPU). The check compares bits (:func:`same_bits`): a weight unchanged bit for bit gives
the same derived values, also where it holds a NaN (never equal to itself as a value) or where
an edit only flips the sign of a zero. Tensors that tnnspec derived itself (:func:`mark_derived`,
e.g. a folded weight) cannot be edited by a user and skip the value check.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from contextlib import contextmanager
from typing import Sequence

import torch
from torch import Tensor

from . import torch_compat

_sessions = itertools.count(1)
_local = threading.local()
_DERIVED = "_tnnspec_derived"
# owner (a module) -> name -> holder dict. Kept values live here, not on the modules, so that
# copy.deepcopy and pickling of a network never see them (oneDNN contexts cannot be copied).
_STORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def store(owner, name: str) -> dict:
    """The holder dict ``name`` of ``owner`` (made empty on first use)."""
    return _STORES.setdefault(owner, {}).setdefault(name, {})


def stored(owner, name: str) -> bool:
    """Whether ``owner`` holds anything under ``name``."""
    return bool(_STORES.get(owner, {}).get(name))


def forget(owner) -> None:
    """Drop everything kept for ``owner``."""
    _STORES.pop(owner, None)


@contextmanager
def session():
    """One forward pass: within it, kept values are value-checked at most once each (every call
    where version counters cannot be read), and :func:`torch_compat.public_only` is fixed."""
    outer = getattr(_local, "session", None)
    _local.session = next(_sessions)
    try:
        with torch_compat.pinned():  # TNNSPEC_PUBLIC_TORCH_ONLY read once per pass
            yield
    finally:
        _local.session = outer


def current_session() -> int | None:
    return getattr(_local, "session", None)


def mark_derived(t: Tensor) -> Tensor:
    """Mark a tensor tnnspec computed (not user-editable): kept values derived from it skip the
    value check."""
    setattr(t, _DERIVED, True)
    return t


_BITS = {2: torch.int16, 4: torch.int32, 8: torch.int64}  # float size -> the integer of that size


def same_bits(a: Tensor, b: Tensor) -> bool:
    """Whether ``a`` and ``b`` hold the same bits: floats are compared as integers of their size
    (as fast as :func:`torch.equal` on their values)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.is_floating_point and a.element_size() in _BITS:  # any layout: same-size views keep strides
        return torch.equal(a.view(_BITS[a.element_size()]), b.view(_BITS[a.element_size()]))
    return torch.equal(a, b)


def _stamp(t: Tensor | None):
    if t is None:
        return None
    if t.is_inference():
        return (t.data_ptr(), t.dtype, t.device)
    return (torch_compat.version_counter(t), t.data_ptr(), t.dtype, t.device)  # None: not readable


class Kept:
    """What was derived from ``tensors`` (``self.values``, keyed freely), valid while
    :meth:`holds`. The tensors themselves are held weakly: a kept value never keeps a weight
    alive (weights passed per call, as ``torch.func.functional_call`` does, come and go)."""

    __slots__ = ("refs", "stamps", "copies", "checked", "values")

    def __init__(self, tensors: Sequence[Tensor | None]):
        self.refs = tuple(None if t is None else weakref.ref(t) for t in tensors)
        self.stamps = tuple(_stamp(t) for t in tensors)
        self.copies = tuple(None if t is None or getattr(t, _DERIVED, False) else t.detach().clone()
                            for t in tensors)
        self.checked = current_session()
        self.values: dict = {}

    def holds(self, tensors: Sequence[Tensor | None]) -> bool:
        """Whether ``tensors`` are the tensors the values were derived from, unchanged."""
        if len(tensors) != len(self.refs) or any(
                (r is None) != (t is None) or (r is not None and r() is not t) for r, t in zip(self.refs, tensors)):
            return False
        if any(_stamp(t) != s for t, s in zip(tensors, self.stamps)):
            return False
        now = current_session()
        if now is None or now != self.checked or not torch_compat.version_counters_available():
            if not all(c is None or same_bits(t, c) for t, c in zip(tensors, self.copies)):
                return False
            self.checked = now
        return True


def kept(holder: dict, key, tensors: Sequence[Tensor | None], limit: int = 16) -> Kept:
    """The :class:`Kept` under ``holder[key]`` for ``tensors``; a fresh one (no values) when the
    tensors changed. At most ``limit`` entries are kept per holder, and an entry goes when its
    first tensor is freed."""
    entry = holder.get(key)
    if entry is None or not entry.holds(tensors):
        if entry is None:
            if len(holder) >= limit:
                holder.clear()
            if tensors and tensors[0] is not None:
                weakref.finalize(tensors[0], holder.pop, key, None)
        entry = holder[key] = Kept(tensors)
    return entry
