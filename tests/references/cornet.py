"""Reference CORnet-Z, CORnet-R, CORnet-RT and CORnet-S, written by hand for equivalence tests.

Source
------
Kubilius et al., "CORnet: Modeling the Neural Mechanisms of Core Object Recognition",
bioRxiv 408385 (2018), and Kubilius et al., "Brain-Like Object Recognition with
High-Performing Shallow Recurrent ANNs", NeurIPS 2019.  Code: dicarlolab/CORnet,
HEAD d0cc17d (2023-10-25), files ``cornet/cornet_{z,r,rt,s}.py``.  Re-stated from
``/work/shared/reference/peers.md`` section 1, not copied.

``state_dict()`` keys are exactly the upstream ones with the ``module.`` DataParallel
prefix stripped, in the upstream order (see ``cornet_keys``).  Parameter counts with 1000
classes: Z 2,071,656; R and RT 5,208,936 each; S 53,416,616.

Update equations (``x^A_t`` is the output of area A at step t, ``I`` the image)
-------------------------------------------------------------------------------
CORnet-Z, one step:  ``x^A = MaxPool_{3,2,1}(ReLU(conv_A(x^{pred A}) + b_A))``.

CORnet-R / CORnet-RT (same modules, different schedule).  Input pathway
``E_A(u) = ReLU(GN_32(conv_input_A(u)))``; core ``C_A(v) = ReLU(GN_32(conv1_A(v)))``
(3x3, no bias); the state is the previous output.

- t = 0: ``x^V1_0 = C_V1(E_V1(I))``; for A in V2, V4, IT ``x^A_0 = C_A(0)`` where ``0``
  is an all-zero drive with the shape ``E_A`` would produce, so ``x^A_0 = ReLU(beta(norm1_A))``.
  Upstream hard-codes the zero sizes 56/28/14/7 (224 px only); here they are derived from
  the predecessor's step-0 output and ``conv_input_A``'s geometry, so any input size works.
- t >= 1, R (same-step):  ``x^A_t = C_A(E_A(x^{pred A}_t) + x^A_{t-1})``.
- t >= 1, RT (delayed):   ``x^A_t = C_A(E_A(x^{pred A}_{t-1}) + x^A_{t-1})``.
- V1's predecessor is the image at every step.  Output ``W . GAP(x^IT_{T-1}) + b``.

CORnet-S.  V1 stem: conv7x7/s2 -> BN -> ReLU -> MaxPool 3/2/1 -> conv3x3 -> BN -> ReLU.
Each of V2, V4, IT (n = 2, 4, 2 inner steps) runs once, in order, with
``h_0 = conv_input(x_in)`` and for k = 0..n-1:
``s_k = norm_skip(skip_{stride 2}(h_k))`` if k = 0 else ``h_k``;
``z = ReLU(norm1_k(conv1(h_k)))``; ``z = ReLU(norm2_k(conv2_{stride 2 if k = 0 else 1}(z)))``;
``h_{k+1} = ReLU(norm3_k(conv3(z)) + s_k)``.  The area output is ``h_n``.
The step-dependent stride uses ``F.conv2d``; modules are never mutated in ``forward``.
ReLUs work in place and CORnet-S adds its skip in place, as upstream
(``nn.ReLU(inplace=True)``, ``x += skip``): the benchmarks time these references as
stand-ins for the published code, so they must not be slower than it.

Per-step outputs
----------------
``forward(x)`` returns final logits.  ``forward(x, return_steps=True)`` returns
:class:`StepOutputs`: ``areas[A]`` lists every step's output of area A (for S, every
inner step; V1 has one), and ``step_logits[t]`` is the decoder applied to ``areas["IT"][t]``.
Each block also has an ``output`` identity called once per (inner) step, as upstream,
so Brain-Score-style forward hooks count steps the same way.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal, overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn

AREAS: tuple[str, ...] = ("V1", "V2", "V4", "IT")
CORNET_S_INNER_STEPS: dict[str, int] = {"V1": 1, "V2": 2, "V4": 4, "IT": 2}

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def cornet_keys(variant: Literal["Z", "R", "RT", "S"]) -> list[str]:
    """The upstream ``state_dict`` key list (``module.`` stripped), in upstream order."""
    dec = ["decoder.linear.weight", "decoder.linear.bias"]
    if variant == "Z":
        return [f"{a}.conv.{p}" for a in AREAS for p in ("weight", "bias")] + dec
    if variant in ("R", "RT"):
        per = ["conv_input.weight", "conv_input.bias", "norm_input.weight", "norm_input.bias",
               "conv1.weight", "norm1.weight", "norm1.bias"]
        return [f"{a}.{k}" for a in AREAS for k in per] + dec
    keys = ["V1.conv1.weight", *(f"V1.norm1.{b}" for b in _BN),
            "V1.conv2.weight", *(f"V1.norm2.{b}" for b in _BN)]
    for a in AREAS[1:]:
        keys += [f"{a}.conv_input.weight", f"{a}.skip.weight", *(f"{a}.norm_skip.{b}" for b in _BN),
                 f"{a}.conv1.weight", f"{a}.conv2.weight", f"{a}.conv3.weight"]
        for k in range(CORNET_S_INNER_STEPS[a]):
            keys += [f"{a}.norm{i}_{k}.{b}" for i in (1, 2, 3) for b in _BN]
    return keys + dec


@dataclass
class StepOutputs:
    """Per-step results. ``logits`` is ``step_logits[-1]``."""

    logits: Tensor
    step_logits: list[Tensor]
    areas: dict[str, list[Tensor]]


def _decoder(num_classes: int, with_output: bool) -> nn.Sequential:
    mods: OrderedDict[str, nn.Module] = OrderedDict(
        avgpool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), linear=nn.Linear(512, num_classes))
    if with_output:
        mods["output"] = nn.Identity()
    return nn.Sequential(mods)


class _CORnet(nn.Module):
    """Shared forward: subclasses implement ``area_steps`` (all per-step area outputs)."""

    decoder: nn.Sequential

    def area_steps(self, x: Tensor) -> dict[str, list[Tensor]]:
        raise NotImplementedError

    @overload
    def forward(self, x: Tensor, return_steps: Literal[False] = ...) -> Tensor: ...
    @overload
    def forward(self, x: Tensor, return_steps: Literal[True]) -> StepOutputs: ...

    def forward(self, x: Tensor, return_steps: bool = False) -> Tensor | StepOutputs:
        areas = self.area_steps(x)
        if not return_steps:
            return self.decoder(areas["IT"][-1])
        step_logits = [self.decoder(h) for h in areas["IT"]]
        return StepOutputs(step_logits[-1], step_logits, areas)


# ----------------------------------------------------------------------------- CORnet-Z
class _BlockZ(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2)
        self.output = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.output(F.max_pool2d(F.relu(self.conv(x), inplace=True), 3, 2, 1))


class CORnetZ(_CORnet):
    """Feed-forward CORnet-Z (one step). Xavier-uniform init, zero biases, as upstream."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.V1 = _BlockZ(3, 64, kernel_size=7, stride=2)
        self.V2 = _BlockZ(64, 128)
        self.V4 = _BlockZ(128, 256)
        self.IT = _BlockZ(256, 512)
        self.decoder = _decoder(num_classes, with_output=True)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def area_steps(self, x: Tensor) -> dict[str, list[Tensor]]:
        out: dict[str, list[Tensor]] = {}
        for a in AREAS:
            x = getattr(self, a)(x)
            out[a] = [x]
        return out


