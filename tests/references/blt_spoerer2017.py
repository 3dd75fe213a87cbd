"""Reference B, BL, BT and BLT networks of Spoerer, McClure & Kriegeskorte (2017), paper-level.

Source
------
C. J. Spoerer, P. McClure, N. Kriegeskorte, "Recurrent Convolutional Neural Networks: A
Better Model of Biological Object Recognition", Front. Psychol. 8:1551 (2017),
doi:10.3389/fpsyg.2017.01551.  No official code exists (``/work/shared/reference/peers.md``
section 2.1); the first public code is cjspoerer/rcnn-sat (HEAD dc33c73), which implements
the later 2020 models, not these.  Everything below is re-stated from the paper's rule;
exact hyper-parameters are constructor arguments.

Update equations (``x^l_t`` = output of recurrent conv layer l at step t; l = 1, 2)
--------------------------------------------------------------------------------
``x^l_t = omega(ReLU(W^l_b * u^l_t + W^l_l * x^l_{t-1} + W^l_t *^T x^{l+1}_{t-1} + b_l))``

- ``u^1_t = I`` (the image); ``u^2_t = P_2(x^1_t)``: bottom-up is same-step.
- lateral (L) and top-down (T) terms are delayed one step and absent at t = 0; T enters
  layer 1 only, from layer 2's output through a stride-2 transposed convolution (layer 2
  lives at the pooled resolution, so the transposed conv upsamples by the pooling factor).
- ``omega`` is local response normalisation across channels (``nn.LocalResponseNorm``).
- readout: ``z_t = W_o . flatten(P_2(x^2_t)) + b_o`` at every step (raw logits; the paper
  used sigmoid outputs for multi-digit clutter and softmax for digit debris).
B drops L and T, BL drops T, BT drops L.  B-K (larger kernels) and B-F (more features),
the parameter-matched feed-forward controls, are ``B`` with other ``kernel_size``/``channels``.

Assumptions (paper-level, not code-sourced)
------------------------------------------
Defaults: 1 input channel, 32x32 images, 32 feature maps per layer, 3x3 kernels ('same'
padding), 2x2 max-pool with stride 2, 10 classes, ``times=4``.  Only the bottom-up conv has a
bias (the single ``b_l`` of the rule); lateral and top-down convs are bias-free.  The
transposed conv uses padding ``k // 2`` and output padding 1 so it exactly doubles the size.
LRN constants default to AlexNet's (size 5, alpha 1e-4, beta 0.75, k 2) in PyTorch's
convention (alpha is divided by size).  Which steps carry loss is left to the caller.

Parameter names: ``layer1.bottom_up.{weight,bias}``, ``layer1.lateral.weight``,
``layer1.top_down.weight``, ``layer2.bottom_up.{weight,bias}``, ``layer2.lateral.weight``,
``readout.{weight,bias}`` (absent connections have no keys).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class _RecurrentConvLayer(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int, lateral: bool,
                 top_down_from: int | None, pool: int) -> None:
        super().__init__()
        self.bottom_up = nn.Conv2d(c_in, c_out, k, padding=k // 2)
        self.lateral = nn.Conv2d(c_out, c_out, k, padding=k // 2, bias=False) if lateral else None
        self.top_down = (nn.ConvTranspose2d(top_down_from, c_out, k, stride=pool, padding=k // 2,
                                            output_padding=pool - 1, bias=False)
                         if top_down_from is not None else None)

    def forward(self, u: Tensor, prev: Tensor | None, above: Tensor | None) -> Tensor:
        """Pre-activation sum ``W_b*u + b [+ W_l*prev] [+ W_t*^T above]``."""
        z = self.bottom_up(u)
        if prev is not None and self.lateral is not None:
            z = z + self.lateral(prev)
        if above is not None and self.top_down is not None:
            z = z + self.top_down(above)
        return z


class SpoererRCNN(nn.Module):
    """Two recurrent conv layers + linear readout; ``forward`` returns per-step logits."""

    def __init__(self, lateral: bool, top_down: bool, times: int = 4, in_channels: int = 1,
                 image_size: int = 32, channels: int = 32, kernel_size: int = 3, pool: int = 2,
                 num_classes: int = 10, lrn_size: int = 5, lrn_alpha: float = 1e-4,
                 lrn_beta: float = 0.75, lrn_k: float = 2.0) -> None:
        super().__init__()
        self.times, self.pool = times, pool
        self.layer1 = _RecurrentConvLayer(in_channels, channels, kernel_size, lateral,
                                          channels if top_down else None, pool)
        self.layer2 = _RecurrentConvLayer(channels, channels, kernel_size, lateral, None, pool)
        self.lrn = nn.LocalResponseNorm(lrn_size, lrn_alpha, lrn_beta, lrn_k)
        side = image_size // pool // pool
        self.readout = nn.Linear(channels * side * side, num_classes)

    def forward(self, x: Tensor, return_activations: bool = False
                ) -> list[Tensor] | tuple[list[Tensor], dict[str, list[Tensor]]]:
        """Per-step logits; optionally also ``{"layer1": [...], "layer2": [...]}`` per step."""
        acts: dict[str, list[Tensor]] = {"layer1": [], "layer2": []}
        logits: list[Tensor] = []
        for t in range(self.times):
            p1 = acts["layer1"][t - 1] if t > 0 else None
            p2 = acts["layer2"][t - 1] if t > 0 else None
            h1 = self.lrn(F.relu(self.layer1(x, p1, p2)))
            h2 = self.lrn(F.relu(self.layer2(F.max_pool2d(h1, self.pool), p2, None)))
            acts["layer1"].append(h1)
            acts["layer2"].append(h2)
            logits.append(self.readout(F.max_pool2d(h2, self.pool).flatten(1)))
        return (logits, acts) if return_activations else logits


class B(SpoererRCNN):
    """Feed-forward control (bottom-up only); every step gives the same output."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(lateral=False, top_down=False, **kwargs)  # type: ignore[arg-type]


class BL(SpoererRCNN):
    """Bottom-up + lateral."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(lateral=True, top_down=False, **kwargs)  # type: ignore[arg-type]


class BT(SpoererRCNN):
    """Bottom-up + top-down (layer 2 -> layer 1)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(lateral=False, top_down=True, **kwargs)  # type: ignore[arg-type]


class BLT(SpoererRCNN):
    """Bottom-up + lateral + top-down."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(lateral=True, top_down=True, **kwargs)  # type: ignore[arg-type]
