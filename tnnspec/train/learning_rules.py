"""Learning rules: the torch half (the parameters and equations are in :mod:`tnnspec.spec.learning_rules`).

The trainer (:mod:`tnnspec.train.trainer`) drives a :class:`LearningRule` through each step::

    rule = build(cfg.learning_rule)              # before compiling: rule.network_options()
    rule.check(compile=..., network_options=..., task=...)
    rule.setup(module, net, readout=name)        # after compiling: feedback weights, ...
    with rule.context():                         # forward and backward of one training step
        loss, logits = ...
        rule.backward(loss, logits)              # leaves the rule's gradient in .grad
    rule.before_update(); optimizer.step(); rule.after_update()

Its state (feedback weights) is :meth:`LearningRule.state_dict`, saved beside each checkpoint
(:mod:`tnnspec.train.checkpoint`) and restored on resume. A plugin's rule subclasses
:class:`LearningRule` and registers its parameters model with
:func:`tnnspec.plugins.register_learning_rule` (docs/learning_rules.md).

Outside :meth:`LearningRule.context` nothing a rule does is seen: the compiled network computes
exactly as before for inference, evaluation and users' own calls (:mod:`tnnspec.compile.feedback`).
"""

from __future__ import annotations

import hashlib
import math
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn

from ..compile import feedback as fb
from ..spec.components import Builders, LearningRuleParams

BUILDERS = Builders("learning_rule")


class LearningRuleError(Exception):
    """A rule cannot run with these settings (the trainer reports it as a :class:`TrainError`)."""


def build(params: LearningRuleParams) -> LearningRule:
    """The torch half of the rule ``params`` describe (its registered builder, called with them)."""
    rule = BUILDERS[params.type](params)
    if not isinstance(rule, LearningRule):
        raise LearningRuleError(f"learning rule '{params.type}': its builder returned {type(rule).__name__}, "
                                "not a tnnspec.train.learning_rules.LearningRule")
    return rule


class LearningRule:
    """How the trainer turns a loss into gradients and updates. The base class is backprop."""

    #: whether the rule changes the computation of gradients inside :meth:`context` (those that
    #: do cannot run under torch.compile or activation checkpointing)
    intercepts: bool = False

    def __init__(self, params: LearningRuleParams):
        self.params = params
        self.name = params.type

    # ------------------------------------------------------------ before and after compiling
    def network_options(self) -> dict:
        """Execution options the network must be compiled with (``truncated``: ``tbptt``)."""
        return {}

    def check(self, *, compile: bool = False, network_options: dict | None = None, task=None) -> None:
        """Raise :class:`LearningRuleError` for settings the rule cannot run with."""
        if not self.intercepts:
            return
        if compile:
            raise LearningRuleError(f"learning rule '{self.name}' does not run under --compile (torch.compile); "
                                    "train without it")
        if (network_options or {}).get("checkpoint"):
            raise LearningRuleError(f"learning rule '{self.name}' does not run with activation checkpointing "
                                    "(its recomputation runs outside the rule); train without it")

    def setup(self, module: nn.Module, net: nn.Module, *, readout: str | None = None) -> None:
        """Called once the network exists: ``module`` is what is trained (the network, or a task's
        module holding it), ``net`` the compiled network, ``readout`` the trained readout (None
        for a task)."""

    # ------------------------------------------------------------ one step
    def context(self):
        """The block in which the trainer runs the step's forward and backward pass."""
        return nullcontext()

    def backward(self, loss: Tensor, logits: Tensor | None) -> None:
        """Leave the rule's gradient of ``loss`` in ``.grad`` (``logits``: the trained readout's
        ``[T, B, classes]``, or None for a task)."""
        loss.backward()

    def before_update(self) -> None:
        """Just before the optimiser step."""

    def after_update(self) -> None:
        """Just after the optimiser step."""

    # ------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Tensor]:
        """Tensors to checkpoint (empty: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        if state:
            raise LearningRuleError(f"learning rule '{self.name}' keeps no state, but the checkpoint holds "
                                    f"{len(state)} tensors for it")

    @property
    def measures_alignment(self) -> bool:
        return bool(getattr(self.params, "measure_alignment", False))

    @property
    def alignment_per_layer(self) -> bool:
        return bool(getattr(self.params, "alignment_per_layer", False))


class Backprop(LearningRule):
    """Backpropagation: the trainer's step, unchanged."""


