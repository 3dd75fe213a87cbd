"""The optional ``neural:`` section of a spec file: how the graph is compared with recordings.

Plain data (no torch): :mod:`tnnspec.neural` reads it; ``tnnspec fit`` options override it.

.. code-block:: yaml

    neural:
      regions:                      # recorded region -> the graph's area that models it
        V4: {area: V4, latency_ms: 40}
        IT: {area: IT, latency_ms: [30, 40, 50, 60]}   # several: chosen by cross-validation
      bins: {start_ms: 0, stop_ms: 250, width_ms: 10}  # for NWB spike counts and the report
      mapping: {method: ridge, pca: 200, folds: 5}
      dynamics: {train: [lateral, feedback], epochs: 30}

Time mapping (docs/neural.md): model step ``t`` covers ``[t*dt, (t+1)*dt)`` ms after
``latency_ms``; a recording bin averages the steps it overlaps, weighted by the overlap.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Region(_Strict):
    """A recorded region and the area of the graph that models it."""

    area: str = Field(..., description="the graph's area whose output is compared with this region")
    latency_ms: float | list[float] = Field(0.0, description=(
        "ms from stimulus onset to the model's step 0 for this region; a list of candidates is "
        "chosen from by cross-validated score"))

    @model_validator(mode="after")
    def _latencies(self) -> "Region":
        values = self.latency_ms if isinstance(self.latency_ms, list) else [self.latency_ms]
        if not values:
            raise ValueError("latency_ms: give one value or a non-empty list of candidates")
        if any(v < 0 for v in values):
            raise ValueError(f"latency_ms must be >= 0, got {values}")
        return self

    @property
    def latencies(self) -> list[float]:
        return list(self.latency_ms) if isinstance(self.latency_ms, list) else [float(self.latency_ms)]


class Bins(_Strict):
    """Equal time bins ``[start_ms + k*width_ms, start_ms + (k+1)*width_ms)`` up to ``stop_ms``."""

    start_ms: float = Field(0.0, description="start of the first bin, ms after stimulus onset")
    stop_ms: float = Field(250.0, description="end of the last bin")
    width_ms: float = Field(10.0, gt=0, description="bin width")

    @model_validator(mode="after")
    def _grid(self) -> "Bins":
        n = (self.stop_ms - self.start_ms) / self.width_ms
        if n < 1 - 1e-9 or abs(n - round(n)) > 1e-6:
            raise ValueError(f"stop_ms - start_ms ({self.stop_ms - self.start_ms:g}) must be a positive "
                             f"multiple of width_ms ({self.width_ms:g})")
        return self


class Mapping(_Strict):
    """Per-time-bin linear mapping from an area's activations to the neurons of a region."""

    method: Literal["ridge", "pls"] = Field("ridge", description=(
        "ridge: himalaya, a penalty per neuron chosen by inner cross-validation; pls: scikit-learn PLS"))
    pca: int | None = Field(None, ge=1, description="reduce activations to this many components (fitted on training images only)")
    folds: int = Field(5, ge=2, description="cross-validation folds over images")
    pls_components: int = Field(25, ge=1, description="PLS components")
    bootstrap: int = Field(1000, ge=0, description="bootstrap resamples of neurons for the intervals")
    seed: int = Field(0, description="seed for folds, splits and the bootstrap")


class Dynamics(_Strict):
    """Fitting the network's dynamics to the recordings directly."""

    train: Literal["all"] | list[str] = Field("all", description=(
        "weights to fit besides the per-neuron readouts: 'all', or a list of edge types "
        "(lateral, feedback, ...) and edge names; areas' cells are trained only with 'all'"))
    init: Literal["he_normal", "network"] = Field("he_normal", description=(
        "fresh weights: he_normal (N(0, 2/fan_in), zero biases) or the network's own initialisation; "
        "ignored when weights are loaded with --checkpoint"))
    epochs: int = Field(30, ge=1, description="passes over the training images")
    batch_size: int = Field(32, ge=1, description="images per step")
    lr: float = Field(3e-3, gt=0, description="learning rate (Adam)")
    weight_decay: float = Field(0.0, ge=0, description="weight decay")
    task_weight: float = Field(0.0, ge=0, description=(
        "weight of the spec's classification loss mixed into the neural loss (needs labelled stimuli)"))
    heldout_neurons: float = Field(0.25, ge=0, lt=1, description=(
        "fraction of each region's neurons left out of the fit, mapped afterwards by linear regression"))
    heldout_images: float = Field(0.25, gt=0, lt=1, description="fraction of images left out of the fit")
    seed: int = Field(0, description="seed for splits and initial readout weights")


class Neural(_Strict):
    """How to compare the graph with neural recordings (``tnnspec fit``)."""

    regions: dict[str, Region] = Field(default_factory=dict, description="recorded region -> model area")
    bins: Bins = Field(default_factory=Bins, description="time bins (NWB binning, and the default fit window)")
    mapping: Mapping = Field(default_factory=Mapping, description="per-bin linear mapping settings")
    dynamics: Dynamics = Field(default_factory=Dynamics, description="dynamics fitting settings")
