"""Cell parameter models (registered in :data:`components.CELLS`).

Notation used in the docstrings: ``x_t`` is the area's drive at step ``t`` (the sum of its
edges, already projected to the right shape by the edge transforms); ``h``, ``c`` are
states; ``W * z`` is a 2-D convolution with stride 1 and TensorFlow-SAME padding (``k // 2``
on each side for odd kernels; for even kernels the extra row/column goes bottom/right, as
in tnn), so the map size is kept; ``σ`` is the logistic sigmoid and ``⊙`` an elementwise
product.  Every conv RNN cell splits a tnn-style kernel over ``[x; h]`` into an
``input_conv`` on ``x`` (which carries the bias) and a bias-free ``hidden_conv`` on ``h``;
fused gate blocks are stacked along the output channels in the order given in each
docstring.

"Zero state" describes the output at an area's first computed step, when every state is
zero: how much of the drive the cell lets through (its *bypass*).  ``gates`` says whether the
cell multiplies by input-dependent values in [0, 1].
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from .components import CellParams, Shape, ShapeError, register_cell, require_map

Activation = Literal["identity", "relu", "tanh", "sigmoid", "elu"]
PosInt = Annotated[int, Field(ge=1)]
Kernel = PosInt | tuple[PosInt, PosInt]


@register_cell("identity", builder="tnnspec.compile.cells:IdentityCell")
class IdentityCell(CellParams):
    """No state: ``y_t = x_t`` (a feedforward area).

    Any drive: the area's ops may change its channels (the area's output must have ``channels``).
    No parameters.

    Zero state: passes the drive through.  Does not gate.
    """

    type: Literal["identity"] = "identity"

    def output_shape(self, drive, channels: int):
        """Any drive: the area's ops may change the channels (its output must have ``channels``)."""
        return drive


# --------------------------------------------------------------------------- simple state


@register_cell("time_decay", builder="tnnspec.compile.cells:TimeDecayCell")
class TimeDecay(CellParams):
    """Exponentially decaying memory (tnn's ``memory``, convrnns' ``timedecay_*``): ``s_t = λ s_{t-1} + x_t``.

    Output ``y_t = s_t``; λ is one scalar.  When ``learnable``, it is parameterised as
    ``λ = σ(decay_logit)`` with ``decay_logit`` initialised to ``logit(decay)``, so λ stays in
    (0, 1) during training; otherwise λ is the constant ``decay`` (any value in [0, 1]; λ = 0 is
    a feedforward area).

    Parameters: ``decay_logit`` (when learnable).

    Zero state: passes the drive through (``y = x``).  Does not gate.
    """

    type: Literal["time_decay"] = "time_decay"
    decay: float = Field(0.5, ge=0.0, le=1.0, description=(
        "λ in [0, 1], or its initial value when learnable (λ = 0 is a feedforward area)"))
    learnable: bool = Field(True, description=(
        "learn λ as σ(decay_logit), initialised to logit(decay); needs 0 < decay < 1"))

    @model_validator(mode="after")
    def _open_interval(self):
        if self.learnable and not 0.0 < self.decay < 1.0:
            raise ValueError("a learnable decay is parameterised as sigmoid(logit), "
                             f"so it needs 0 < decay < 1, got {self.decay}")
        return self


