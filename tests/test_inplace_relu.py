"""In-place ReLUs (tnnspec/compile/inplace.py): the same bits, outputs and gradients as
out-of-place ReLUs; used only on a tensor an op has just made, never on one a hook has seen or
on a chain's input after a module swap."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import tnnspec
from tnnspec import zoo
from tnnspec.compile import cells, inplace, modules
from tnnspec.spec.components import ShapeContext


def _small(name):
    spec = zoo.load(name)
    if name.startswith("cornet"):
        spec = spec.model_copy(update={"inputs": {k: v.model_copy(update={"shape": [3, 64, 64]})
                                                  for k, v in spec.inputs.items()}})
    return spec


@pytest.fixture
def in_place_calls(monkeypatch):
    calls = []
    real = torch.relu_
    monkeypatch.setattr(torch, "relu_", lambda x: calls.append(tuple(x.shape)) or real(x))
    return calls


def _out_of_place(monkeypatch):
    """Every ReLU of the compiled network out of place, as before this optimisation."""
    monkeypatch.setattr(modules, "relu_of_new", lambda x, *makers, relu=None: torch.relu(x))
    monkeypatch.setattr(cells, "relu_of_new", lambda x, *makers, relu=None: torch.relu(x))
    monkeypatch.setattr(cells.torch, "relu_", torch.relu)


@pytest.mark.parametrize("name", ["cornet_s", "cornet_rt", "blt_net_64"])
@pytest.mark.parametrize("train", [False, True])
def test_outputs_and_gradients_are_bit_identical_to_out_of_place(name, train, monkeypatch, in_place_calls):
    torch.manual_seed(0)
    net = tnnspec.compile(_small(name)).train(train)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = net.example_inputs(2)

    def run():
        net.load_state_dict(state)  # (BatchNorm statistics move in training)
        net.zero_grad()
        out = net(x).readouts
        if train:
            sum(v.square().mean() for v in out.values()).backward()
        return out, {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}

    if not train:
        with torch.inference_mode():
            fast, _ = run()
    else:
        fast, fast_grads = run()
    assert in_place_calls, "no ReLU ran in place"
    with monkeypatch.context() as m:
        _out_of_place(m)
        if not train:
            with torch.inference_mode():
                slow, _ = run()
        else:
            slow, slow_grads = run()
    assert fast.keys() == slow.keys() and all(torch.equal(fast[k], slow[k]) for k in fast)
    if train:
        assert fast_grads.keys() == slow_grads.keys() and fast_grads
        assert all(torch.equal(fast_grads[k], slow_grads[k]) for k in fast_grads), name


def test_a_hooked_module_keeps_what_it_returned():
    """A forward hook that keeps a norm's output (pre-activations) must see them unchanged."""
    torch.manual_seed(0)
    net = tnnspec.compile(_small("cornet_rt")).eval()
    kept = []
    norm = net.areas["V2"].ops.norm
    handle = norm.register_forward_hook(lambda m, i, o: kept.append(
        (o, torch.nn.functional.group_norm(i[0], m.num_groups, m.weight, m.bias, m.eps))))
    with torch.no_grad():
        net(net.example_inputs(2))
    handle.remove()
    assert len(kept) > 1 and any((o < 0).any() for o, _ in kept)
    assert all(torch.equal(o, again) for o, again in kept)  # not clamped after the hook saw them


def test_after_a_module_swap_the_chain_input_is_not_touched():
    spec = tnnspec.loads("""
tnnspec: "1.0"
name: swap
time: {steps: 2}
inputs: {x: {shape: [4, 6, 6]}}
areas:
  A: {level: 1, channels: 4, ops: [{conv: {kernel: 3, padding: 1}}, relu]}
edges:
  - {type: feedforward, source: x, target: A}
""")
    chain = modules.OpChain(spec.areas["A"].ops, (4, 6, 6), ShapeContext(channels=4), 2)
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        y = chain(x.clone())
        assert (y >= 0).all()
        chain.conv = nn.Identity()  # an ablation: the ReLU now reads the chain's input
        before = x.clone()
        y = chain(x)
    assert torch.equal(x, before) and torch.equal(y, torch.relu(before))


@pytest.mark.parametrize("kind", ["forward", "forward_pre", "full_backward", "full_backward_pre"])
def test_unhooked_sees_global_and_module_hooks(kind):
    m = nn.Linear(2, 2)
    assert inplace.unhooked(m)
    h = getattr(m, f"register_{kind}_hook")(lambda *a: None)
    assert not inplace.unhooked(m)
    h.remove()
    register = getattr(nn.modules.module, f"register_module_{kind}_hook")
    g = register(lambda *a: None)
    try:
        assert not inplace.unhooked(m)
    finally:
        g.remove()
    assert inplace.unhooked(m)


def test_a_backward_hook_on_a_relu_still_fires():
    torch.manual_seed(0)
    net = tnnspec.compile(_small("cornet_rt")).train()
    fired = []
    net.areas["V1"].ops.relu.register_full_backward_hook(lambda m, gi, go: fired.append(go[0].shape))
    sum(v.square().mean() for v in net(net.example_inputs(2)).readouts.values()).backward()
    assert fired


def test_a_hook_on_a_child_of_the_maker_keeps_what_it_returned(in_place_calls):
    """A forward hook on ``PerStepNorm.steps[0]`` (a child of the op that made the tensor) that
    keeps its output must see it unclamped: the ReLU after the norm runs out of place."""
    spec = tnnspec.loads("""
tnnspec: "1.0"
name: per_step_hook
time: {steps: 2}
inputs: {x: {shape: [4, 6, 6]}}
areas:
  A: {level: 1, channels: 4, ops: [{conv: {kernel: 3, padding: 1}}, {norm: {type: batch, per_step: true}}, relu]}
edges:
  - {type: feedforward, source: x, target: A}
""")
    torch.manual_seed(0)
    net = tnnspec.compile(spec).eval()
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        net(x)
    assert in_place_calls, "no ReLU ran in place without the hook"
    norm = net.areas["A"].ops.norm
    assert isinstance(norm, inplace.PerStepNorm)
    kept = []
    handle = norm.steps[0].register_forward_hook(lambda m, i, o: kept.append((o, o.clone())))
    try:
        with torch.no_grad():
            net(x)
    finally:
        handle.remove()
    assert kept and all((o < 0).any() and torch.equal(o, seen) for o, seen in kept)  # not clamped
