"""Independent float64 NumPy references for every cell, written from the equations in
:mod:`tnnspec.spec.cells` (not from the torch code).

Weights come in as a dict ``{state_dict key: array}`` copied from the torch cell, so the
references also pin the parameter names.  ``reference(name)`` returns ``(init, step)``:
``init(params, x, out_shape) -> state`` and ``step(params, W, x, state, k) -> (y, state)``;
for ``additive_state`` the area's ops are taken to be the identity, so the next state is ``y``.
"""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------- primitives


def pad_same(k: int) -> tuple[int, int]:
    """TensorFlow SAME padding for stride 1: (before, after)."""
    lo = (k - 1) // 2
    return lo, k - 1 - lo


def conv2d(x, w, b=None, stride=1, pad=None, groups=1):
    """``x`` [N, C, H, W], ``w`` [O, C/groups, kh, kw]; ``pad`` = ((top, bottom), (left, right)),
    default SAME for stride 1.  Plain loops over kernel offsets (an explicit im2col)."""
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    if pad is None:
        pad = (pad_same(kh), pad_same(kw))
    xp = np.pad(x, ((0, 0), (0, 0), pad[0], pad[1]))
    hp, wp = xp.shape[2:]
    oh = (hp - kh) // stride + 1
    ow = (wp - kw) // stride + 1
    og = o // groups
    out = np.zeros((n, o, oh, ow))
    for g in range(groups):
        xs = xp[:, g * cg:(g + 1) * cg]
        ws = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    if b is not None:
        out += b[None, :, None, None]
    return out


def avg_pool_same(x, k):
    """Mean over a k×k window, stride 1, padding k//2, padded cells not counted."""
    n, c, h, w = x.shape
    r = k // 2
    out = np.zeros_like(x)
    for i in range(h):
        for j in range(w):
            win = x[:, :, max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
            out[:, :, i, j] = win.mean(axis=(2, 3))
    return out


def batch_norm(x, W, name, train, eps=1e-5):
    if train:
        mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    else:
        mean, var = W[f"{name}.running_mean"], W[f"{name}.running_var"]
    sh = (1, -1, 1, 1)
    return (x - mean.reshape(sh)) / np.sqrt(var.reshape(sh) + eps) * W[f"{name}.weight"].reshape(sh) \
        + W[f"{name}.bias"].reshape(sh)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0.0)


ACT = {
    "identity": lambda x: x,
    "relu": relu,
    "tanh": np.tanh,
    "sigmoid": sigmoid,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
}


def conv(W, name, x):
    return conv2d(x, W[f"{name}.weight"], W.get(f"{name}.bias"))


def zeros(x, channels):
    return np.zeros((x.shape[0], channels, *x.shape[2:]))


# --------------------------------------------------------------------------- cells


def init_same(p, x, out_shape):
    return np.zeros_like(x)


def init_map(p, x, out_shape):
    return zeros(x, out_shape[0])


def init_pair(p, x, out_shape):
    return zeros(x, out_shape[0]), zeros(x, out_shape[0])


def identity(p, W, x, s, k):
    return x, None


def time_decay(p, W, x, s, k):
    lam = sigmoid(W["decay_logit"]) if p.learnable else p.decay
    s = lam * s + x
    return s, s


def leaky(p, W, x, s, k):
    h = s + p.dt_ms / p.tau_ms * (-s + ACT[p.activation](x))
    return h, h


def additive_state(p, W, x, s, k):
    y = x + s
    return y, y  # ops = identity, so after_ops stores y


def simple_rnn(p, W, x, h, k):
    h = ACT[p.activation](conv(W, "input_conv", x) + conv(W, "hidden_conv", h))
    return h, h


def gru(p, W, x, h, k):
    C = h.shape[1]
    a = conv(W, "input_conv", x)
    b = conv(W, "hidden_conv", h)
    r = sigmoid(a[:, :C] + b[:, :C] + p.forget_bias)
    u = sigmoid(a[:, C:2 * C] + b[:, C:])
    c = np.tanh(a[:, 2 * C:] + conv(W, "candidate_hidden_conv", r * h))
    h = u * h + (1 - u) * c
    return h, h


def lstm(p, W, x, s, k):
    c, h = s
    C = h.shape[1]
    z = conv(W, "input_conv", x) + conv(W, "hidden_conv", h)
    i, j, f, o = (z[:, n * C:(n + 1) * C] for n in range(4))
    pi, pf, po = (W[f"peephole_{g}"] if p.peephole else 0.0 for g in "ifo")
    c_new = c * sigmoid(f + p.forget_bias + pf * c) + sigmoid(i + pi * c) * np.tanh(j)
    h_new = np.tanh(c_new) * sigmoid(o + po * c)
    return h_new, (c_new, h_new)


def ugrnn(p, W, x, h, k):
    C = h.shape[1]
    z = conv(W, "input_conv", x) + conv(W, "hidden_conv", h)
    g = sigmoid(z[:, :C] + p.forget_bias)
    h = g * h + (1 - g) * np.tanh(z[:, C:])
    return h, h