@register_cell("leaky", builder="tnnspec.compile.cells:LeakyCell")
class Leaky(CellParams):
    """Leaky integrator: ``h_t = h_{t-1} + (dt/τ)(-h_{t-1} + f(x_t))``, output ``h_t``.

    The forward-Euler step of ``τ dh/dt = -h + f(x)``.  ``dt_ms`` defaults to the spec's
    ``time.dt_ms`` (the compiler fills it in); ``dt/τ`` must be at most 1 (a larger step would
    overshoot the target ``f(x)``).  No parameters.

    Zero state: ``y = (dt/τ) f(x)``, an attenuated copy of the drive.  Does not gate.
    """

    type: Literal["leaky"] = "leaky"
    tau_ms: float = Field(..., gt=0, description="membrane time constant τ in ms")
    dt_ms: float | None = Field(None, gt=0, description=(
        "Euler step in ms; dt/τ must be at most 1 (default: the spec's time.dt_ms)"))
    activation: Activation = Field("identity", description="f applied to the drive")

    @model_validator(mode="after")
    def _stable(self):
        if self.dt_ms is not None and self.dt_ms > self.tau_ms:
            raise ValueError(f"leaky cell: dt_ms ({self.dt_ms}) must not exceed tau_ms ({self.tau_ms}); "
                             "dt/tau > 1 overshoots")
        return self

    def resolved(self, dt_ms: float) -> "Leaky":
        """A copy with ``dt_ms`` filled from the spec's ``time.dt_ms`` when unset (validated)."""
        if self.dt_ms is not None:
            return self
        return type(self).model_validate({**self.model_dump(), "dt_ms": dt_ms})

    @property
    def alpha(self) -> float:
        """``dt / τ``; needs ``dt_ms`` resolved."""
        if self.dt_ms is None:
            raise ValueError("leaky cell: dt_ms is unset (the compiler fills it from time.dt_ms)")
        return self.dt_ms / self.tau_ms


@register_cell("additive_state", builder="tnnspec.compile.cells:AdditiveStateCell")
class AdditiveState(CellParams):
    """CORnet-R/RT core: ``y_t = x_t + s_{t-1}``; after the area's ops, ``s_t`` is the area's final output.

    So the previous area output is added to the next step's drive.  ``s`` starts at zero, and
    the area's ops must keep the shape of the drive.  No parameters.

    Zero state: passes the drive through.  Does not gate.
    """

    type: Literal["additive_state"] = "additive_state"


# --------------------------------------------------------------------------- conv RNNs


class _ConvRNN(CellParams):
    """Shared fields and shape rule of the conv RNN cells (drive C_in -> ``channels``)."""

    kernel: Kernel = Field(3, description="conv kernel size of the input and hidden convs, an int or [kh, kw]")
    bias: bool = Field(True, description="learned bias (on input_conv)")

    def output_shape(self, drive: Shape, channels: int) -> Shape:
        _, h, w = require_map(drive, f"cell '{self.name}'")
        return (channels, h, w)


@register_cell("simple_rnn", builder="tnnspec.compile.cells:SimpleRNNCell")
class SimpleRNN(_ConvRNN):
    """Conv RNN (convrnns ``simplernn_*`` without layer norm): ``h_t = f(W_x * x_t + b + W_h * h_{t-1})``.

    Output ``h_t``.

    Parameters: ``input_conv`` (C_in → C, bias), ``hidden_conv`` (C → C).

    Zero state: ``y = f(W_x * x + b)``, a feedforward conv layer.  Does not gate.
    """

    type: Literal["simple_rnn"] = "simple_rnn"
    activation: Activation = Field("elu", description="f (tnn's default is ELU)")


@register_cell("gru", builder="tnnspec.compile.cells:GRUCell")
class GRU(_ConvRNN):
    """Conv GRU (convrnns ``gru_*``): ``h_t = u ⊙ h_{t-1} + (1 - u) ⊙ c``, an update gate ``u`` and a
    candidate ``c``.

    tnn's GRU is the same with ``forget_bias: 0``.
    ``r = σ(W_xr * x + b_r + W_hr * h + β_f)``, ``u = σ(W_xu * x + b_u + W_hu * h)``,
    ``c = tanh(W_xc * x + b_c + W_hc * (r ⊙ h))``, ``h_t = u ⊙ h + (1 - u) ⊙ c``; output ``h_t``.
    β_f is convrnns' ``forget_bias``, which it adds to the *reset* gate.

    Parameters: ``input_conv`` (C_in → 3C, blocks ``[r, u, c]``, bias), ``hidden_conv`` (C → 2C,
    blocks ``[r, u]``), ``candidate_hidden_conv`` (C → C, on ``r ⊙ h``).

    Zero state: ``y = (1 - u) ⊙ tanh(W_xc * x + b_c)`` with ``u = σ(W_xu * x + b_u)``.  Gates.
    """

    gates: ClassVar[bool] = True
    type: Literal["gru"] = "gru"
    forget_bias: float = Field(1.0, description="β_f, added to the reset gate's pre-activation (convrnns)")


