"""Ops: registries, shape rules vs torch, numerics vs independent NumPy references, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import tnnspec.compile.ops  # noqa: F401  (registers the builders)
import tnnspec.spec.ops  # noqa: F401  (registers the parameter models)
from tnnspec.compile.registry import OP_BUILDERS, OpContext, StepOp
from tnnspec.spec.components import OPS, ShapeContext, ShapeError, pair

CTX = ShapeContext(channels=6, target_hw=(9, 11))


def build(name: str, params, in_shape, ctx: ShapeContext = CTX, steps: int = 3):
    p = OPS[name].model_validate(params)
    out_shape = p.output_shape(tuple(in_shape), ctx)
    module = OP_BUILDERS[name](p, OpContext(tuple(in_shape), tuple(out_shape), steps))
    return p, out_shape, module


def call(module, x, step: int = 0):
    return module(x, step) if isinstance(module, StepOp) else module(x)


# --------------------------------------------------------------------------- registries
def test_every_op_has_a_builder():
    assert set(OPS) <= set(OP_BUILDERS), f"ops without builder: {set(OPS) - set(OP_BUILDERS)}"
    assert set(OP_BUILDERS) <= set(OPS), f"builders without op: {set(OP_BUILDERS) - set(OPS)}"


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_model_is_documented_and_strict(name):
    cls = OPS[name]
    assert cls.__doc__ and cls.__doc__.strip(), f"{name} needs a docstring with its equation"
    for field, info in cls.model_fields.items():
        assert info.description, f"{name}.{field} has no description"
    if cls.shorthand is not None:
        assert cls.shorthand in cls.model_fields
    schema = cls.model_json_schema()
    assert schema.get("additionalProperties") is False
    with pytest.raises(ValidationError):
        cls.model_validate({"no_such_field": 1, **({"type": "avg"} if name == "pool" else {}),
                            **({"type": "batch"} if name == "norm" else {}),
                            **({"factor": 1.0} if name == "scale" else {})})


# --------------------------------------------------------------------------- shapes: torch == output_shape
SHAPE_CASES: list[tuple[str, object, tuple[int, ...]]] = [
    ("conv", {}, (3, 8, 8)),
    ("conv", {"channels": 4, "kernel": 3, "stride": 2}, (3, 9, 7)),
    ("conv", {"kernel": 7, "stride": 2, "padding": 3}, (3, 15, 16)),
    ("conv", {"kernel": [3, 5], "padding": "valid", "dilation": 2}, (2, 11, 13)),
    ("conv", {"kernel": 3, "stride": 2, "padding": "same"}, (3, 7, 8)),  # odd: asymmetric pad
    ("conv", {"kernel": 4, "stride": 1, "padding": "same"}, (3, 5, 5)),  # even kernel: asymmetric
    ("conv", {"kernel": 5, "stride": 3, "padding": "same"}, (3, 10, 11)),
    ("conv", {"channels": 6, "groups": 3, "bias": False, "padding": [0, 1]}, (3, 6, 6)),
    ("conv_transpose", {"kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}, (4, 5, 7)),
    ("conv_transpose", {"channels": 2, "kernel": 2, "stride": 2}, (4, 3, 3)),
    ("conv_transpose", {"kernel": [4, 3], "stride": [2, 3], "padding": [1, 0], "output_padding": [0, 2]},
     (4, 5, 4)),
    ("pool", "avg", (5, 7, 6)),
    ("pool", "max", (5, 3, 3)),
    ("pool", {"type": "max", "kernel": 2}, (3, 8, 8)),
    ("pool", {"type": "max", "kernel": 3, "stride": 2, "padding": 1}, (3, 9, 8)),
    ("pool", {"type": "max", "kernel": 3, "stride": 2, "ceil_mode": True}, (3, 8, 7)),
    ("pool", {"type": "max", "kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, (3, 5, 6)),
    ("pool", {"type": "avg", "kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True,
              "count_include_pad": False}, (3, 6, 7)),
    ("pool", {"type": "avg", "kernel": [2, 3], "stride": [1, 2]}, (3, 5, 7)),
    ("resample", {}, (3, 4, 5)),  # to ctx.target_hw
    ("resample", {"mode": "bilinear", "size": [7, 3]}, (3, 4, 5)),
    ("resample", {"mode": "bilinear", "scale_factor": 1.5, "align_corners": True}, (3, 5, 7)),
    ("resample", {"mode": "nearest", "scale_factor": 2}, (3, 3, 5)),
    ("resample", {"mode": "nearest", "scale_factor": [0.5, 0.34]}, (3, 7, 9)),
    ("resample", {"mode": "bilinear", "size": 6}, (3, 3, 3)),
    ("norm", "batch", (4, 5, 5)),
    ("norm", "batch", (7,)),
    ("norm", {"type": "batch", "per_step": True}, (4, 3, 3)),
    ("norm", {"type": "group", "groups": 2}, (4, 5, 3)),
    ("norm", {"type": "group", "groups": 3}, (6,)),
    ("norm", "layer", (4, 3, 5)),
    ("norm", "layer", (8,)),
    ("norm", {"type": "instance", "affine": False}, (4, 3, 3)),
    ("lrn", 3, (6, 4, 4)),
    ("relu", None, (3, 4, 4)),
    ("relu6", None, (3, 4, 4)),
    ("elu", 0.5, (5,)),
    ("gelu", None, (3, 4, 4)),
    ("leaky_relu", 0.2, (3, 4, 4)),
    ("sigmoid", None, (3, 4, 4)),
    ("tanh", None, (3, 4, 4)),
    ("softplus", None, (3, 4, 4)),
    ("identity", None, (3, 4, 4)),
    ("dropout", 0.3, (3, 4, 4)),
    ("scale", 2, (3, 4, 4)),
    ("scale", {"factor": 2, "offset": -1}, (6,)),
    ("power", None, (3, 4, 4)),
    ("power", 0.5, (6,)),
    ("softmax", None, (10,)),
    ("softmax", None, (3, 4, 4)),
    ("log_softmax", None, (10,)),
    ("log_softmax", 1e-10, (10,)),
    ("flatten", None, (3, 4, 5)),
    ("flatten", None, (7,)),
    ("linear", 10, (12,)),
    ("linear", {"bias": False}, (12,)),
]


def test_every_op_has_shape_cases():
    assert set(OPS) <= {name for name, _, _ in SHAPE_CASES}


@pytest.mark.parametrize("name,params,in_shape", SHAPE_CASES,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(SHAPE_CASES)])
def test_torch_shape_matches_output_shape(name, params, in_shape):
    torch.manual_seed(0)
    _, out_shape, module = build(name, params, in_shape)
    y = call(module, torch.randn(2, *in_shape))
    assert tuple(y.shape) == (2, *out_shape)


def test_specific_output_shapes():
    def out(name, params, in_shape, ctx=CTX):
        return OPS[name].model_validate(params).output_shape(in_shape, ctx)

    assert out("conv", {"kernel": 3, "stride": 2, "padding": "same"}, (3, 7, 8)) == (6, 4, 4)
    assert out("conv", {"kernel": 3, "stride": 2}, (3, 9, 7)) == (6, 5, 4)
    assert out("conv_transpose", {"kernel": 3, "stride": 2, "padding": 1, "output_padding": 1},
               (4, 5, 7)) == (6, 10, 14)
    assert out("pool", "avg", (5, 7, 6)) == (5,)
    assert out("pool", {"type": "max", "kernel": 3, "stride": 2, "ceil_mode": True}, (3, 8, 7)) == (3, 4, 3)
    assert out("resample", {}, (3, 4, 5)) == (3, 9, 11)
    assert out("resample", {"scale_factor": 1.5}, (3, 5, 7)) == (3, 7, 10)
    assert out("flatten", None, (3, 4, 5)) == (60,)
    assert out("linear", None, (12,)) == (6,)


def test_single_layer_builders_keep_plain_parameter_names():
    for name, params, shape in [("conv", {"padding": "same", "stride": 2}, (3, 7, 7)), ("conv", {}, (3, 5, 5)),
                                ("conv_transpose", {}, (3, 5, 5)), ("linear", 4, (5,)),
                                ("norm", {"type": "group", "groups": 3}, (6, 2, 2)), ("norm", "layer", (6, 2, 2)),
                                ("norm", "batch", (6, 2, 2))]:
        _, _, m = build(name, params, shape)
        keys = {k for k, _ in m.named_parameters()}
        assert keys == {"weight", "bias"}, (name, keys)
    _, _, m = build("norm", {"type": "batch", "per_step": True}, (4, 3, 3), steps=2)
    assert set(m.state_dict()) >= {"steps.0.weight", "steps.1.bias", "steps.1.running_mean"}


# --------------------------------------------------------------------------- numerics vs NumPy (float64)
def np_conv2d_tf_same(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: tuple[int, int]) -> np.ndarray:
    """Direct-loop cross-correlation with TensorFlow SAME padding; x (N,C,H,W), w (O,C,kh,kw)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    sh, sw = stride
    oh, ow = math.ceil(h / sh), math.ceil(wd / sw)
    pad_h = max((oh - 1) * sh + kh - h, 0)
    pad_w = max((ow - 1) * sw + kw - wd, 0)
    top, left = pad_h // 2, pad_w // 2
    y = np.zeros((n, o, oh, ow))
    for bi in range(n):
        for oc in range(o):
            for i in range(oh):
                for j in range(ow):
                    acc = b[oc]
                    for ic in range(c):
                        for di in range(kh):
                            for dj in range(kw):
                                r, s = i * sh + di - top, j * sw + dj - left
                                if 0 <= r < h and 0 <= s < wd:
                                    acc += w[oc, ic, di, dj] * x[bi, ic, r, s]
                    y[bi, oc, i, j] = acc
    return y


