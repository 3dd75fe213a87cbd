"""The kernel passes ``packed_weights`` and ``packed_weights_fast`` (tnnspec/compile/packing.py):
CPU inference convolutions on weights packed once. ``packed_weights`` (a default pass, "exact")
is bit-identical to the plain conv2d; ``packed_weights_fast`` ("fast") equal to float rounding.
Packed weights are made once, follow every kind of weight change (also edits through .data), and
nothing is packed where it must not be. Kernel passes are on only while a network runs with
them (``passes.running``), so a conv called on its own runs plainly."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import tnnspec
from tnnspec import zoo
from tnnspec.compile import fusion, kept, packing, passes

pytestmark = pytest.mark.skipif(not (packing.available("exact") and packing.available("fast")),
                                reason="this torch build has no oneDNN packed convolution")

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]

MIXED = """
tnnspec: "1.0"
name: mixed_convs
time: {steps: 4, default_delay: sweep}
inputs: {x: {shape: [3, 15, 15]}}
areas:
  A: {level: 1, channels: 8, ops: [{conv: {kernel: 4, padding: same}}, relu]}
  R: {level: 2, channels: 8, cell: {type: gru, kernel: 3}}
  S: {level: 3, channels: 6, cell: {type: reciprocal_gated_convrnn, tau_depth_separable: true}}
edges:
  - {type: feedforward, source: x, target: A, transform: [{conv: {kernel: 3, stride: 2, dilation: 1}}]}
  - {type: feedforward, source: A, target: R, transform: [{conv: {kernel: 2, padding: same}}]}
  - {type: feedforward, source: R, target: S, transform: [{conv: 6}]}
  - {type: feedback, source: S, target: A, transform: [{resample: bilinear}, {conv: 8}]}