@register_cell("lstm", builder="tnnspec.compile.cells:LSTMCell")
class LSTM(_ConvRNN):
    """Conv LSTM (convrnns ``lstm_*`` without layer norm): ``c_t = σ(f) ⊙ c_{t-1} + σ(i) ⊙ tanh(j)``, ``h_t
    = σ(o) ⊙ tanh(c_t)``.

    ``[i; j; f; o] = W_x * x + b + W_h * h_{t-1}``;
    ``c_t = σ(f + β_f + p_f ⊙ c_{t-1}) ⊙ c_{t-1} + σ(i + p_i ⊙ c_{t-1}) ⊙ tanh(j)``;
    ``h_t = σ(o + p_o ⊙ c_{t-1}) ⊙ tanh(c_t)``; output ``h_t``, state ``(c, h)``.
    The peepholes are location-specific ``[C, H, W]`` maps (initialised to 0) and, as in tnn,
    the output peephole reads ``c_{t-1}``.

    Parameters: ``input_conv`` (C_in → 4C, blocks ``[i, j, f, o]``, bias), ``hidden_conv``
    (C → 4C), and with ``peephole``: ``peephole_i``, ``peephole_f``, ``peephole_o``.

    Zero state: ``y = σ(o) ⊙ tanh(σ(i) ⊙ tanh(j))`` (the peepholes see 0).  Gates.
    """

    gates: ClassVar[bool] = True
    type: Literal["lstm"] = "lstm"
    forget_bias: float = Field(1.0, description="β_f, added to the forget gate's pre-activation")
    peephole: bool = Field(False, description=(
        "location-specific peephole weights p_i, p_f, p_o ([C, H, W], initialised to 0) from c_{t-1}"))


@register_cell("ugrnn", builder="tnnspec.compile.cells:UGRNNCell")
class UGRNN(_ConvRNN):
    """Conv update-gate RNN (convrnns ``ugrnn_*``): ``h_t = g ⊙ h_{t-1} + (1 - g) ⊙ tanh(c̃)``.

    ``[g̃; c̃] = W_x * x + b + W_h * h_{t-1}``, ``g = σ(g̃ + β_f)``,
    ``h_t = g ⊙ h_{t-1} + (1 - g) ⊙ tanh(c̃)``; output = state = ``h_t``.

    Parameters: ``input_conv`` (C_in → 2C, blocks ``[g, c]``, bias), ``hidden_conv`` (C → 2C).

    Zero state: ``y = (1 - σ(g̃ + β_f)) ⊙ tanh(c̃)`` with the hidden term 0.  Gates.
    """

    gates: ClassVar[bool] = True
    type: Literal["ugrnn"] = "ugrnn"
    forget_bias: float = Field(1.0, description="β_f, added to the update gate's pre-activation")


@register_cell("intersection_rnn", builder="tnnspec.compile.cells:IntersectionRNNCell")
class IntersectionRNN(_ConvRNN):
    """Conv intersection RNN (convrnns ``intersectionrnn_*``): a gated temporal path ``h`` and a gated
    depth path ``y`` past the drive.

    ``[g̃_h; h̃; g̃_y; ỹ] = W_x * x + b + W_h * h_{t-1}``, ``g_h = σ(g̃_h + β)``, ``g_y = σ(g̃_y + β)``;
    ``h_t = g_h ⊙ h_{t-1} + (1 - g_h) ⊙ tanh(h̃)`` (state);
    ``y_t = g_y ⊙ x_t + (1 - g_y) ⊙ ReLU(ỹ)`` (output; the drive is bypassed, so it must
    already have ``channels`` channels).

    Parameters: ``input_conv`` (C → 4C, blocks ``[g_h, h, g_y, y]``, bias), ``hidden_conv`` (C → 4C).

    Zero state: ``y = g_y ⊙ x + (1 - g_y) ⊙ ReLU(ỹ)`` with the hidden term 0.  Gates.
    """

    gates: ClassVar[bool] = True
    type: Literal["intersection_rnn"] = "intersection_rnn"
    forget_bias: float = Field(1.0, description="β, added to both gates' pre-activations")

    def output_shape(self, drive: Shape, channels: int) -> Shape:
        require_map(drive, "cell 'intersection_rnn'")
        return CellParams.output_shape(self, drive, channels)