@pytest.mark.parametrize("kernel,stride,hw", [(3, 2, (5, 6)), (4, 1, (4, 5)), ((2, 3), (2, 3), (7, 7))])
def test_conv_same_matches_numpy(kernel, stride, hw):
    torch.manual_seed(1)
    _, out_shape, m = build("conv", {"channels": 3, "kernel": kernel, "stride": stride, "padding": "same"},
                            (2, *hw))
    m = m.double()
    x = torch.randn(2, 2, *hw, dtype=torch.float64)
    y = m(x).detach().numpy()
    ref = np_conv2d_tf_same(x.numpy(), m.weight.detach().numpy(), m.bias.detach().numpy(),
                            m.stride)
    assert y.shape[1:] == out_shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-12)


def _randomise_affine(m):
    with torch.no_grad():
        m.weight.copy_(torch.randn_like(m.weight))
        m.bias.copy_(torch.randn_like(m.bias))


def test_layer_norm_matches_numpy():
    torch.manual_seed(2)
    _, _, m = build("norm", {"type": "layer", "eps": 1e-3}, (3, 4, 5))
    m = m.double()
    _randomise_affine(m)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64) * 3 + 1
    xn = x.numpy()
    mu = xn.mean(axis=(1, 2, 3), keepdims=True)
    var = ((xn - mu) ** 2).mean(axis=(1, 2, 3), keepdims=True)
    ref = (xn - mu) / np.sqrt(var + 1e-3) * m.weight.detach().numpy() + m.bias.detach().numpy()
    np.testing.assert_allclose(m(x).detach().numpy(), ref, rtol=0, atol=1e-10)
    assert tuple(m.weight.shape) == (3, 4, 5)


