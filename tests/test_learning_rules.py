"""Learning rules beyond backprop (docs/learning_rules.md): each rule's update against a NumPy
reference written from its paper's equations (float64, to 1e-10), exactness where a rule is
backprop, learning on digits, the alignment angle, the network unchanged outside training,
checkpoints and exact resume of the rules' state, data parallelism, and the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoint_helpers import assert_same_checkpoint
from ddp_helpers import one_thread  # noqa: F401  (an autouse fixture)
from safetensors.torch import load_file

import tnnspec
from tnnspec.spec.components import LEARNING_RULES
from tnnspec.spec.training import Training
from tnnspec.train import checkpoint as ckpt
from tnnspec.train import learning_rules as rules
from tnnspec.train.data import OccludedDigits
from tnnspec.train.losses import temporal_cross_entropy
from tnnspec.train.trainer import Trainer, TrainError, train, with_overrides

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-10  # float64: the torch rule and the NumPy reference agree to rounding

# image -> A1 (conv, tanh) -> A2 (conv stride 2, tanh, with a recurrent 1x1 conv of its own) -> linear
REF = """\
tnnspec: "1.1"
name: ref
time: {steps: 2, default_delay: sweep}
inputs:
  image: {shape: [1, 6, 6]}
areas:
  A1: {channels: 3, ops: [tanh]}
  A2: {channels: 4, ops: [tanh]}
edges:
  - {type: feedforward, source: image, target: A1, transform: [{conv: {kernel: 3}}]}
  - {type: feedforward, source: A1, target: A2, transform: [{conv: {kernel: 3, stride: 2}}]}
  - {type: lateral, source: A2, target: A2, transform: [{conv: {kernel: 1}}]}
readouts:
  logits: {source: A2, head: [flatten, {linear: 10}]}
"""
W1, B1 = "edges.image__A1.conv.weight", "edges.image__A1.conv.bias"
W2, B2 = "edges.A1__A2.conv.weight", "edges.A1__A2.conv.bias"
WL, BL = "edges.A2__A2.conv.weight", "edges.A2__A2.conv.bias"
W3, B3 = "readouts.logits.linear.weight", "readouts.logits.linear.bias"
LAYERS = (W1, W2, WL, W3)
LOSS_WEIGHTS = [1 / 3, 2 / 3]  # a different weight per step: the error differs between steps

# digits: image -> V1 -> IT (recurrent) -> flatten -> linear
DIGITS = """\
tnnspec: "1.1"
name: tiny_rules
time: {steps: 3, default_delay: sweep}
inputs:
  image: {shape: [1, 16, 16]}
areas:
  V1: {channels: 8, ops: [relu]}
  IT: {channels: 16, ops: [relu]}
edges:
  - {type: feedforward, source: image, target: V1, transform: [{conv: {kernel: 3, stride: 2}}]}
  - {type: feedforward, source: V1, target: IT, transform: [{conv: {kernel: 3, stride: 2}}]}
  - {type: lateral, source: IT, target: IT, transform: [{conv: {kernel: 3}}]}
readouts:
  logits: {source: IT, head: [flatten, {linear: 10}]}
training:
  data: {name: digits, occlusion: [0.0]}
  batch_size: 16
  lr: 0.01