class Truncated(LearningRule):
    """Truncated BPTT: the network's ``tbptt`` option."""

    def network_options(self) -> dict:
        return {"tbptt": self.params.k}


# ---------------------------------------------------------------- feedback weights per layer
def _layers(module: nn.Module) -> dict[str, Tensor]:
    """``{parameter name: weight}`` of every trainable conv and linear layer of tnnspec's."""
    from ..compile.ops import ConvTranspose2d, Linear
    from ..compile.packing import Conv2d

    found = {}
    for name, m in module.named_modules():
        if isinstance(m, (Conv2d, Linear, ConvTranspose2d)) and m.weight.requires_grad:
            found[f"{name}.weight" if name else "weight"] = m.weight
    return found


def seed_for(seed: int, name: str) -> int:
    """A generator seed from the rule's seed and a parameter's (or area's) name."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little") & (2 ** 63 - 1)


def uniform(shape, bound: float, seed: int, name: str, like: Tensor) -> Tensor:
    """``U(-bound, bound)`` of ``shape``, drawn in float64 on the CPU from ``(seed, name)`` (the same
    on every device and process), as ``like``'s dtype and device."""
    gen = torch.Generator().manual_seed(seed_for(seed, name))
    u = torch.rand(tuple(shape), generator=gen, dtype=torch.float64)
    return ((2 * u - 1) * bound).to(dtype=like.dtype, device=like.device)


def random_feedback(weight: Tensor, name: str, seed: int, scale: float) -> Tensor:
    """Feedback alignment's ``B`` for ``weight``: ``U(-s/sqrt(fan_in), s/sqrt(fan_in))``, PyTorch's
    default initialisation of conv and linear weights (fan_in = ``weight[0].numel()``)."""
    return uniform(weight.shape, scale / math.sqrt(max(weight[0].numel(), 1)), seed, name, weight)


