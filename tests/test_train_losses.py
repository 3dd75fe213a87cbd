"""tnnspec.train.losses: weights over time, temporal cross-entropy, decoders, solve times."""

import math

import pytest
import torch
import torch.nn.functional as F

from tnnspec.spec.training import LossOverTime
from tnnspec.train.losses import accuracy_per_step, decode, solve_times, temporal_cross_entropy, time_weights


# ---------------------------------------------------------------- weights
def test_time_weights_modes():
    assert time_weights(4, LossOverTime()).tolist() == [0.25] * 4
    assert time_weights(4, LossOverTime(steps="last")).tolist() == [0, 0, 0, 1]
    assert time_weights(5, LossOverTime(steps="last_k", k=2)).tolist() == [0, 0, 0, 0.5, 0.5]
    assert time_weights(2, LossOverTime(steps="last_k", k=5)).tolist() == [0.5, 0.5]   # k > T: all
    assert time_weights(3, None).tolist() == pytest.approx([1 / 3] * 3)
    assert time_weights(3, {"steps": "last"}).tolist() == [0, 0, 1]
    for cfg in (LossOverTime(), LossOverTime(steps="last"), LossOverTime(steps="last_k", k=3, gamma=0.5)):
        w = time_weights(6, cfg)
        assert w.shape == (6,) and (w >= 0).all() and float(w.sum()) == pytest.approx(1.0)


def test_time_weights_gamma():
    w = time_weights(3, LossOverTime(gamma=0.5))          # ∝ 0.25, 0.5, 1
    assert w.tolist() == pytest.approx([1 / 7, 2 / 7, 4 / 7])
    w = time_weights(4, LossOverTime(steps="last_k", k=2, gamma=2.0))   # ∝ 0, 0, 2, 1
    assert w.tolist() == pytest.approx([0, 0, 2 / 3, 1 / 3])
    assert time_weights(3, LossOverTime(steps="last", gamma=0.1)).tolist() == [0, 0, 1]
    with pytest.raises(ValueError):
        time_weights(3, {"steps": "first"})


# ---------------------------------------------------------------- cross-entropy
def test_temporal_cross_entropy_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]],
                           [[1.0, 1.0], [3.0, 0.0]]])      # [T=2, B=2, K=2]
    labels = torch.tensor([0, 1])

    def ce(z, y):                                         # -log softmax(z)[y]
        return -(z[y] - math.log(sum(math.exp(v) for v in z)))

    per_step = [(ce([2, 0], 0) + ce([0, 1], 1)) / 2, (ce([1, 1], 0) + ce([3, 0], 1)) / 2]
    w = torch.tensor([0.25, 0.75])
    got = temporal_cross_entropy(logits, labels, w)
    assert got.ndim == 0 and float(got) == pytest.approx(0.25 * per_step[0] + 0.75 * per_step[1], rel=1e-6)
    # on log-probabilities it is the NLL (log_softmax is idempotent)
    logp = F.log_softmax(logits, -1)
    assert float(temporal_cross_entropy(logp, labels, w)) == pytest.approx(float(got), rel=1e-6)
    nll = 0.25 * F.nll_loss(logp[0], labels) + 0.75 * F.nll_loss(logp[1], labels)
    assert float(temporal_cross_entropy(logp, labels, w)) == pytest.approx(float(nll), rel=1e-6)


def test_temporal_cross_entropy_skips_unweighted_steps_and_grads():
    logits = torch.randn(3, 4, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    bad = logits.detach().clone()
    bad[0] = float("nan")
    w = time_weights(3, LossOverTime(steps="last"))
    assert torch.isfinite(temporal_cross_entropy(bad, labels, w))
    temporal_cross_entropy(logits, labels, w).backward()
    assert logits.grad[0].abs().sum() == 0 and logits.grad[2].abs().sum() > 0


# ---------------------------------------------------------------- decoders
def _logp(rows):
    """[T][B] lists of probability vectors -> log-probabilities [T, B, K]."""
    return torch.tensor(rows, dtype=torch.float32).log()


def test_decoders_by_hand():
    # B=2, K=3, T=3
    p = _logp([[[0.50, 0.30, 0.20], [0.20, 0.70, 0.10]],
               [[0.10, 0.85, 0.05], [0.95, 0.03, 0.02]],
               [[0.40, 0.35, 0.25], [0.30, 0.60, 0.10]]])
    pred, step = decode(p, "last")
    assert pred.tolist() == [0, 1] and step.tolist() == [2, 2] and pred.dtype == step.dtype == torch.int64
    # mean over steps: image 0: [1.0, 1.5, 0.5]/3 -> 1; image 1: [1.45, 1.33, 0.22]/3 -> 0
    pred, step = decode(p, "mean")
    assert pred.tolist() == [1, 0] and step.tolist() == [2, 2]
    pred, step = decode(p, "max_confidence")
    assert pred.tolist() == [1, 0] and step.tolist() == [1, 1]
    # threshold 0.8 fires at step 1 for both; 0.6 fires at step 1 for image 0, step 0 for image 1
    pred, step = decode(p, "threshold", threshold=0.8)
    assert pred.tolist() == [1, 0] and step.tolist() == [1, 1]
    pred, step = decode(p, "threshold", threshold=0.6)
    assert pred.tolist() == [1, 1] and step.tolist() == [1, 0]
    # never fires: the last step
    pred, step = decode(p, "threshold", threshold=0.99)
    assert pred.tolist() == [0, 1] and step.tolist() == [2, 2]
    # raw logits give the same answers as their log-probabilities
    z = p * 1.0 + 7.0
    assert decode(z, "threshold", threshold=0.6)[0].tolist() == [1, 1]
    with pytest.raises(ValueError):
        decode(p, "vote")


# ---------------------------------------------------------------- time course
def _seq(preds, K=3):
    """[T][B] predicted classes -> one-hot-ish logits [T, B, K]."""
    return F.one_hot(torch.tensor(preds), K).float() * 5.0


def test_accuracy_per_step():
    logits = _seq([[0, 1, 2, 2], [0, 0, 0, 2], [1, 1, 1, 1]])
    labels = torch.tensor([0, 1, 2, 2])
    assert accuracy_per_step(logits, labels).tolist() == [1.0, 0.5, 0.25]


def test_solve_times():
    labels = torch.tensor([1, 1, 1, 1, 1])
    # columns are images: c-w-c-c -> 2; always correct -> 0; never -> -1;
    # correct then wrong at the end -> -1; correct only at the last step -> 3
    logits = _seq([[1, 1, 0, 1, 0],
                   [0, 1, 0, 1, 0],
                   [1, 1, 0, 1, 2],
                   [1, 1, 0, 0, 1]])
    st = solve_times(logits, labels)
    assert st.dtype == torch.int64 and st.tolist() == [2, 0, -1, -1, 3]
    # the same from decoded classes (int8, as the occlusion experiment keeps them)
    assert solve_times(logits.argmax(-1).to(torch.int8), labels.to(torch.int8)).tolist() == [2, 0, -1, -1, 3]