def intersection_rnn(p, W, x, h, k):
    C = h.shape[1]
    z = conv(W, "input_conv", x) + conv(W, "hidden_conv", h)
    gh, hh, gy, yy = (z[:, n * C:(n + 1) * C] for n in range(4))
    gh, gy = sigmoid(gh + p.forget_bias), sigmoid(gy + p.forget_bias)
    h_new = gh * h + (1 - gh) * np.tanh(hh)
    y = gy * x + (1 - gy) * relu(yy)
    return y, h_new


def reciprocal_gated(p, W, x, s, k):
    h, c = s
    f = ACT[p.activation]
    a = (1 - sigmoid(conv(W, "gate_ch", c))) * x + (1 - sigmoid(conv(W, "gate_hh", h))) * h
    ct = (1 - sigmoid(conv(W, "gate_hc", h))) * x + (1 - sigmoid(conv(W, "gate_cc", c))) * c
    return f(a), (f(a), f(ct))


def resnet_unit(p, W, x, s, k):
    h, c = s
    f = ACT[p.activation]
    a = x + sigmoid(conv(W, "gate_xh", x)) * h + conv(W, "conv_ch", c)
    ct = sigmoid(conv(W, "gate_xc", x)) * c + conv(W, "in_xc", x) + conv(W, "conv_cc", c)
    return f(a), (f(a), f(ct))


def _temporal(W, name, z, separable):
    if not separable:
        return conv(W, name, z)
    dw = W[f"{name}.depthwise.weight"]
    return conv2d(conv2d(z, dw, groups=dw.shape[0]), W[f"{name}.pointwise.weight"])


def init_rgc(p, x, out_shape):
    return zeros(x, p.cell_channels or out_shape[0]), zeros(x, out_shape[0])


def reciprocal_gated_convrnn(p, W, x, s, k):
    c, h = s
    f, f_in = ACT[p.activation], ACT[p.input_activation]
    st, sg = ACT[p.tau_nonlinearity], ACT[p.gate_nonlinearity]
    xt = f_in(x)
    tau_c = p.tau_offset + p.tau_multiplier * st(_temporal(W, "tau_cc", c, p.tau_depth_separable))
    g_c = p.gate_offset + p.gate_multiplier * sg(_temporal(W, "gate_hc", h, p.gate_depth_separable))
    c_new = f(tau_c * c + g_c * conv(W, "input_to_cell_conv", xt))
    u_h = conv(W, "input_to_out_conv", xt) if p.input_to_out else xt
    if p.cell_to_out:
        u_h = u_h + conv(W, "cell_to_out_conv", c)
    tau_h = p.tau_offset + p.tau_multiplier * st(_temporal(W, "tau_hh", h, p.tau_depth_separable))
    g_h = p.gate_offset + p.gate_multiplier * sg(_temporal(W, "gate_ch", c, p.gate_depth_separable))
    h_new = f(tau_h * h + g_h * u_h)
    return h_new, (c_new, h_new)


def cornet_s_block(p, W, x, s, k, train=False):
    h = x
    for n in range(p.inner_steps):
        if n == 0:
            skip = batch_norm(conv2d(h, W["skip.weight"], stride=2, pad=((0, 0), (0, 0))), W, "norm_skip", train)
        else:
            skip = h
        z = relu(batch_norm(conv2d(h, W["conv1.weight"]), W, f"norm1_{n}", train))
        z = conv2d(z, W["conv2.weight"], stride=2 if n == 0 else 1, pad=((1, 1), (1, 1)))
        z = relu(batch_norm(z, W, f"norm2_{n}", train))
        h = relu(batch_norm(conv2d(z, W["conv3.weight"]), W, f"norm3_{n}", train) + skip)
    return h, None


def divisive_equilibrium(p, x):
    e = x if p.power is None else relu(x) ** p.power
    a = np.abs(e)
    if p.pool_channels:
        a = a.mean(axis=1, keepdims=True)
    return e, p.sigma + avg_pool_same(a, p.pool_kernel)


def divisive_norm(p, W, x, r, k):
    e, g = divisive_equilibrium(p, x)
    # Euler at 1/tau_steps of the effective time constant tau/g of tau dR/dt = E - g R
    r = r + (e - g * r) / (p.tau_steps * g)
    return r, r


REFERENCES = {
    "identity": (lambda p, x, o: None, identity),
    "time_decay": (init_same, time_decay),
    "leaky": (init_same, leaky),
    "additive_state": (init_same, additive_state),
    "simple_rnn": (init_map, simple_rnn),
    "gru": (init_map, gru),
    "lstm": (init_pair, lstm),
    "ugrnn": (init_map, ugrnn),
    "intersection_rnn": (init_map, intersection_rnn),
    "reciprocal_gated": (init_pair, reciprocal_gated),
    "resnet_unit": (init_pair, resnet_unit),
    "reciprocal_gated_convrnn": (init_rgc, reciprocal_gated_convrnn),
    "cornet_s_block": (lambda p, x, o: None, cornet_s_block),
    "divisive_norm": (init_same, divisive_norm),
}


def reference(name: str):
    return REFERENCES[name]