def test_group_norm_matches_numpy():
    torch.manual_seed(3)
    _, _, m = build("norm", {"type": "group", "groups": 2}, (6, 3, 4))
    m = m.double()
    _randomise_affine(m)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64) * 2 - 1
    g = x.numpy().reshape(2, 2, -1)
    mu = g.mean(axis=2, keepdims=True)
    var = ((g - mu) ** 2).mean(axis=2, keepdims=True)
    ref = ((g - mu) / np.sqrt(var + 1e-5)).reshape(2, 6, 3, 4)
    ref = ref * m.weight.detach().numpy()[:, None, None] + m.bias.detach().numpy()[:, None, None]
    np.testing.assert_allclose(m(x).detach().numpy(), ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("size", [3, 4])
def test_lrn_matches_numpy(size):
    params = {"size": size, "alpha": 0.5, "beta": 0.75, "k": 2.0}
    _, _, m = build("lrn", params, (7, 3, 2))
    x = torch.randn(2, 7, 3, 2, dtype=torch.float64) * 2
    xn = x.numpy()
    ref = np.empty_like(xn)
    for c in range(7):
        lo, hi = max(c - size // 2, 0), min(c + (size - 1) // 2, 6)
        s = (xn[:, lo:hi + 1] ** 2).sum(axis=1)
        ref[:, c] = xn[:, c] / (2.0 + 0.5 / size * s) ** 0.75
    np.testing.assert_allclose(m(x).numpy(), ref, rtol=0, atol=1e-12)


def test_log_softmax_clip_matches_numpy():
    _, _, m = build("log_softmax", 1e-10, (5,))
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0], [0.0, -40.0, 5.0, 60.0, 2.0]], dtype=torch.float64)
    xn = x.numpy()
    e = np.exp(xn - xn.max(axis=1, keepdims=True))
    ref = np.log(np.clip(e / e.sum(axis=1, keepdims=True), 1e-10, 1.0))
    y = m(x).numpy()
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-10)
    assert y[1, 1] == pytest.approx(math.log(1e-10))  # clipped
    _, _, plain = build("log_softmax", None, (5,))
    assert plain(x)[1, 1].item() < math.log(1e-10)  # not clipped


