"""CORnet-Z/R/RT/S zoo graphs: validation, parameter counts, weight import and exact
equivalence with the hand-written references (tests/references/cornet.py).

Forward passes use 64 px images at batch 2 (the compiled models infer every shape from
the input; the references derive CORnet-R/RT's zero-drive sizes from it), so the file stays
fast on 2 CPU cores. Published parameter counts: /work/shared/reference/peers.md section 1.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest
import torch
from torch import nn

import tnnspec
from tnnspec import zoo
from tnnspec.zoo.cornet import TABLES
from tnnspec.zoo.registry import WeightError
from references.cornet import AREAS, CORnetR, CORnetRT, CORnetS, CORnetZ

NAMES = ("cornet_z", "cornet_r", "cornet_rt", "cornet_s")
REFERENCE = {"cornet_z": CORnetZ, "cornet_r": CORnetR, "cornet_rt": CORnetRT, "cornet_s": CORnetS}
PUBLISHED_PARAMS = {"cornet_z": 2_071_656, "cornet_r": 5_208_936, "cornet_rt": 5_208_936,
                    "cornet_s": 53_416_616}
PX = 64
TOL = 1e-6


def small_spec(name: str, px: int = PX) -> tnnspec.Spec:
    """The zoo graph with a ``px`` x ``px`` image input instead of 224."""
    spec = zoo.load(name, strict=True)
    image = spec.inputs["image"].model_copy(update={"shape": [3, px, px]})
    return spec.model_copy(update={"inputs": {**spec.inputs, "image": image}})


@functools.cache
def compiled_224(name: str) -> nn.Module:
    return tnnspec.compile(zoo.load(name, strict=True))


@functools.cache
def reference(name: str) -> nn.Module:
    """The reference model with random weights and random norm affines and statistics, eval."""
    torch.manual_seed(0)
    m = REFERENCE[name]().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.GroupNorm, nn.BatchNorm2d)):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=g) + 0.5)   # U(0.5, 1.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.5)
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.5)
                mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)
                mod.num_batches_tracked.fill_(1234)
            if isinstance(mod, (nn.Conv2d, nn.Linear)) and mod.bias is not None:
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)  # Z inits biases to 0
    return m


@pytest.fixture(scope="module", autouse=True)
def _release() -> Iterator[None]:
    yield
    compiled_224.cache_clear()  # CORnet-S holds ~210 MB of weights, twice
    reference.cache_clear()


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, PX, PX, generator=torch.Generator().manual_seed(2))


def loaded(name: str, px: int = PX) -> tuple[tnnspec.Spec, nn.Module]:
    """Compiled ``name`` at ``px`` with the reference's weights, converted by the zoo, eval."""
    spec = small_spec(name, px)
    net = tnnspec.compile(spec).eval()
    state = {f"module.{k}": v for k, v in reference(name).state_dict().items()}  # as in checkpoints
    net.load_state_dict(zoo.convert_weights(name, state), strict=True)
    return spec, net


# ---------------------------------------------------------------------------- the files
@pytest.mark.parametrize("name", NAMES)
def test_validates_strictly_and_has_the_common_header(name: str) -> None:
    path = zoo.path(name)
    assert path.read_text().splitlines()[0] == "# yaml-language-server: $schema=../schemas/tnnspec.schema.json"
    spec, diags = tnnspec.check_file(path)
    assert spec is not None and diags == []
    assert spec.description and len(spec.references) == 2
    assert any("bioRxiv" in r for r in spec.references) and any("NeurIPS" in r for r in spec.references)
    assert spec.inputs["image"].shape == [3, 224, 224]
    assert {a: spec.areas[a].level for a in AREAS} == {"V1": 1, "V2": 2, "V4": 3, "IT": 4}
    assert all(spec.areas[a].group == "ventral" for a in AREAS)
    assert spec.areas["IT"].channels == 512 and spec.readouts["logits"].source == "IT"