# ------------------------------------------------------------------ CORnet-R / CORnet-RT
class _BlockR(nn.Module):
    """CORblock_R == CORblock_RT: input pathway E and core C (see module docstring)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv_input = nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2)
        self.norm_input = nn.GroupNorm(32, c_out)
        self.conv1 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(32, c_out)
        self.output = nn.Identity()

    def drive(self, u: Tensor) -> Tensor:
        """Input pathway ``E(u) = ReLU(GN(conv_input(u)))``."""
        return F.relu(self.norm_input(self.conv_input(u)), inplace=True)

    def zero_drive(self, u: Tensor) -> Tensor:
        """All-zero tensor with the shape ``drive(u)`` would have (t = 0 stand-in)."""
        c = self.conv_input
        hw = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n, p, d, k, s in
              zip(u.shape[-2:], c.padding, c.dilation, c.kernel_size, c.stride)]  # type: ignore[arg-type]
        return u.new_zeros(u.shape[0], c.out_channels, *hw)

    def forward(self, drive: Tensor, state: Tensor | None) -> Tensor:
        """Core ``C(drive + state)``; the result is also the next state."""
        skip = drive if state is None else drive + state
        return self.output(F.relu(self.norm1(self.conv1(skip)), inplace=True))


class _CORnetRecurrent(_CORnet):
    same_step: bool

    def __init__(self, times: int = 5, num_classes: int = 1000) -> None:
        super().__init__()
        self.times = times
        self.V1 = _BlockR(3, 64, kernel_size=7, stride=4)
        self.V2 = _BlockR(64, 128, stride=2)
        self.V4 = _BlockR(128, 256, stride=2)
        self.IT = _BlockR(256, 512, stride=2)
        self.decoder = _decoder(num_classes, with_output=False)

    def area_steps(self, x: Tensor) -> dict[str, list[Tensor]]:
        blocks: list[_BlockR] = [getattr(self, a) for a in AREAS]
        hist: list[list[Tensor]] = [[] for _ in AREAS]
        # t = 0: image into V1; all-zero drive into V2..IT; state 0 everywhere.
        hist[0].append(blocks[0](blocks[0].drive(x), None))
        for i in range(1, len(AREAS)):
            hist[i].append(blocks[i](blocks[i].zero_drive(hist[i - 1][0]), None))
        for t in range(1, self.times):
            for i, blk in enumerate(blocks):
                src = x if i == 0 else hist[i - 1][t if self.same_step else t - 1]
                hist[i].append(blk(blk.drive(src), hist[i][t - 1]))
        return dict(zip(AREAS, hist))


class CORnetR(_CORnetRecurrent):
    """Legacy CORnet-R: same-step (sequential) unrolling. PyTorch default init."""

    same_step = True


class CORnetRT(_CORnetRecurrent):
    """CORnet-RT: delayed (biological) unrolling, every read from the t-1 snapshot."""

    same_step = False


# ----------------------------------------------------------------------------- CORnet-S
class _BlockS(nn.Module):
    """CORblock_S: weights shared over inner steps, BN unshared per step (``normI_k``)."""

    scale = 4

    def __init__(self, c_in: int, c_out: int, times: int) -> None:
        super().__init__()
        self.times = times
        c_mid = c_out * self.scale
        self.conv_input = nn.Conv2d(c_in, c_out, 1, bias=False)
        self.skip = nn.Conv2d(c_out, c_out, 1, stride=2, bias=False)
        self.norm_skip = nn.BatchNorm2d(c_out)
        self.conv1 = nn.Conv2d(c_out, c_mid, 1, bias=False)
        # Stride of conv2 is chosen per inner step in forward (2 at k = 0, else 1).
        self.conv2 = nn.Conv2d(c_mid, c_mid, 3, padding=1, bias=False)
        self.conv3 = nn.Conv2d(c_mid, c_out, 1, bias=False)
        self.output = nn.Identity()
        for k in range(times):
            self.add_module(f"norm1_{k}", nn.BatchNorm2d(c_mid))
            self.add_module(f"norm2_{k}", nn.BatchNorm2d(c_mid))
            self.add_module(f"norm3_{k}", nn.BatchNorm2d(c_out))

    def _bn(self, i: int, k: int, x: Tensor) -> Tensor:
        bn: nn.BatchNorm2d = getattr(self, f"norm{i}_{k}")
        return bn(x)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Returns the outputs of all inner steps; the area output is the last one."""
        h = self.conv_input(x)
        outs: list[Tensor] = []
        for k in range(self.times):
            s = self.norm_skip(self.skip(h)) if k == 0 else h
            z = F.relu(self._bn(1, k, self.conv1(h)), inplace=True)
            z = F.conv2d(z, self.conv2.weight, None, stride=2 if k == 0 else 1, padding=1)
            z = F.relu(self._bn(2, k, z), inplace=True)
            h = self._bn(3, k, self.conv3(z))
            h += s
            h = F.relu(h, inplace=True)
            outs.append(self.output(h))
        return outs


