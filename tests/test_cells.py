"""Cells: registries, NumPy equivalence per step, zero-state bypass, gradients, shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

import tnnspec.compile.cells as TC
from tnnspec.compile.registry import CELL_BUILDERS
from tnnspec.spec import cells as SC
from tnnspec.spec.components import CELLS, ShapeError

from numpy_cells import divisive_equilibrium, reference

DRIVE = (3, 5, 6)  # per-sample drive: 3 channels, 5x6 map
BATCH = 2
STEPS = 4

# (id, cell name, params, area channels); conv RNN cells map 3 -> 4 channels
CASES = [
    ("identity", "identity", {}, 3),
    ("time_decay", "time_decay", {"decay": 0.7}, 3),
    ("time_decay_fixed", "time_decay", {"decay": 0.4, "learnable": False}, 3),
    ("leaky", "leaky", {"tau_ms": 10.0, "dt_ms": 4.0, "activation": "relu"}, 3),
    ("additive_state", "additive_state", {}, 3),
    ("simple_rnn", "simple_rnn", {}, 4),
    ("simple_rnn_k2_tanh", "simple_rnn", {"kernel": 2, "activation": "tanh"}, 4),
    ("gru", "gru", {}, 4),
    ("gru_k13", "gru", {"kernel": [1, 3], "forget_bias": 0.0}, 4),
    ("lstm", "lstm", {}, 4),
    ("lstm_peephole_k4", "lstm", {"peephole": True, "kernel": 4, "forget_bias": 0.5}, 4),
    ("ugrnn", "ugrnn", {}, 4),
    ("intersection_rnn", "intersection_rnn", {}, 3),
    ("reciprocal_gated", "reciprocal_gated", {}, 3),
    ("reciprocal_gated_bias", "reciprocal_gated", {"bias": True, "activation": "tanh", "kernel": 2}, 3),
    ("resnet_unit", "resnet_unit", {}, 3),
    ("resnet_unit_bias", "resnet_unit", {"bias": True, "activation": "elu"}, 3),
    ("rgc_convrnn", "reciprocal_gated_convrnn", {}, 3),
    ("rgc_convrnn_median", "reciprocal_gated_convrnn", {
        "cell_channels": 5, "tau_depth_separable": True, "gate_depth_separable": True,
        "tau_kernel": 5, "gate_kernel": 3, "input_kernel": 2, "gate_nonlinearity": "tanh",
        "tau_offset": 0.92, "tau_multiplier": -0.92, "gate_offset": 0.7, "gate_multiplier": -0.7,
        "input_activation": "elu", "input_to_out": True, "cell_to_out": True}, 3),
    ("cornet_s_block_eval", "cornet_s_block", {"inner_steps": 3, "scale": 2}, 3),
    ("cornet_s_block_train", "cornet_s_block", {"inner_steps": 2}, 3),
    ("divisive_norm", "divisive_norm", {"pool_kernel": 3}, 3),
    ("divisive_norm_slow", "divisive_norm",
     {"tau_steps": 2.5, "power": 2.0, "pool_channels": False, "sigma": 0.5}, 3),
]
IDS = [c[0] for c in CASES]

GATING = {"gru", "lstm", "ugrnn", "intersection_rnn", "reciprocal_gated", "resnet_unit",
          "reciprocal_gated_convrnn"}


def build(name: str, params: dict, channels: int, drive=DRIVE, seed: int = 0):
    """A float64 cell with random weights (and random BN statistics)."""
    p = CELLS[name].model_validate(params)
    cell = CELL_BUILDERS[name](p, drive, p.output_shape(drive, channels), STEPS).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for pname, t in cell.named_parameters():
            t.copy_(0.5 * torch.randn(t.shape, generator=gen, dtype=t.dtype))
            if pname.startswith("norm") and pname.endswith("weight"):
                t.add_(1.0)
        for bname, t in cell.named_buffers():
            if bname.endswith("running_mean"):
                t.copy_(0.3 * torch.randn(t.shape, generator=gen, dtype=t.dtype))
            elif bname.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=gen, dtype=t.dtype))
    return p, cell


def _flat(state):
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return [np.asarray(s.detach() if isinstance(s, torch.Tensor) else s) for s in state]
    return [np.asarray(state.detach() if isinstance(state, torch.Tensor) else state)]


# --------------------------------------------------------------------------- registries


def test_every_cell_has_a_builder():
    assert set(CELL_BUILDERS) == set(CELLS)
    assert set(c[1] for c in CASES) == set(CELLS), "every cell is covered by the equivalence cases"


def test_gates_flag():
    assert {n for n, c in CELLS.items() if c.gates} == GATING
    for name, cls in CELLS.items():
        assert CELL_BUILDERS[name].gates == cls.gates, name


@pytest.mark.parametrize("name", sorted(CELLS))
def test_documented_and_described(name):
    cls = CELLS[name]
    doc = cls.__doc__ or ""
    assert "Zero state" in doc and ("Gates." in doc or "Does not gate" in doc), name
    props = cls.model_json_schema()["properties"]
    assert props["type"]["const"] == name if "const" in props["type"] else props["type"]["default"] == name
    for field, schema in props.items():
        if field != "type":
            assert schema.get("description"), f"{name}.{field} has no description"


# --------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matches_numpy_reference(case):
    _, name, params, channels = case
    p, cell = build(name, params, channels)
    train = name != "cornet_s_block" or case[0].endswith("train")
    cell.train(train)
    W = {k: v.detach().numpy().copy() for k, v in cell.state_dict().items()}
    init, step = reference(name)
    kwargs = {"train": train} if name == "cornet_s_block" else {}
    rng = np.random.default_rng(1)
    x = rng.standard_normal((BATCH, *DRIVE))
    state, ref_state = cell.initial_state(torch.from_numpy(x)), init(p, x, cell.out_shape)
    for k in range(STEPS):
        x = rng.standard_normal((BATCH, *DRIVE))
        with torch.no_grad():
            y, state = cell(torch.from_numpy(x), state, k)
            state = cell.after_ops(y, state)
        y_ref, ref_state = step(p, W, x, ref_state, k, **kwargs)
        assert tuple(y.shape) == (BATCH, *p.output_shape(DRIVE, channels)) == y_ref.shape
        assert np.abs(y.numpy() - y_ref).max() <= 1e-6, f"{case[0]} step {k}"
        for s, r in zip(_flat(state), _flat(ref_state), strict=True):
            assert np.abs(s - r).max() <= 1e-6, f"{case[0]} state at step {k}"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_reaches_every_parameter(case):
    _, name, params, channels = case
    p, cell = build(name, params, channels, seed=3)
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(BATCH, *DRIVE, generator=gen, dtype=torch.float64)
    state = cell.initial_state(x)
    loss = 0.0
    for k in range(3):
        x = torch.randn(BATCH, *DRIVE, generator=gen, dtype=torch.float64)
        y, state = cell(x, state, k)
        state = cell.after_ops(y, state)
        loss = loss + (y * torch.randn(y.shape, generator=gen, dtype=y.dtype)).sum()
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        loss.backward()
    for pname, t in cell.named_parameters():
        assert t.grad is not None and t.grad.abs().sum() > 0, f"{case[0]}: no gradient for {pname}"


# --------------------------------------------------------------------------- zero state


def _x(seed=5):
    return torch.randn(BATCH, *DRIVE, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _bypass_expected(name, cell, x):
    """What each cell's docstring says it outputs at its first step (all states zero)."""
    sig, tanh, relu = torch.sigmoid, torch.tanh, torch.relu
    if name in ("identity", "time_decay", "additive_state"):
        return x
    if name == "leaky":
        return cell.alpha * cell.act(x)
    if name == "simple_rnn":
        return cell.act(cell.input_conv(x))
    C = cell.out_shape[0]
    if name == "gru":
        _, xu, xc = cell.input_conv(x).chunk(3, 1)
        return (1 - sig(xu)) * tanh(xc)
    if name == "lstm":
        i, j, _, o = cell.input_conv(x).chunk(4, 1)
        return sig(o) * tanh(sig(i) * tanh(j))
    if name == "ugrnn":
        g, c = cell.input_conv(x).chunk(2, 1)
        return (1 - sig(g + cell.forget_bias)) * tanh(c)
    if name == "intersection_rnn":
        _, _, gy, yy = cell.input_conv(x).chunk(4, 1)
        gy = sig(gy + cell.forget_bias)
        return gy * x + (1 - gy) * relu(yy)
    if name == "reciprocal_gated":
        return cell.act(0.5 * x)  # bias-free gates see 0: 1 - σ(0) = 1/2
    if name == "resnet_unit":
        return cell.act(x)
    if name == "reciprocal_gated_convrnn":
        return cell.act(0.5 * x)  # defaults: u_h = x̃ = x, gate 1 - σ(0)
    if name == "divisive_norm":
        return cell.equilibrium(x) / cell.tau
    raise AssertionError(f"no bypass rule for {name} (channels {C})")


