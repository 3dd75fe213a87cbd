"""Zoo graphs of the BLT family: BLT_net_64 (CCN 2023), Spoerer et al. 2017 B/BL/BT/BLT, and
Spoerer et al. 2020 BL-net.

Equivalence: the hand-written references in ``tests/references`` get random weights and
randomised norm affines, their state dicts go through the zoo converters into the compiled
graphs (strict load), and every area output and readout must agree to 1e-6 at every step.
Model card: docs/zoo/blt.md.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import references.blt_ccn23 as ccn23
import tnnspec
from references.blt_ccn23 import BLT_NET_64_KEYS, BLTNet64
from references.blt_spoerer2017 import B, BL, BLT, BT
from tnnspec import zoo
from tnnspec.zoo.blt import BLT_NET_64_MAP, BLT_NET_64_UNUSED, SPOERER2020_BL_MAP
from tnnspec.zoo.registry import WeightError

ROOT = Path(__file__).resolve().parents[1]
BLT_FILES = ("blt_net_64", "blt_net_64_additive")
SPOERER2017 = {"spoerer2017_b": B, "spoerer2017_bl": BL, "spoerer2017_bt": BT, "spoerer2017_blt": BLT}
ALL = (*BLT_FILES, *SPOERER2017, "spoerer2020_bl")
BLT_AREAS = ("retina", "v1", "v2", "v4", "it", "gap")
TOL = 1e-6

BLT_NET_64_PARAMS = 7_546_852  # the original, v1's unused lateral/top-down included
BLT_NET_64_UNUSED_PARAMS = 64 * 64 * 9 + 128 * 64 * 9  # v1.lateral + v1.top_down = 110,592
SPOERER2020_BL_PARAMS = 27_979_605  # 128 px, 565 classes, T = 8 (8 BatchNorms per layer)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


@functools.cache
def spec(name: str) -> tnnspec.Spec:
    return zoo.load(name, strict=True)


def compiled(name: str) -> nn.Module:
    return tnnspec.compile(spec(name))


def randomise(m: nn.Module, seed: int) -> nn.Module:
    """Random weights (seeded default init) and non-trivial norm affines (gamma != 1, beta != 0)."""
    torch.manual_seed(seed)
    for mod in m.modules():
        if hasattr(mod, "reset_parameters") and mod is not m:
            mod.reset_parameters()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.LayerNorm, nn.BatchNorm2d)):
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.normal_(0.0, 0.5)
    return m.eval()


def max_diffs(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Max |a - b| per step of [T, B, ...] tensors."""
    return (a - b).abs().flatten(1).max(dim=1).values.tolist()


# ---------------------------------------------------------------------------- files
@pytest.mark.parametrize("name", ALL)
def test_validates_strict(name: str) -> None:
    path = ROOT / "graphs" / f"{name}.yaml"
    assert path.read_text(encoding="utf-8").startswith(
        "# yaml-language-server: $schema=../schemas/tnnspec.schema.json\n")
    s = spec(name)
    assert s.description and s.references
    assert all(a.level is not None for a in s.areas.values())
    assert any(a.group == "ventral" for a in s.areas.values())
    assert name in zoo.list()


