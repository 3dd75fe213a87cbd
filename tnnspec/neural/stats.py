"""Statistics for comparing model predictions with neural recordings, one time bin at a time.

Plain NumPy (float64) throughout. Conventions follow Brain-Score's neural predictivity
(Schrimpf et al. 2018) as used by the ConvRNN papers (Nayebi et al. 2018, 2022):

* a neuron's score is the Pearson r between its cross-validated prediction and its trial-averaged
  response across stimuli (:func:`pearson_columns`);
* its reliability is the Spearman–Brown-corrected split-half correlation of its trial-averaged
  responses (:func:`split_half_reliability`);
* a region's score in a bin is ``median_n r_n / median_n reliability_n`` with a percentile
  bootstrap interval over neurons (:func:`ceiled_score`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from .errors import NeuralDataError

__all__ = ["pearson_columns", "spearman_brown", "split_half_reliability", "ceiling_r", "ceiled_score"]


def pearson_columns(a, b) -> np.ndarray:
    """Pearson r between matching columns of ``a`` and ``b`` (both ``[m, n]``; 1-D means one column).

    ``r_j = Σ_i (a_ij − ā_j)(b_ij − b̄_j) / sqrt(Σ_i (a_ij − ā_j)² · Σ_i (b_ij − b̄_j)²)``, in
    float64, clipped to [−1, 1]. A column that is constant (exactly equal values) in ``a`` or in
    ``b`` has no defined correlation and gives NaN, silently (no RuntimeWarning). Returns ``[n]``.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if b.ndim == 1:
        b = b[:, None]
    if a.shape != b.shape or a.ndim != 2:
        raise NeuralDataError(f"pearson_columns needs two [m, n] arrays of one shape, got {a.shape} and {b.shape}")
    ac, bc = a - a.mean(axis=0), b - b.mean(axis=0)
    num = np.einsum("ij,ij->j", ac, bc)
    den = np.sqrt(np.einsum("ij,ij->j", ac, ac) * np.einsum("ij,ij->j", bc, bc))
    constant = (np.ptp(a, axis=0) == 0) | (np.ptp(b, axis=0) == 0) | (den == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.clip(num / den, -1.0, 1.0)
    r[constant] = np.nan
    return r


def spearman_brown(r, factor: float = 2.0):
    """Spearman–Brown prophecy: ``factor·r / (1 + (factor − 1)·r)``, element-wise.

    With ``factor = 2`` it turns the correlation between two halves of the data into the
    reliability of the whole. Negative r are passed through the formula as they are (as Brain-Score
    does); a zero denominator gives ±inf or NaN without a warning.
    """
    r = np.asarray(r, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return factor * r / (1.0 + (factor - 1.0) * r)


def split_half_reliability(trials: Sequence[np.ndarray], *, n_splits: int = 10, seed: int = 0) -> np.ndarray:
    """Split-half reliability per neuron and time bin, Spearman–Brown corrected. Returns ``[N, B]``.

    ``trials``: one array ``[R_s, N, B]`` per stimulus ``s`` (repetitions × neurons × time bins);
    ``R_s`` may differ between stimuli but must be at least 2.

    For each of ``n_splits`` random splits: the repetitions of every stimulus are permuted at random
    and cut into two halves of ``floor(R_s/2)`` and ``ceil(R_s/2)`` repetitions; each half is
    averaged, giving ``h1, h2 [S, N, B]``; ``r = pearson(h1, h2)`` across stimuli for each neuron and
    bin; the split's value is ``spearman_brown(r, 2) = 2r / (1 + r)``. The result is the **mean of
    the corrected r over the n_splits splits** (deterministic given ``seed``; one
    ``numpy.random.default_rng(seed)`` draws the permutations, split by split, stimulus by stimulus).

    The correlation of two half-data means, corrected to the full number of repetitions, estimates
    the reliability of the full-data trial-averaged response: ``σ_s² / (σ_s² + σ_n²/R)`` for signal
    variance ``σ_s²`` across stimuli and trial noise ``σ_n²``. Brain-Score uses it as the noise
    ceiling of the Pearson r between a model prediction and the full-data mean (see
    :func:`ceiling_r`). A neuron/bin whose half-means are constant across stimuli gives NaN.
    """
    if len(trials) < 3:
        raise NeuralDataError(f"split-half reliability needs at least 3 stimuli, got {len(trials)}")
    if n_splits < 1:
        raise NeuralDataError(f"n_splits must be at least 1, got {n_splits}")
    arrays = [np.asarray(t, dtype=np.float64) for t in trials]
    shape = arrays[0].shape[1:]
    for s, t in enumerate(arrays):
        if t.ndim != 3 or t.shape[1:] != shape:
            raise NeuralDataError(f"stimulus {s}: trials must be [repetitions, neurons, bins] with the same "
                                  f"neurons and bins as stimulus 0 {shape}, got shape {t.shape}")
        if t.shape[0] < 2:
            raise NeuralDataError(f"stimulus {s} has {t.shape[0]} repetition(s); "
                                  "split-half reliability needs at least 2")
    rng = np.random.default_rng(seed)
    S = len(arrays)
    total = np.zeros(shape)
    h1, h2 = np.empty((S, *shape)), np.empty((S, *shape))
    for _ in range(n_splits):
        for s, t in enumerate(arrays):
            perm = rng.permutation(t.shape[0])
            half = t.shape[0] // 2
            h1[s], h2[s] = t[perm[:half]].mean(axis=0), t[perm[half:]].mean(axis=0)
        r = pearson_columns(h1.reshape(S, -1), h2.reshape(S, -1)).reshape(shape)
        total += spearman_brown(r, 2.0)
    return total / n_splits


CONVENTIONS = ("sqrt", "brainscore")


def ceiling_r(reliability, convention: str = "sqrt") -> float:
    """The ceiling of a region's median r, from the neurons' reliabilities
    (:func:`split_half_reliability`, the Spearman–Brown-corrected split-half consistency ρ).

    * ``"sqrt"`` (default): ``sqrt(median_n ρ_n)``. A noise-free perfect prediction correlates
      with the noisy trial average at ``sqrt(ρ)`` in expectation, so a perfect model scores 1
      and scores above 1 are noise.
    * ``"brainscore"``: ``median_n ρ_n`` — Brain-Score's convention, which ceils r by the
      correlation between two independent sets of trials; a noise-free perfect model then scores
      ``1 / sqrt(ρ)`` > 1. Use it to compare with published Brain-Score numbers.

    NaN reliabilities (neurons with no variance across stimuli) are ignored (``nanmedian``); a
    median ≤ 0 gives that median (not > 0: the data cannot ceil).
    """
    if convention not in CONVENTIONS:
        raise NeuralDataError(f"ceiling convention must be one of {CONVENTIONS}, got {convention!r}")
    rel = np.asarray(reliability, dtype=np.float64).ravel()
    if rel.size == 0 or np.all(np.isnan(rel)):
        return float("nan")
    med = float(np.nanmedian(rel))
    return med if convention == "brainscore" or med <= 0 else float(np.sqrt(med))


MIN_RELIABILITY = 0.1


def ceiled_score(r, reliability, *, n_boot: int = 1000, seed: int = 0, ci: float = 0.95,
                 convention: str = "sqrt", min_reliability: float = MIN_RELIABILITY) -> dict:
    """Ceiled neural predictivity of one region in one time bin, with a bootstrap interval.

    ``r`` and ``reliability`` are ``[N]`` per neuron. Returns a dict:

    * ``raw`` = ``median_n r_n``; NaN r (a constant prediction, see :func:`pearson_columns`) count
      as r = 0 — a model that predicts nothing scores 0;
    * ``ceiling`` = :func:`ceiling_r` (``sqrt(nanmedian_n reliability_n)``, or Brain-Score's
      ``nanmedian_n reliability_n`` with ``convention="brainscore"``);
    * ``ceiled`` = ``raw / ceiling``; NaN, with a ``note`` saying why, when the median
      reliability is below ``min_reliability`` (default 0.1: e.g. bins before the response
      latency, where the data are noise and the ceiling's estimate is noise too);
    * ``low``, ``high``: percentile bootstrap interval at level ``ci`` over neurons — ``n_boot``
      resamples of N neuron indices drawn with replacement (one index matrix ``[n_boot, N]`` from
      ``numpy.random.default_rng(seed)``; deterministic given ``seed``), each giving
      ``median r / ceiling`` on the same resampled neurons; resamples whose ceiling
      is <= 0 are dropped;
    * ``n_neurons`` = N.
    """
    r = np.asarray(r, dtype=np.float64).ravel()
    rel = np.asarray(reliability, dtype=np.float64).ravel()
    if r.shape != rel.shape or r.size == 0:
        raise NeuralDataError(f"r and reliability must be non-empty and of one length, got {r.size} and {rel.size}")
    if not 0 < ci < 1:
        raise NeuralDataError(f"ci must lie in (0, 1), got {ci}")
    r = np.nan_to_num(r, nan=0.0)
    raw, ceiling = float(np.median(r)), ceiling_r(rel, convention)
    out = {"raw": raw, "ceiling": ceiling, "ceiled": float("nan"), "low": float("nan"), "high": float("nan"),
           "n_neurons": int(r.size)}
    median_rel = ceiling_r(rel, "brainscore")
    if not ceiling > 0 or not median_rel >= min_reliability:
        out["note"] = (f"median reliability {median_rel:.3g} is below {min_reliability:g}: "
                       "the data are too noisy to ceil")
        return out
    out["ceiled"] = raw / ceiling
    idx = np.random.default_rng(seed).integers(0, r.size, size=(n_boot, r.size))
    with np.errstate(divide="ignore", invalid="ignore"), _quiet_nan():
        boot_ceil = np.nanmedian(rel[idx], axis=1)
        if convention == "sqrt":
            boot_ceil = np.sqrt(np.clip(boot_ceil, 0.0, None))
        boot = np.median(r[idx], axis=1) / boot_ceil
    boot = boot[boot_ceil > 0]
    if boot.size:
        out["low"], out["high"] = (float(v) for v in np.percentile(boot, [50 * (1 - ci), 50 * (1 + ci)]))
    return out


@contextmanager
def _quiet_nan():
    """Silence numpy's 'All-NaN slice' RuntimeWarning (a resample made only of NaN-reliability neurons)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield
