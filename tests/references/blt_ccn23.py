"""Reference BLT_net_64 (KietzmannLab CCN 2023), written by hand for equivalence tests.

Source
------
KietzmannLab/BLT-pytorch-CCN23, HEAD f8505a9 (2023-09-07), ``BLT_train/models/BLT_net.py``
(class ``BLT_net_64``, defaults: LN, lateral and top-down on, ``LT_position='all'``,
classifier bias); CCN 2023 BLT model trained on MiniEcoset (100 classes, 64 px).
Re-stated from ``/work/shared/reference/peers.md`` section 2.3, not copied.

Nodes and parameters (``state_dict`` keys in upstream order: ``BLT_NET_64_KEYS``)
-------------------------------------------------------------------------------
- ``retina``: Conv 3x3, 3->32, bias, 'same'; ReLU; computed once.
- ``v1``: ``bottom_up`` Conv 3x3 32->64 (no pool); ``lateral`` Conv 64->64 and ``top_down``
  ConvT 128->64 are allocated but never used upstream (kept so the count and keys match);
  ``v1_ln`` = LayerNorm([64, 64, 64]).
- ``v2``/``v4``/``it``: MaxPool 2 then ``bottom_up`` Conv 3x3; ``lateral`` Conv 3x3 C->C;
  ``top_down`` ConvT 3x3 s2 p1 op1 2C->C from the area above (v2 and v4 only);
  ``{v2,v4,it}_ln`` = LayerNorm([C, H, W]).  All these convs are bias-free.
- ``gap``: AvgPool over it's 8x8 map; ``gap.lateral`` Linear 512->512 no bias; ``gap_ln`` LN([512]).
- ``readout``: Linear 512->100 with bias.
Total 7,546,852 parameters at 64 px with 100 classes.

Update equations (``a^n_t`` = node n at step t; bottom-up same-step, lateral/top-down delayed)
--------------------------------------------------------------------------------------------
``Phi(b, l, tau) = b + l + tau`` (additive) or ``b * (1 + l + tau)`` (multiplicative), with
absent terms dropped (at t = 0 only ``b``: ``Phi(b) = b``).

- ``r = ReLU(retina(I))``;  ``a^v1_t = ReLU(LN(bottom_up_v1(r)))`` (identical at every t).
- n in (v2, v4, it): ``a^n_t = ReLU(LN_n(Phi(B_n(P_2 a^{n-1}_t), L_n(a^n_{t-1}), T_n(a^{n+1}_{t-1}))))``
  (no ``T`` for it).
- ``g_t = ReLU(LN(Phi(GAP(a^it_t), W_g g_{t-1})))``;  ``out_t = log(clamp(softmax(W_o g_t + b_o), 1e-10, 1))``.

Deviations / assumptions
------------------------
- Upstream ``squeeze``s the pooled IT map, which drops the batch dim at B = 1; this
  reference flattens instead, so B = 1 works (values identical for B >= 2).
- ``image_size`` (default 64) fixes the LayerNorm shapes; the GAP kernel is ``image_size // 8``.
- Upstream's constructor default is ``timesteps=2``; the brief and peers.md use T = 10.
- Upstream's Xavier init is not reproduced (equivalence tests load weights).
"""

from __future__ import annotations

from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Interaction = Literal["additive", "multiplicative"]
NODES: tuple[str, ...] = ("retina", "v1", "v2", "v4", "it", "gap")

BLT_NET_64_KEYS: tuple[str, ...] = (
    "retina.weight", "retina.bias",
    "v1.bottom_up.weight", "v1.lateral.weight", "v1.top_down.weight", "v1_ln.weight", "v1_ln.bias",
    "v2.bottom_up.weight", "v2.lateral.weight", "v2.top_down.weight", "v2_ln.weight", "v2_ln.bias",
    "v4.bottom_up.weight", "v4.lateral.weight", "v4.top_down.weight", "v4_ln.weight", "v4_ln.bias",
    "it.bottom_up.weight", "it.lateral.weight", "it_ln.weight", "it_ln.bias",
    "gap.lateral.weight", "gap_ln.weight", "gap_ln.bias",
    "readout.weight", "readout.bias",
)


def combine(b: Tensor, terms: list[Tensor], interaction: Interaction) -> Tensor:
    """``Phi``: upstream summation order ``(b + l) + t`` / ``b * ((1 + l) + t)``."""
    if not terms:
        return b
    if interaction == "additive":
        out = b
        for term in terms:
            out = out + term
        return out
    gain = 1.0 + terms[0]
    for term in terms[1:]:
        gain = gain + term
    return b * gain


class _BLTConv(nn.Module):
    """Holds one area's bottom-up, lateral and top-down weights (upstream ``BLT_Conv``)."""

    def __init__(self, c_in: int, c_out: int, k: int, lateral: bool, top_down: bool) -> None:
        super().__init__()
        self.bottom_up = nn.Conv2d(c_in, c_out, k, padding="same", bias=False)
        self.lateral = nn.Conv2d(c_out, c_out, k, padding="same", bias=False) if lateral else None
        self.top_down = (nn.ConvTranspose2d(2 * c_out, c_out, k, stride=2, padding=(k - 1) // 2,
                                            output_padding=1, bias=False) if top_down else None)


class _BLTGap(nn.Module):
    def __init__(self, channels: int, lateral: bool) -> None:
        super().__init__()
        self.lateral = nn.Linear(channels, channels, bias=False) if lateral else None


class BLTNet64(nn.Module):
    """BLT_net_64; ``forward`` returns the list of per-step log-probabilities."""

    def __init__(self, interaction: Interaction = "additive", times: int = 10,
                 num_classes: int = 100, image_size: int = 64, kernel_size: int = 3,
                 lateral: bool = True, top_down: bool = True) -> None:
        super().__init__()
        if interaction not in ("additive", "multiplicative"):
            raise ValueError(f"unknown interaction {interaction!r}")
        self.interaction: Interaction = interaction
        self.times = times
        k, s = kernel_size, image_size
        self.retina = nn.Conv2d(3, 32, k, padding="same")
        self.v1 = _BLTConv(32, 64, k, lateral, top_down)  # lateral/top_down unused (as upstream)
        self.v1_ln = nn.LayerNorm([64, s, s])
        self.v2 = _BLTConv(64, 128, k, lateral, top_down)
        self.v2_ln = nn.LayerNorm([128, s // 2, s // 2])
        self.v4 = _BLTConv(128, 256, k, lateral, top_down)
        self.v4_ln = nn.LayerNorm([256, s // 4, s // 4])
        self.it = _BLTConv(256, 512, k, lateral, False)
        self.it_ln = nn.LayerNorm([512, s // 8, s // 8])
        self.gap = _BLTGap(512, lateral)
        self.gap_ln = nn.LayerNorm([512])
        self.readout = nn.Linear(512, num_classes)
        self._gap_kernel = s // 8

    def _area(self, name: str, below: Tensor, prev: Tensor | None, above: Tensor | None) -> Tensor:
        conv: _BLTConv = getattr(self, name)
        ln: nn.LayerNorm = getattr(self, f"{name}_ln")
        b = conv.bottom_up(F.max_pool2d(below, 2, 2))
        terms: list[Tensor] = []
        if prev is not None and conv.lateral is not None:
            terms.append(conv.lateral(prev))
        if above is not None and conv.top_down is not None:
            terms.append(conv.top_down(above))
        return F.relu(ln(combine(b, terms, self.interaction)))

    @overload
    def forward(self, x: Tensor, return_activations: Literal[False] = ...) -> list[Tensor]: ...
    @overload
    def forward(self, x: Tensor, return_activations: Literal[True]
                ) -> tuple[list[Tensor], dict[str, list[Tensor]]]: ...

    def forward(self, x: Tensor, return_activations: bool = False
                ) -> list[Tensor] | tuple[list[Tensor], dict[str, list[Tensor]]]:
        """Per-step log-probabilities; optionally also ``{node: [a_0, ..., a_{T-1}]}``.

        ``retina`` and ``v1`` are computed once; their lists repeat that tensor per step.
        """
        r = F.relu(self.retina(x))
        a_v1 = F.relu(self.v1_ln(self.v1.bottom_up(r)))
        acts: dict[str, list[Tensor]] = {n: [] for n in NODES}
        outputs: list[Tensor] = []
        for t in range(self.times):
            p = {n: acts[n][t - 1] for n in NODES} if t > 0 else {}
            acts["retina"].append(r)
            acts["v1"].append(a_v1)
            acts["v2"].append(self._area("v2", a_v1, p.get("v2"), p.get("v4")))
            acts["v4"].append(self._area("v4", acts["v2"][t], p.get("v4"), p.get("it")))
            acts["it"].append(self._area("it", acts["v4"][t], p.get("it"), None))
            g_b = F.avg_pool2d(acts["it"][t], self._gap_kernel).flatten(1)
            g_terms = [self.gap.lateral(p["gap"])] if t > 0 and self.gap.lateral is not None else []
            acts["gap"].append(F.relu(self.gap_ln(combine(g_b, g_terms, self.interaction))))
            probs = F.softmax(self.readout(acts["gap"][t]), dim=1)
            outputs.append(torch.log(torch.clamp(probs, 1e-10, 1.0)))
        return (outputs, acts) if return_activations else outputs