readouts: {pred: {source: S, head: [{pool: avg}, {linear: 3}]}}
"""


PASS = {"exact": "packed_weights", "fast": "packed_weights_fast"}  # the pass of each mode
UNPACKED = tuple(n for n in tnnspec.compile.DEFAULT if n != "packed_weights")  # the default passes, unpacked


def _pair(spec, mode, extra=()):
    """Two networks with the same weights: the default passes without packing, and with ``mode``'s
    packing pass (and ``extra`` passes)."""
    torch.manual_seed(0)
    plain = tnnspec.compile(spec, optimize=UNPACKED).eval()
    packed = tnnspec.compile(spec, optimize=(*UNPACKED, PASS[mode], *extra)).eval()
    packed.load_state_dict(plain.state_dict())
    return plain, packed


@pytest.fixture
def packs(monkeypatch):
    """The input sizes of every weight packing, either mode."""
    calls = []
    for name in ("_reorder", "_prepack"):
        real = getattr(packing, name)
        monkeypatch.setattr(packing, name, lambda *a, real=real: calls.append(a[-1]) or real(*a))
    return calls


def _convs(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]


def _same(a, b, mode):
    if mode == "exact":
        assert torch.equal(a, b), (a - b).abs().max()
    else:
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(b.abs().max().item(), 1.0))


def _cornet_s(px=64):
    spec = zoo.load("cornet_s")
    return spec.model_copy(update={"inputs": {"image": spec.inputs["image"].model_copy(update={"shape": [3, px, px]})}})


def test_every_conv_of_the_network_can_run_packed_and_exact_is_the_default(packs):
    for net in (tnnspec.compile(tnnspec.loads(MIXED)), tnnspec.compile(zoo.load("cornet_s"))):
        convs = _convs(net)
        assert convs and all(isinstance(m, packing.Conv2d) for m in convs)
        assert "packed_weights" in net.passes and "packed_weights_fast" not in net.passes
    assert "packed_weights" in tnnspec.compile.DEFAULT and "packed_weights_fast" not in tnnspec.compile.DEFAULT
    assert tnnspec.compile(tnnspec.loads(MIXED), optimize="none").passes == ()
    with pytest.raises(ValueError, match="exclude each other"):
        tnnspec.compile(tnnspec.loads(MIXED), optimize=["packed_weights", "packed_weights_fast"])
    with pytest.raises(ValueError, match="unknown pass"):
        tnnspec.compile(tnnspec.loads(MIXED), optimize=["packed_weights_fastest"])
    # a conv called on its own (outside a network's forward) runs plainly
    conv = _convs(net)[0]
    x = torch.randn(2, conv.in_channels, 16, 16)
    want = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    with torch.no_grad():
        assert torch.equal(conv(x), want)
        assert not packs
        with passes.running({"packed_weights"}):  # as in a forward with the pass: packed, same bits
            assert torch.equal(conv(x), want)
        assert packs


# geometries where ATen runs oneDNN and where it runs its own kernel (batch 1, small, 1x1 on one thread)
GEOMETRIES = [  # (batch, c_in, c_out, kernel, stride, padding, dilation, groups, hw)
    (1, 3, 8, 3, 1, 1, 1, 1, 9), (1, 16, 32, 1, 1, 0, 1, 1, 40), (1, 64, 64, 3, 1, 1, 1, 1, 14),
    (1, 8, 8, 1, 1, 0, 1, 1, 6), (2, 8, 16, 1, 1, 0, 1, 1, 6), (1, 8, 8, 5, 1, 2, 1, 1, 6),
    (3, 12, 12, 3, 2, 1, 1, 4, 11), (1, 12, 12, 3, 1, 2, 2, 1, 13), (4, 6, 6, 3, 1, 1, 1, 6, 8),
    (2, 32, 16, 1, 1, 0, 1, 1, 1), (1, 3, 16, 7, 2, 3, 1, 1, 32), (17, 4, 4, 1, 1, 0, 1, 1, 5),
]


@pytest.mark.parametrize("threads", [1, 2])
def test_exact_mode_is_bit_identical_to_conv2d_in_every_geometry(threads, packs):
    """Packing where ATen would not pick oneDNN (or packing for another primitive) shows up here
    as a difference in the last bits."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(threads)
        for batch, cin, cout, k, stride, pad, dil, groups, hw in GEOMETRIES:
            for bias in (True, False):
                conv = packing.Conv2d(cin, cout, k, stride, pad, dil, groups, bias=bias)
                x = torch.randn(batch, cin, hw, hw, generator=gen)
                with torch.no_grad(), kept.session(), passes.running({"packed_weights"}):
                    got = conv(x)
                want = F.conv2d(x, conv.weight, conv.bias, stride, pad, dil, groups)
                assert torch.equal(got, want), (batch, cin, cout, k, stride, pad, dil, groups, hw, bias)
                packed = packing.aten_picks_onednn(x, conv.weight, conv.stride, conv.dilation, groups)
                assert bool(packs) == (packed and hw > 1), (batch, cin, cout, k, stride, hw, threads)
                packs.clear()
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("source", ["ventral4", "mixed"])
def test_outputs_equal_the_plain_run_and_weights_are_packed_once(mode, source, packs):
    spec = tnnspec.load(ROOT / "graphs" / "ventral4.yaml") if source == "ventral4" else tnnspec.loads(MIXED)
    plain, packed = _pair(spec, mode)
    x = plain.example_inputs(3)
    record = tuple(spec.areas)
    readout = "pred" if source == "mixed" else "logits"
    with torch.inference_mode():
        a, b = plain(x, record=record), packed(x, record=record)
        made = len(packs)
        assert made >= len(_convs(packed)) - 2  # (a feedback conv may be silent at T=4; a tiny one native)
        for name in record:
            _same(b.areas[name], a.areas[name], mode)
        _same(b.readouts[readout], a.readouts[readout], mode)
        packed(x, record=record)
        assert len(packs) == made  # kept: the second call packs nothing
        packed(packed.example_inputs(5), record=record)
        assert len(packs) == 2 * made  # a new input shape packs again (oneDNN picks per shape)