# --------------------------------------------------------------------------- lecture cells


class _SameChannelsMap(CellParams):
    """Cells that add the drive to their state: the drive must already have ``channels``."""

    def output_shape(self, drive: Shape, channels: int) -> Shape:
        require_map(drive, f"cell '{self.name}'")
        return CellParams.output_shape(self, drive, channels)


@register_cell("reciprocal_gated", builder="tnnspec.compile.cells:ReciprocalGatedCell")
class ReciprocalGated(_SameChannelsMap):
    """Reciprocal gated cell, lecture form: the states ``h`` and ``c`` each gate the other's input.

    ``h_t = f((1 - σ(W_ch * c_{t-1})) ⊙ x_t + (1 - σ(W_hh * h_{t-1})) ⊙ h_{t-1})``,
    ``c_t = f((1 - σ(W_hc * h_{t-1})) ⊙ x_t + (1 - σ(W_cc * c_{t-1})) ⊙ c_{t-1})``;
    output ``h_t``, state ``(h, c)``.

    Parameters: ``gate_ch``, ``gate_hh``, ``gate_hc``, ``gate_cc`` (each C → C), bias-free by
    default (as the equations, and as tnn's RGC convs).

    Zero state: ``h = c = f((1 - σ(b)) ⊙ x)``, i.e. ``f(x / 2)`` without biases.  Gates.
    """

    gates: ClassVar[bool] = True
    type: Literal["reciprocal_gated"] = "reciprocal_gated"
    kernel: Kernel = Field(3, description="gate conv kernel size, an int or [kh, kw]")
    activation: Activation = Field("elu", description="f (tnn's RGC uses ELU)")
    bias: bool = Field(False, description="learned biases on the gate convs")


@register_cell("resnet_unit", builder="tnnspec.compile.cells:ResNetUnitCell")
class ResNetUnit(_SameChannelsMap):
    """ResNet-like recurrent unit (lecture form): ``h_t = f(x_t + σ(W^g_xh * x_t) ⊙ h_{t-1} + W_ch *
    c_{t-1})``.

    ``h_t = f(x_t + σ(W^g_xh * x_t) ⊙ h_{t-1} + W_ch * c_{t-1})``,
    ``c_t = f(σ(W^g_xc * x_t) ⊙ c_{t-1} + W_xc * x_t + W_cc * c_{t-1})``; output ``h_t``,
    state ``(h, c)``.  The lecture writes ``W_xc`` both inside the cell gate and as a linear
    input term; we read these as two different kernels: ``gate_xc`` (inside σ) and ``in_xc``
    (the linear term).

    Parameters: ``gate_xh``, ``conv_ch``, ``gate_xc``, ``in_xc``, ``conv_cc`` (each C → C),
    bias-free by default.

    Zero state: ``h = f(x)`` (identity shortcut), ``c = f(W_xc * x)``.  Gates.
    """

    gates: ClassVar[bool] = True
    type: Literal["resnet_unit"] = "resnet_unit"
    kernel: Kernel = Field(3, description="conv kernel size, an int or [kh, kw]")
    activation: Activation = Field("relu", description="f")
    bias: bool = Field(False, description="learned biases on the convs")