@pytest.mark.parametrize("name", sorted(set(CELLS) - {"cornet_s_block"}))
def test_zero_state_bypass(name):
    params = {"tau_ms": 10.0, "dt_ms": 2.5} if name == "leaky" else {}
    if name == "divisive_norm":
        params = {"tau_steps": 3.0}
    channels = 4 if name in ("simple_rnn", "gru", "lstm", "ugrnn") else 3
    _, cell = build(name, params, channels)
    x = _x()
    with torch.no_grad():
        y, _ = cell(x, cell.initial_state(x), 0)
        torch.testing.assert_close(y, _bypass_expected(name, cell, x), rtol=0, atol=1e-12)


def test_bypass_special_cases():
    x = _x()
    # time_decay with a fixed λ = 0 is a feedforward area at every step
    _, cell = build("time_decay", {"decay": 0.0, "learnable": False}, 3)
    s = cell.initial_state(x)
    for k in range(3):
        y, s = cell(x, s, k)
        torch.testing.assert_close(y, x)
    # additive_state keeps the area's *final* output (after ops), not the cell output
    _, cell = build("additive_state", {}, 3)
    s = cell.initial_state(x)
    y, s = cell(x, s, 0)
    s = cell.after_ops(2 * y, s)
    y, _ = cell(x, s, 1)
    torch.testing.assert_close(y, 3 * x)
    # intersection_rnn: a closed depth gate passes the drive exactly
    _, cell = build("intersection_rnn", {"forget_bias": 60.0}, 3)
    with torch.no_grad():
        y, _ = cell(x, cell.initial_state(x), 0)
    torch.testing.assert_close(y, x)