"""
FEEDBACK_RULES = ("feedback_alignment", "sign_symmetry", "kolen_pollack", "direct_feedback_alignment")


@pytest.fixture(scope="module")
def ref_spec():
    return tnnspec.loads(REF, file="ref.yaml")


@pytest.fixture(scope="module")
def digits_spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("spec") / "tiny_rules.yaml"
    path.write_text(DIGITS)
    return tnnspec.load(path), path


@pytest.fixture(scope="module")
def digits():
    ds = OccludedDigits("digits", split="train", size=16, occlusion=[0.0], seed=0)
    return [ds[i] for i in range(64)]


def _batch():
    rng = np.random.default_rng(7)
    return rng.standard_normal((4, 1, 6, 6)), np.array([0, 3, 7, 9])


# ---------------------------------------------------------------- the NumPy reference (from the papers)
def _patches(x, k, s, p):
    """``P[b, c, u, v, i, j] = x_padded[b, c, i*s + u, j*s + v]``."""
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (xp.shape[2] - k) // s + 1, (xp.shape[3] - k) // s + 1
    out = np.empty(x.shape[:2] + (k, k, oh, ow))
    for u in range(k):
        for v in range(k):
            out[:, :, u, v] = xp[:, :, u:u + s * (oh - 1) + 1:s, v:v + s * (ow - 1) + 1:s]
    return out


def conv(x, w, b, s, p):
    """``y[b, o, i, j] = Σ_{c,u,v} w[o, c, u, v] x_padded[b, c, i*s + u, j*s + v] + b[o]``."""
    return np.einsum("ocuv,bcuvij->boij", w, _patches(x, w.shape[2], s, p)) + b[None, :, None, None]


def conv_grad_w(x, d, k, s, p):
    """``∂L/∂w = δ xᵀ``: ``Σ_{b,i,j} δ[b, o, i, j] x_padded[b, c, i*s + u, j*s + v]``."""
    return np.einsum("boij,bcuvij->ocuv", d, _patches(x, k, s, p))


def conv_to_input(d, m, shape, s, p):
    """The error a conv passes to its input through the matrix ``m`` (``W`` for backprop, ``B``
    for feedback alignment): each output error returns along the taps that made it, ``mᵀ δ``."""
    bsz, c, h, w = shape
    k, (oh, ow) = m.shape[2], d.shape[2:]
    out = np.zeros((bsz, c, h + 2 * p, w + 2 * p))
    taps = np.einsum("ocuv,boij->bcuvij", m, d)
    for u in range(k):
        for v in range(k):
            out[:, :, u:u + s * (oh - 1) + 1:s, v:v + s * (ow - 1) + 1:s] += taps[:, :, u, v]
    return out[:, :, p:p + h, p:p + w]


def reference(P, x, y, feedback=None, dfa=None):
    """Gradients of ``L = Σ_t w_t CE(z_t, y)`` (batch mean) for REF. ``feedback``: the matrices that
    carry the error back to each layer's input (None: backprop, ``W`` itself); ``dfa``: ``{area: D}``,
    direct feedback alignment (each area's output gets ``D e_t / (H W)``, broadcast; no error
    between areas; within A2 the error flows back through its own recurrence, by ``W``)."""
    M = {n: P[n] for n in LAYERS} if feedback is None else feedback
    n, T = x.shape[0], len(LOSS_WEIGHTS)
    h1 = np.tanh(conv(x, P[W1], P[B1], 1, 1))
    drive = conv(h1, P[W2], P[B2], 2, 1)
    h2 = []
    for t in range(T):  # the lateral edge arrives one step later
        h2.append(np.tanh(drive + (conv(h2[-1], P[WL], P[BL], 1, 0) if t else 0)))
    f = [h.reshape(n, -1) for h in h2]
    onehot = np.eye(10)[y]
    e = []
    for t in range(T):
        z = f[t] @ P[W3].T + P[B3]
        p = np.exp(z - z.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        e.append(LOSS_WEIGHTS[t] * (p - onehot) / n)  # e_t = ∂L/∂z_t
    g = {W3: sum(e[t].T @ f[t] for t in range(T)), B3: sum(e[t].sum(0) for t in range(T))}

    def spread(err, D, like):  # DFA: D e_t at every position, / (H W)
        return np.broadcast_to((err @ D.T)[:, :, None, None], like.shape) / (like.shape[2] * like.shape[3])

    d_out = [spread(e[t], dfa["A2"], h2[t]) if dfa else (e[t] @ M[W3]).reshape(h2[t].shape) for t in range(T)]
    recurrent = P[WL] if dfa else M[WL]  # DFA: backprop within the area's own recurrence
    d_a2 = [None] * T
    for t in reversed(range(T)):
        d = d_out[t] + (conv_to_input(d_a2[t + 1], recurrent, h2[t].shape, 1, 0) if t + 1 < T else 0)
        d_a2[t] = d * (1 - h2[t] ** 2)
    g[W2] = sum(conv_grad_w(h1, d_a2[t], 3, 2, 1) for t in range(T))
    g[B2] = sum(d_a2[t].sum((0, 2, 3)) for t in range(T))
    g[WL] = sum(conv_grad_w(h2[t - 1], d_a2[t], 1, 1, 0) for t in range(1, T))
    g[BL] = sum(d_a2[t].sum((0, 2, 3)) for t in range(1, T))
    if dfa:
        d_h1 = sum(spread(e[t], dfa["A1"], h1) for t in range(T))
    else:
        d_h1 = sum(conv_to_input(d_a2[t], M[W2], h1.shape, 2, 1) for t in range(T))
    d_a1 = d_h1 * (1 - h1 ** 2)
    g[W1], g[B1] = conv_grad_w(x, d_a1, 3, 1, 1), d_a1.sum((0, 2, 3))
    return g


# ---------------------------------------------------------------- one step of a rule, as the trainer runs it
def _rule(ref_spec, rule: dict | str, seed=0):
    torch.manual_seed(seed)
    net = tnnspec.compile(ref_spec).double()
    r = rules.build(Training.model_validate({"learning_rule": rule}).learning_rule)
    r.check()
    r.setup(net, net, readout="logits")
    return net, r


def _gradients(net, rule, x, y):
    net.zero_grad(set_to_none=True)
    with rule.context():
        logits = net(torch.from_numpy(x)).readouts["logits"]
        loss = temporal_cross_entropy(logits, torch.from_numpy(y), torch.tensor(LOSS_WEIGHTS, dtype=torch.float64))
        rule.backward(loss, logits)
    return {n: p.grad.numpy() for n, p in net.named_parameters()}


def _params(net):
    return {n: p.detach().numpy().copy() for n, p in net.named_parameters()}


def _assert_close(got, want, what):
    assert got.keys() == want.keys()
    for n in want:
        err = np.abs(got[n] - want[n]).max()
        assert err < TOL, f"{what}: {n} differs by {err:.3g}"


def test_the_numpy_reference_is_backprop(ref_spec):
    """The reference, with W as the feedback matrices, is torch's autograd gradient (so it is a
    valid reference for the other rules)."""
    net, rule = _rule(ref_spec, "backprop")
    x, y = _batch()
    _assert_close(_gradients(net, rule, x, y), reference(_params(net), x, y), "backprop")


def test_feedback_alignment_sends_the_error_back_through_fixed_random_B(ref_spec):
    net, rule = _rule(ref_spec, {"type": "feedback_alignment", "seed": 3})
    x, y = _batch()
    P = _params(net)
    B = {n: b.numpy() for n, b in rule.state_dict().items()}
    assert set(B) == set(LAYERS)  # every conv and linear: edges, the recurrent edge, the readout head
    got = _gradients(net, rule, x, y)
    _assert_close(got, reference(P, x, y, feedback=B), "feedback_alignment")
    bp = reference(P, x, y)
    assert np.abs(got[W3] - bp[W3]).max() < TOL  # the readout's weight gradient is backprop's (δ xᵀ)
    assert np.abs(got[W2] - bp[W2]).max() > 1e-3  # below it, the error came through B


def test_feedback_weights_are_reproducible_and_scaled_like_the_weights(ref_spec):
    _, a = _rule(ref_spec, {"type": "feedback_alignment", "seed": 3})
    _, b = _rule(ref_spec, {"type": "feedback_alignment", "seed": 3}, seed=1)  # other initial W
    _, c = _rule(ref_spec, {"type": "feedback_alignment", "seed": 4, "scale": 0.5})
    for name in LAYERS:
        assert torch.equal(a.B[name], b.B[name])  # a function of (seed, parameter name) only
        bound = 1 / np.sqrt(a.B[name][0].numel())  # PyTorch's default init of W: U(±1/√fan_in)
        assert a.B[name].abs().max() <= bound and a.B[name].abs().max() > 0.7 * bound
        assert c.B[name].abs().max() <= 0.5 * bound and not torch.equal(a.B[name], c.B[name])
    assert not torch.equal(a.B[W2].flatten()[:27], a.B[WL].flatten()[:27].repeat(2)[:27])


@pytest.mark.parametrize("scale", ["mean_abs", "none"])
def test_sign_symmetry_sends_the_error_back_through_the_signs_of_W(ref_spec, scale):
    net, rule = _rule(ref_spec, {"type": "sign_symmetry", "scale": scale})
    x, y = _batch()
    P = _params(net)
    B = {n: np.sign(P[n]) * (np.abs(P[n]).mean() if scale == "mean_abs" else 1.0) for n in LAYERS}
    _assert_close(_gradients(net, rule, x, y), reference(P, x, y, feedback=B), f"sign_symmetry ({scale})")


def test_kolen_pollack_gives_B_the_update_of_W_and_decays_both(ref_spec):
    """Two SGD steps: ΔW = −η δxᵀ − λW and ΔB = −η δxᵀ − λB, the error through the current B."""
    lr, decay = 0.3, 0.1
    net, rule = _rule(ref_spec, {"type": "kolen_pollack", "decay": decay, "seed": 5})
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.0)
    P, B = _params(net), {n: b.numpy().copy() for n, b in rule.state_dict().items()}
    x, y = _batch()
    for _ in range(2):
        g = reference(P, x, y, feedback=B)
        newP = {n: P[n] - lr * g[n] - (decay * P[n] if n in LAYERS else 0) for n in P}
        B = {n: B[n] - lr * g[n] - decay * B[n] for n in LAYERS}
        P = newP
        _gradients(net, rule, x, y)
        rule.before_update()
        opt.step()
        rule.after_update()
    _assert_close(_params(net), P, "kolen_pollack W")
    _assert_close({n: b.numpy() for n, b in rule.state_dict().items()}, B, "kolen_pollack B")


def test_direct_feedback_alignment_projects_the_readout_error_to_every_area(ref_spec):
    net, rule = _rule(ref_spec, {"type": "direct_feedback_alignment", "seed": 2})
    x, y = _batch()
    P = _params(net)
    D = {a: d.numpy() for a, d in rule.state_dict().items()}
    assert {a: d.shape for a, d in D.items()} == {"A1": (3, 10), "A2": (4, 10)}
    assert 0.7 / np.sqrt(10) < max(np.abs(d).max() for d in D.values()) <= 1 / np.sqrt(10)  # U(±1/√K)
    _assert_close(_gradients(net, rule, x, y), reference(P, x, y, dfa=D), "direct_feedback_alignment")


# every kind of conv and linear layer: "same" padding, stride and groups, a 1x3 kernel, a
# transposed conv, the fused gate convs of reciprocal_gated and resnet_unit cells, a GRU, a linear head
LAYERED = """\
tnnspec: "1.1"
name: layered
time: {steps: 3, default_delay: sweep}
inputs:
  image: {shape: [2, 8, 8]}
