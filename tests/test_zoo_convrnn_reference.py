"""``convrnn_shallow_gru`` against the hand-written reference of convrnns' ``gru_shallow``
(tests/references/convrnn.py): same outputs and gradients with converted weights.

The reference convolves the concatenation ``[x; h]`` with one kernel per gate group, as convrnns
does; tnnspec's GRU convolves x and h separately (the converter splits the kernels). The two are
the same sums in a different order, so float32 results differ by rounding: float64 runs must
agree to 1e-10, and in float32 tnnspec must be no further from the float64 result than the
float32 reference is, up to a factor 2 (both ~1e-6 here). Images are 96 px (the smallest size
at which imnetds' 2x2 'VALID' conv still fits: conv5's map is 2x2), batch 2.
"""

from __future__ import annotations

import functools

import pytest
import torch

import tnnspec
from tnnspec import zoo
from tnnspec.zoo.registry import WeightError
from references.convrnn import GRU_SHALLOW_KEYS, NODES, GRUShallow

PX = 96


@functools.cache
def reference() -> GRUShallow:
    """Random weights; biases drawn too (PyTorch's init is small), so step 0's stand-ins show."""
    torch.manual_seed(0)
    ref = GRUShallow().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return ref


def compiled(dtype=torch.float32) -> torch.nn.Module:
    spec = zoo.load("convrnn_shallow_gru", strict=True)
    image = spec.inputs["image"].model_copy(update={"shape": [3, PX, PX]})
    net = tnnspec.compile(spec.model_copy(update={"inputs": {"image": image}})).eval()
    net.load_state_dict(zoo.convert_weights("convrnn_shallow_gru", reference().state_dict(), check=False))
    return net.to(dtype)


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    return torch.randn(2, 3, PX, PX, generator=torch.Generator().manual_seed(2))


def test_reference_keys_and_parameter_count() -> None:
    ref = reference()
    assert tuple(ref.state_dict()) == GRU_SHALLOW_KEYS
    count = sum(p.numel() for p in ref.parameters())
    assert count == sum(p.numel() for p in compiled().parameters()) == 25_434_472  # docs/zoo/convrnn.md
    zoo.convert_weights("convrnn_shallow_gru", ref.state_dict())  # strict check at 224 px


def _runs(x: torch.Tensor, dtype) -> tuple[dict, dict]:
    ref = reference().to(dtype)
    try:
        with torch.no_grad():
            logits, areas = ref(x.to(dtype), record=NODES)
            run = compiled(dtype)(x.to(dtype), record=NODES)
    finally:
        reference().float()
    return {"logits": logits, **areas}, {"logits": run.readouts["logits"], **run.areas}


def test_outputs_equal_the_reference(x: torch.Tensor) -> None:
    ref64, tnn64 = _runs(x, torch.float64)
    ref32, tnn32 = _runs(x, torch.float32)
    assert ref64["logits"].shape == (16, 2, 1000)
    for name in ref64:
        assert (tnn64[name] - ref64[name]).abs().max() <= 1e-10, name
        ref_error = (ref32[name].double() - ref64[name]).abs().max()
        tnn_error = (tnn32[name].double() - ref64[name]).abs().max()
        assert tnn_error <= max(2 * ref_error, 1e-7), (name, float(tnn_error), float(ref_error))
    logits = ref64["logits"]
    # the presentation acts: image for steps 0-11, then the blank; and step 0 (zero stand-ins,
    # conv biases through every node) does not depend on the image
    assert (logits[11] - logits[12]).abs().max() > 1e-4
    with torch.no_grad():
        other = reference()(torch.randn_like(x))
    assert torch.equal(other[:5], ref32["logits"][:5]) and not torch.equal(other[5], ref32["logits"][5])  # imnetds@5


def test_gradients_equal_the_reference(x: torch.Tensor) -> None:
    """Gradients of a loss over every step's logits, in float64: the reference's, converted by
    the same converter as the weights, equal tnnspec's. 7 steps (imnetds is image-driven from 5)."""
    ref = reference().double()
    ref.times = 7
    try:
        net = compiled(torch.float64)
        ref(x.double()).square().mean().backward()
        net(x.double(), steps=7).readouts["logits"].square().mean().backward()
        want = zoo.convert_weights("convrnn_shallow_gru", {k: p.grad for k, p in ref.named_parameters()},
                                   check=False)
    finally:
        ref.zero_grad(set_to_none=True)
        ref.float()
        ref.times = 16
    got = dict(net.named_parameters())
    assert set(want) == set(got)
    for name, grad in want.items():
        assert torch.allclose(got[name].grad, grad, rtol=1e-9, atol=1e-12), name


def test_converter_is_strict() -> None:
    state = dict(reference().state_dict())
    with pytest.raises(WeightError, match=r"unknown keys \['conv6.pre_memory.weight'\]"):
        zoo.convert_weights("convrnn_shallow_gru", {**state, "conv6.pre_memory.weight": torch.zeros(1)})
    with pytest.raises(WeightError, match=r"missing keys \['conv4.memory.candidate.bias'\]"):
        zoo.convert_weights("convrnn_shallow_gru", {k: v for k, v in state.items()
                                                    if k != "conv4.memory.candidate.bias"})
    with pytest.raises(WeightError, match="conv5's GRU kernels do not fit"):
        bad = {**state, "conv5.memory.gates.weight": state["conv5.memory.gates.weight"][:, :-1]}
        zoo.convert_weights("convrnn_shallow_gru", bad)