class _LayerFeedback(LearningRule):
    """Rules whose conv and linear layers pass the error back through ``B`` instead of ``W``."""

    intercepts = True

    def setup(self, module, net, *, readout=None):
        self.layers = _layers(module)
        self._names = {id(w): n for n, w in self.layers.items()}

    def feedback_for(self, name: str, weight: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def context(self):
        cache: dict[int, Tensor] = {}

        def lookup(weight: Tensor) -> Tensor | None:
            name = self._names.get(id(weight))
            if name is None or self.layers[name] is not weight:
                return None
            if id(weight) not in cache:
                cache[id(weight)] = self.feedback_for(name, weight)
            return cache[id(weight)]

        return fb.active(fb.Feedback(lookup))


class _StoredFeedback(_LayerFeedback):
    """``B`` per layer, drawn at setup and kept (checkpointed)."""

    def setup(self, module, net, *, readout=None):
        super().setup(module, net, readout=readout)
        self.B = {n: random_feedback(w.detach(), n, self.params.seed, self.params.scale)
                  for n, w in self.layers.items()}

    def feedback_for(self, name, weight):
        return self.B[name]

    def state_dict(self):
        return {n: b for n, b in self.B.items()}

    def load_state_dict(self, state):
        _load_into(self.name, self.B, state)


def _load_into(rule: str, target: dict[str, Tensor], state: dict[str, Tensor]) -> None:
    if set(state) != set(target):
        raise LearningRuleError(f"learning rule '{rule}': the checkpoint's feedback weights are for "
                                f"{sorted(set(state) ^ set(target))[:3]}... which this network does not match")
    for n, b in target.items():
        if state[n].shape != b.shape:
            raise LearningRuleError(f"learning rule '{rule}': checkpoint feedback weights '{n}' have shape "
                                    f"{list(state[n].shape)}, the network needs {list(b.shape)}")
        target[n] = state[n].to(dtype=b.dtype, device=b.device).clone()


class FeedbackAlignment(_StoredFeedback):
    """Fixed random ``B`` (Lillicrap et al. 2016)."""


class SignSymmetry(_LayerFeedback):
    """``B = s · sign(W)`` of the current ``W`` (Liao et al. 2016)."""

    def feedback_for(self, name, weight):
        w = weight.detach()
        b = torch.sign(w)
        return b * w.abs().mean() if self.params.scale == "mean_abs" else b


class KolenPollack(_StoredFeedback):
    """``B`` learns with ``W``'s update; both decay (Kolen & Pollack 1994; Akrout et al. 2019)."""

    def before_update(self):
        self._before = {n: w.detach().clone() for n, w in self.layers.items()}

    @torch.no_grad()
    def after_update(self):
        decay = self.params.decay
        for n, w in self.layers.items():
            old = self._before[n]
            update = w - old  # what the optimiser did to W
            if decay:
                w.sub_(decay * old)
            self.B[n] = self.B[n] * (1 - decay) + update
        self._before = {}


# ---------------------------------------------------------------- direct feedback alignment
class DirectFeedbackAlignment(LearningRule):
    """The readout error projected to every area's output (Nøkland 2016)."""

    intercepts = True

    def check(self, *, compile=False, network_options=None, task=None):
        super().check(compile=compile, network_options=network_options, task=task)
        if task is not None:
            raise LearningRuleError("learning rule 'direct_feedback_alignment' projects the error of the spec's "
                                    "classification readout, and a custom task has none")

    def setup(self, module, net, *, readout=None):
        plan = net.plan
        classes = plan.shapes.readout[readout]
        if len(classes) != 1:
            raise LearningRuleError(f"learning rule 'direct_feedback_alignment': readout '{readout}' gives "
                                    f"shape {list(classes)}, not a vector of class scores")
        k = classes[0]
        like = next(net.parameters())
        self.D = {a: uniform((shape[0], k), self.params.scale / math.sqrt(k), self.params.seed, a, like)
                  for a, shape in plan.shapes.output.items() if len(shape) >= 1}

    def context(self):
        self._tap = fb.Tap()
        return _closing(fb.active(tap=self._tap), self)

    def backward(self, loss, logits):
        if logits is None:  # pragma: no cover - refused by check()
            raise LearningRuleError("direct_feedback_alignment needs the readout's logits")
        (e,) = torch.autograd.grad(loss, logits, retain_graph=True)  # e_t = dL/dlogits_t, [T, B, K]
        injected: dict[int, tuple[Tensor, Tensor]] = {}
        nonzero = [bool(torch.count_nonzero(e[t])) for t in range(e.shape[0])]
        for area, t, y in self._tap.outputs:
            if t >= len(nonzero) or not nonzero[t] or area not in self.D:
                continue
            g = e[t].to(self.D[area].dtype) @ self.D[area].t()  # [B, C]
            if y.shape[0] == 1 and g.shape[0] != 1:  # an update shared by the batch (share_constants)
                g = g.sum(0, keepdim=True)
            extra = y.dim() - 2
            if extra > 0:  # broadcast over space: the error an average pool would deliver
                g = g.reshape(*g.shape, *([1] * extra)).expand(y.shape) / math.prod(y.shape[2:])
            g = g.to(y.dtype)
            if id(y) in injected:  # one tensor at several steps (a reused output): the errors add
                injected[id(y)] = (y, injected[id(y)][1] + g)
            else:
                injected[id(y)] = (y, g)
        ys = [y for y, _ in injected.values()]
        torch.autograd.backward([loss, *ys], [None, *(g for _, g in injected.values())])

    def state_dict(self):
        return {a: d for a, d in self.D.items()}

    def load_state_dict(self, state):
        _load_into(self.name, self.D, state)


@contextmanager
def _closing(inner, rule):
    with inner:
        try:
            yield
        finally:
            rule._tap = fb.Tap()  # let go of the step's graph


# ---------------------------------------------------------------- alignment with backprop
def angle_deg(a: list[Tensor], b: list[Tensor]) -> float | None:
    """The angle in degrees between two gradients (lists of tensors), None if one is zero."""
    dot = sum(float((x.double() * y.double()).sum()) for x, y in zip(a, b))
    na = math.sqrt(sum(float(x.double().pow(2).sum()) for x in a))
    nb = math.sqrt(sum(float(y.double().pow(2).sum()) for y in b))
    if na == 0 or nb == 0:
        return None
    return math.degrees(math.acos(max(-1.0, min(1.0, dot / (na * nb)))))


__all__ = [
    "Backprop",
    "DirectFeedbackAlignment",
    "FeedbackAlignment",
    "KolenPollack",
    "LearningRule",
    "LearningRuleError",
    "SignSymmetry",
    "Truncated",
    "angle_deg",
    "build",
    "random_feedback",
    "seed_for",
]