def test_pointwise_ops_match_formulas():
    x = torch.linspace(-8, 8, 33, dtype=torch.float64).reshape(1, 33)
    xn = x.numpy()
    cases = [
        ("scale", {"factor": 2, "offset": -1}, 2 * xn - 1),
        ("power", 3, np.abs(xn) ** 3),
        ("leaky_relu", 0.2, np.where(xn >= 0, xn, 0.2 * xn)),
        ("elu", 0.5, np.where(xn > 0, xn, 0.5 * (np.exp(xn) - 1))),
        ("relu6", None, np.clip(xn, 0, 6)),
        ("softplus", None, np.log1p(np.exp(xn))),
        ("sigmoid", None, 1 / (1 + np.exp(-xn))),
    ]
    for name, params, ref in cases:
        _, _, m = build(name, params, (33,))
        np.testing.assert_allclose(m(x).numpy(), ref, rtol=1e-12, atol=1e-12, err_msg=name)


def test_global_pool_and_resample_values():
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    _, _, avg = build("pool", "avg", (3, 4, 5))
    _, _, mx = build("pool", "max", (3, 4, 5))
    np.testing.assert_allclose(avg(x).numpy(), x.numpy().mean(axis=(2, 3)), atol=1e-12)
    np.testing.assert_allclose(mx(x).numpy(), x.numpy().max(axis=(2, 3)), atol=0)
    _, _, up = build("resample", {"scale_factor": 2}, (3, 4, 5))
    np.testing.assert_array_equal(up(x).numpy(), x.numpy().repeat(2, axis=2).repeat(2, axis=3))


MAX_POOLS = [  # (batch, channels, h, w, kernel, stride, padding, dilation, ceil_mode)
    (4, 16, 12, 12, 2, 2, 0, 1, False), (2, 8, 9, 7, 3, 2, 1, 1, False), (1, 5, 7, 7, 2, 2, 0, 1, True),
    (3, 6, 11, 10, 3, 2, 1, 1, True), (2, 4, 13, 13, 3, 1, 1, 2, False), (1, 64, 28, 28, (2, 3), (1, 2), 1, 1, False),
    (2, 9, 5, 6, 2, 1, 0, 1, False), (1, 3, 2, 2, 2, 2, 1, 1, True),
]


def _special_values(shape, seed: int) -> torch.Tensor:
    """Mostly ReLU output (ties of +0), with -0, +-inf and NaNs of several payloads and signs:
    which tied or NaN element a pool picks shows in the bits."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed)).relu_()
    flat = x.view(-1)
    flat[::7] = -0.0
    flat[5::13] = -math.inf
    flat[2::17] = math.inf
    nans = torch.tensor([0x7FC00001, 0x7FC00002, -0x3FFFFF], dtype=torch.int32).view(torch.float32)
    flat[3::11] = nans.repeat(flat[3::11].numel() // 3 + 1)[: flat[3::11].numel()]
    return x


def _max_pool_rule(x: torch.Tensor, kernel, stride, padding, dilation, out_hw) -> np.ndarray:
    """The max-pool rule written out: from -inf, visit the window's elements inside the map row
    by row and take ``v`` where ``v > max`` or ``v`` is NaN (first of equals wins: +0 before -0)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (pair(v) for v in (kernel, stride, padding, dilation))
    a = x.numpy()
    out = np.empty(a.shape[:2] + out_hw, dtype=a.dtype)
    for n, c, i, j in np.ndindex(*out.shape):
        best = np.float32(-np.inf)
        for u in range(kh):
            for v in range(kw):
                r, q = i * sh - ph + u * dh, j * sw - pw + v * dw
                if 0 <= r < a.shape[2] and 0 <= q < a.shape[3]:
                    val = a[n, c, r, q]
                    if val > best or np.isnan(val):
                        best = val
        out[n, c, i, j] = best
    return out


