"""Training tnnspec networks: built-in occluded-digit data and losses over time.

:mod:`tnnspec.train.data` — datasets (``digits``, ``mnist5k``, your own via
``register_dataset``), digit-debris occlusion, train/val/test splits, presentation over time.
:mod:`tnnspec.train.losses` — loss weights over steps, temporal cross-entropy, temporal
decoders, accuracy per step and solve times.
:mod:`tnnspec.train.trainer` — ``train(spec, cfg, out_dir)``: checkpoints, exact resume, DDP.
:mod:`tnnspec.train.evaluate` — ``evaluate(net, spec, dataset)``: accuracy per step and level.
:mod:`tnnspec.train.learning_rules` — how a loss becomes updates: backprop, truncated BPTT, feedback
alignment, sign symmetry, Kolen-Pollack, direct feedback alignment (docs/learning_rules.md).
"""

from __future__ import annotations

from .data import (
    COVERAGE_TOLERANCE,
    DATASETS,
    INK_THRESHOLD,
    OccludedDigits,
    load_images,
    moving_sequence,
    present,
    register_dataset,
    split_indices,
    tensors_from_dataset,
)
from .losses import DECODERS, accuracy_per_step, decode, solve_times, temporal_cross_entropy, time_weights
from .evaluate import evaluate  # noqa: E402  (uses data and losses)
from .trainer import TrainError, train  # noqa: E402

__all__ = [
    "DATASETS", "register_dataset", "load_images", "tensors_from_dataset", "split_indices",
    "OccludedDigits", "present", "moving_sequence", "INK_THRESHOLD", "COVERAGE_TOLERANCE",
    "time_weights", "temporal_cross_entropy", "decode", "DECODERS", "accuracy_per_step", "solve_times",
    "train", "evaluate", "TrainError",
]
