"""Execution options that change how a network runs, never what it computes:
``channels_last`` (NHWC memory order) and ``cuda_graphs`` (captured CUDA graphs)."""

from __future__ import annotations

import pytest
import torch

import tnnspec

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]

SEQUENCE = """
tnnspec: "1.0"
name: frames
time: {steps: 4, default_delay: sweep}
inputs: {movie: {shape: [3, 16, 16], schedule: sequence}}
areas:
  V1: {level: 1, channels: 8, ops: [relu]}
  V2: {level: 2, channels: 8, cell: {type: gru, kernel: 3}}
edges:
  - {type: feedforward, source: movie, target: V1, transform: [{conv: {kernel: 3}}]}
  - {type: feedforward, source: V1, target: V2, transform: [{pool: {type: max, kernel: 2}}, {conv: 8}]}
readouts: {y: {source: V2, head: [{pool: avg}, {linear: 5}]}}
"""


@pytest.fixture(scope="module")
def ventral():
    return tnnspec.load(ROOT / "graphs" / "ventral4.yaml")


def _pair(spec, **options):
    torch.manual_seed(0)
    plain = tnnspec.compile(spec)
    other = tnnspec.compile(spec, **options)
    other.load_state_dict(plain.state_dict())
    return plain, other


@pytest.mark.parametrize("source", ["ventral", "sequence"])
def test_channels_last_gives_the_same_outputs_and_gradients(source, ventral):
    spec = ventral if source == "ventral" else tnnspec.loads(SEQUENCE)
    plain, nhwc = _pair(spec, channels_last=True)
    convs = [m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    assert not all(m.weight.is_contiguous() for m in convs)  # really NHWC (not a 1x1-only graph)
    first = next(iter(nhwc.edges.values())).conv  # the input's edge: it sees NHWC frames
    seen = []
    first.register_forward_hook(lambda m, i, o: seen.append(i[0].is_contiguous(memory_format=torch.channels_last)))
    x = plain.example_inputs(2)
    runs = []
    for net in (plain, nhwc):
        run = net(x, record=tuple(spec.areas))
        sum(v.square().sum() for v in run.readouts.values()).backward()
        runs.append((run, {n: p.grad for n, p in net.named_parameters()}))
    (a, grads_a), (b, grads_b) = runs
    assert seen and all(seen)
    for name in spec.areas:  # float32, a different summation order inside the convolutions
        torch.testing.assert_close(b.areas[name], a.areas[name], rtol=1e-5, atol=1e-5, msg=name)
    for name in a.readouts:
        torch.testing.assert_close(b.readouts[name], a.readouts[name], rtol=1e-5, atol=1e-5)
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-5, msg=name)


def test_channels_last_survives_a_state_dict_round_trip(ventral, tmp_path):
    plain, nhwc = _pair(ventral, channels_last=True)
    again = tnnspec.compile(ventral, channels_last=True)
    again.load_state_dict(nhwc.state_dict())
    conv = again.edges["image__V1"].conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = plain.example_inputs(2)
    assert torch.equal(again(x).readouts["logits"], nhwc(x).readouts["logits"])


def test_cuda_graphs_refuse_cpu_inputs_with_a_clear_message(ventral):
    net = tnnspec.compile(ventral, cuda_graphs=True).eval()
    x = net.example_inputs(2)
    with torch.no_grad(), pytest.raises(ValueError, match=r"cuda_graphs=True .* on cpu.*move the network"):
        net(x)
    run = net(x)  # a call that needs gradients runs eagerly, on any device
    assert run.readouts["logits"].requires_grad


def test_cuda_graphs_reject_bad_inputs_before_capturing(ventral):
    net = tnnspec.compile(ventral, cuda_graphs=True).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="expected shape"):
        net(torch.zeros(2, 3, 8, 8))


@pytest.mark.gpu
def test_cuda_graph_replays_equal_eager_runs_and_follow_new_weights(ventral):
    plain, graphed = _pair(ventral, cuda_graphs=True)
    plain, graphed = plain.eval().cuda(), graphed.eval().cuda()
    x = plain.example_inputs(4)
    with torch.inference_mode():
        first = graphed(x)
        assert len(graphed._captured) == 1
        for _ in range(2):  # replays: new inputs are copied in, outputs copied out
            x2 = torch.randn_like(x)
            torch.testing.assert_close(graphed(x2).readouts["logits"], plain(x2).readouts["logits"],
                                       rtol=1e-5, atol=1e-5)
        assert len(graphed._captured) == 1
        torch.testing.assert_close(first.readouts["logits"], plain(x).readouts["logits"], rtol=1e-5, atol=1e-5)
        graphed(x, readout_steps="last")
        assert len(graphed._captured) == 2  # another signature, another graph
    with torch.no_grad():
        for p in graphed.parameters():
            p.mul_(0.5)
        for p in plain.parameters():
            p.mul_(0.5)
        torch.testing.assert_close(graphed(x).readouts["logits"], plain(x).readouts["logits"],
                                   rtol=1e-5, atol=1e-5)
    graphed.cpu()
    assert len(graphed._captured) == 0


def _randomise_batchnorm(net):
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def test_fused_batchnorm_equals_conv_then_norm_in_eval_and_is_off_in_training():
    from tnnspec import zoo

    spec = zoo.load("cornet_s")
    spec = spec.model_copy(update={"inputs": {"image": spec.inputs["image"].model_copy(update={"shape": [3, 64, 64]})}})
    plain, fused = _pair(spec, fuse_batchnorm=True)
    _randomise_batchnorm(plain)
    fused.load_state_dict(plain.state_dict())
    norms = [m for m in fused.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    calls = []
    for m in norms:
        m.register_forward_hook(lambda *a: calls.append(1))
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


class _ReplayOnCPU:
    """A stand-in for a captured CUDA graph: replay() re-runs the forward on the static inputs
    and writes the results into the static outputs in place, as a graph replay does."""

    captures = 0

    def __init__(self, forward, static_in):
        self.forward, self.static_in = forward, static_in
        self.static_out = forward(static_in)
        type(self).captures += 1

    def replay(self):
        new = self.forward(self.static_in)
        for k, v in new.readouts.items():
            self.static_out.readouts[k].copy_(v)
        for k, v in new.areas.items():
            self.static_out.areas[k].copy_(v)


def test_captured_runs_copy_inputs_in_and_outputs_out_per_signature(ventral):
    from tnnspec.compile.cuda_graphs import CapturedRuns

    plain, graphed = _pair(ventral, cuda_graphs=True)
    plain.eval(), graphed.eval()

    def capture(forward, static_in):
        g = _ReplayOnCPU(forward, static_in)
        return g, g.static_out

    graphed._captured = CapturedRuns(capture=capture, device="cpu")
    _ReplayOnCPU.captures = 0
    x1, x2 = plain.example_inputs(2, seed=1), plain.example_inputs(2, seed=2)
    with torch.no_grad():
        r1 = graphed(x1)
        r2 = graphed(x2)  # a replay: x2 copied into the static input, outputs copied out
        assert _ReplayOnCPU.captures == 1 and len(graphed._captured) == 1
        assert torch.equal(r1.readouts["logits"], plain(x1).readouts["logits"])  # not overwritten by r2
        assert torch.equal(r2.readouts["logits"], plain(x2).readouts["logits"])
        graphed(x1, readout_steps="last")
        graphed(x1, record=("V1",))
        graphed(plain.example_inputs(3))
        assert _ReplayOnCPU.captures == 4 and len(graphed._captured) == 4
    graphed.float()  # moving or casting the network drops the graphs
    assert len(graphed._captured) == 0
