"""``tnnspec import-tnn``: tnn / convrnns JSON graphs -> tnnspec files (tnnspec/interop/tnn.py).

The expected delays and arrival steps are computed here independently, from the unroll semantics
in shared/reference/tnn_convrnns.md section 3: under ``unroll`` every link delays one step and the
external input none; under ``unroll_tf`` a link delivers in the same step when its source comes
earlier in the feedforward order (a topological order of an acyclic graph), else one step later.
"""

from __future__ import annotations

import copy
import json
import re
from collections import deque
from pathlib import Path

import pytest
import torch

import tnnspec
from tnnspec import SpecError
from tnnspec.interop import import_tnn
from tnnspec.spec.models import FORMAT_VERSIONS

ROOT = Path(__file__).resolve().parent.parent
DATA = next((p for p in (ROOT / "shared" / "data" / "tnn-json", ROOT.parent / "shared" / "data" / "tnn-json",
                         Path("/work/shared/data/tnn-json")) if p.is_dir()), None)
SHIPPED = ["alexnet", "mnist_conv", "VanillaRNN"]
needs_data = pytest.mark.skipif(DATA is None, reason="shared/data/tnn-json is not present")


# ------------------------------------------------------------------ independent tnn semantics
def expected_delays(graph: dict, unroll: str) -> dict[tuple[str, str], int]:
    """Delay of every JSON link under tnn's ``unroll`` / ``unroll_tf`` (reference section 3)."""
    links = {(e["from"], e["to"]) for e in graph["edges"]}
    if unroll == "tnn":
        return {link: 1 for link in links}
    names = [n["name"] for n in graph["nodes"]]
    indeg = {n: 0 for n in names}
    for a, b in links:
        if a != b:
            indeg[b] += 1
    order, ready = [], deque(n for n in names if indeg[n] == 0)
    while ready:  # Kahn's algorithm, ties in file order
        x = ready.popleft()
        order.append(x)
        for a, b in sorted(links, key=lambda l: names.index(l[1])):
            if a == x and b != x:
                indeg[b] -= 1
                if indeg[b] == 0:
                    ready.append(b)
    if len(order) < len(names):  # cyclic: the importer's documented order (shape_from depth, then file order)
        nodes = {n["name"]: n for n in graph["nodes"]}

        def depth(n):
            d = 1
            while "shape" not in nodes[n]:
                n, d = nodes[n]["shape_from"], d + 1
            return d

        order = sorted(names, key=lambda n: (depth(n), names.index(n)))
    pos = {n: i for i, n in enumerate(order)}
    return {(a, b): 0 if pos[a] < pos[b] else 1 for a, b in links}


def expected_arrival(graph: dict, unroll: str) -> dict[str, int]:
    """First step at which the external input reaches each node (0-1 BFS over the link delays)."""
    delays = expected_delays(graph, unroll)
    best = {n["name"]: 0 for n in graph["nodes"] if "shape" in n}
    queue = deque(best)
    while queue:
        x = queue.popleft()
        for (a, b), d in delays.items():
            if a == x and (b not in best or best[x] + d < best[b]):
                best[b] = best[x] + d
                (queue.appendleft if d == 0 else queue.append)(b)
    return best


def n_params(spec) -> int:
    return sum(p.numel() for p in tnnspec.compile(spec).parameters())


def structure(spec) -> dict:
    """Areas (channels, cell), edges (source, target, type, delay) of a spec, without the text."""
    from tnnspec.graph.timing import edge_delays

    dumped = spec.dump()
    return {
        "areas": {a: (v["channels"], v.get("cell", "identity"), v.get("level")) for a, v in dumped["areas"].items()},
        "edges": sorted((e.source, e.target, e.type, d) for e, d in zip(spec.edges, edge_delays(spec))),
    }


