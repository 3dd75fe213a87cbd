"""Comparing tnnspec models with neural recordings over time (docs/neural.md).

Submodules (imported on first use; none is needed to validate, compile or train a graph):

* :mod:`tnnspec.neural.recordings` — recordings as xarray DataArrays (presentation × neuroid ×
  time_bin, Brain-Score's layout), netCDF / ``.npz`` load and save, checks naming the file.
* :mod:`tnnspec.neural.nwb` — spike times in NWB files counted in time bins (extra ``[nwb]``).
* :mod:`tnnspec.neural.stimuli` — images from a folder or an ``.npz``, matched to the recordings.
* :mod:`tnnspec.neural.timemap` — model steps to recording bins (latency, overlap weights).
* :mod:`tnnspec.neural.activations` — an area's activity over steps for a set of images.
* :mod:`tnnspec.neural.stats` — Pearson r per neuron, split-half reliability with
  Spearman–Brown, ceiled scores with bootstrap intervals.
* :mod:`tnnspec.neural.regression` — cross-validated ridge (himalaya) or PLS (scikit-learn),
  optionally after PCA fitted on training images only.
* :mod:`tnnspec.neural.score` — mapping per time bin (``tnnspec fit --mode mapping``).
* :mod:`tnnspec.neural.dynamics` — fitting the network's dynamics (``--mode dynamics``).
* :mod:`tnnspec.neural.fit` — the run folder: scores, predictions, metrics, report.
* :mod:`tnnspec.neural.report` — plots and ``report.md``; ``compare`` for several runs.
* :mod:`tnnspec.neural.synthetic` — a teacher network "recorded" with a known answer.
* :mod:`tnnspec.neural.brainscore` — a compiled model behind Brain-Score's BrainModel calls.
"""

from __future__ import annotations

from .errors import NeuralDataError

__all__ = ["NeuralDataError"]