def test_cli_validate_strict() -> None:
    files = [str(ROOT / "graphs" / f"{n}.yaml") for n in ALL]
    r = subprocess.run([sys.executable, "-m", "tnnspec", "validate", "--strict", *files],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_blt_variants_differ_only_in_combine() -> None:
    mult, add = spec("blt_net_64"), spec("blt_net_64_additive")
    assert mult.time == add.time and mult.edges == add.edges and mult.readouts == add.readouts
    for name in mult.areas:
        a, b = mult.areas[name], add.areas[name]
        assert a.model_copy(update={"combine": b.combine}) == b
    assert {a.combine for a in mult.areas.values() if a.ops and a.ops[0].op_name == "norm"} == {"multiplicative"}
    assert {a.combine for a in add.areas.values()} == {"sum"}


# ---------------------------------------------------------------------------- parameter counts
def test_blt_net_64_param_count() -> None:
    ref = BLTNet64()
    assert n_params(ref) == BLT_NET_64_PARAMS
    assert list(ref.state_dict()) == list(BLT_NET_64_KEYS)
    unused = sum(ref.state_dict()[k].numel() for k in BLT_NET_64_UNUSED)
    assert unused == BLT_NET_64_UNUSED_PARAMS == 110_592
    for name in BLT_FILES:
        assert n_params(compiled(name)) + unused == BLT_NET_64_PARAMS  # compiled: 7,436,260


@pytest.mark.parametrize("name", list(SPOERER2017))
def test_spoerer2017_param_count(name: str) -> None:
    assert n_params(compiled(name)) == n_params(SPOERER2017[name]())


def test_spoerer2020_bl_param_count() -> None:
    net = compiled("spoerer2020_bl")
    assert n_params(net) == SPOERER2020_BL_PARAMS
    bn = 2 * (96 + 128 + 192 + 256 + 512 + 1024 + 2048)  # gamma, beta of one BN per layer
    assert SPOERER2020_BL_PARAMS == 26_753_824 + (2048 * 565 + 565) + 8 * bn  # convs + dense + BNs
    assert len(net.areas["layer3"].ops.norm.steps) == 8
    assert net.areas["layer3"].ops.norm.steps[0].eps == 1e-3


# ---------------------------------------------------------------------------- forward + backward
def _forward_backward(net: nn.Module, x: torch.Tensor, steps: int | None = None) -> tnnspec.Run:
    """Train-mode run and backward; every parameter used in ``steps`` steps gets a finite gradient
    (per-step norms of later steps are unused)."""
    net.train()
    run = net(x, steps=steps)
    loss = sum(v.float().pow(2).mean() for v in run.readouts.values())
    loss.backward()
    T = next(iter(run.readouts.values())).shape[0]
    per_step = re.compile(r"\.norm\.steps\.(\d+)\.")
    grads = {n: p.grad for n, p in net.named_parameters()
             if not (m := per_step.search(n)) or int(m[1]) < T}
    missing = [n for n, g in grads.items() if g is None]
    assert not missing, f"no gradient for {missing}"
    assert all(torch.isfinite(g).all() for g in grads.values())
    return run


@pytest.mark.parametrize("name", [*BLT_FILES, *SPOERER2017])
def test_forward_backward(name: str) -> None:
    net = compiled(name)
    x = net.example_inputs(batch_size=2)
    T = 3 if name in BLT_FILES else None  # BLT_net_64 is 64 px (LayerNorm shapes): 3 of 10 steps
    run = _forward_backward(net, x, steps=T)
    T = T or spec(name).time.steps
    (out,) = run.readouts.values()
    assert out.shape[:2] == (T, 2) and torch.isfinite(out).all()
    if name in BLT_FILES:  # log-probabilities, clipped at log(1e-10)
        assert out.shape == (T, 2, 100)
        assert torch.allclose(out.exp().sum(-1), torch.ones(T, 2), atol=1e-4)
        assert out.min() >= torch.log(torch.tensor(1e-10)) - 1e-6


def spoerer2020_small() -> tnnspec.Spec:
    """spoerer2020_bl at 64 px (the smallest size its six 2x2 pools allow) for fast CPU tests."""
    text = (ROOT / "graphs" / "spoerer2020_bl.yaml").read_text(encoding="utf-8")
    assert text.count("shape: [3, 128, 128]") == 1
    return tnnspec.loads(text.replace("shape: [3, 128, 128]", "shape: [3, 64, 64]"),
                         file=str(ROOT / "graphs" / "spoerer2020_bl_64px.yaml"), strict=True)


def test_spoerer2020_bl_run_and_cumulative_readout() -> None:
    torch.manual_seed(0)
    net = tnnspec.compile(spoerer2020_small())
    x = net.example_inputs(batch_size=2)
    run = _forward_backward(net, x, steps=2)
    instant, cumulative = run.readouts["logits"], run.readouts["logits_cumulative"]
    assert instant.shape == cumulative.shape == (2, 2, 565)
    torch.testing.assert_close(cumulative, instant.cumsum(0), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(instant[0], instant[-1])  # the lateral terms act


# ---------------------------------------------------------------------------- converters
def test_blt_net_64_converter_is_strict() -> None:
    state = BLTNet64().state_dict()
    out = zoo.convert_weights("blt_net_64", state)  # checks against the compiled model
    assert set(out) == set(BLT_NET_64_MAP.values())
    assert set(state) - set(BLT_NET_64_MAP) == set(BLT_NET_64_UNUSED)
    dp = {f"module.{k}": v for k, v in state.items()}  # DataParallel checkpoints
    assert set(zoo.convert_weights("blt_net_64_additive", dp)) == set(out)
    with pytest.raises(WeightError, match="unknown keys.*v1.extra"):
        zoo.convert_weights("blt_net_64", {**state, "v1.extra.weight": torch.zeros(1)})
    with pytest.raises(WeightError, match="missing keys.*readout.bias"):
        zoo.convert_weights("blt_net_64", {k: v for k, v in state.items() if k != "readout.bias"})
    wrong = dict(state, **{"readout.weight": torch.zeros(10, 512), "readout.bias": torch.zeros(10)})
    with pytest.raises(WeightError, match="wrong shape"):
        zoo.convert_weights("blt_net_64", wrong)


@pytest.mark.parametrize("name", list(SPOERER2017))
def test_spoerer2017_converter_is_strict(name: str) -> None:
    state = SPOERER2017[name]().state_dict()
    zoo.convert_weights(name, state)
    other = "spoerer2017_b" if name == "spoerer2017_blt" else "spoerer2017_blt"
    with pytest.raises(WeightError):
        zoo.convert_weights(name, SPOERER2017[other]().state_dict())


def test_spoerer2020_bl_keras_converter() -> None:
    """Keras-layout weights (HWIO kernels, (in, out) dense, BN moving stats) land on the right
    compiled tensors; Keras names with ':0' are accepted, unknown names rejected."""
    net = compiled("spoerer2020_bl")
    target = {k: torch.randn_like(v.float()) for k, v in net.state_dict().items()
              if not k.endswith("num_batches_tracked")}
    keras = {}
    for kname, tname in SPOERER2020_BL_MAP.items():
        v = target[tname]
        if v.dim() == 4:
            v = v.permute(2, 3, 1, 0)  # OIHW -> HWIO
        elif v.dim() == 2:
            v = v.t()
        keras[kname + ":0"] = v.numpy()
    out = zoo.convert_weights("spoerer2020_bl", keras, check=False)
    net.load_state_dict(out, strict=True)
    for k, v in target.items():
        assert torch.equal(net.state_dict()[k], v), k
    with pytest.raises(WeightError, match="unknown keys.*RCL_7_BConv"):
        zoo.convert_weights("spoerer2020_bl", {**keras, "RCL_7_BConv/kernel:0": keras["RCL_6_BConv/kernel:0"]},
                            check=False)


# ---------------------------------------------------------------------------- equivalence
@functools.cache
def _blt_runs(interaction: str) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Compiled run (areas, log-probabilities) of a randomised reference's converted weights."""
    name = "blt_net_64" if interaction == "multiplicative" else "blt_net_64_additive"
    ref = randomise(BLTNet64(interaction=interaction), seed=1)  # type: ignore[arg-type]
    net = compiled(name).eval()
    net.load_state_dict(zoo.convert_weights(name, ref.state_dict(), check=False), strict=True)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        run = net(x, record=BLT_AREAS)
    return run.areas, run.readouts["logits"], x


@functools.cache
def _blt_diffs(interaction: str) -> tuple[dict[str, list[float]], list[float]]:
    """Per-step max |compiled - reference| for every area and the log-probabilities."""
    areas, logp, x = _blt_runs(interaction)
    ref = randomise(BLTNet64(interaction=interaction), seed=1)  # type: ignore[arg-type]
    with torch.no_grad():
        out, acts = ref(x, return_activations=True)
    ref_logp = torch.stack(out)
    assert not torch.allclose(ref_logp[0], ref_logp[-1], atol=1e-3)  # lateral/top-down terms act
    return ({a: max_diffs(areas[a], torch.stack(acts[a])) for a in BLT_AREAS},
            max_diffs(logp, ref_logp))


def _assert_close(areas: dict[str, list[float]], logp: list[float]) -> None:
    worst = {a: max(d) for a, d in areas.items()}
    assert max(worst.values()) <= TOL, f"area outputs differ: {worst}"
    assert max(logp) <= TOL, f"log-probabilities differ: {logp}"


def test_blt_net_64_additive_equivalence() -> None:
    _assert_close(*_blt_diffs("additive"))


def test_blt_net_64_multiplicative_equivalence() -> None:
    _assert_close(*_blt_diffs("multiplicative"))


@pytest.mark.parametrize("name", list(SPOERER2017))
def test_spoerer2017_equivalence(name: str) -> None:
    ref = randomise(SPOERER2017[name](), seed=3)
    with torch.no_grad():  # larger weights: recurrent terms of the same order as bottom-up ones
        for p in ref.parameters():
            p.mul_(4.0)
    net = compiled(name).eval()
    net.load_state_dict(zoo.convert_weights(name, ref.state_dict(), check=False), strict=True)
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits, acts = ref(x, return_activations=True)
        run = net(x, record=("layer1", "layer2"))
    for a in ("layer1", "layer2"):
        assert max(max_diffs(run.areas[a], torch.stack(acts[a]))) <= TOL, a
    assert max(max_diffs(run.readouts["logits"], torch.stack(logits))) <= TOL
    z = torch.stack(logits)
    assert torch.allclose(z[0], z[-1]) == (name == "spoerer2017_b")  # recurrence acts unless B