@pytest.mark.parametrize("batch, c, h, w, kernel, stride, padding, dilation, ceil", MAX_POOLS)
def test_max_pool_is_bit_identical_to_torch_and_runs_channels_last_without_gradients(
        batch, c, h, w, kernel, stride, padding, dilation, ceil, monkeypatch):
    from tnnspec.compile import passes
    from tnnspec.compile.ops import MaxPool2d

    layouts = []
    real = torch.nn.functional.max_pool2d
    monkeypatch.setattr(torch.nn.functional, "max_pool2d",
                        lambda x, *a, **k: layouts.append(not x.is_contiguous()) or real(x, *a, **k))
    pool = MaxPool2d(kernel, stride, padding, dilation, ceil_mode=ceil)
    x = _special_values((batch, c, h, w), seed=batch * 100 + h)
    with torch.no_grad():
        plain = pool(x)  # the kernel pass is off outside a network's forward: the NCHW kernel
        assert layouts == [False]
        layouts.clear()
        with passes.running({"maxpool_nhwc"}):  # as while a network runs with the pass
            got = pool(x)
    want = real(x, kernel, stride, padding, dilation, ceil_mode=ceil)  # ATen's NCHW kernel
    assert torch.equal(plain.view(torch.int32), want.view(torch.int32))
    assert layouts == [True] and got.is_contiguous()
    assert torch.equal(got.view(torch.int32), want.view(torch.int32))
    rule = _max_pool_rule(x, kernel, stride, padding, dilation, tuple(want.shape[2:]))
    assert np.array_equal(got.numpy().view(np.int32), rule.view(np.int32))

    # with a gradient the plain call runs, and the gradient is torch's
    layouts.clear()
    xg = x.nan_to_num(0.0).requires_grad_()
    with passes.running({"maxpool_nhwc"}):
        out = pool(xg)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    ref = xg.detach().clone().requires_grad_()
    real(ref, kernel, stride, padding, dilation, ceil_mode=ceil).backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    assert layouts == [False] and torch.equal(xg.grad, ref.grad)


def test_the_zoo_max_pools_are_the_fast_ones():
    import tnnspec
    from tnnspec import zoo
    from tnnspec.compile.ops import MaxPool2d

    for name in ("blt_net_64", "cornet_s", "convrnn_shallow_gru"):
        pools = [m for m in tnnspec.compile(zoo.load(name)).modules() if isinstance(m, torch.nn.MaxPool2d)]
        assert pools and all(type(m) is MaxPool2d for m in pools), name


