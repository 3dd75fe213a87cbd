"""Options that change how a network runs, never what it computes: the kernel pass
``fuse_batchnorm`` (a convolution and its eval-mode BatchNorm as one convolution).

(The ``channels_last`` and ``cuda_graphs`` options were removed with the compile API redesign;
their tests went with them.)"""

from __future__ import annotations

import torch

import tnnspec


def _pair(spec, optimize):
    torch.manual_seed(0)
    plain = tnnspec.compile(spec)
    other = tnnspec.compile(spec, optimize=optimize)
    other.load_state_dict(plain.state_dict())
    return plain, other


def _randomise_batchnorm(net):
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_fused_batchnorm_equals_conv_then_norm_in_eval_and_is_off_in_training(monkeypatch):
    from tnnspec import zoo

    spec = zoo.load("cornet_s")
    spec = spec.model_copy(update={"inputs": {"image": spec.inputs["image"].model_copy(update={"shape": [3, 64, 64]})}})
    plain, fused = _pair(spec, (*tnnspec.compile.DEFAULT, "fuse_batchnorm"))
    assert "fuse_batchnorm" not in plain.passes and "fuse_batchnorm" in fused.passes
    _randomise_batchnorm(plain)
    fused.load_state_dict(plain.state_dict())
    norms = [m for m in fused.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    calls = []  # BatchNorm calls of the fused network, counted without hooks (a hook turns fusion off)
    forward = torch.nn.BatchNorm2d.forward

    def counted(self, x):
        if any(self is m for m in norms):
            calls.append(1)
        return forward(self, x)

    monkeypatch.setattr(torch.nn.BatchNorm2d, "forward", counted)
    x = plain.example_inputs(2)
    plain.eval(), fused.eval()
    with torch.no_grad():
        a, b = plain(x, record=("V1", "V2", "IT")), fused(x, record=("V1", "V2", "IT"))
    inner = [a.cell.inner_steps for a in spec.areas.values() if a.cell.name == "cornet_s_block"]
    # V1's 2 and each block's skip norm + 3 per inner step; only V1's first (after the edge's conv) runs
    assert len(norms) == 2 + sum(1 + 3 * k for k in inner) and len(calls) == 1
    for name in a.areas:
        torch.testing.assert_close(b.areas[name], a.areas[name], rtol=1e-5, atol=1e-5, msg=name)
    torch.testing.assert_close(b.readouts["logits"], a.readouts["logits"], rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the kept folded weights follow changed weights and statistics
        for m in (plain, fused):
            m.areas["V4"].cell.conv2.weight.mul_(-1.5)
            m.areas["V4"].cell.norm2_1.running_var.mul_(2.0)
        torch.testing.assert_close(fused(x).readouts["logits"], plain(x).readouts["logits"], rtol=1e-5, atol=1e-5)
    calls.clear()  # with gradients on (eval mode) and in train mode nothing is fused: the same arithmetic
    assert torch.equal(fused(x).readouts["logits"], plain(x).readouts["logits"])
    plain.train(), fused.train()
    assert torch.equal(fused(x).readouts["logits"], plain(x).readouts["logits"])
    assert len(calls) == 2 * len(norms)
    fused.eval(), plain.eval()
    calls.clear()  # a forward hook on a fused pair's norm turns fusion off for that pair: the hook is called
    hooked = []
    fused.areas["V4"].cell.norm2_1.register_forward_hook(lambda *a: hooked.append(1))
    with torch.no_grad():
        fused(x)
    assert len(hooked) == 1 and len(calls) == 2