@register_cell("reciprocal_gated_convrnn", builder="tnnspec.compile.cells:ReciprocalGatedConvRNNCell")
class ReciprocalGatedConvRNN(_SameChannelsMap):
    """Parameterised reciprocal gated cell (tnn/convrnns RGC, §4.8): ``c`` and ``h`` each leak through a
    τ-gate driven by their own state and take input through a g-gate driven by the other's.

    Feedback and residual inputs reach the area through its edges, so the cell does not take
    them.  ``x̃ = φ_in(x_t)``;
    ``c_t = φ((a_τ + k_τ σ_τ(T_τc(c_{t-1}))) ⊙ c_{t-1} + (a_g + k_g σ_g(T_gc(h_{t-1}))) ⊙ W_ic * x̃)``;
    ``u_h = x̃`` (or ``W_io * x̃`` with ``input_to_out``), plus ``T_co(c_{t-1})`` with ``cell_to_out``;
    ``h_t = φ((a_τ + k_τ σ_τ(T_τh(h_{t-1}))) ⊙ h_{t-1} + (a_g + k_g σ_g(T_gh(c_{t-1}))) ⊙ u_h)``;
    output ``h_t``, state ``(c, h)`` (``c`` has ``cell_channels``).  The output gates the cell
    and the cell gates the output.  The defaults (a = 1, k = -1, sigmoid) give the ``1 - σ(·)``
    multipliers of tnn's ``rgc_shallow``.

    Parameters: ``input_to_cell_conv`` (bias), ``input_to_out_conv`` (bias; with
    ``input_to_out``), ``cell_to_out_conv`` (with ``cell_to_out``), and the temporal convs
    ``tau_cc`` (c → c), ``gate_hc`` (h → c), ``tau_hh`` (h → h), ``gate_ch`` (c → h), bias-free
    as in tnn (whose bias code never runs).  A depthwise-separable conv has ``.depthwise``
    (k×k) and ``.pointwise`` (1×1) parts, e.g. ``tau_cc.depthwise.weight``.

    Zero state: ``h = φ((a_g + k_g σ_g(0)) ⊙ u_h)`` (``φ(x̃ / 2)`` with the defaults).  Gates.
    """

    gates: ClassVar[bool] = True
    type: Literal["reciprocal_gated_convrnn"] = "reciprocal_gated_convrnn"
    cell_channels: int | None = Field(None, gt=0, description=(
        "channels of the cell state c (default: the area's channels)"))
    tau_kernel: Kernel = Field(3, description="kernel of the τ (leak) convs")
    gate_kernel: Kernel = Field(3, description="kernel of the g (input gate) convs")
    input_kernel: Kernel = Field(3, description="kernel of input_to_cell_conv / input_to_out_conv / cell_to_out_conv")
    tau_depth_separable: bool = Field(False, description="τ convs are depthwise-separable")
    gate_depth_separable: bool = Field(False, description="g convs are depthwise-separable")
    tau_offset: float = Field(1.0, description="a_τ")
    tau_multiplier: float = Field(-1.0, description="k_τ")
    gate_offset: float = Field(1.0, description="a_g")
    gate_multiplier: float = Field(-1.0, description="k_g")
    tau_nonlinearity: Literal["sigmoid", "tanh"] = Field("sigmoid", description="σ_τ")
    gate_nonlinearity: Literal["sigmoid", "tanh"] = Field("sigmoid", description="σ_g")
    activation: Activation = Field("elu", description="φ, applied to c and h")
    input_activation: Activation = Field("identity", description="φ_in, applied to the drive")
    input_to_out: bool = Field(False, description="u_h = W_io * x̃ instead of x̃")
    cell_to_out: bool = Field(False, description="add T_co(c_{t-1}) to u_h")


# --------------------------------------------------------------------------- CORnet-S


