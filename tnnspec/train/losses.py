"""Losses over time and temporal decoders for readouts of shape ``[T, B, K]``.

Training: :func:`temporal_cross_entropy` is ``sum_t w_t * CE(logits_t, labels)`` with weights
from :func:`time_weights` (the ``training.loss`` section: all steps, the last one, or the last
k, times ``gamma ** (T - 1 - t)`` as in Feedback Networks; normalised to sum 1).

Logits or log-probabilities: some readouts end in ``log_softmax`` (e.g. BLT's
``log(clip(softmax))``). Everything here applies ``softmax``/``log_softmax`` to what it is
given, and ``log_softmax`` is idempotent (``log_softmax(log_softmax(z)) == log_softmax(z)``),
so on log-probabilities the cross-entropy equals the NLL loss and the decoders see the same
probabilities. (A clipped ``log(clip(softmax, 1e-10, 1))`` differs only where p < 1e-10.)

Evaluation: :func:`decode` turns a run into one prediction per image and the step it was
made at — ``last`` (step T−1), ``mean`` (mean softmax over steps), ``max_confidence`` (the
most confident step) or ``threshold`` (the first step whose top probability ≥ θ, else the
last; a speed–accuracy trade-off as in Spoerer et al. 2020). :func:`accuracy_per_step` and
:func:`solve_times` (first step from which the prediction is correct and stays correct)
describe the time course.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["time_weights", "temporal_cross_entropy", "decode", "DECODERS", "accuracy_per_step", "solve_times"]

DECODERS = ("last", "mean", "max_confidence", "threshold")


def _get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def time_weights(steps: int, cfg: Any = None) -> torch.Tensor:
    """Loss weights ``[T]`` (float32, >= 0, sum 1) for a ``LossOverTime`` (or a dict with
    ``steps``, ``k``, ``gamma``; None: all steps, gamma 1).

    ``all``: every step; ``last``: step T−1; ``last_k``: the last ``min(k, T)`` steps. Over the
    chosen steps ``w_t ∝ gamma ** (T − 1 − t)`` (gamma < 1 favours late steps)."""
    T = int(steps)
    if T < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    mode = _get(cfg, "steps", "all")
    k = int(_get(cfg, "k", 1))
    gamma = float(_get(cfg, "gamma", 1.0))
    if gamma <= 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    if mode == "all":
        first = 0
    elif mode == "last":
        first = T - 1
    elif mode == "last_k":
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        first = max(0, T - k)
    else:
        raise ValueError(f"unknown loss steps {mode!r}; expected all, last or last_k")
    t = torch.arange(T, dtype=torch.float64)
    w = torch.where(t >= first, gamma ** (T - 1 - t), torch.zeros_like(t))
    return (w / w.sum()).float()


def _check_logits(logits: torch.Tensor) -> None:
    if logits.ndim != 3:
        raise ValueError(f"logits must have shape [T, B, K], got {list(logits.shape)}")


def temporal_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t * CE(logits[t], labels)``, each CE a mean over the batch (a scalar).

    ``logits [T, B, K]`` (or log-probabilities), ``labels [B]``, ``weights [T]``. Steps with
    weight 0 are not evaluated (their values may be anything, even non-finite)."""
    _check_logits(logits)
    T, B, K = logits.shape
    weights = torch.as_tensor(weights, dtype=logits.dtype, device=logits.device)
    if weights.shape != (T,):
        raise ValueError(f"weights must have shape [{T}], got {list(weights.shape)}")
    steps = torch.nonzero(weights != 0).flatten()
    if len(steps) == 0:
        return logits.sum() * 0.0
    chosen = logits.index_select(0, steps)
    ce = F.cross_entropy(chosen.reshape(-1, K), labels.to(logits.device).repeat(len(steps)), reduction="none")
    return (ce.view(len(steps), B).mean(1) * weights[steps]).sum()


def decode(logits: torch.Tensor, method: str = "last", threshold: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """One prediction per image from a run: ``(pred [B] int64, step [B] int64)``.

    * ``last``: argmax at step T−1 (step T−1);
    * ``mean``: argmax of the softmax averaged over steps (step T−1);
    * ``max_confidence``: the step whose top softmax probability is highest (the first such),
      and its argmax;
    * ``threshold``: the first step whose top probability is ``>= threshold``, else the last
      step, and its argmax."""
    _check_logits(logits)
    T, B, _ = logits.shape
    probs = torch.softmax(logits.detach().float(), dim=-1)
    last = torch.full((B,), T - 1, dtype=torch.long, device=logits.device)
    if method == "last":
        return probs[-1].argmax(-1), last
    if method == "mean":
        return probs.mean(0).argmax(-1), last
    conf, arg = probs.max(-1)                                            # [T, B]
    if method == "max_confidence":
        step = conf.argmax(0)                                            # first maximum
    elif method == "threshold":
        hit = conf >= threshold
        first = hit.to(torch.uint8).argmax(0)                            # first True (0 if none)
        step = torch.where(hit.any(0), first, last)
    else:
        raise ValueError(f"unknown decoder {method!r}; expected one of {DECODERS}")
    return arg.gather(0, step[None]).squeeze(0), step


def accuracy_per_step(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Fraction of correct argmax predictions at each step: ``[T]`` float32."""
    _check_logits(logits)
    return (logits.detach().argmax(-1) == labels.to(logits.device)[None]).float().mean(1)


def solve_times(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per image ``[B]`` int64: the first step t such that the argmax prediction is correct at
    every step >= t; −1 if it is wrong at the last step. ``logits`` are ``[T, B, C]`` logits, or
    ``[T, B]`` integer predictions (the decoded classes, when the logits were not kept)."""
    if logits.dim() == 2 and not logits.is_floating_point():
        pred = logits
    else:
        _check_logits(logits)
        pred = logits.detach().argmax(-1)
    T = pred.shape[0]
    correct = (pred.long() == labels.to(pred.device).long()[None]).long()               # [T, B]
    trailing = correct.flip(0).cumprod(0).sum(0)                                       # correct run at the end
    return torch.where(trailing > 0, T - trailing, torch.full_like(trailing, -1))