@pytest.mark.parametrize(("name", "steps"), [("cornet_z", 1), ("cornet_r", 5), ("cornet_rt", 5), ("cornet_s", 1)])
def test_time_mapping(name: str, steps: int) -> None:
    spec = zoo.load(name, strict=True)
    plan = compiled_224(name).plan
    assert plan.steps == steps
    if name in ("cornet_z", "cornet_s"):
        assert all(plan.arrival[a] == 0 for a in AREAS)
    elif name == "cornet_rt":  # one step per area
        assert [plan.arrival[a] for a in AREAS] == [0, 1, 2, 3]
    else:  # R: same-step sweep, but V2..IT see no input at t = 0
        assert [plan.arrival[a] for a in AREAS] == [0, 1, 1, 1]
    if name in ("cornet_r", "cornet_rt"):
        assert all(spec.areas[a].before_arrival == "zero_drive" for a in AREAS)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_published(name: str) -> None:
    net = compiled_224(name)
    assert sum(p.numel() for p in net.parameters()) == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_small(name: str, x: torch.Tensor) -> None:
    net = tnnspec.compile(small_spec(name)).train()
    run = net(x)
    logits = run.readouts["logits"]
    assert logits.shape == (net.plan.steps, 2, 1000)
    logits[-1].square().mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in net.parameters())


# ---------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("name", ("cornet_z", "cornet_r", "cornet_rt"))
def test_equivalent_to_reference_at_every_step(name: str, x: torch.Tensor) -> None:
    spec, net = loaded(name)
    with torch.no_grad():
        ref = reference(name)(x, return_steps=True)
        run = net(x, record=tuple(spec.areas))
    T = len(ref.step_logits)
    assert T == net.plan.steps
    for a in AREAS:
        got = run.areas[a]
        assert got.shape[0] == T == len(ref.areas[a])
        for t in range(T):
            assert got[t].shape == ref.areas[a][t].shape
            assert (got[t] - ref.areas[a][t]).abs().max().item() <= TOL, (a, t)
    for t in range(T):
        assert (run.readouts["logits"][t] - ref.step_logits[t]).abs().max().item() <= TOL, ("logits", t)


def test_cornet_s_equivalent_to_reference(x: torch.Tensor) -> None:
    spec, net = loaded("cornet_s")
    inner: dict[str, list[torch.Tensor]] = {a: [] for a in AREAS[1:]}
    hooks = [net.areas[a].cell.output.register_forward_hook(lambda m, i, o, a=a: inner[a].append(o))
             for a in inner]  # the cell calls its `output` identity once per inner step, as CORnet
    try:
        with torch.no_grad():
            ref = reference("cornet_s")(x, return_steps=True)
            run = net(x, record=tuple(spec.areas))
    finally:
        for h in hooks:
            h.remove()
    for a in AREAS:  # the reference lists every inner step; the area output is the last
        got = run.areas[a][-1]
        assert got.shape == ref.areas[a][-1].shape
        assert (got - ref.areas[a][-1]).abs().max().item() <= TOL, a
    for a, outs in inner.items():
        assert len(outs) == len(ref.areas[a]) == {"V2": 2, "V4": 4, "IT": 2}[a]
        for k, (got, exp) in enumerate(zip(outs, ref.areas[a])):
            assert (got - exp).abs().max().item() <= TOL, (a, k)
    assert (run.readouts["logits"][-1] - ref.logits).abs().max().item() <= TOL


def test_r_and_rt_schedules_differ(x: torch.Tensor) -> None:
    """The same weights in the R and RT graphs: identical at t = 0 and in V1, different above."""
    _, r = loaded("cornet_r")
    rt = tnnspec.compile(small_spec("cornet_rt")).eval()
    rt.load_state_dict(r.state_dict(), strict=True)
    with torch.no_grad():
        a, b = r(x, record=AREAS), rt(x, record=AREAS)
    assert torch.equal(a.areas["V1"], b.areas["V1"])
    for area in AREAS:
        assert torch.equal(a.areas[area][0], b.areas[area][0])
    assert not torch.allclose(a.areas["V2"][1], b.areas["V2"][1])
    assert not torch.allclose(a.readouts["logits"][-1], b.readouts["logits"][-1])


