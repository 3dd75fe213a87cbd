"""Float64 NumPy references of the plugin's cell and op, written from the docstring equations."""

from __future__ import annotations

import numpy as np


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Stride-1 conv with ``k // 2`` zero padding (odd kernels): ``x`` [N, C, H, W], ``w`` [O, C, k, k]."""
    k = w.shape[-1]
    p = k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    h, wd = x.shape[2:]
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + wd], w[:, :, i, j])
    return out if b is None else out + b[None, :, None, None]


def leaky_tanh(alpha: float, weights: dict, drives: list[np.ndarray]) -> list[np.ndarray]:
    """Outputs ``h_t`` for the drives ``x_0, x_1, ...`` from a zero state; ``weights`` holds
    ``input_conv.weight``, ``input_conv.bias`` (if any) and ``hidden_conv.weight``."""
    h = None
    out = []
    for x in drives:
        if h is None:
            h = np.zeros((x.shape[0], weights["hidden_conv.weight"].shape[0], *x.shape[2:]))
        pre = conv2d(x, weights["input_conv.weight"], weights.get("input_conv.bias")) \
            + conv2d(h, weights["hidden_conv.weight"])
        h = (1 - alpha) * h + alpha * np.tanh(pre)
        out.append(h)
    return out


def clip(x: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    return np.clip(x, -np.inf if low is None else low, np.inf if high is None else high)