areas:
  A1: {channels: 4, cell: {type: reciprocal_gated, bias: true}}
  A2: {channels: 6, cell: gru}
  A3: {channels: 6, cell: resnet_unit}
edges:
  - {type: feedforward, source: image, target: A1, transform: [{conv: {kernel: 3, padding: same}}]}
  - {type: feedforward, source: A1, target: A2, transform: [{conv: {kernel: 3, stride: 2, groups: 2}}, tanh]}
  - {type: feedforward, source: A2, target: A3, transform: [{conv: {kernel: [1, 3]}}]}
  - {type: feedback, source: A2, target: A1, transform: [{conv_transpose: {kernel: 2, stride: 2}}]}
readouts:
  logits: {source: A3, head: [flatten, {linear: 5}]}
"""


def test_every_conv_and_linear_layer_uses_its_feedback_weights():
    """With ``B = W`` feedback alignment is backprop (to 1e-10 in float64), for every kind of
    layer; and every layer's ``B`` is used in a training step."""
    spec = tnnspec.loads(LAYERED)
    net, rule = _rule(spec, "feedback_alignment")
    torch.manual_seed(0)
    x, y = torch.randn(3, 2, 8, 8, dtype=torch.float64), torch.tensor([0, 4, 2])
    weights = torch.full((3,), 1 / 3, dtype=torch.float64)

    def grads(rule):
        net.zero_grad(set_to_none=True)
        with rule.context():
            logits = net(x).readouts["logits"]
            rule.backward(temporal_cross_entropy(logits, y, weights), logits)
        return {n: p.grad.clone() for n, p in net.named_parameters()}

    used = []
    lookup = rule.feedback_for
    rule.feedback_for = lambda name, w: used.append(name) or lookup(name, w)
    random_b = grads(rule)
    assert set(used) == set(rule.layers) and len(rule.layers) == 17, sorted(set(rule.layers) - set(used))
    rule.B = {n: w.detach().clone() for n, w in rule.layers.items()}
    same = grads(rule)
    true = grads(rules.build(Training().learning_rule))
    for n, g in true.items():
        assert (same[n] - g).abs().max() < TOL, n
    assert (random_b["edges.image__A1.conv.weight"] - true["edges.image__A1.conv.weight"]).abs().max() > 1e-4


