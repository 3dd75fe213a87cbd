"""Comparing two training checkpoints (shared by the resume and the kill tests)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from tnnspec.train import checkpoint as ckpt


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """The checkpoints in folders ``a`` and ``b`` hold bit-identical weights and optimiser
    state, at the same position."""
    ma, mb = ckpt.read_meta(a / ckpt.META), ckpt.read_meta(b / ckpt.META)
    assert ma["position"] == mb["position"]
    for fa, fb in ((a / ma["weights"], b / mb["weights"]),
                   (a / ma["optimizer"]["tensors"], b / mb["optimizer"]["tensors"])):
        ta, tb = load_file(str(fa)), load_file(str(fb))
        assert ta.keys() == tb.keys(), fa.name
        for k in ta:
            assert torch.equal(ta[k], tb[k]), (fa.name, k)  # bit-exact
