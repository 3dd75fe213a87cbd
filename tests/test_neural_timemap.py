"""The time mapping of model steps onto recording bins (tnnspec/neural/timemap.py), checked
against an independent computation by brute-force sampling of time, and by impulse responses."""

from __future__ import annotations

import numpy as np
import pytest

from tnnspec.neural.errors import NeuralDataError
from tnnspec.neural.timemap import TimeMap, bin_activity, equal_bins


def _sampled(dt, bins, latency, steps, per_ms=1000):
    """W[b, t] by sampling each bin at `per_ms` points per ms (midpoints): the fraction of the
    samples that fall into step t (t*dt <= time - latency < (t+1)*dt)."""
    out = np.zeros((len(bins), steps))
    for b, (s, e) in enumerate(bins):
        n = int(round((e - s) * per_ms))
        times = s + (np.arange(n) + 0.5) / per_ms - latency
        step = np.floor(times / dt).astype(int)
        for t in range(steps):
            out[b, t] = np.mean(step == t)
    return out


@pytest.mark.parametrize("dt,width,latency", [(10, 10, 0), (10, 20, 15), (10, 5, 40), (7, 10, 3), (10, 25, 62.5)])
def test_weights_equal_sampled_overlaps(dt, width, latency):
    bins = equal_bins(0, 200, width)
    tm = TimeMap(dt, bins, latency)
    steps = tm.steps_needed()
    w = tm.weights(steps)
    np.testing.assert_allclose(w, _sampled(dt, bins, latency, steps), atol=2e-3)
    # rows sum to 1 minus the part before the model's step 0
    np.testing.assert_allclose(w.sum(axis=1) + tm.before_onset(), 1.0, atol=1e-12)


def test_impulse_at_step_t_appears_in_the_bins_covering_it():
    dt, latency = 10.0, 30.0
    bins = equal_bins(0, 120, 20)
    tm = TimeMap(dt, bins, latency)
    steps = tm.steps_needed()
    assert steps == 9  # (120 - 30) / 10
    for t in range(steps):
        activity = np.zeros((steps, 1, 1))
        activity[t] = 1.0
        binned = bin_activity(activity, tm.weights(steps))[:, 0, 0]
        start = latency + t * dt  # the step covers [start, start + dt)
        expected = np.array([max(0.0, min(e, start + dt) - max(s, start)) / (e - s) for s, e in bins])
        np.testing.assert_allclose(binned, expected, atol=1e-12)
        assert binned[: int(latency // 20)].sum() == 0  # nothing before the latency


def test_a_grid_that_does_not_cover_the_bins_is_an_error():
    tm = TimeMap(10, equal_bins(0, 250, 10), 40)
    assert tm.steps_needed() == 21
    tm.weights(21)
    with pytest.raises(NeuralDataError, match=r"cover only up to 240 ms: unroll at least 21 steps"):
        tm.weights(20)


def test_describe_names_the_steps_of_each_bin():
    lines = TimeMap(10, equal_bins(0, 40, 20), 15).describe()
    assert lines == ["[0, 20) ms: rest×0.75 + t0×0.25", "[20, 40) ms: t0×0.25 + t1×0.50 + t2×0.25"]