@register_cell("cornet_s_block", builder="tnnspec.compile.cells:CORnetSBlockCell")
class CORnetSBlock(CellParams):
    """CORnet-S area block: ``inner_steps`` bottleneck steps inside one outer step, per-step batch norms,
    stride 2 at the first.

    The drive is ``h_0`` (CORnet's 1×1 ``conv_input`` projection lives on the edge).  For
    ``k = 0..n-1``: ``s_k = norm_skip(skip ⊛_{stride 2} h_k)`` if ``k = 0`` else ``h_k``;
    ``z = ReLU(norm1_k(conv1 ⊛ h_k))``; ``z = ReLU(norm2_k(conv2 ⊛_{stride 2 if k = 0 else 1} z))``;
    ``h_{k+1} = ReLU(norm3_k(conv3 ⊛ z) + s_k)``; output ``h_n`` of shape
    ``[C, (H-1)//2 + 1, (W-1)//2 + 1]``.  No state across outer steps.

    Parameters: ``conv1`` (1×1, C → sC), ``conv2`` (3×3, sC → sC), ``conv3`` (1×1, sC → C),
    ``skip`` (1×1, C → C), all bias-free; ``norm_skip`` and one BatchNorm per inner step,
    ``norm1_k``, ``norm2_k``, ``norm3_k`` (e.g. ``norm1_0``, ``norm1_1``; eps 1e-5), as in CORnet.

    Zero state: stateless, so the drive always passes the residual path (``s_0`` is the
    normalised strided skip).  Does not gate.
    """

    pure = False  # batch norms: running statistics learn from each training call

    type: Literal["cornet_s_block"] = "cornet_s_block"
    inner_steps: int = Field(2, ge=1, description="unrolled steps n inside one outer step (CORnet-S: V2 2, V4 4, IT 2)")
    scale: int = Field(4, ge=1, description="bottleneck expansion: conv1/conv2 have scale·C channels")

    def output_shape(self, drive: Shape, channels: int) -> Shape:
        c, h, w = require_map(drive, "cell 'cornet_s_block'")
        if c != channels:
            raise ShapeError(f"cell 'cornet_s_block' needs a drive with the area's {channels} channels "
                             f"(project it on the edge, CORnet's conv_input), got {c}")
        return (channels, (h - 1) // 2 + 1, (w - 1) // 2 + 1)


# --------------------------------------------------------------------------- normalisation


@register_cell("divisive_norm", builder="tnnspec.compile.cells:DivisiveNormCell")
class DivisiveNorm(CellParams):
    """Divisive normalization (Heeger 1993; Reynolds & Heeger 2009) as a shunting circuit that settles to
    ``E / (σ + pool(|E|))``.

    ``E = x`` (or ``max(x, 0)^p`` with ``power: p``), ``g = σ + pool(|E|)`` where ``pool``
    averages over a ``pool_kernel`` window (stride 1, same padding, padding not counted)
    and, with ``pool_channels``, over all channels.  Closed form: ``R = E / g``.
    Circuit: the shunting equation ``τ dR/dt = E - g ⊙ R`` (leak σ plus pooled shunting
    conductance), whose effective time constant ``τ/g`` shrinks with the conductance, is
    stepped by Euler at ``1/tau_steps`` of that time constant:
    ``R_t = R_{t-1} + (E_t - g_t ⊙ R_{t-1}) / (tau_steps · g_t)``.  Its fixed point is exactly
    the closed form, and for a constant drive the error shrinks by ``1 - 1/tau_steps`` per
    step for every input (no oscillation); ``tau_steps: 1`` is the equilibrium at every step.
    No parameters.

    Zero state: ``y = E / (tau_steps · g)``.  Does not gate: the divisive gain ``1/g`` lies in
    (0, 1/σ], a normalisation rather than a sigmoid gate.
    """

    type: Literal["divisive_norm"] = "divisive_norm"
    sigma: float = Field(1.0, gt=0, description="semi-saturation constant σ")
    pool_kernel: int = Field(5, ge=1, description="odd spatial window of the normalisation pool")
    pool_channels: bool = Field(True, description="pool over all channels too (else per channel)")
    power: float | None = Field(None, ge=1, description="exponent p: E = max(x, 0)^p (default: E = x)")
    tau_steps: float = Field(1.0, ge=1, description="time constant in steps (1: the equilibrium at every step)")

    @field_validator("pool_kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"pool_kernel must be odd, got {v}")
        return v

    def output_shape(self, drive: Shape, channels: int) -> Shape:
        require_map(drive, "cell 'divisive_norm'")
        return CellParams.output_shape(self, drive, channels)

