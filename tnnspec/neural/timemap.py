"""Model steps to recording time bins (docs/neural.md).

Model step ``t`` covers ``[latency + t*dt, latency + (t+1)*dt)`` ms after stimulus onset, where
``dt`` is the spec's ``time.dt_ms`` and ``latency`` the region's ``latency_ms``. A recording bin
``[start, end)`` is the average of the steps it overlaps, each weighted by the overlap:

    f_bin = sum_t  |[start, end) ∩ step t| / (end - start) * f_t

so a bin wider than ``dt`` averages the steps inside it and a bin narrower than ``dt`` takes the
value of the step that covers it. The part of a bin before the model's step 0 (before the
latency) sees the model at rest: its areas' output is zero there (no input has reached them).
A bin that reaches past the last unrolled step is an error, never a silent truncation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import NeuralDataError

TOLERANCE_MS = 1e-9


@dataclass(frozen=True)
class TimeMap:
    """The mapping of ``steps`` model steps of ``dt_ms`` onto ``bins`` ([B, 2], ms) for one
    region with ``latency_ms``."""

    dt_ms: float
    bins: np.ndarray
    latency_ms: float = 0.0

    def __post_init__(self):
        b = np.asarray(self.bins, dtype=np.float64).reshape(-1, 2)
        object.__setattr__(self, "bins", b)

    def steps_needed(self) -> int:
        """The fewest steps whose unroll covers every bin."""
        end = float(self.bins[:, 1].max()) - self.latency_ms
        return max(1, math.ceil(end / self.dt_ms - TOLERANCE_MS))

    def weights(self, steps: int) -> np.ndarray:
        """``W`` [B, steps]: ``W[b, t]`` is the fraction of bin ``b`` covered by step ``t``; a row
        sums to 1 minus the fraction of the bin before the model's step 0. Raises
        :class:`NeuralDataError` when the bins reach past ``steps``."""
        need = self.steps_needed()
        if steps < need:
            covered = self.latency_ms + steps * self.dt_ms
            raise NeuralDataError(
                f"the bins reach {self.bins[:, 1].max():g} ms, but {steps} steps of {self.dt_ms:g} ms after a "
                f"latency of {self.latency_ms:g} ms cover only up to {covered:g} ms: unroll at least {need} steps "
                "(--steps) or drop the late bins")
        edges = self.latency_ms + self.dt_ms * np.arange(steps + 1)
        lo = np.maximum(self.bins[:, :1], edges[None, :-1])
        hi = np.minimum(self.bins[:, 1:], edges[None, 1:])
        width = self.bins[:, 1:] - self.bins[:, :1]
        return np.clip(hi - lo, 0.0, None) / width

    def before_onset(self) -> np.ndarray:
        """[B] the fraction of each bin before the model's step 0 (the model at rest)."""
        width = self.bins[:, 1] - self.bins[:, 0]
        return np.clip(np.minimum(self.bins[:, 1], self.latency_ms) - self.bins[:, 0], 0.0, None) / width

    def describe(self, steps: int | None = None) -> list[str]:
        """One line per bin: which steps it averages (for ``tnnspec summary`` and reports)."""
        steps = self.steps_needed() if steps is None else steps
        w = self.weights(steps)
        rest = self.before_onset()
        lines = []
        for b, (s, e) in enumerate(self.bins):
            parts = [f"t{t}" + ("" if abs(w[b, t] - 1) < 1e-9 else f"×{w[b, t]:.2f}")
                     for t in np.flatnonzero(w[b] > 1e-12)]
            if rest[b] > 1e-12:
                parts.insert(0, "rest" + ("" if abs(rest[b] - 1) < 1e-9 else f"×{rest[b]:.2f}"))
            lines.append(f"[{s:g}, {e:g}) ms: {' + '.join(parts)}")
        return lines


def equal_bins(start_ms: float, stop_ms: float, width_ms: float) -> np.ndarray:
    """[B, 2] bins of ``width_ms`` from ``start_ms`` to ``stop_ms``."""
    n = round((stop_ms - start_ms) / width_ms)
    starts = start_ms + width_ms * np.arange(n)
    return np.stack([starts, starts + width_ms], axis=1)


def bin_activity(activity: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Activity [T, S, D] of the steps to bins [B, S, D] with ``weights`` [B, T]."""
    if activity.shape[0] < weights.shape[1]:
        raise NeuralDataError(f"the activity holds {activity.shape[0]} steps; the time map needs {weights.shape[1]}")
    w = weights.astype(activity.dtype, copy=False)
    return np.einsum("bt,tsd->bsd", w, activity[: weights.shape[1]], optimize=True)