def test_backprop_is_bit_identical_to_training_without_a_rule(digits_spec, digits):
    """The default rule is today's training loop: the same weights, bit for bit, as a plain loop."""
    from tnnspec.train.evaluate import present_batch
    from tnnspec.train.losses import time_weights
    from tnnspec.train.trainer import make_optimizer, seed_everything

    spec, _ = digits_spec
    cfg = with_overrides(spec.training, data_size=16)
    trainer = Trainer(spec, cfg, dataset=digits, val_dataset=False)
    assert isinstance(trainer.rule, rules.Backprop)
    seed_everything(cfg.seed)
    net = tnnspec.compile(spec)
    opt = make_optimizer([p for p in net.parameters() if p.requires_grad], cfg)
    images = torch.stack([torch.as_tensor(d[0]) for d in digits])
    labels = torch.tensor([int(d[1]) for d in digits])
    weights = time_weights(3)
    for step in range(3):
        idx = trainer.batch(0, step)
        trainer.step(idx)
        opt.zero_grad(set_to_none=True)
        logits = net(present_batch(spec, images[idx], 3)).readouts["logits"]
        temporal_cross_entropy(logits, labels[idx], weights).backward()
        opt.step()
    for (name, a), b in zip(trainer.net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name


def test_truncated_is_the_networks_tbptt(digits_spec, digits):
    spec, _ = digits_spec
    nets = {}
    for name, rule, options in (("truncated", {"type": "truncated", "k": 1}, None),
                                ("tbptt", "backprop", {"tbptt": 1}), ("full", "backprop", None)):
        trainer = Trainer(spec, with_overrides(spec.training, learning_rule=rule), dataset=digits, val_dataset=False,
                          network_options=options)
        for step in range(2):
            trainer.step(trainer.batch(0, step))
        nets[name] = trainer.net.state_dict()
    assert all(torch.equal(nets["truncated"][k], nets["tbptt"][k]) for k in nets["tbptt"])
    assert not all(torch.equal(nets["truncated"][k], nets["full"][k]) for k in nets["full"])  # it did cut
    with pytest.raises(TrainError, match="tbptt=1.*tbptt=2"):
        Trainer(spec, with_overrides(spec.training, learning_rule={"type": "truncated", "k": 1}), dataset=digits,
                val_dataset=False, network_options={"tbptt": 2})


@pytest.mark.parametrize("rule", ["feedback_alignment", "direct_feedback_alignment"])
def test_the_trainer_runs_the_rule(digits_spec, digits, rule):
    """Trainer.compute_gradients gives exactly the rule's gradient computed by hand."""
    from tnnspec.train.evaluate import present_batch
    from tnnspec.train.losses import time_weights

    spec, _ = digits_spec
    trainer = Trainer(spec, with_overrides(spec.training, learning_rule=rule), dataset=digits, val_dataset=False)
    idx = trainer.batch(0, 0)
    trainer.compute_gradients(idx)
    got = {n: p.grad.clone() for n, p in trainer.net.named_parameters()}
    trainer.net.zero_grad(set_to_none=True)
    images = torch.stack([torch.as_tensor(digits[i][0]) for i in idx])
    with trainer.rule.context():
        logits = trainer.net(present_batch(spec, images, 3)).readouts["logits"]
        loss = temporal_cross_entropy(logits, torch.tensor([int(digits[i][1]) for i in idx]), time_weights(3))
        trainer.rule.backward(loss, logits)
    for n, p in trainer.net.named_parameters():
        assert torch.equal(got[n], p.grad), n
    trainer.compute_gradients(idx, rule=False)  # backprop differs below the readout
    assert not torch.allclose(got["edges.V1__IT.conv.weight"], trainer.net.edges["V1__IT"].conv.weight.grad)


# ---------------------------------------------------------------- learning
def _events(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("rule", FEEDBACK_RULES)
def test_each_rule_reduces_the_training_loss_on_digits(digits_spec, digits, rule, tmp_path):
    spec, _ = digits_spec
    train(spec, with_overrides(spec.training, epochs=10, learning_rule=rule), out_dir=tmp_path, progress=False,
          dataset=digits, val_dataset=False)
    losses = [e["train_loss"] for e in _events(tmp_path) if e["event"] == "epoch"]
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0], losses


def test_feedback_alignment_angle_falls_below_90_degrees_and_is_logged(digits_spec, digits, tmp_path):
    spec, _ = digits_spec
    cfg = with_overrides(spec.training, epochs=10, learning_rule={
        "type": "feedback_alignment", "measure_alignment": True, "alignment_per_layer": True})
    train(spec, cfg, out_dir=tmp_path, progress=False, dataset=digits, val_dataset=False, log_every=4)
    steps = [e for e in _events(tmp_path) if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(4, 41, 4))
    angles = [e["alignment_deg"] for e in steps]
    assert all(0 < a < 90 for a in angles), angles  # the rule's update points downhill
    layers = steps[-1]["alignment_deg_per_layer"]
    assert layers["readouts.logits.linear.weight"] == pytest.approx(0, abs=1e-3)  # its gradient is exact
    assert layers["edges.image__V1.conv.weight"] > 1  # below it, it is not
    assert all(e["alignment_s"] >= 0 for e in steps)


def test_measuring_the_alignment_changes_nothing_in_the_run(tmp_path):
    """The extra backprop pass sees the same dropout masks (a rule that is backprop measures 0°)
    and leaves RNG states and batch-norm statistics as they were: a run with measuring ends
    bit-identical to one without."""
    spec = tnnspec.loads(DIGITS.replace("V1: {channels: 8, ops: [relu]}",
                                        "V1: {channels: 8, ops: [{norm: batch}, relu, {dropout: 0.3}]}"))
    images = torch.rand(32, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    data = [(images[i], i % 10) for i in range(32)]
    out = {}
    for measure in (False, True):
        cfg = with_overrides(spec.training, epochs=1, learning_rule={"type": "kolen_pollack",
                                                                     "measure_alignment": measure})
        train(spec, cfg, out_dir=tmp_path / str(measure), progress=False, dataset=data, val_dataset=False)
        out[measure] = load_file(str(tmp_path / str(measure) / "checkpoint.safetensors"))
    assert any("alignment_deg" in e for e in _events(tmp_path / "True"))
    assert not any("alignment_deg" in e for e in _events(tmp_path / "False"))
    for k in out[False]:
        assert torch.equal(out[False][k], out[True][k]), k
    cfg = with_overrides(spec.training, epochs=1, learning_rule={"type": "truncated", "k": 3, "measure_alignment": True})
    train(spec, cfg, out_dir=tmp_path / "bp", progress=False, dataset=data, val_dataset=False)
    angles = [e["alignment_deg"] for e in _events(tmp_path / "bp") if e["event"] == "step"]
    assert len(angles) == 2 and max(angles) < 1e-4, angles  # k = T: truncation cuts nothing


def test_the_network_computes_as_before_outside_training(digits_spec, digits):
    spec, _ = digits_spec
    for rule in ("feedback_alignment", "direct_feedback_alignment"):
        trainer = Trainer(spec, with_overrides(spec.training, learning_rule=rule), dataset=digits, val_dataset=False)
        for step in range(2):
            trainer.step(trainer.batch(0, step))
        x = torch.stack([torch.as_tensor(d[0]) for d in digits[:8]])
        from tnnspec.train.evaluate import present_batch

        x = present_batch(spec, x, 3)
        plain = tnnspec.compile(spec)
        plain.load_state_dict(trainer.net.state_dict())
        with torch.no_grad():
            want = plain(x).readouts["logits"]
            assert torch.equal(trainer.net(x).readouts["logits"], want)  # evaluation: the plain forward
        with trainer.rule.context():  # and the training forward computes the same values
            assert torch.equal(trainer.net(x).readouts["logits"].detach(), want)


# ---------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("rule", ["feedback_alignment", "kolen_pollack"])
def test_checkpoint_holds_the_rule_state_and_resume_is_bit_identical(digits_spec, digits, rule, tmp_path):
    spec, _ = digits_spec
    cfg = with_overrides(spec.training, epochs=2, learning_rule={"type": rule, "decay": 0.05} if rule == "kolen_pollack"
                         else rule)
    train(spec, cfg, out_dir=tmp_path / "straight", progress=False, dataset=digits, val_dataset=False)
    train(spec, with_overrides(cfg, max_steps=3), out_dir=tmp_path / "resumed", progress=False, dataset=digits,
          val_dataset=False, checkpoint_every=2)
    meta = ckpt.read_meta(tmp_path / "resumed" / ckpt.META)
    assert meta["learning_rule"]["type"] == rule and meta["position"]["step"] == 3
    rule_files = sorted(p.name for p in (tmp_path / "resumed").glob("*.rule.safetensors"))
    assert rule_files == [meta["learning_rule"]["tensors"]]  # the earlier saves' were removed
    saved = load_file(str(tmp_path / "resumed" / rule_files[0]))
    assert "edges.V1__IT.conv.weight" in saved
    train(spec, cfg, out_dir=tmp_path / "resumed", progress=False, dataset=digits, val_dataset=False, resume=True)
    a, b = tmp_path / "straight", tmp_path / "resumed"
    assert_same_checkpoint(a, b)
    ra = load_file(str(a / ckpt.read_meta(a / ckpt.META)["learning_rule"]["tensors"]))
    rb = load_file(str(b / ckpt.read_meta(b / ckpt.META)["learning_rule"]["tensors"]))
    assert ra.keys() == rb.keys() and all(torch.equal(ra[k], rb[k]) for k in ra)
    if rule == "kolen_pollack":  # B learned: it is not its initial random draw any more
        first = rules.random_feedback(torch.zeros(16, 8, 3, 3), "edges.V1__IT.conv.weight", 0, 1.0)
        assert not torch.equal(ra["edges.V1__IT.conv.weight"], first)


def test_resume_restores_the_feedback_weights_it_saved(digits_spec, digits, tmp_path):
    """Resuming with another rule seed continues with the checkpoint's B (not a new draw)."""
    spec, _ = digits_spec
    cfg = with_overrides(spec.training, epochs=1, learning_rule={"type": "feedback_alignment", "seed": 0})
    train(spec, cfg, out_dir=tmp_path / "straight", progress=False, dataset=digits, val_dataset=False)
    train(spec, with_overrides(cfg, max_steps=2), out_dir=tmp_path / "resumed", progress=False, dataset=digits,
          val_dataset=False)
    other = with_overrides(cfg, learning_rule={"type": "feedback_alignment", "seed": 1})
    train(spec, other, out_dir=tmp_path / "resumed", progress=False, dataset=digits, val_dataset=False, resume=True)
    assert_same_checkpoint(tmp_path / "straight", tmp_path / "resumed")
    train(spec, other, out_dir=tmp_path / "fresh", progress=False, dataset=digits, val_dataset=False)
    fresh = load_file(str(tmp_path / "fresh" / "checkpoint.safetensors"))
    straight = load_file(str(tmp_path / "straight" / "checkpoint.safetensors"))
    assert not torch.equal(fresh["edges.image__V1.conv.weight"], straight["edges.image__V1.conv.weight"])


def test_a_save_without_rule_state_writes_no_rule_file(digits_spec, digits, tmp_path):
    spec, _ = digits_spec
    train(spec, with_overrides(spec.training, max_steps=1, learning_rule="sign_symmetry"), out_dir=tmp_path,
          progress=False, dataset=digits, val_dataset=False)
    meta = ckpt.read_meta(tmp_path / ckpt.META)
    assert meta["learning_rule"] == {"type": "sign_symmetry", "tensors": None}
    assert not list(tmp_path.glob("*.rule.safetensors"))


def test_rules_refuse_what_they_cannot_run_with(digits_spec, digits):
    spec, _ = digits_spec
    cfg = with_overrides(spec.training, learning_rule="feedback_alignment")
    with pytest.raises(TrainError, match="activation checkpointing"):
        Trainer(spec, cfg, dataset=digits, val_dataset=False, network_options={"checkpoint": True})
    with pytest.raises(TrainError, match="torch.compile"):
        Trainer(spec, cfg, dataset=digits, val_dataset=False, compile=True)

    class Task:
        n_train, steps = 8, 3

        def module(self, net):
            return net

    with pytest.raises(TrainError, match="direct_feedback_alignment.*task"):
        Trainer(spec, with_overrides(spec.training, learning_rule="direct_feedback_alignment"), task=Task())


# ---------------------------------------------------------------- data parallel
DDP_WORKER = """
import sys, torch
import tnnspec
from tnnspec.train.evaluate import Tensors
from tnnspec.train.trainer import Trainer, init_distributed, with_overrides

torch.set_num_threads(1)
spec_file, data_file, out_dir = sys.argv[1:4]
spec = tnnspec.load(spec_file)
device, created = init_distributed("cpu")
assert created and torch.distributed.get_world_size() == 2
out = {}
for rule in ("feedback_alignment", "kolen_pollack", "direct_feedback_alignment"):
    cfg = with_overrides(spec.training, learning_rule={"type": rule, "measure_alignment": True})
    trainer = Trainer(spec, cfg, dataset=Tensors(**torch.load(data_file)), val_dataset=False)
    for batch in BATCHES:
        trainer.step(torch.tensor(batch), measure=True)
    out[rule] = {"weights": trainer.net.state_dict(), "rule": trainer.rule.state_dict(),
                 "alignment": trainer.last_alignment["alignment_deg"]}
torch.save(out, f"{out_dir}/rank{trainer.rank}.pt")
"""
DDP_BATCHES = [[3, 17, 5, 40, 22, 9, 31, 0], [11, 2, 29, 8, 36, 14, 1]]  # an even and an odd global batch


def test_data_parallel_rules_equal_one_process(digits_spec, tmp_path):
    """Two gloo processes, each with half of every global batch, end with the weights and rule
    state of one process (to 1e-6; the ranks agree bit for bit)."""
    import torch.distributed as dist
    from ddp_helpers import free_port, gloo_env

    from tnnspec.train.evaluate import Tensors

    if not dist.is_available() or not dist.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available")
    spec, path = digits_spec
    g = torch.Generator().manual_seed(1)
    data = {"images": torch.rand(48, 1, 16, 16, generator=g), "labels": torch.randint(0, 10, (48,), generator=g),
            "levels": torch.zeros(48)}
    torch.save(data, tmp_path / "data.pt")
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER.replace("BATCHES", repr(DDP_BATCHES)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           str(script), str(path), str(tmp_path / "data.pt"), str(tmp_path)]
    run = subprocess.run(cmd, cwd=ROOT, env=gloo_env(), capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for rule in ("feedback_alignment", "kolen_pollack", "direct_feedback_alignment"):
        trainer = Trainer(spec, with_overrides(spec.training, learning_rule=rule), dataset=Tensors(**data),
                          val_dataset=False)
        for batch in DDP_BATCHES:
            trainer.step(torch.tensor(batch))
        single = {"weights": trainer.net.state_dict(), "rule": trainer.rule.state_dict()}
        for part in ("weights", "rule"):
            for k, v in single[part].items():
                for r in ranks:
                    assert torch.allclose(r[rule][part][k], v, rtol=0, atol=1e-6), (rule, part, k)
                assert torch.equal(ranks[0][rule][part][k], ranks[1][rule][part][k]), (rule, part, k)
        assert ranks[0][rule]["alignment"] == ranks[1][rule]["alignment"] < 90


# ---------------------------------------------------------------- files and the command line
def test_rules_are_registered_components_with_equations_and_papers():
    from tnnspec.spec import docgen
    from tnnspec.spec.components import REGISTRY

    assert {"backprop", "truncated", "feedback_alignment", "sign_symmetry", "kolen_pollack",
            "direct_feedback_alignment"} <= set(LEARNING_RULES)
    for name, cls in LEARNING_RULES.items():
        reg = REGISTRY[("learning_rule", name)]
        assert reg.params is cls and cls.name == name and isinstance(rules.build(cls()), rules.LearningRule)
        assert "=" in docgen.summary(cls) and docgen.paper(cls), name  # an update equation and a paper
    assert Training().learning_rule.type == "backprop"
    assert Training.model_validate({"learning_rule": "sign_symmetry"}).learning_rule.scale == "mean_abs"


def test_a_plugin_rule_registers_validates_and_trains(digits_spec, digits):
    """A rule registered like a cell: the next validation accepts it, the trainer builds it."""
    from typing import Literal

    from tnnspec.plugins import LearningRuleParams, register_learning_rule
    from tnnspec.spec import models
    from tnnspec.spec.components import unregister

    class Halved(rules.LearningRule):
        def backward(self, loss, logits):
            (loss / 2).backward()

    class HalfGradient(LearningRuleParams):
        """Half the gradient: ``ΔW = −η ∂L/∂W / 2``.

        Paper: none.
        """

        type: Literal["half_gradient"] = "half_gradient"

    register_learning_rule("half_gradient", HalfGradient, builder=lambda p: Halved(p))
    try:
        models.rebuild()
        spec, _ = digits_spec
        trainer = Trainer(spec, with_overrides(spec.training, learning_rule="half_gradient"), dataset=digits,
                          val_dataset=False)
        idx = trainer.batch(0, 0)
        trainer.compute_gradients(idx)
        half = [p.grad.clone() for p in trainer.params]
        trainer.compute_gradients(idx, rule=False)
        assert all(torch.allclose(h, p.grad / 2) for h, p in zip(half, trainer.params))
    finally:
        unregister("learning_rule", "half_gradient")
        models.rebuild()
    with pytest.raises(Exception, match="unknown learning rule 'half_gradient'"):
        tnnspec.loads(DIGITS.replace("  lr: 0.01", "  lr: 0.01\n  learning_rule: half_gradient"))


def test_schema_and_docs_describe_the_rules():
    from tnnspec.spec import docgen

    schema = json.loads((ROOT / "schemas" / "tnnspec.schema.json").read_text())
    prop = schema["definitions"]["Training"]["properties"]["learning_rule"]
    refs = {a.get("$ref", "").rsplit("/", 1)[-1] for a in prop["oneOf"]}
    assert {cls.__name__ for cls in LEARNING_RULES.values()} <= refs
    text = (ROOT / "docs" / "learning_rules.md").read_text()
    assert docgen.update(text, origin="tnnspec") == text, "docs/learning_rules.md is stale: run `make docs`"
    for name in LEARNING_RULES:
        assert f"### `{name}`" in text


LINE = DIGITS.count("\n") + 1  # the learning_rule line added to DIGITS
BAD = {"unknown rule": ("learning_rule: {type: feedback_alignmnt}",
                        (":{line}:{col}: error: training.learning_rule: unknown learning rule 'feedback_alignmnt' "
                         "(did you mean 'feedback_alignment'?)")),
       "unknown key": ("learning_rule: {type: kolen_pollack, dacay: 0.1}",
                       ":{line}:{col}: error: training.learning_rule: unknown key 'dacay' (did you mean 'decay'?)"),
       "bad value": ("learning_rule: {type: truncated, k: 0}",
                     ":{line}:{col}: error: training.learning_rule.k: input should be greater than or equal to 1")}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_rules_in_a_spec_or_config_are_located_errors(case, tmp_path, capsys):
    from tnnspec.train.__main__ import main as train_main

    line, want = BAD[case]
    where, message = want.split("{col}")
    spec_file = tmp_path / "tiny_rules.yaml"
    spec_file.write_text(DIGITS + f"  {line}\n")
    assert train_main(["train", str(spec_file), "--no-progress", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"{spec_file}{where.format(line=LINE)}" in err and message.split(":", 1)[1] in err, err
    good = tmp_path / "good.yaml"
    good.write_text(DIGITS)
    config = tmp_path / "train.yaml"  # a standalone training settings file: line 3
    config.write_text(f"batch_size: 16\nlr: 0.01\n{line}\n")
    assert train_main(["train", str(good), "--config", str(config), "--no-progress",
                       "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert f"{config}{where.format(line=3)}" in err, err
    assert message.split(":", 1)[1].replace(" training.", " ") in err, err  # (no training: section here)
    assert "Traceback" not in err


def test_cli_learning_rule_option(digits_spec, tmp_path, capsys):
    from tnnspec.train.__main__ import main as train_main

    _, path = digits_spec
    args = ["train", str(path), "--max-steps", "2", "--epochs", "1", "--no-progress", "--size", "16"]
    assert train_main(args + ["--learning-rule", "kolen_pollack", "--out", str(tmp_path / "kp")]) == 0
    start = _events(tmp_path / "kp")[0]
    assert start["training"]["learning_rule"] == {**LEARNING_RULES["kolen_pollack"]().model_dump(mode="json")}
    assert ckpt.read_meta(tmp_path / "kp" / ckpt.META)["learning_rule"]["type"] == "kolen_pollack"
    capsys.readouterr()
    assert train_main(args + ["--learning-rule", "feedback_alignmnt", "--out", str(tmp_path / "bad")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --learning-rule: unknown learning rule 'feedback_alignmnt' (did you mean "
                          "'feedback_alignment'?); known: backprop, "), err
    assert "Traceback" not in err
