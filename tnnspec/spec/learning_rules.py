"""The built-in learning rules: parameters models (plain data, no torch).

Each rule is one registration (:func:`~tnnspec.spec.components.register_learning_rule`): a
parameters model whose docstring gives the update equation and the paper, and the import path of
its torch half (:mod:`tnnspec.train.learning_rules`). docs/learning_rules.md is generated from
these docstrings and fields (``make docs``).

Notation: a layer computes ``y = W x`` (a conv: ``y = W ⋆ x``); ``δ_out = ∂L/∂y`` is the error
that reaches its output, ``δ_in`` the error it passes to its input, η the learning rate.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .components import LearningRuleParams, register_learning_rule


class _Alignment(LearningRuleParams):
    """Options shared by the rules that differ from backprop: measuring how far they are from it."""

    measure_alignment: bool = Field(False, description=(
        "at every log_every-th step, also compute the backprop gradient of the same batch and log the angle "
        "between it and this rule's gradient (alignment_deg in metrics.jsonl); costs one more forward and "
        "backward pass on those steps"))
    alignment_per_layer: bool = Field(False, description=(
        "with measure_alignment, also log the angle of each parameter tensor (alignment_deg_per_layer)"))


@register_learning_rule("backprop", builder="tnnspec.train.learning_rules:Backprop")
class Backprop(LearningRuleParams):
    """Backpropagation through time: ``ΔW = −η ∂L/∂W``, the exact gradient of the loss over all steps.

    The error reaches each layer's input through the transposed forward weights, ``δ_in = Wᵀ δ_out``,
    and flows back through every step of the unrolled graph. The default.

    Paper: Rumelhart, Hinton & Williams 1986, "Learning representations by back-propagating
    errors", Nature 323:533; Werbos 1990, "Backpropagation through time: what it does and how to do
    it", Proc. IEEE 78:1550.
    """

    type: Literal["backprop"] = "backprop"


@register_learning_rule("truncated", builder="tnnspec.train.learning_rules:Truncated")
class Truncated(_Alignment):
    """Truncated backpropagation through time: ``ΔW = −η ∂L/∂W`` with the gradient cut every ``k`` steps.

    The states and outputs carried into steps ``k, 2k, ...`` are detached, so an error flows back
    at most to the previous multiple of ``k`` (the compiled network's ``tbptt=k``). The forward
    computation is unchanged; with ``k`` at least the number of steps it is backprop.

    Paper: Williams & Peng 1990, "An efficient gradient-based algorithm for on-line training of
    recurrent network trajectories", Neural Computation 2:490.
    """

    type: Literal["truncated"] = "truncated"
    k: int = Field(4, ge=1, description="steps between cuts of the gradient")


class _Random(_Alignment):
    seed: int = Field(0, description="seed of the random feedback weights (drawn per parameter, from it and the "
                                     "parameter's name)")
    scale: float = Field(1.0, gt=0, description="factor on the random feedback weights' range")


@register_learning_rule("feedback_alignment", builder="tnnspec.train.learning_rules:FeedbackAlignment")
class FeedbackAlignment(_Random):
    """Feedback alignment: ``δ_in = Bᵀ δ_out`` through fixed random ``B``; ``ΔW = −η δ_out x_inᵀ`` as in backprop.

    Every conv and linear layer (in edge transforms, cells and readout heads) passes the error to
    its input through its own fixed random weights ``B`` of ``W``'s shape (for a conv: the
    transposed convolution with ``B``), while its weight gradient is the usual one. ``B`` is drawn
    once from ``U(−s/√fan_in, s/√fan_in)`` — PyTorch's default initialisation of ``W`` (fan_in =
    input channels per group × kernel area, or input features), times ``scale`` s — seeded from
    ``seed`` and the parameter's name, so runs are reproducible; it is saved with the checkpoint.
    Nonlinearities, norms, pools and the recurrence through time backpropagate as usual, and the
    forward computation is unchanged.

    Paper: Lillicrap, Cownden, Tweed & Akerman 2016, "Random synaptic feedback weights support
    error backpropagation for deep learning", Nature Communications 7:13276.
    """

    type: Literal["feedback_alignment"] = "feedback_alignment"


@register_learning_rule("sign_symmetry", builder="tnnspec.train.learning_rules:SignSymmetry")
class SignSymmetry(_Alignment):
    """Sign symmetry: ``δ_in = Bᵀ δ_out`` with ``B = s · sign(W)``; ``ΔW = −η δ_out x_inᵀ`` as in backprop.

    ``B`` follows the current ``W`` at every step (it has no state of its own); it is used by
    every conv and linear layer as in feedback alignment. ``scale: mean_abs`` (the default) takes
    ``s`` = the layer's mean ``|W|``, so that ``B`` has ``W``'s mean magnitude and the backward
    signal keeps backprop's scale; ``scale: none`` takes ``s = 1``, the plain sign-concordant
    feedback of Liao et al. (who rely on batch normalisation to control the scale).

    Paper: Liao, Leibo & Poggio 2016, "How important is weight symmetry in backpropagation?",
    AAAI; Moskovitz, Litwin-Kumar & Abbott 2018, "Feedback alignment in deep convolutional
    networks", arXiv:1812.06488.
    """

    type: Literal["sign_symmetry"] = "sign_symmetry"
    scale: Literal["mean_abs", "none"] = Field("mean_abs", description=(
        "the factor s on sign(W): the layer's mean |W|, or 1"))


@register_learning_rule("kolen_pollack", builder="tnnspec.train.learning_rules:KolenPollack")
class KolenPollack(_Random):
    """Kolen-Pollack: ``δ_in = Bᵀ δ_out``; ``ΔW = −η δ_out x_inᵀ − λW`` and ``ΔB = −η δ_out x_inᵀ − λB``, so ``B`` comes to align with ``W``.

    ``B`` is kept in ``W``'s shape: it is the transpose of the matrix that carries the error back,
    so the transposed update of Akrout et al. is exactly ``W``'s update. For a conv, ``B`` is a
    kernel of ``W``'s shape, used by the backward pass's transposed convolution, and it receives
    the same update as ``W``. After each optimiser step ``B ← (1 − λ) B + ΔW_opt`` and
    ``W ← W + ΔW_opt − λ W`` (``ΔW_opt``: the optimiser's update of ``W``, ``−η δ_out x_inᵀ`` for
    plain SGD), so ``W − B`` shrinks by the factor ``1 − λ`` at every step. ``B`` starts as
    feedback alignment's random ``B`` (same ``seed`` and ``scale``) and is saved with the
    checkpoint. λ (``decay``) applies to the conv and linear weights only, not to biases, on top
    of the optimiser's ``weight_decay``.

    Paper: Kolen & Pollack 1994, "Backpropagation without weight transport", IEEE ICNN; Akrout,
    Wilson, Humphreys, Lillicrap & Tweed 2019, "Deep learning without weight transport", NeurIPS;
    Kunin, Nayebi, Sagastuy-Brena, Ganguli, Bloom & Yamins 2020, "Two routes to scalable credit
    assignment without weight symmetry", ICML.
    """

    type: Literal["kolen_pollack"] = "kolen_pollack"
    decay: float = Field(1e-3, ge=0, lt=1, description="λ, the weight decay of W and B at every step")


@register_learning_rule("direct_feedback_alignment", builder="tnnspec.train.learning_rules:DirectFeedbackAlignment")
class DirectFeedbackAlignment(_Random):
    """Direct feedback alignment: each area's output receives ``δ_a,t = D_a e_t``, the readout error ``e_t = ∂L/∂logits_t`` through a fixed random projection, with no backprop between areas.

    ``D_a`` (the area's output channels × K classes) is drawn once from ``U(−s/√K, s/√K)`` (the
    default initialisation of a K → channels linear map, times ``scale`` s), seeded from ``seed``
    and the area's name, and saved with the checkpoint. On a map ``[C, H, W]`` the error is
    broadcast over space: each position receives ``D_a e_t / (H·W)``, the error an average pool
    followed by a linear readout would deliver. What an area reads from other areas, and what the
    readout head reads, is detached; within an area the error flows through its ops and cell to
    the cell's weights and to its incoming edges' transforms, and back through the area's own
    recurrence (its state and its edges from itself) to its earlier steps. The error is injected
    at every step that carries loss; the readout head learns by its true gradient. Needs the
    spec's classification readout (not a custom task).

    Paper: Nøkland 2016, "Direct feedback alignment provides learning in deep neural networks",
    NeurIPS.
    """

    type: Literal["direct_feedback_alignment"] = "direct_feedback_alignment"