def locate(text: str, needle: str, occurrence: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the ``occurrence``-th ``needle`` in ``text``."""
    idx = -1
    for _ in range(occurrence + 1):
        idx = text.index(needle, idx + 1)
    line = text.count("\n", 0, idx) + 1
    col = idx - (text.rfind("\n", 0, idx) + 1) + 1
    return line, col


def write(tmp_path: Path, graph: dict, name: str = "graph.json") -> tuple[Path, str]:
    text = json.dumps(graph, indent=2)
    path = tmp_path / name
    path.write_text(text)
    return path, text


# ------------------------------------------------------------------ hand-written convrnns graphs
def _conv_node(name, out, k, *, stride=1, act=None, shape=None, shape_from=None, memory=None, pool=True):
    node = {"name": name, "dtype": "float32", "input_init": {"function": "zeros"},
            "state_init": {"function": "zeros"},
            "harbor": {"function": "harbor", "preproc": None, "spatial_op": "resize", "channel_op": "concat",
                       "kernel_init": "zeros", "weight_decay": None},
            "pre_memory": [{"function": "component_conv", "input_name": shape_from or "split", "out_depth": out,
                            "ksize": k, "strides": [1, stride, stride, 1], "padding": "SAME",
                            "kernel_init": "variance_scaling", "bias": 0, "weight_decay": 0.0001,
                            "activation": act, "batch_norm": False, "return_input": False},
                           {"function": "dropout", "keep_prob": 1.0, "seed": 0, "name": f"dropout{name}"}],
            "memory": memory or {"function": "memory", "memory_decay": 0.0, "trainable": False},
            "post_memory": [{"function": "max_pool", "ksize": [1, 2, 2, 1], "strides": [1, 2, 2, 1],
                             "padding": "SAME"}] if pool else []}
    if shape is not None:
        node["shape"] = shape
    else:
        node["shape_from"] = shape_from
    return node


def convrnn_shallow(cell_memory: dict[str, dict]) -> dict:
    """The 6-node convrnns "shallow" graph as in convrnns/models/*_shallow.json (reference section 5.3):
    conv1 7x7/2 64 ELU + pool -> 56, conv2 3x3 128 ELU + pool -> 28, conv3-5 3x3 256/256/512 without an
    activation outside the cell, each + pool (28 -> 14 -> 7 -> 4), imnetds 2x2 VALID conv to 1000 + global
    average pool; ``cell_memory`` gives the memory dicts of conv3-5."""
    nodes = [_conv_node("conv1", 64, 7, stride=2, act="elu", shape=[224, 224, 3]),
             _conv_node("conv2", 128, 3, act="elu", shape_from="conv1")]
    for name, prev, out in (("conv3", "conv2", 256), ("conv4", "conv3", 256), ("conv5", "conv4", 512)):
        nodes.append(_conv_node(name, out, 3, shape_from=prev, memory=cell_memory[name]))
    nodes.append({"name": "imnetds", "shape_from": "conv5", "dtype": "float32",
                  "input_init": {"function": "zeros"}, "state_init": {"function": "zeros"},
                  "harbor": {"function": "harbor", "preproc": None, "spatial_op": "resize", "channel_op": "concat",
                             "kernel_init": "variance_scaling", "weight_decay": None},
                  "pre_memory": [{"function": "dropout", "keep_prob": 1.0, "seed": 0, "name": "dropoutds"},
                                 {"function": "conv", "ksize": [2, 2], "padding": "VALID", "out_depth": 1000,
                                  "kernel_init": "random_normal", "kernel_init_kwargs": {"stddev": 0.01},
                                  "weight_decay": 0.0001, "activation": None}],
                  "memory": {"function": "memory", "memory_decay": 0, "trainable": False},
                  "post_memory": [{"function": "global_pool", "kind": "avg"},
                                  {"function": "identity", "name": "output"}]})
    edges = [{"from": a, "to": b} for a, b in (("conv1", "conv2"), ("conv2", "conv3"), ("conv3", "conv4"),
                                              ("conv4", "conv5"), ("conv5", "imnetds"))]
    return {"nodes": nodes, "edges": edges}


SIZES = {"conv3": [28, 28], "conv4": [14, 14], "conv5": [7, 7]}


def convrnn_memory(name: str, **keys) -> dict:
    """A convrnns cell memory dict (the keys of convrnns' ConvRNN cells, as in lstm_shallow.json)."""
    return {"function": "memory", "shape": SIZES[name], "weight_decay": 0.0001,
            "kernel_initializer": "variance_scaling", "kernel_initializer_kwargs": {}, "bias_initializer": None,
            "bias_initializer_kwargs": {}, "layer_norm": False, **keys}


def feedback_graph() -> dict:
    """A small graph with a skip (conv1 -> conv3), a feedback (conv3 -> conv2) and a self-link (conv2)."""
    graph = {"nodes": [_conv_node("conv1", 8, 3, act="relu", shape=[16, 16, 3]),
                       _conv_node("conv2", 8, 3, act="relu", shape_from="conv1"),
                       _conv_node("conv3", 16, 3, act="relu", shape_from="conv2")],
             "edges": [{"from": "conv1", "to": "conv2"}, {"from": "conv2", "to": "conv3"},
                       {"from": "conv1", "to": "conv3"}, {"from": "conv3", "to": "conv2"},
                       {"from": "conv2", "to": "conv2"}]}
    for node in graph["nodes"]:
        node["pre_memory"] = node["pre_memory"][:1]
    return graph


# ------------------------------------------------------------------ the shipped files
@needs_data
@pytest.mark.parametrize("stem", SHIPPED)
@pytest.mark.parametrize("unroll", ["tnn", "tnn_tf"])
def test_shipped_files_import_validate_compile_and_run(stem, unroll):
    path = DATA / f"{stem}.json"
    graph = json.loads(path.read_text())
    result = import_tnn(path, unroll=unroll)
    assert result.text.splitlines()[0].startswith(f"# Imported from {stem}.json")
    assert f'tnnspec: "{FORMAT_VERSIONS[-1]}"' in result.text
    assert result.spec == tnnspec.loads(result.text)  # the text is what the spec is
    # every JSON node is an area, every input node also an input; every link an edge with its delay
    names = [n["name"] for n in graph["nodes"]]
    assert list(result.spec.areas) == names
    assert list(result.spec.inputs) == ["image"]
    delays = expected_delays(graph, unroll)
    got = {(e.source, e.target): e.delay for e in result.spec.edges if e.source != "image"}
    assert got == delays
    inputs = [e for e in result.spec.edges if e.source == "image"]
    assert [(e.target, e.delay) for e in inputs] == [(names[0], 0)]
    net = tnnspec.compile(result.spec)
    arrival = {k: v for k, v in net.plan.arrival.items() if k != "image"}
    assert arrival == expected_arrival(graph, unroll)
    if unroll == "tnn" or stem != "alexnet":  # one forward pass per file is enough for AlexNet's 76M weights
        x = net.example_inputs(batch_size=1)
        with torch.no_grad():
            run = net(x)
        sink = names[-1]
        out = run.readouts["output"]
        assert out.shape[1:] == (1, result.spec.areas[sink].channels)
        assert torch.isfinite(out).all()


@needs_data
def test_alexnet_text_says_where_parts_came_from():
    r = import_tnn(DATA / "alexnet.json")
    text = r.text
    assert "# nodes[0] (conv1), alexnet.json:3" in text
    assert "pre_memory[0] conv 11x11/4 VALID, 3 -> 96 (224x224 -> 54x54)" in text
    assert "post_memory[1] lrn depth_radius 5" in text
    assert "{lrn: {size: 11, alpha: 0.0011, beta: 0.75, k: 1.0}}" in text  # TF alpha x (2r+1): torch divides
    assert "{pool: {type: max, kernel: 3, stride: 2, padding: 1}}" in text  # SAME 27 -> 14, pad 1 each side
    assert "edges[0] (alexnet.json:420); delay 1: every link delays one step" in text
    assert "steps: 9" in text  # tnn's default ntimes: 8 nodes on the longest path + 1
    assert r.spec.readouts["output"].source == "fc8"
    # conv5 pooled to 7x7 by TF SAME, flattened into fc6
    assert "fc6 fc 12544 -> 4096" in text.replace("pre_memory[0] ", "fc6 ")
    assert any("not imported" in n for n in r.notes)


@needs_data
def test_vanilla_rnn_memory_without_a_cell_name():
    path = DATA / "VanillaRNN.json"
    plain = import_tnn(path)
    assert plain.spec.areas["L1"].cell.name == "identity"  # tnn's own memory: decay 0
    assert any("memory of L1, L2 is tnn's time-decay memory" in n and "--cell" in n for n in plain.notes)
    rnn = import_tnn(path, cell="simple_rnn")
    cell = rnn.spec.areas["L1"].cell
    assert (cell.name, cell.kernel, rnn.spec.areas["L1"].channels) == ("simple_rnn", 3, 64)
    assert rnn.spec.areas["readout"].cell.name == "identity"  # only memories with a cell's keys get the cell
    # the cell's own convs of x (with a bias) and of h, as tnn's ConvBasicCell's one kernel over [x; h]
    assert n_params(rnn.spec) == n_params(plain.spec) + (2 * 9 * 64 * 64 + 64) + (2 * 9 * 32 * 32 + 32)
    with pytest.raises(ValueError, match="did you mean 'gru'"):
        import_tnn(path, cell="gruu")


# ------------------------------------------------------------------ convrnns shallow graphs = the zoo's
def test_convrnn_shallow_gru_with_cell_equals_the_zoo():
    graph = convrnn_shallow({n: convrnn_memory(n, filter_size=[3, 3], out_depth=c, forget_bias=1.0)
                             for n, c in (("conv3", 256), ("conv4", 256), ("conv5", 512))})
    ambiguous = import_tnn(copy.deepcopy(graph), name="gru_shallow")  # GRU, UGRNN, ... share these keys
    assert {a.cell.name for a in ambiguous.spec.areas.values()} == {"identity"}
    result = import_tnn(graph, cell="gru", name="gru_shallow")
    zoo = tnnspec.zoo.load("convrnn_shallow_gru")
    assert structure(result.spec) == structure(zoo)
    assert tnnspec.compile(result.spec).plan.arrival == tnnspec.compile(zoo).plan.arrival
    assert n_params(result.spec) == n_params(zoo)
    assert result.spec.readouts["output"].source == zoo.readouts["logits"].source == "imnetds"
    assert [o.op_name for o in result.spec.areas["conv1"].ops] == [o.op_name for o in zoo.areas["conv1"].ops]


def test_convrnn_shallow_lstm_inferred_from_its_keys_equals_the_zoo():
    """use_peepholes identifies the LSTM. The cell sizes are configs/lstm_shallow.npz's, as in the zoo file
    (the npz overrides the JSON in convrnns); its layer norm is left out of both."""
    keys = {"conv3": {"filter_size": [2, 2], "out_depth": 128, "forget_bias": 1.356, "use_peepholes": False},
            "conv4": {"filter_size": [3, 3], "out_depth": 256, "forget_bias": 0.978, "use_peepholes": True},
            "conv5": {"filter_size": [4, 4], "out_depth": 256, "forget_bias": 0.925, "use_peepholes": False}}
    result = import_tnn(convrnn_shallow({n: convrnn_memory(n, **k) for n, k in keys.items()}))
    zoo = tnnspec.zoo.load("convrnn_shallow_lstm")
    assert structure(result.spec) == structure(zoo)
    assert n_params(result.spec) == n_params(zoo)
    assert "identified by its keys as lstm" in result.text


def test_convrnn_shallow_time_decay_equals_the_zoo():
    """timedecay_shallow.json: memory_decay 0, trainable. tnnspec learns l = sigmoid(logit), which cannot
    start at 0: the importer starts it at 0.05 (as the zoo file does) and says so."""
    mem = {"function": "memory", "memory_decay": 0.0, "trainable": True}
    result = import_tnn(convrnn_shallow({n: dict(mem) for n in SIZES}))
    zoo = tnnspec.zoo.load("convrnn_shallow_time_decay")
    assert structure(result.spec) == structure(zoo)
    assert n_params(result.spec) == n_params(zoo)
    assert any("sigmoid(logit)" in n for n in result.notes)


# ------------------------------------------------------------------ delays and arrival, both modes
@pytest.mark.parametrize("unroll", ["tnn", "tnn_tf"])
def test_feedback_skip_and_self_links(unroll):
    graph = feedback_graph()
    result = import_tnn(copy.deepcopy(graph), unroll=unroll)
    spec = result.spec
    got = {(e.source, e.target): (e.type, e.delay) for e in spec.edges}
    delays = expected_delays(graph, unroll)
    types = {("conv1", "conv2"): "feedforward", ("conv2", "conv3"): "feedforward", ("conv1", "conv3"): "skip",
             ("conv3", "conv2"): "feedback", ("conv2", "conv2"): "lateral", ("image", "conv1"): "feedforward"}
    assert got == {k: (types[k], delays.get(k, 0)) for k in types}
    net = tnnspec.compile(spec)
    assert {k: v for k, v in net.plan.arrival.items() if k != "image"} == expected_arrival(graph, unroll)
    # conv2's harbor concatenates conv1, conv2 and the resized conv3: its conv is split over three edges,
    # with one bias, so the parameters are those of one conv over the concatenation
    convs = {(e.source, e.target): e.transform for e in spec.edges}
    assert convs[("conv3", "conv2")][0].op_name == "resample"
    into_conv2 = sum(p.numel() for n, p in net.named_parameters()
                     if re.fullmatch(r"edges\.conv\d__conv2\.conv\.(weight|bias)", n))
    assert into_conv2 == 3 * 3 * (8 + 8 + 16) * 8 + 8
    with torch.no_grad():
        assert torch.isfinite(net(net.example_inputs(batch_size=1)).readouts["output"]).all()
    if unroll == "tnn_tf":
        assert any("unroll tnn_tf on a graph with cycles" in n for n in result.notes)
        other = import_tnn(copy.deepcopy(graph), unroll=unroll, ff_order=["conv1", "conv3", "conv2"])
        assert {(e.source, e.target): e.delay for e in other.spec.edges}[("conv3", "conv2")] == 0


# ------------------------------------------------------------------ nodes split into several areas
def residual_graph() -> dict:
    """Nodes as in convrnns' *_intermediate.json (component_conv with return_input, a memory with cell keys,
    post_memory conv, residual_add, elu), with a feedback conv3 -> conv2 so that conv2 has two inputs."""
    nodes = [_conv_node("conv1", 16, 7, stride=2, act="elu", shape=[32, 32, 3])]
    for name, prev, out in (("conv2", "conv1", 16), ("conv3", "conv2", 32)):
        node = _conv_node(name, out, 3, act="elu", shape_from=prev, pool=False,
                          memory={"function": "memory", "shape": [8, 8], "filter_size": [3, 3], "out_depth": out,
                                  "weight_decay": 0.0001})
        node["pre_memory"][0]["return_input"] = True
        node["post_memory"] = [{"function": "conv", "ksize": [3, 3], "out_depth": out, "activation": None,
                                "weight_decay": 0.0001, "kernel_init": "variance_scaling"},
                               {"function": "residual_add"}, {"function": "elu"}]
        nodes.append(node)
    nodes[2]["post_memory"].append({"function": "max_pool", "ksize": [1, 2, 2, 1], "strides": [1, 2, 2, 1],
                                    "padding": "SAME"})
    nodes.append({"name": "imnetds", "shape_from": "conv3", "harbor": {"function": "harbor"},
                  "pre_memory": [{"function": "global_pool", "kind": "avg"}, {"function": "flatten"},
                                 {"function": "fc", "out_depth": 10, "activation": None}],
                  "memory": {"function": "memory", "memory_decay": 0, "trainable": False}, "post_memory": []})
    edges = [{"from": a, "to": b} for a, b in (("conv1", "conv2"), ("conv2", "conv3"), ("conv3", "imnetds"),
                                              ("conv3", "conv2"))]
    return {"nodes": nodes, "edges": edges}


@pytest.mark.parametrize("unroll", ["tnn", "tnn_tf"])
def test_residual_add_and_ops_before_a_stateful_memory_split_a_node(unroll):
    """residual_add adds the harbor output after the memory, and conv2's ELU acts on the sum of its two
    inputs before its memory: neither fits one tnnspec area, so such a node becomes <node>_pre (harbor and
    pre_memory), <node>_cell (memory and the ops before residual_add) and <node> (the residual sum and the
    rest), joined by delay-0 edges; the residual path reads the same inputs with the same delays."""
    graph = residual_graph()
    result = import_tnn(copy.deepcopy(graph), cell="ugrnn", unroll=unroll)
    spec = result.spec
    assert list(spec.areas) == ["conv1", "conv2_pre", "conv2_cell", "conv2", "conv3_cell", "conv3", "imnetds"]
    assert spec.areas["conv2_cell"].cell.name == spec.areas["conv3_cell"].cell.name == "ugrnn"
    assert [o.op_name for o in spec.areas["conv2_pre"].ops] == ["elu"]
    assert [o.op_name for o in spec.areas["conv3"].ops] == ["elu", "pool"]
    net = tnnspec.compile(spec)
    arrival = net.plan.arrival
    assert {n: arrival[n] for n in ("conv1", "conv2", "conv3", "imnetds")} == expected_arrival(graph, unroll)
    assert arrival["conv2_pre"] == arrival["conv2_cell"] == arrival["conv2"]
    params = dict(net.named_parameters())
    # conv2's harbor concatenates conv1 (16) and the resized conv3 (32): one 1x1 projection 48 -> 16, no bias,
    # split over the two residual edges
    assert params["edges.conv1__conv2.conv.weight"].shape == (16, 16, 1, 1)
    assert params["edges.conv3__conv2.conv.weight"].shape == (16, 32, 1, 1)
    assert "edges.conv3__conv2.conv.bias" not in params
    delays = {(e.source, e.target): e.delay for e in spec.edges}
    link = expected_delays(graph, unroll)
    assert delays[("conv3", "conv2_pre")] == delays[("conv3", "conv2")] == link[("conv3", "conv2")]
    assert delays[("conv2_pre", "conv2_cell")] == delays[("conv2_cell", "conv2")] == 0
    with torch.no_grad():
        assert torch.isfinite(net(net.example_inputs(batch_size=1)).readouts["output"]).all()


# ------------------------------------------------------------------ located errors
def test_unknown_op_and_bad_links_are_located_errors(tmp_path):
    graph = feedback_graph()
    graph["nodes"][1]["pre_memory"][0]["function"] = "convv"
    graph["nodes"][2]["post_memory"][0]["function"] = "max_pol"
    path, text = write(tmp_path, graph)
    with pytest.raises(SpecError) as err:
        import_tnn(path)
    msgs = [str(d) for d in err.value.diagnostics]
    line, col = locate(text, '"convv"')
    assert any(m.startswith(f"{path}:{line}:{col}: error: nodes[1] (conv2).pre_memory[0].function: unknown "
                            "function 'convv' (did you mean 'conv'?)") for m in msgs), msgs
    line, col = locate(text, '"max_pol"')
    assert any(m.startswith(f"{path}:{line}:{col}:") and "did you mean 'max_pool'" in m for m in msgs), msgs

    graph = feedback_graph()
    graph["edges"][3]["from"] = "conv9"
    path, text = write(tmp_path, graph, "links.json")
    with pytest.raises(SpecError) as err:
        import_tnn(path)
    line, col = locate(text, '"conv9"')
    expected = (f"{path}:{line}:{col}: error: edges[3].from: link to a missing node \"conv9\" (did you mean "
                "'conv3'?); nodes: conv1, conv2, conv3")
    assert [str(d) for d in err.value.errors] == [expected]


def test_harbor_channel_op_it_cannot_express(tmp_path):
    graph = feedback_graph()
    graph["nodes"][1]["harbor"]["channel_op"] = "multiply"
    path, text = write(tmp_path, graph)
    with pytest.raises(SpecError) as err:
        import_tnn(path)
    line, col = locate(text, '"multiply"')
    (d,) = err.value.errors
    assert (d.file, d.line, d.column) == (str(path), line, col)
    assert "'multiply' multiplies its 3 inputs (conv1, conv2, conv3)" in d.message
    graph["nodes"][1]["harbor"]["channel_op"] = "max"
    path, text = write(tmp_path, graph, "max.json")
    with pytest.raises(SpecError, match=r"channel_op: \"max\" is not supported; channel ops: concat, add, multiply"):
        import_tnn(path)


def test_what_tnnspec_cannot_express_is_an_error_never_a_drop(tmp_path):
    rgc = {"function": "memory", "shape": [28, 28], "out_depth": 256, "cell_depth": 256,
           "tau_filter_size": [3, 3], "gate_filter_size": [3, 3], "ff_filter_size": [3, 3], "input_to_cell": True,
           "residual_to_out_gate": True, "tau_nonlinearity": "sigmoid", "gate_nonlinearity": "sigmoid",
           "cell_activation": "elu", "out_activation": "elu", "weight_decay": 0.0001}
    mems = {n: dict(rgc, shape=SIZES[n], out_depth=c, cell_depth=c) for n, c in (("conv3", 256), ("conv4", 256),
                                                                                 ("conv5", 512))}
    graph = convrnn_shallow(copy.deepcopy(mems))
    graph["nodes"][5]["post_memory"].append({"function": "residual_add"})
    graph["nodes"][3]["memory"]["layer_norm"] = True
    path, text = write(tmp_path, graph)
    with pytest.raises(SpecError) as err:
        import_tnn(path)
    msgs = [d.message for d in err.value.errors]
    assert sum("residual_to_out_gate: true is not supported" in m for m in msgs) == 3  # every node, at once
    assert any("layer_norm: true is not supported" in m for m in msgs)
    assert any("post_memory[2]: residual_add adds the harbor output captured by a pre_memory component_conv with "
               "return_input: true, and this node has none" in m for m in msgs)
    line, _ = locate(text, '"residual_to_out_gate"')
    assert any(d.line == line for d in err.value.errors)
    for m in mems.values():
        m["residual_to_out_gate"] = False
    graph = convrnn_shallow(mems)
    result = import_tnn(graph)
    cell = result.spec.areas["conv3"].cell
    assert (cell.name, cell.tau_nonlinearity, cell.cell_channels) == ("reciprocal_gated_convrnn", "sigmoid", 256)


# ------------------------------------------------------------------ the command line
@needs_data
def test_cli_import_tnn(tmp_path, capsys):
    from tnnspec.cli.main import main

    out = tmp_path / "vanilla.yaml"
    assert main(["import-tnn", str(DATA / "VanillaRNN.json"), "--cell", "gru", "--name", "vanilla",
                 "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "note: " in captured.err and f"wrote {out}" in captured.err
    spec = tnnspec.load(out)
    assert spec.name == "vanilla" and spec.areas["L2"].cell.name == "gru"
    assert main(["import-tnn", str(DATA / "mnist_conv.json"), "--unroll", "tnn_tf"]) == 0
    captured = capsys.readouterr()
    assert tnnspec.loads(captured.out).edges[1].delay == 0
    bad = tmp_path / "bad.json"
    text = '{"nodes": [{"name": "a", "shape": [4, 4, 1], "pre_memory": [{"function": "nope"}]}],\n "edges": []}'
    bad.write_text(text)
    assert main(["import-tnn", str(bad)]) == 1
    err = capsys.readouterr().err
    col = text.index('"nope"') + 1
    assert f"{bad}:1:{col}: error: nodes[0] (a).pre_memory[0].function: unknown function 'nope'" in err
    assert "Traceback" not in err
    assert main(["import-tnn", str(DATA / "alexnet.json"), "--cell", "gru"]) == 1
    assert "no node's memory carries a recurrent cell's keys" in capsys.readouterr().err
