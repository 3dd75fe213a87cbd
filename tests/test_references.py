"""Self-checks of the hand-written reference models in ``tests/references``.

Published numbers come from ``/work/shared/reference/peers.md`` (sections 1 and 2.3).
Forward passes use small images (64 px, batch 2) to stay fast on 2 CPU cores.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from references.blt_ccn23 import BLT_NET_64_KEYS, BLTNet64
from references.blt_spoerer2017 import B, BL, BLT, BT
from references.cornet import (AREAS, CORNET_S_INNER_STEPS, CORnetR, CORnetRT, CORnetS,
                               CORnetZ, cornet_keys)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@functools.cache
def shared(cls: type[nn.Module]) -> nn.Module:
    """One default-constructed eval-mode instance per class (tests may randomise its norms)."""
    torch.manual_seed(0)
    return cls().eval()


@pytest.fixture(scope="module", autouse=True)
def _release_shared() -> Iterator[None]:
    yield
    shared.cache_clear()  # CORnet-S holds ~210 MB of weights


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture()
def cornet_s() -> CORnetS:
    m = shared(CORnetS)
    assert isinstance(m, CORnetS)
    return m


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def _randomise_affine(m: nn.Module) -> None:
    """Non-trivial norm affine params (default init has beta = 0, hiding the t = 0 rule)."""
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.GroupNorm, nn.LayerNorm, nn.BatchNorm2d)):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.5)


# ---------------------------------------------------------------------------- CORnet
@pytest.mark.parametrize(("cls", "variant", "count"), [
    (CORnetZ, "Z", 2_071_656), (CORnetR, "R", 5_208_936),
    (CORnetRT, "RT", 5_208_936), (CORnetS, "S", 53_416_616)])
def test_cornet_param_count_and_keys(cls: type[nn.Module], variant: str, count: int) -> None:
    m = shared(cls)
    assert n_params(m) == count
    assert list(m.state_dict()) == cornet_keys(variant)  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [CORnetZ, CORnetR, CORnetRT, CORnetS])
def test_cornet_forward_shapes(cls: type[nn.Module], x64: torch.Tensor) -> None:
    m = shared(cls)
    with torch.no_grad():
        logits = m(x64)
        steps = m(x64, return_steps=True)
    assert logits.shape == (2, 1000)
    torch.testing.assert_close(steps.logits, logits, rtol=0, atol=0)
    assert steps.step_logits[-1] is steps.logits
    assert len(steps.step_logits) == len(steps.areas["IT"])
    chans = dict(zip(AREAS, (64, 128, 256, 512)))
    side = dict(zip(AREAS, (16, 8, 4, 2)))  # 64 px: every variant reaches 16/8/4/2
    for a in AREAS:
        for h in steps.areas[a]:
            assert h.shape == (2, chans[a], side[a], side[a])


@pytest.mark.parametrize("cls", [CORnetR, CORnetRT])
def test_cornet_r_step_counts(cls: type[nn.Module], x64: torch.Tensor) -> None:
    m = shared(cls)
    assert m.times == 5
    with torch.no_grad():
        steps = m(x64, return_steps=True)
    assert all(len(steps.areas[a]) == 5 for a in AREAS)
    assert len(steps.step_logits) == 5


def test_cornet_r_vs_rt(x64: torch.Tensor) -> None:
    r, rt = CORnetR().eval(), CORnetRT().eval()
    assert list(r.state_dict()) == list(rt.state_dict())
    _randomise_affine(r)
    rt.load_state_dict(r.state_dict(), strict=True)
    with torch.no_grad():
        sr, srt = r(x64, return_steps=True), rt(x64, return_steps=True)
    for a in AREAS:  # t = 0 identical; V1 (image-driven) identical at every step
        torch.testing.assert_close(sr.areas[a][0], srt.areas[a][0], rtol=0, atol=0)
    for t in range(5):
        torch.testing.assert_close(sr.areas["V1"][t], srt.areas["V1"][t], rtol=0, atol=0)
    for t in range(1, 5):  # V2 reads V1_t (R) vs V1_{t-1} (RT)
        assert not torch.allclose(sr.areas["V2"][t], srt.areas["V2"][t])
    assert not torch.allclose(sr.logits, srt.logits)


@pytest.mark.parametrize("cls", [CORnetR, CORnetRT])
def test_cornet_r_zero_drive_at_t0(cls: type[nn.Module], x64: torch.Tensor) -> None:
    m = cls().eval()
    _randomise_affine(m)
    with torch.no_grad():
        steps = m(x64, return_steps=True)
    for a in AREAS[1:]:
        beta = getattr(m, a).norm1.bias
        expected = torch.relu(beta).view(1, -1, 1, 1).expand_as(steps.areas[a][0])
        torch.testing.assert_close(steps.areas[a][0], expected)
        assert steps.areas[a][0].shape == steps.areas[a][1].shape
    assert steps.areas["V1"][0].std() > 0  # V1 sees the image at t = 0


def test_cornet_rt_image_reaches_it_at_t3(x64: torch.Tensor) -> None:
    m = CORnetRT().eval()
    _randomise_affine(m)
    with torch.no_grad():
        a = m(x64, return_steps=True).areas["IT"]
        b = m(torch.zeros_like(x64), return_steps=True).areas["IT"]
    for t in range(3):
        torch.testing.assert_close(a[t], b[t], rtol=0, atol=0)
    assert not torch.allclose(a[3], b[3])


def test_cornet_s_inner_steps(cornet_s: CORnetS, x64: torch.Tensor) -> None:
    m = cornet_s
    _randomise_affine(m)
    buffers_before = {k: v.clone() for k, v in m.named_buffers()}
    with torch.no_grad():
        s1 = m(x64, return_steps=True)
        s2 = m(x64, return_steps=True)
    for a, n in CORNET_S_INNER_STEPS.items():
        assert len(s1.areas[a]) == n
        if a != "V1":
            assert sum(k.startswith(f"{a}.norm1_") and k.endswith(".weight")
                       for k in m.state_dict()) == n
    assert len(s1.step_logits) == CORNET_S_INNER_STEPS["IT"]
    # Re-entrant: no module mutation, identical results, running stats untouched in eval.
    torch.testing.assert_close(s1.logits, s2.logits, rtol=0, atol=0)
    assert m.V2.conv2.stride == (1, 1)
    for k, v in m.named_buffers():
        torch.testing.assert_close(v, buffers_before[k], rtol=0, atol=0)


def test_cornet_s_output_hooks_count_inner_steps(cornet_s: CORnetS, x64: torch.Tensor) -> None:
    calls: dict[str, int] = {a: 0 for a in AREAS}
    handles = [getattr(cornet_s, a).output.register_forward_hook(
        lambda *_, a=a: calls.__setitem__(a, calls[a] + 1)) for a in AREAS]
    with torch.no_grad():
        cornet_s(x64)
    for h in handles:
        h.remove()
    assert calls == CORNET_S_INNER_STEPS


# ------------------------------------------------------------------------ BLT CCN23
def test_blt_param_count_and_keys() -> None:
    m = BLTNet64()
    assert n_params(m) == 7_546_852
    assert tuple(m.state_dict()) == BLT_NET_64_KEYS
    assert n_params(BLTNet64(image_size=128, kernel_size=5)) == 21_605_860  # BLT_net_128


def test_blt_forward_and_interaction(x64: torch.Tensor) -> None:
    add = BLTNet64("additive", times=4).eval()
    _randomise_affine(add)
    mul = BLTNet64("multiplicative", times=4).eval()
    mul.load_state_dict(add.state_dict(), strict=True)
    with torch.no_grad():
        out_a, acts = add(x64, return_activations=True)
        out_m = mul(x64)
    assert len(out_a) == 4 and all(o.shape == (2, 100) for o in out_a)
    assert all(torch.all(o <= 0) for o in out_a)
    torch.testing.assert_close(out_a[0].exp().sum(1), torch.ones(2))
    torch.testing.assert_close(out_a[0], out_m[0], rtol=0, atol=0)  # t = 0: only bottom-up
    for t in range(1, 4):
        assert not torch.allclose(out_a[t], out_m[t])
    shapes = {"retina": (32, 64), "v1": (64, 64), "v2": (128, 32), "v4": (256, 16), "it": (512, 8)}
    for node, (c, s) in shapes.items():
        assert len(acts[node]) == 4 and acts[node][0].shape == (2, c, s, s)
    assert acts["gap"][0].shape == (2, 512)
    torch.testing.assert_close(acts["v1"][0], acts["v1"][3], rtol=0, atol=0)


def test_blt_v1_feedback_unused(x64: torch.Tensor) -> None:
    m = BLTNet64(times=3)
    sum(o.sum() for o in m(x64)).backward()
    assert m.v1.lateral.weight.grad is None and m.v1.top_down.weight.grad is None
    assert m.v2.top_down.weight.grad is not None and m.gap.lateral.weight.grad is not None


def test_blt_batch_of_one() -> None:
    out = BLTNet64(times=2).eval()(torch.randn(1, 3, 64, 64))
    assert out[-1].shape == (1, 100)


# ------------------------------------------------------------------- Spoerer 2017
def test_spoerer_variants() -> None:
    x = torch.randn(2, 1, 32, 32)
    ref = BLT(times=4).eval()
    _randomise_affine(ref)
    outs = {}
    for cls in (B, BL, BT, BLT):
        m = cls(times=4).eval()
        m.load_state_dict(ref.state_dict(), strict=False)
        with torch.no_grad():
            outs[cls.__name__] = m(x)
        assert len(outs[cls.__name__]) == 4 and outs[cls.__name__][0].shape == (2, 10)
    names = {c.__name__: set(c().state_dict()) for c in (B, BL, BT, BLT)}
    assert "layer1.top_down.weight" in names["BT"] and "layer1.top_down.weight" not in names["BL"]
    assert "layer2.lateral.weight" in names["BL"] and "layer2.lateral.weight" not in names["B"]
    for name in ("BL", "BT", "BLT"):  # t = 0 is the bottom-up sweep in every variant
        torch.testing.assert_close(outs[name][0], outs["B"][0], rtol=0, atol=0)
        assert not torch.allclose(outs[name][1], outs["B"][1])
    torch.testing.assert_close(outs["B"][0], outs["B"][3], rtol=0, atol=0)