def test_cornet_s_block_is_stateless():
    _, cell = build("cornet_s_block", {"inner_steps": 2}, 3)
    cell.eval()
    x = _x()
    assert cell.initial_state(x) is None
    with torch.no_grad():
        y0, s = cell(x, None, 0)
        y3, _ = cell(x, s, 3)
    assert s is None
    torch.testing.assert_close(y0, y3)


# --------------------------------------------------------------------------- shapes


def test_output_shapes_and_errors():
    assert SC.GRU().output_shape((3, 5, 6), 8) == (8, 5, 6)
    assert SC.CORnetSBlock().output_shape((8, 7, 6), 8) == (8, 4, 3)
    assert SC.CORnetSBlock().output_shape((8, 56, 56), 8) == (8, 28, 28)
    assert SC.TimeDecay().output_shape((10,), 10) == (10,)
    with pytest.raises(ShapeError):
        SC.GRU().output_shape((10,), 8)
    with pytest.raises(ShapeError):
        SC.ReciprocalGated().output_shape((3, 5, 6), 4)
    with pytest.raises(ShapeError):
        SC.IntersectionRNN().output_shape((3, 5, 6), 4)
    with pytest.raises(ShapeError):
        SC.CORnetSBlock().output_shape((3, 5, 6), 4)
    with pytest.raises(ShapeError):
        SC.DivisiveNorm().output_shape((3,), 3)