@pytest.mark.parametrize("name", ["cornet_s", "cornet_rt", "blt_net_64"])
def test_the_default_is_bit_identical_on_the_zoo(name, packs):
    spec = _cornet_s() if name == "cornet_s" else zoo.load(name)
    plain, packed = _pair(spec, "exact")
    x = plain.example_inputs(2)
    with torch.inference_mode():
        a, b = plain(x).readouts, packed(x).readouts
    assert packs and a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_packed_weights_follow_weight_changes_and_to(mode, packs):
    spec = tnnspec.load(ROOT / "graphs" / "ventral4.yaml")
    plain, packed = _pair(spec, mode)
    x = plain.example_inputs(2)
    with torch.no_grad():
        packed(x)
        for net in (plain, packed):  # in place, as an optimiser step does
            net.edges["V1__V2"].conv.weight.mul_(-2.0)
        _same(packed(x).readouts["logits"], plain(x).readouts["logits"], mode)
        packed.load_state_dict(tnnspec.compile(spec).state_dict())
        plain.load_state_dict(packed.state_dict())
        _same(packed(x).readouts["logits"], plain(x).readouts["logits"], mode)
        packed.double(), plain.double()  # float64 is not packed; .to() drops the packed weights
        assert not any(kept.stored(m, packing._CACHE) for m in packed.modules())
        before = len(packs)
        assert torch.equal(packed(x.double()).readouts["logits"], plain(x.double()).readouts["logits"])
        assert len(packs) == before


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_a_lesion_through_data_is_seen_at_the_next_forward(mode, packs):
    """``.data`` edits bump no version counter and keep the storage: only the values show them."""
    plain, packed = _pair(tnnspec.load(ROOT / "graphs" / "ventral4.yaml"), mode)
    x = plain.example_inputs(2)
    with torch.inference_mode():
        packed(x)
    made = len(packs)
    for net in (plain, packed):
        w = net.edges["V1__V2"].conv.weight
        version = w._version
        w.data[: w.shape[0] // 2] = 0.0  # silence half of V1 -> V2
        assert w._version == version
    with torch.inference_mode():
        _same(packed(x).readouts["logits"], plain(x).readouts["logits"], mode)
    assert len(packs) > made


def test_outside_a_forward_the_values_are_checked_at_every_call(packs):
    conv = packing.Conv2d(16, 16, 3, padding=1)
    x = torch.randn(2, 16, 12, 12)
    with torch.no_grad(), passes.running({"packed_weights"}):  # on, as in a forward; no kept.session
        conv(x)
        conv.weight.data.mul_(0.5)
        assert torch.equal(conv(x), F.conv2d(x, conv.weight, conv.bias, padding=1))
    assert len(packs) == 2


def test_the_value_check_compares_bits(packs):
    """A NaN weight is unchanged (no repacking at every call, as a value comparison would do);
    flipping the sign of a zero weight is a change."""
    conv = packing.Conv2d(8, 8, 3, padding=1)
    x = torch.randn(2, 8, 10, 10)
    with torch.no_grad(), passes.running({"packed_weights"}):
        conv.weight[0, 0, 0, 0] = float("nan")
        conv.weight[1, 0, 0, 0] = 0.0
        conv(x), conv(x)
        assert len(packs) == 1
        conv.weight.data[1, 0, 0, 0] = -0.0
        conv(x)
        assert len(packs) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.int64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "transposed"])