class CORnetS(_CORnet):
    """CORnet-S. Conv init N(0, 2/(k*k*C_out)), BN (1, 0), Linear at PyTorch default, as upstream."""

    def __init__(self, num_classes: int = 1000,
                 inner_steps: tuple[int, int, int] = (2, 4, 2)) -> None:
        super().__init__()
        self.V1 = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), norm1=nn.BatchNorm2d(64),
            nonlin1=nn.ReLU(inplace=True), pool=nn.MaxPool2d(3, 2, 1),
            conv2=nn.Conv2d(64, 64, 3, padding=1, bias=False), norm2=nn.BatchNorm2d(64),
            nonlin2=nn.ReLU(inplace=True), output=nn.Identity()))
        self.V2 = _BlockS(64, 128, inner_steps[0])
        self.V4 = _BlockS(128, 256, inner_steps[1])
        self.IT = _BlockS(256, 512, inner_steps[2])
        self.decoder = _decoder(num_classes, with_output=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                with torch.no_grad():
                    m.weight.normal_(0.0, math.sqrt(2.0 / n))

    def area_steps(self, x: Tensor) -> dict[str, list[Tensor]]:
        out: dict[str, list[Tensor]] = {"V1": [self.V1(x)]}
        for a in AREAS[1:]:
            out[a] = getattr(self, a)(out[_pred(a)][-1])
        return out


def _pred(area: str) -> str:
    return AREAS[AREAS.index(area) - 1]