def test_vector_drive_for_elementwise_cells():
    x = torch.randn(BATCH, 10, dtype=torch.float64)
    for name, params in [("time_decay", {}), ("leaky", {"tau_ms": 5.0, "dt_ms": 1.0}), ("additive_state", {})]:
        p, cell = build(name, params, 10, drive=(10,))
        y, s = cell(x, cell.initial_state(x), 0)
        assert y.shape == x.shape


def test_cornet_s_block_names_and_per_step_norms():
    _, cell = build("cornet_s_block", {"inner_steps": 3}, 3)
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = ["skip.weight", *(f"norm_skip.{b}" for b in bn), "conv1.weight", "conv2.weight", "conv3.weight"]
    for k in range(3):
        expected += [f"norm{i}_{k}.{b}" for i in (1, 2, 3) for b in bn]
    assert list(cell.state_dict()) == expected
    assert cell.conv1.weight.shape == (12, 3, 1, 1) and cell.conv2.weight.shape == (12, 12, 3, 3)
    assert cell.conv3.weight.shape == (3, 12, 1, 1) and cell.skip.weight.shape == (3, 3, 1, 1)
    assert cell.conv2.stride == (1, 1)
    # in train mode each inner step's BNs see exactly one batch per outer step; the skip BN once
    cell.train()
    x = _x()
    hooks_seen = []
    handle = cell.output.register_forward_hook(lambda m, i, o: hooks_seen.append(o.shape))
    cell(x, None, 0)
    cell(x, None, 1)
    handle.remove()
    assert len(hooks_seen) == 6 and all(s == (BATCH, 3, 3, 3) for s in hooks_seen)
    for k in range(3):
        for i in (1, 2, 3):
            assert int(getattr(cell, f"norm{i}_{k}").num_batches_tracked) == 2
    assert int(cell.norm_skip.num_batches_tracked) == 2
    assert cell.conv2.stride == (1, 1)  # never mutated


# --------------------------------------------------------------------------- per-cell params


def test_param_validation():
    with pytest.raises(ValidationError):
        SC.TimeDecay(decay=0.0)  # learnable needs 0 < decay < 1
    assert SC.TimeDecay(decay=0.0, learnable=False).decay == 0.0
    with pytest.raises(ValidationError):
        SC.Leaky(tau_ms=2.0, dt_ms=5.0)
    with pytest.raises(ValidationError):
        SC.Leaky(tau_ms=10.0).resolved(20.0)
    assert SC.Leaky(tau_ms=10.0).resolved(2.0).alpha == 0.2
    assert SC.Leaky(tau_ms=10.0, dt_ms=1.0).resolved(2.0).dt_ms == 1.0
    with pytest.raises(ValidationError):
        SC.DivisiveNorm(pool_kernel=4)
    with pytest.raises(ValidationError):
        SC.DivisiveNorm(tau_steps=0.5)
    with pytest.raises(ValidationError):
        SC.GRU(kernel=0)
    with pytest.raises(ValidationError):
        SC.GRU(type="lstm")
    with pytest.raises(ValidationError):
        SC.LSTM(peepholes=True)  # typo: extra fields are rejected


def test_leaky_needs_dt():
    p = SC.Leaky(tau_ms=10.0)
    with pytest.raises(ValueError, match="dt_ms"):
        CELL_BUILDERS["leaky"](p, DRIVE, DRIVE, STEPS)
    CELL_BUILDERS["leaky"](p.resolved(1.0), DRIVE, DRIVE, STEPS)