def test_same_bits_agrees_with_a_bitwise_comparison(dtype, layout):
    gen = torch.Generator().manual_seed(0)
    a = (torch.randn(6, 5, 3, 3, generator=gen) * 100).to(dtype)
    if layout == "channels_last":
        a = a.contiguous(memory_format=torch.channels_last)
    elif layout == "transposed":
        a = a.transpose(0, 1)
    b = a.clone()
    assert kept.same_bits(a, b) and b.stride() == a.stride()
    for i in (0, 7, a.numel() - 1):
        c = a.clone()
        idx = tuple(int(v) for v in torch.unravel_index(torch.tensor(i), a.shape))
        c[idx] = c[idx] + 1
        assert not kept.same_bits(a, c), (i, layout)
    if dtype.is_floating_point:
        z, nz = torch.zeros_like(a), torch.zeros_like(a)
        nz[(0,) * a.dim()] = -0.0
        assert not kept.same_bits(z, nz) and torch.equal(z, nz)  # equal values, different bits
        n = torch.full_like(a, float("nan"))
        assert kept.same_bits(n, n.clone()) and not torch.equal(n, n.clone())
    assert not kept.same_bits(a, a.reshape(-1)) and not kept.same_bits(a, a.double() if dtype != torch.float64 else a.float())


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_nothing_is_packed_with_gradients_or_under_autocast(mode, packs):
    plain, packed = _pair(tnnspec.load(ROOT / "graphs" / "ventral4.yaml"), mode)
    x = plain.example_inputs(2)
    out = packed(x).readouts["logits"]
    assert torch.equal(out, plain(x).readouts["logits"]) and not packs
    out.sum().backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(packed(x).readouts["logits"], plain(x).readouts["logits"])
    assert not packs


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_with_fused_batchnorm_each_inner_steps_fold_is_packed_once(mode, packs):
    spec = _cornet_s()
    plain, packed = _pair(spec, mode, extra=("fuse_batchnorm",))
    gen = torch.Generator().manual_seed(1)
    for m in plain.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    packed.load_state_dict(plain.state_dict())
    x = plain.example_inputs(2)
    with torch.inference_mode():
        a = plain(x, readout_steps="last").readouts["logits"]
        _close = lambda got: torch.testing.assert_close(got, a, rtol=1e-4, atol=1e-5)  # folding rounds
        _close(packed(x, readout_steps="last").readouts["logits"])
        made = len(packs)
        # a block's conv1..3 are shared over inner steps, each step folding its own BatchNorm
        inner = sum(area.cell.inner_steps for area in spec.areas.values() if area.cell.name == "cornet_s_block")
        # image edge, V1's conv2, per block its conv_input (edge) and skip, and 3 per inner step
        assert made == 1 + 1 + 3 + 3 + 3 * inner
        _close(packed(x, readout_steps="last").readouts["logits"])
        assert len(packs) == made
    name = next(n for n, m in packed.named_modules() if kept.stored(m, fusion.FOLDS))  # a fused norm
    for net in (plain, packed):  # a lesion of a BatchNorm's scale through .data refolds
        net.get_submodule(name).weight.data.zero_()
    norm = packed.get_submodule(name)
    with torch.inference_mode():
        a = plain(x, readout_steps="last").readouts["logits"]
        _close(packed(x, readout_steps="last").readouts["logits"])
    assert norm.weight.abs().sum() == 0 and len(packs) > made


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_a_network_copies_and_saves_after_packed_inference(mode, tmp_path):
    """Kept values live outside the modules: deepcopy and torch.save see none of them, and a
    copy packs its own weights (a lesion of the copy leaves the original alone)."""
    import copy

    _, net = _pair(tnnspec.load(ROOT / "graphs" / "ventral4.yaml"), mode)
    x = net.example_inputs(2)
    with torch.inference_mode():
        want = net(x).readouts["logits"]
    twin = copy.deepcopy(net)
    torch.save(net, tmp_path / "net.pt")
    saved = torch.load(tmp_path / "net.pt", weights_only=False)
    with torch.no_grad():
        twin.edges["V1__V2"].conv.weight.zero_()
    with torch.inference_mode():
        assert torch.equal(saved(x).readouts["logits"], want)
        assert torch.equal(net(x).readouts["logits"], want)
        assert not torch.equal(twin(x).readouts["logits"], want)


def test_weights_passed_per_call_are_not_kept_alive():
    """torch.func.functional_call passes new weight tensors at every call: their packed copies
    go with them, so memory does not grow with the number of calls."""
    import gc
    import weakref

    from torch.func import functional_call

    _, net = _pair(tnnspec.load(ROOT / "graphs" / "ventral4.yaml"), "exact")
    x = net.example_inputs(2)
    params = dict(net.named_parameters())
    with torch.inference_mode():
        want = net(x).readouts["logits"]
        conv = net.edges["V1__V2"].conv
        refs = []
        for _ in range(3):
            fresh = {k: v.clone() for k, v in params.items()}
            refs.append(weakref.ref(fresh["edges.V1__V2.conv.weight"]))
            assert torch.equal(functional_call(net, fresh, (x,)).readouts["logits"], want)
            del fresh
    gc.collect()
    assert all(r() is None for r in refs)  # nothing kept them
    assert len(kept.store(conv, packing._CACHE)) == 1  # only the conv's own weight is packed