def test_rt_zero_drive_at_t0_is_relu_of_the_gn_shift(x: torch.Tensor) -> None:
    _, net = loaded("cornet_rt")
    with torch.no_grad():
        run = net(x, record=AREAS)
        blank = net(torch.zeros_like(x), record=("IT",))
    for a in ("V2", "V4", "IT"):
        out0 = run.areas[a][0]
        beta = net.state_dict()[f"areas.{a}.ops.norm.bias"]
        assert torch.equal(out0, torch.relu(beta).view(1, -1, 1, 1).expand_as(out0))
        assert (out0 > 0).any()  # randomised shifts: not a trivial zero
    # the image reaches IT at t = 3 (one step per edge), not before
    assert torch.equal(run.areas["IT"][:3], blank.areas["IT"][:3])
    assert not torch.allclose(run.areas["IT"][3], blank.areas["IT"][3])


# ---------------------------------------------------------------------------- converters
@pytest.mark.parametrize("name", NAMES)
def test_table_maps_onto_the_compiled_names(name: str) -> None:
    table = TABLES[name]()
    assert len(set(table.values())) == len(table)
    assert set(table.values()) == set(compiled_224(name).state_dict())
    assert set(table) == set(reference(name).state_dict())


def test_converter_strips_prefix_and_is_strict() -> None:
    state = reference("cornet_rt").state_dict()
    plain = zoo.convert_weights("cornet_rt", state)
    prefixed = zoo.convert_weights("cornet_rt", {f"module.{k}": v for k, v in state.items()})
    assert plain.keys() == prefixed.keys() and all(plain[k] is prefixed[k] for k in plain)
    assert plain["edges.V1__V2.norm.weight"] is state["V2.norm_input.weight"]

    missing = {k: v for k, v in state.items() if k != "V4.conv1.weight"}
    with pytest.raises(WeightError, match=r"missing.*V4\.conv1\.weight"):
        zoo.convert_weights("cornet_rt", missing)
    with pytest.raises(WeightError, match=r"unknown.*V4\.conv2\.weight"):
        zoo.convert_weights("cornet_rt", {**state, "V4.conv2.weight": torch.zeros(1)})
    with pytest.raises(WeightError, match=r"unknown.*areas\.V1\.ops\.conv\.weight"):
        zoo.convert_weights("cornet_rt", {**state, "areas.V1.ops.conv.weight": torch.zeros(1)})
    with pytest.raises(WeightError, match="unknown"):  # a CORnet-S checkpoint is not CORnet-RT's
        zoo.convert_weights("cornet_z", state)


def test_cornet_s_converter_keeps_bn_buffers_and_fills_an_old_counter() -> None:
    state = reference("cornet_s").state_dict()
    out = zoo.convert_weights("cornet_s", state, check=False)
    assert out["areas.V4.cell.norm2_3.running_var"] is state["V4.norm2_3.running_var"]
    assert out["areas.V1.ops.norm_1.running_mean"] is state["V1.norm2.running_mean"]
    assert int(out["areas.IT.cell.norm_skip.num_batches_tracked"]) == 1234
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # PyTorch < 0.4.1
    filled = zoo.convert_weights("cornet_s", old, check=False)
    assert filled.keys() == out.keys()
    assert int(filled["areas.V2.cell.norm1_1.num_batches_tracked"]) == 0
    with pytest.raises(WeightError, match=r"missing.*V2\.norm1_1\.running_mean"):
        zoo.convert_weights("cornet_s", {k: v for k, v in state.items() if k != "V2.norm1_1.running_mean"})


def test_cli_convert_weights(tmp_path, x: torch.Tensor, capsys) -> None:
    from safetensors.torch import load_file

    from tnnspec.cli.main import main

    ref = reference("cornet_rt")
    ckpt, out = tmp_path / "cornet_rt.pth", tmp_path / "cornet_rt.safetensors"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 42}, ckpt)
    assert main(["convert-weights", "--from", "cornet_rt", str(ckpt), "-o", str(out)]) == 0
    assert "wrote 30 tensors" in capsys.readouterr().out
    spec = small_spec("cornet_rt")
    net = tnnspec.compile(spec).eval()
    net.load_state_dict(load_file(out), strict=True)
    with torch.no_grad():
        got = net(x).readouts["logits"][-1]
        assert (got - ref(x)).abs().max().item() <= TOL

    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {**ref.state_dict(), "V1.extra.weight": torch.zeros(1)}}, bad)
    assert main(["convert-weights", "--from", "cornet_rt", str(bad), "-o", str(tmp_path / "b.st")]) == 1
    assert "V1.extra.weight" in capsys.readouterr().err