def test_time_decay_parameterisation():
    cell = CELL_BUILDERS["time_decay"](SC.TimeDecay(decay=0.8), DRIVE, DRIVE, STEPS)
    assert abs(cell.decay_value().item() - 0.8) < 1e-6
    assert [n for n, _ in cell.named_parameters()] == ["decay_logit"]
    fixed = CELL_BUILDERS["time_decay"](SC.TimeDecay(decay=0.8, learnable=False), DRIVE, DRIVE, STEPS)
    assert list(fixed.parameters()) == [] and fixed.decay_value() == 0.8


def test_initial_state_follows_drive():
    x = torch.zeros(5, *DRIVE, dtype=torch.float64)
    _, cell = build("lstm", {}, 4)
    c, h = cell.initial_state(x)
    assert c.shape == h.shape == (5, 4, 5, 6) and c.dtype == torch.float64 and not c.any()
    _, cell = build("reciprocal_gated_convrnn", {"cell_channels": 7}, 3)
    c, h = cell.initial_state(x)
    assert c.shape == (5, 7, 5, 6) and h.shape == (5, 3, 5, 6)


# --------------------------------------------------------------------------- divisive normalisation


def test_divisive_norm_closed_form():
    for params in ({}, {"power": 2.0, "pool_kernel": 3}, {"pool_channels": False, "sigma": 0.3}):
        p, cell = build("divisive_norm", params, 3)
        x = _x(7)
        e, g = divisive_equilibrium(p, x.numpy())
        np.testing.assert_allclose(cell.equilibrium(x).numpy(), e / g, rtol=0, atol=1e-12)
        y, _ = cell(x, cell.initial_state(x), 0)  # tau_steps = 1: equilibrium immediately
        np.testing.assert_allclose(y.numpy(), e / g, rtol=0, atol=1e-12)
    # for a non-negative E the pool is over E itself: R = E / (σ + pool(E)), by hand at one pixel
    p, cell = build("divisive_norm", {"power": 1.0, "pool_kernel": 1, "sigma": 2.0}, 3)
    x = torch.tensor([[1.0, 2.0, -3.0]], dtype=torch.float64).reshape(1, 3, 1, 1)
    y = cell.equilibrium(x).flatten().tolist()
    assert y == pytest.approx([1 / (2 + 1), 2 / (2 + 1), 0.0])


@pytest.mark.parametrize("tau", [2.0, 4.0, 10.0])
def test_divisive_norm_converges(tau):
    p, cell = build("divisive_norm", {"tau_steps": tau, "power": 2.0}, 3)
    x = 3 * _x(8)
    target = cell.equilibrium(x)
    r = cell.initial_state(x)
    errs = []
    for k in range(int(12 * tau)):
        r, _ = cell(x, r, k)
        errs.append((r - target).abs().max().item())
    assert errs[-1] < 1e-5 * target.abs().max().item()
    # geometric, monotone contraction by 1 - 1/tau per step
    ratios = [b / a for a, b in zip(errs[:5], errs[1:6])]
    assert all(abs(q - (1 - 1 / tau)) < 1e-9 for q in ratios)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CELLS))
def test_compiles_fullgraph(name, request):
    """torch.compile(fullgraph=True) traces every cell (minutes; runs only with ``-m slow``)."""
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("compiling every cell takes minutes; run with -m slow")
    params = {"tau_ms": 10.0, "dt_ms": 2.0} if name == "leaky" else {}
    channels = 4 if name in ("simple_rnn", "gru", "lstm", "ugrnn") else 3
    _, cell = build(name, params, channels)
    cell.eval()
    compiled = torch.compile(cell, fullgraph=True)
    x = _x()
    s1 = s2 = cell.initial_state(x)
    for k in range(3):
        y1, s1 = cell(x, s1, k)
        y2, s2 = compiled(x, s2, k)
        s1, s2 = cell.after_ops(y1, s1), cell.after_ops(y2, s2)
        torch.testing.assert_close(y1, y2)


def test_fused_conv_matches_separate():
    convs = [TC.same_conv(3, n, 3, True).double() for n in (2, 5)]
    x = _x()
    for a, conv in zip(TC.fused_conv(convs, x), convs):
        torch.testing.assert_close(a, conv(x))
