"""Torch cells (see :mod:`tnnspec.spec.cells` for parameters and equations).

Every cell is ``forward(drive, state, step) -> (output, new_state)`` with ``state`` as
returned by :meth:`initial_state` (zeros on the drive's device and dtype).  Step-dependent
behaviour uses only the Python int ``step`` and no module is mutated in ``forward``, so the
cells trace under ``torch.compile``.  Convs are ``nn.Conv2d`` (:class:`SameConv2d`) with SAME padding
(``k // 2`` each side for odd kernels; TensorFlow's bottom/right extra for even ones).
Convs that read the same tensor are kept as separately named modules (so published weights
map onto them one to one) and run as one fused conv (:func:`fused_conv`).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..spec import cells as P
from ..spec.components import pair
from . import feedback, passes
from .fusion import conv_norm
from .inplace import relu_of_new
from .packing import Conv2d
from .registry import Cell

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": lambda x: x,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
}


class SameConv2d(Conv2d):
    """Stride-1 conv that keeps the map size (tnn's SAME padding): ``k // 2`` on each side
    for odd kernels; for even ones the extra row/column goes bottom/right (explicit pad)."""

    def __init__(self, c_in: int, c_out: int, kernel, bias: bool, groups: int = 1):
        kh, kw = pair(kernel)
        super().__init__(c_in, c_out, (kh, kw), padding=(kh // 2 if kh % 2 else 0, kw // 2 if kw % 2 else 0),
                         bias=bias, groups=groups)
        pads = [((k - 1) // 2, k - 1 - (k - 1) // 2) if k % 2 == 0 else (0, 0) for k in (kw, kh)]
        self.extra_pad = None if kh % 2 and kw % 2 else (*pads[0], *pads[1])

    def conv_with(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """This conv's geometry with the given weights (used to fuse convs)."""
        if self.extra_pad is not None:
            x = F.pad(x, self.extra_pad)
        return self._conv_forward(x, weight, bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_with(x, self.weight, self.bias)


def same_conv(c_in: int, c_out: int, kernel, bias: bool, groups: int = 1) -> SameConv2d:
    return SameConv2d(c_in, c_out, kernel, bias, groups)


def fused_conv(convs: list[SameConv2d], x: Tensor) -> tuple[Tensor, ...]:
    """Apply same-padded convs that share their input and kernel size as one conv;
    returns one output per conv."""
    if len(convs) == 1:
        return (convs[0](x),)
    weight = torch.cat([c.weight for c in convs])
    feedback.derive(weight, [c.weight for c in convs])  # (a learning rule's feedback weights, if any)
    bias = None if convs[0].bias is None else torch.cat([c.bias for c in convs])
    out = convs[0].conv_with(x, weight, bias)
    return out.split([c.out_channels for c in convs], dim=1)


def _map_zeros(drive: Tensor, channels: int) -> Tensor:
    return drive.new_zeros((drive.shape[0], channels, *drive.shape[2:]))


class IdentityCell(Cell):
    """``y_t = x_t``; no state."""

    def forward(self, drive, state, step):
        return drive, None


# --------------------------------------------------------------------------- simple state


class TimeDecayCell(Cell):
    """``s_t = λ s_{t-1} + x_t``; λ = σ(``decay_logit``) when learnable, else a constant."""

    def __init__(self, params: P.TimeDecay, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        self.learnable = params.learnable
        self.decay = params.decay
        if self.learnable:
            d = params.decay
            self.decay_logit = nn.Parameter(torch.tensor(math.log(d / (1.0 - d))))

    def decay_value(self) -> Tensor | float:
        return torch.sigmoid(self.decay_logit) if self.learnable else self.decay

    def initial_state(self, drive):
        return torch.zeros_like(drive)

    def forward(self, drive, state, step):
        s = self.decay_value() * state + drive
        return s, s


class LeakyCell(Cell):
    """``h_t = h_{t-1} + (dt/τ)(f(x_t) - h_{t-1})``."""

    def __init__(self, params: P.Leaky, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        self.alpha = params.alpha  # raises when dt_ms was not filled from time.dt_ms
        self.act = ACTIVATIONS[params.activation]

    def initial_state(self, drive):
        return torch.zeros_like(drive)

    def forward(self, drive, state, step):
        h = state + self.alpha * (self.act(drive) - state)
        return h, h


class AdditiveStateCell(Cell):
    """``y_t = x_t + s``; :meth:`after_ops` stores the area's final output as ``s``."""

    def initial_state(self, drive):
        return torch.zeros_like(drive)

    def forward(self, drive, state, step):
        return drive + state, state

    def after_ops(self, output, state):
        return output


# --------------------------------------------------------------------------- conv RNNs


class _ConvRNNCell(Cell):
    """``input_conv`` (C_in -> blocks·C, bias) and ``hidden_conv`` (C -> hidden_blocks·C).
    The input term is ``input_conv(drive)``."""

    blocks = 1
    hidden_blocks = 1
    has_input_term = True

    def __init__(self, params, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        c_in, c = drive_shape[0], out_shape[0]
        self.channels = c
        self.input_conv = same_conv(c_in, self.blocks * c, params.kernel, params.bias)
        self.hidden_conv = same_conv(c, self.hidden_blocks * c, params.kernel, False)

    def initial_state(self, drive):
        return _map_zeros(drive, self.channels)

    def input_term(self, drive):
        return self.input_conv(drive)


class SimpleRNNCell(_ConvRNNCell):
    def __init__(self, params: P.SimpleRNN, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        self.act = ACTIVATIONS[params.activation]

    def forward(self, drive, state, step, term=None):
        h = self.act((self.input_term(drive) if term is None else term) + self.hidden_conv(state))
        return h, h


class GRUCell(_ConvRNNCell):
    gates = True
    blocks = 3  # r, u, c
    hidden_blocks = 2  # r, u

    def __init__(self, params: P.GRU, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        self.forget_bias = params.forget_bias
        self.candidate_hidden_conv = same_conv(self.channels, self.channels, params.kernel, False)

    def forward(self, drive, state, step, term=None):
        xr, xu, xc = (self.input_term(drive) if term is None else term).chunk(3, dim=1)
        hr, hu = self.hidden_conv(state).chunk(2, dim=1)
        r = torch.sigmoid(xr + hr + self.forget_bias)
        u = torch.sigmoid(xu + hu)
        c = torch.tanh(xc + self.candidate_hidden_conv(r * state))
        h = u * state + (1 - u) * c
        return h, h


class LSTMCell(_ConvRNNCell):
    gates = True
    blocks = hidden_blocks = 4  # i, j, f, o

    def __init__(self, params: P.LSTM, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        self.forget_bias = params.forget_bias
        self.peephole = params.peephole
        if self.peephole:
            shape = tuple(out_shape)
            self.peephole_i = nn.Parameter(torch.zeros(shape))
            self.peephole_f = nn.Parameter(torch.zeros(shape))
            self.peephole_o = nn.Parameter(torch.zeros(shape))

    def initial_state(self, drive):
        return (_map_zeros(drive, self.channels), _map_zeros(drive, self.channels))

    def forward(self, drive, state, step, term=None):
        c, h = state
        i, j, f, o = ((self.input_term(drive) if term is None else term) + self.hidden_conv(h)).chunk(4, dim=1)
        if self.peephole:
            i = i + self.peephole_i * c
            f = f + self.peephole_f * c
            o = o + self.peephole_o * c
        c_new = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
        h_new = torch.sigmoid(o) * torch.tanh(c_new)
        return h_new, (c_new, h_new)


class UGRNNCell(_ConvRNNCell):
    gates = True
    blocks = hidden_blocks = 2  # g, c

    def __init__(self, params: P.UGRNN, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        self.forget_bias = params.forget_bias

    def forward(self, drive, state, step, term=None):
        g, c = ((self.input_term(drive) if term is None else term) + self.hidden_conv(state)).chunk(2, dim=1)
        g = torch.sigmoid(g + self.forget_bias)
        h = g * state + (1 - g) * torch.tanh(c)
        return h, h


class IntersectionRNNCell(_ConvRNNCell):
    gates = True
    blocks = hidden_blocks = 4  # g_h, h, g_y, y

    def __init__(self, params: P.IntersectionRNN, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        self.forget_bias = params.forget_bias

    def forward(self, drive, state, step, term=None):
        gh, hh, gy, yy = ((self.input_term(drive) if term is None else term) + self.hidden_conv(state)).chunk(4, dim=1)
        gh = torch.sigmoid(gh + self.forget_bias)
        gy = torch.sigmoid(gy + self.forget_bias)
        h = gh * state + (1 - gh) * torch.tanh(hh)
        y = gy * drive + (1 - gy) * torch.relu(yy)
        return y, h


# --------------------------------------------------------------------------- lecture cells


class ReciprocalGatedCell(Cell):
    gates = True

    def __init__(self, params: P.ReciprocalGated, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        c = self.channels = out_shape[0]
        for name in ("gate_ch", "gate_hh", "gate_hc", "gate_cc"):
            setattr(self, name, same_conv(c, c, params.kernel, params.bias))
        self.act = ACTIVATIONS[params.activation]

    def initial_state(self, drive):
        return (_map_zeros(drive, self.channels), _map_zeros(drive, self.channels))

    def forward(self, drive, state, step):
        h, c = state
        ch, cc = fused_conv([self.gate_ch, self.gate_cc], c)
        hh, hc = fused_conv([self.gate_hh, self.gate_hc], h)
        h_new = self.act((1 - torch.sigmoid(ch)) * drive + (1 - torch.sigmoid(hh)) * h)
        c_new = self.act((1 - torch.sigmoid(hc)) * drive + (1 - torch.sigmoid(cc)) * c)
        return h_new, (h_new, c_new)


class ResNetUnitCell(Cell):
    """The input term is the three convs of the drive (``gate_xh``, ``gate_xc``, ``in_xc``)."""

    gates = True
    has_input_term = True

    def __init__(self, params: P.ResNetUnit, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        c = self.channels = out_shape[0]
        for name in ("gate_xh", "conv_ch", "gate_xc", "in_xc", "conv_cc"):
            setattr(self, name, same_conv(c, c, params.kernel, params.bias))
        self.act = ACTIVATIONS[params.activation]

    def initial_state(self, drive):
        return (_map_zeros(drive, self.channels), _map_zeros(drive, self.channels))

    def input_term(self, drive):
        return fused_conv([self.gate_xh, self.gate_xc, self.in_xc], drive)

    def forward(self, drive, state, step, term=None):
        h, c = state
        gxh, gxc, ixc = self.input_term(drive) if term is None else term
        ch, cc = fused_conv([self.conv_ch, self.conv_cc], c)
        h_new = self.act(drive + torch.sigmoid(gxh) * h + ch)
        c_new = self.act(torch.sigmoid(gxc) * c + ixc + cc)
        return h_new, (h_new, c_new)


class SeparableConv(nn.Module):
    """Depthwise k×k (``depthwise``) then pointwise 1×1 (``pointwise``), bias-free (TF's
    ``separable_conv2d`` with channel multiplier 1)."""

    def __init__(self, c_in: int, c_out: int, kernel):
        super().__init__()
        self.depthwise = same_conv(c_in, c_in, kernel, False, groups=c_in)
        self.pointwise = Conv2d(c_in, c_out, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


def _temporal(c_in: int, c_out: int, kernel, separable: bool) -> nn.Module:
    return SeparableConv(c_in, c_out, kernel) if separable else same_conv(c_in, c_out, kernel, False)


class ReciprocalGatedConvRNNCell(Cell):
    """The input term is ``(input_to_cell_conv(x), input_to_out_conv(x) or x)``, x = φ_in(drive)."""

    gates = True
    has_input_term = True

    def __init__(self, params: P.ReciprocalGatedConvRNN, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        p = params
        c = self.channels = out_shape[0]
        cc = self.cell_channels = p.cell_channels or c
        self.input_to_cell_conv = same_conv(c, cc, p.input_kernel, True)
        if p.input_to_out:
            self.input_to_out_conv = same_conv(c, c, p.input_kernel, True)
        if p.cell_to_out:
            self.cell_to_out_conv = same_conv(cc, c, p.input_kernel, False)
        self.tau_cc = _temporal(cc, cc, p.tau_kernel, p.tau_depth_separable)
        self.gate_hc = _temporal(c, cc, p.gate_kernel, p.gate_depth_separable)
        self.tau_hh = _temporal(c, c, p.tau_kernel, p.tau_depth_separable)
        self.gate_ch = _temporal(cc, c, p.gate_kernel, p.gate_depth_separable)
        self.act = ACTIVATIONS[p.activation]
        self.input_act = ACTIVATIONS[p.input_activation]
        self.tau_act = ACTIVATIONS[p.tau_nonlinearity]
        self.gate_act = ACTIVATIONS[p.gate_nonlinearity]
        self.a_tau, self.k_tau = p.tau_offset, p.tau_multiplier
        self.a_gate, self.k_gate = p.gate_offset, p.gate_multiplier
        self.input_to_out, self.cell_to_out = p.input_to_out, p.cell_to_out

    def initial_state(self, drive):
        return (_map_zeros(drive, self.cell_channels), _map_zeros(drive, self.channels))

    def input_term(self, drive):
        x = self.input_act(drive)
        return self.input_to_cell_conv(x), (self.input_to_out_conv(x) if self.input_to_out else x)

    def forward(self, drive, state, step, term=None):
        c, h = state
        to_cell, u_h = self.input_term(drive) if term is None else term
        tau_c = self.a_tau + self.k_tau * self.tau_act(self.tau_cc(c))
        gate_c = self.a_gate + self.k_gate * self.gate_act(self.gate_hc(h))
        c_new = self.act(tau_c * c + gate_c * to_cell)
        if self.cell_to_out:
            u_h = u_h + self.cell_to_out_conv(c)
        tau_h = self.a_tau + self.k_tau * self.tau_act(self.tau_hh(h))
        gate_h = self.a_gate + self.k_gate * self.gate_act(self.gate_ch(c))
        h_new = self.act(tau_h * h + gate_h * u_h)
        return h_new, (c_new, h_new)


# --------------------------------------------------------------------------- CORnet-S


class CORnetSBlockCell(Cell):
    """CORnet-S ``CORblock_S`` without ``conv_input`` (on the edge); parameter names and
    order match CORnet's, so ``V2.skip.weight`` etc. load one to one. With ``fuse_batchnorm``
    each conv and its BatchNorm run as one conv in eval mode (:mod:`tnnspec.compile.fusion`).
    With ``inplace_relu`` its ReLUs work in place where that is safe
    (:mod:`tnnspec.compile.inplace`), as CORnet's."""

    def __init__(self, params: P.CORnetSBlock, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        c = out_shape[0]
        s = params.scale * c
        self.inner_steps = params.inner_steps
        self.skip = Conv2d(c, c, 1, stride=2, bias=False)
        self.norm_skip = nn.BatchNorm2d(c)
        self.conv1 = Conv2d(c, s, 1, bias=False)
        self.conv2 = Conv2d(s, s, 3, padding=1, bias=False)  # stride given per inner step
        self.conv3 = Conv2d(s, c, 1, bias=False)
        for k in range(self.inner_steps):
            setattr(self, f"norm1_{k}", nn.BatchNorm2d(s))
            setattr(self, f"norm2_{k}", nn.BatchNorm2d(s))
            setattr(self, f"norm3_{k}", nn.BatchNorm2d(c))
        self.output = nn.Identity()  # called once per inner step, as CORnet (for forward hooks)

    def forward(self, drive, state, step):
        h = drive
        fuse, inplace = passes.on("fuse_batchnorm"), passes.on("inplace_relu")
        relu = relu_of_new if inplace else (lambda x, *makers: torch.relu(x))
        for k in range(self.inner_steps):
            if k == 0:
                skip = conv_norm(self.skip, self.norm_skip, h, fuse)
                stride = 2
            else:
                skip = h
                stride = 1
            norm1, norm2 = getattr(self, f"norm1_{k}"), getattr(self, f"norm2_{k}")
            z = relu(conv_norm(self.conv1, norm1, h, fuse), self.conv1, norm1)
            z = relu(conv_norm(self.conv2, norm2, z, fuse,
                               run=lambda u, w, b: self.conv2.conv_at(u, w, b, (stride, stride))),
                     self.conv2, norm2)
            h = conv_norm(self.conv3, getattr(self, f"norm3_{k}"), z, fuse) + skip  # a new sum
            h = torch.relu_(h) if inplace else torch.relu(h)
            h = self.output(h)
        return h, None


# --------------------------------------------------------------------------- normalisation


class DivisiveNormCell(Cell):
    """``R_t = R_{t-1} + (E - g ⊙ R_{t-1}) / (tau_steps · g)``, ``g = σ + pool(|E|)``."""

    def __init__(self, params: P.DivisiveNorm, drive_shape, out_shape, steps):
        super().__init__(params, drive_shape, out_shape, steps)
        self.sigma = params.sigma
        self.kernel = params.pool_kernel
        self.pool_channels = params.pool_channels
        self.power = params.power
        self.tau = params.tau_steps

    def energy(self, drive: Tensor) -> Tensor:
        """``E``: the drive, or ``max(drive, 0)^p``."""
        return drive if self.power is None else torch.relu(drive) ** self.power

    def conductance(self, energy: Tensor) -> Tensor:
        """``g = σ + pool(|E|)``."""
        pooled = energy.abs() if self.power is None else energy
        if self.pool_channels:
            pooled = pooled.mean(dim=1, keepdim=True)
        if self.kernel > 1:
            pooled = F.avg_pool2d(pooled, self.kernel, 1, self.kernel // 2, count_include_pad=False)
        return self.sigma + pooled

    def equilibrium(self, drive: Tensor) -> Tensor:
        """The closed form ``E / (σ + pool(|E|))``."""
        e = self.energy(drive)
        return e / self.conductance(e)

    def initial_state(self, drive):
        return torch.zeros_like(drive)

    def forward(self, drive, state, step):
        e = self.energy(drive)
        g = self.conductance(e)
        if self.tau == 1:
            r = e / g
        else:
            r = state + (e - g * state) / (self.tau * g)
        return r, r