def test_per_step_batch_norm_has_separate_statistics():
    _, _, m = build("norm", {"type": "batch", "per_step": True, "momentum": 0.5}, (2, 3, 3), steps=3)
    assert isinstance(m, StepOp) and len(m.steps) == 3
    m.train()
    xs = [torch.randn(4, 2, 3, 3) + k for k in range(3)]
    for t, x in enumerate(xs):
        m(x, t)
    for t, x in enumerate(xs):
        expect = 0.5 * x.mean(dim=(0, 2, 3))
        assert torch.allclose(m.steps[t].running_mean, expect)
        assert int(m.steps[t].num_batches_tracked) == 1
    # beyond the horizon: the last step's norm is reused (and only it updates)
    before = [s.running_mean.clone() for s in m.steps]
    x5 = torch.randn(4, 2, 3, 3) * 2 + 7
    m(x5, 5)
    assert torch.allclose(m.steps[0].running_mean, before[0])
    assert torch.allclose(m.steps[1].running_mean, before[1])
    assert torch.allclose(m.steps[2].running_mean, 0.5 * before[2] + 0.5 * x5.mean(dim=(0, 2, 3)))
    # eval mode: each step normalises with its own statistics
    m.eval()
    y0, y1 = m(xs[0], 0), m(xs[0], 1)
    assert not torch.allclose(y0, y1)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("name,params,shape,ctx,match", [
    ("linear", 10, (3, 4, 4), CTX, r"linear needs a vector \[F\].*'pool'.*'flatten'"),
    ("linear", None, (12,), ShapeContext(), "linear needs 'features'"),
    ("conv", {"kernel": 5, "padding": "valid"}, (3, 3, 3), CTX, "conv kernel 5x5 does not fit input 3x3"),
    ("conv", {}, (12,), CTX, r"conv needs a feature map \[C, H, W\]"),
    ("conv", {}, (3, 4, 4), ShapeContext(), "conv needs 'channels'"),
    ("conv", {"groups": 4}, (6, 4, 4), CTX, "groups=4 must divide"),
    ("conv_transpose", {"stride": 2, "output_padding": 2}, (3, 4, 4), CTX, "output_padding"),
    ("pool", {"type": "max", "kernel": 5}, (3, 4, 4), CTX, "pool kernel 5x5 does not fit input 4x4"),
    ("pool", {"type": "max", "kernel": 2, "padding": 2}, (3, 8, 8), CTX, "at most half the kernel"),
    ("pool", "avg", (12,), CTX, "pool needs a feature map"),
    ("resample", {}, (3, 4, 4), ShapeContext(channels=3), "resample needs 'size' or 'scale_factor' here"),
    ("resample", {"scale_factor": 0.1}, (3, 4, 4), CTX, "empty"),
    ("norm", {"type": "group", "groups": 4}, (6, 2, 2), CTX, "groups=4 must divide the 6 channels"),
    ("norm", "instance", (6,), CTX, "instance norm needs a feature map"),
    ("norm", "layer", (6, 2), CTX, "norm needs a feature map"),
    ("lrn", 5, (6,), CTX, "lrn needs a feature map"),
])
def test_shape_errors(name, params, shape, ctx, match):
    with pytest.raises(ShapeError, match=match):
        OPS[name].model_validate(params).output_shape(shape, ctx)


@pytest.mark.parametrize("name,params", [
    ("norm", "group"),  # groups missing
    ("norm", {"type": "layer", "per_step": True}),
    ("norm", {"type": "group", "groups": 2, "momentum": 0.2}),
    ("norm", {"type": "batch", "groups": 2}),
    ("norm", {}),  # type required
    ("pool", {"kernel": 2}),  # type required
    ("pool", {"type": "max", "kernel": 2, "count_include_pad": False}),
    ("pool", {"type": "avg", "stride": 2}),  # global pooling takes no stride
    ("resample", {"size": 4, "scale_factor": 2.0}),
    ("resample", {"mode": "nearest", "align_corners": True}),
    ("conv", {"kernel": 0}),
    ("conv", {"padding": -1}),
    ("conv", {"padding": "full"}),
    ("dropout", 1.0),
    ("scale", None),  # factor required
    ("power", 0),
    ("linear", 0),
    ("log_softmax", 0.0),
    ("relu", {"inplace": True}),
])
def test_invalid_params(name, params):
    with pytest.raises(ValidationError):
        OPS[name].model_validate(params)


# --------------------------------------------------------------------------- shorthand
def test_scalar_shorthand():
    assert OPS["linear"].model_validate(1000).features == 1000
    assert OPS["pool"].model_validate("avg").type == "avg"
    assert OPS["pool"].model_validate("avg").kernel is None
    assert OPS["conv"].model_validate(64).channels == 64
    assert OPS["norm"].model_validate("layer").type == "layer"
    assert OPS["resample"].model_validate("bilinear").mode == "bilinear"
    assert OPS["dropout"].model_validate(0.2).p == 0.2
    assert OPS["scale"].model_validate(2).factor == 2.0
    assert OPS["power"].model_validate(0.5).exponent == 0.5
    assert OPS["leaky_relu"].model_validate(0.1).slope == 0.1
    assert OPS["lrn"].model_validate(5).size == 5
    assert OPS["log_softmax"].model_validate(1e-10).clip_min == 1e-10
    assert OPS["relu"].model_validate(None) == OPS["relu"]()
