"""The search-space file (tnnspec.search.space): loading, located diagnostics, suggest and materialise.

No Optuna needed: a fake trial records the calls the engine's real trial would get.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import tnnspec
from tnnspec.search import METRICS, Objective, load_space, loads_space, write_trial_graph
from tnnspec.spec.diagnostics import SpecError

ROOT = Path(__file__).resolve().parents[1]
VENTRAL4 = ROOT / "graphs" / "ventral4.yaml"

SPACE = f"""\
tnnspec_search: "1"
name: ventral4-search
graph: {VENTRAL4}
parameters:
  k: {{choice: [3, 5]}}
optional_edges:
  - V1->V1
  - IT->V4
  - V1->V2
optional_areas: [V4]
cells:
  V1: [identity, gru]
constraints:
  max_params: 500000
  max_flops: 2.0e+9
objectives:
  - {{metric: val_accuracy}}
  - {{metric: occlusion_accuracy, levels: [0.5, 0.75]}}
  - flops
sampler: {{type: nsga2, seed: 0}}
"""

COMMON = """\
parameters:
  k: 3
  width: 16
  gain: 0.5
"""

TINY = """\
tnnspec: "1.1"
name: tiny
include: [_common.yaml]
inputs:
  image: {shape: [3, 16, 16]}
areas:
  V1: {channels: $width, ops: [relu]}
  V2: {channels: 32, ops: [relu]}
edges:
  - {type: feedforward, source: image, target: V1, transform: [{conv: {kernel: $k}}]}
  - {type: feedforward, source: V1, target: V2, transform: [{conv: {kernel: $k}}], weight: $gain}
  - {type: lateral, source: V2, target: V2, transform: [conv], name: v2_rec}
  - {type: feedback, source: V2, target: V1, transform: [conv]}
  - {type: attention, source: V2, target: V1, transform: [conv]}
  - {type: skip, source: image, target: V2, transform: [{conv: {kernel: 1}}]}
readouts:
  logits: {source: V2, head: [{pool: avg}, {linear: 10}]}
"""

TINY_SPACE = """\
tnnspec_search: "1"
graph: graphs/tiny.yaml
parameters:
  width: {int: [16, 64], step: 16}
  gain: {float: [0.01, 1.0], log: true}
  k: {choice: [3, 5]}
optional_edges: [v2_rec, feedback:V2->V1, image->V2]
optional_areas: [V1]
cells:
  V2: [gru, identity]
"""


class FakeTrial:
    """Records the suggest calls; answers the first choice or the low bound."""

    def __init__(self):
        self.calls: list[tuple] = []

    def suggest_categorical(self, name, choices):
        self.calls.append(("categorical", name, list(choices)))
        return choices[0]

    def suggest_int(self, name, low, high, step=1, log=False):
        self.calls.append(("int", name, low, high, step, log))
        return low

    def suggest_float(self, name, low, high, step=None, log=False):
        self.calls.append(("float", name, low, high, step, log))
        return low


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "ventral4.search.yaml"
    path.write_text(SPACE)
    return load_space(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A space in one folder over a graph (with an include) in a sub-folder."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "graphs").mkdir()
    (root / "graphs" / "tiny.yaml").write_text(TINY)
    (root / "graphs" / "_common.yaml").write_text(COMMON)
    (root / "tiny.search.yaml").write_text(TINY_SPACE)
    return load_space(root / "tiny.search.yaml")


# ---------------------------------------------------------------------- a valid space
def test_valid_space_reads_every_section(space):
    assert space.name == "ventral4-search"
    assert space.graph_file == VENTRAL4
    assert space.file.name == "ventral4.search.yaml"
    assert space.objectives == [Objective("val_accuracy", "maximize"),
                                Objective("occlusion_accuracy", "maximize", (0.5, 0.75)),
                                Objective("flops", "minimize")]
    assert space.constraints == {"max_params": 500000, "max_flops": 2.0e9}
    assert space.sampler == {"type": "nsga2", "seed": 0}
    assert space.pruner == {"type": "median", "warmup_epochs": 1}
    assert space.neural is None
    assert space.training == tnnspec.spec.training.Training()  # neither the space nor the graph sets it
    assert space.value_names == ["param.k", "edge.V1->V1", "edge.IT->V4", "edge.V1->V2", "area.V4", "cell.V1"]
    assert set(METRICS) >= {"val_accuracy", "occlusion_accuracy", "flops", "params", "latency_ms", "neural_score",
                            "val_loss"}


def test_zoo_graph_defaults_and_training(tmp_path):
    path = tmp_path / "my-study.yaml"
    path.write_text('tnnspec_search: "1"\ngraph: zoo:ventral4\ntraining:\n  data: {name: digits, size: 32}\n'
                    '  epochs: 2\npruner: none\nneural: {regions: {IT: {area: IT}}}\n')
    space = load_space(path)
    assert space.graph_file == tnnspec.zoo.path("ventral4")
    assert space.name == "my-study"  # the file stem
    assert space.objectives == [Objective("val_accuracy", "maximize")]
    assert space.constraints == {"max_params": None, "max_flops": None}
    assert space.sampler == {"type": "tpe", "seed": None}
    assert space.pruner == {"type": "none", "warmup_epochs": 1}
    assert space.training.epochs == 2 and space.training.data.size == 32
    assert space.neural == {"regions": {"IT": {"area": "IT"}}} and type(space.neural) is dict
    assert space.value_names == []
    tg = space.materialise({})
    assert tg.spec.training == space.training  # the trial graph trains as the space says
    assert tg.spec.model_copy(update={"training": None}) == tnnspec.load(VENTRAL4)


def test_loads_space_finds_a_relative_graph_from_base_dir(tmp_path):
    text = 'tnnspec_search: "1"\ngraph: ../graphs/ventral4.yaml\nobjectives: [params]\n'
    space = loads_space(text, base_dir=ROOT / "docs")
    assert space.graph_file.resolve() == VENTRAL4 and space.file is None
    assert space.name == "ventral4-search"
    assert space.objectives == [Objective("params", "minimize")]
    json_space = loads_space(f'{{"tnnspec_search": "1", "graph": "{VENTRAL4}"}}', file="s.json")
    assert json_space.name == "s"


def test_suggest_asks_every_value_in_file_order(tiny):
    trial = FakeTrial()
    values = tiny.suggest(trial)
    assert trial.calls == [
        ("int", "param.width", 16, 64, 16, False),
        ("float", "param.gain", 0.01, 1.0, None, True),
        ("categorical", "param.k", [3, 5]),
        ("categorical", "edge.v2_rec", [True, False]),
        ("categorical", "edge.feedback:V2->V1", [True, False]),
        ("categorical", "edge.image->V2", [True, False]),
        ("categorical", "area.V1", [True, False]),
        ("categorical", "cell.V2", ["gru", "identity"]),
    ]
    assert values == {"param.width": 16, "param.gain": 0.01, "param.k": 3, "edge.v2_rec": True,
                      "edge.feedback:V2->V1": True, "edge.image->V2": True, "area.V1": True, "cell.V2": "gru"}


def test_default_values_leave_the_graph_as_written(space, tiny):
    assert space.default_values() == {"param.k": 3, "edge.V1->V1": True, "edge.IT->V4": True, "edge.V1->V2": True,
                                      "area.V4": True, "cell.V1": "identity"}
    assert tiny.default_values() == {"param.width": 16, "param.gain": 0.5, "param.k": 3, "edge.v2_rec": True,
                                     "edge.feedback:V2->V1": True, "edge.image->V2": True, "area.V1": True,
                                     "cell.V2": "identity"}
    tg = space.materialise(space.default_values())
    assert tg.spec == tnnspec.load(VENTRAL4)


# ---------------------------------------------------------------------- materialise
def test_materialise_applies_the_values(space):
    values = dict(space.default_values(), **{"param.k": 5, "edge.V1->V1": False, "edge.IT->V4": False,
                                             "cell.V1": "gru"})
    tg = space.materialise(values)
    pairs = [(e.type, e.source, e.target) for e in tg.spec.edges]
    assert ("lateral", "V1", "V1") not in pairs and ("feedback", "IT", "V4") not in pairs and len(pairs) == 7
    kernels = [op.op.kernel for e in tg.spec.edges[1:] for op in e.transform if op.op_name == "conv"]
    assert kernels and set(kernels) == {5}  # every `$k` use
    assert tg.spec.edges[0].transform[0].op.kernel == 5  # not a `$k` use: unchanged
    assert tg.spec.areas["V1"].cell.type == "gru" and tg.spec.areas["V2"].cell.type == "identity"
    assert tg.values == values and list(tg.values) == space.value_names
    assert "$k" not in tg.text and "include" not in tg.text and "templates" not in tg.text


def test_materialise_params_from_an_include_areas_and_typed_edges(tiny):
    values = dict(tiny.default_values(), **{"param.width": 48, "param.gain": 0.25, "area.V1": False,
                                            "edge.feedback:V2->V1": False, "edge.v2_rec": False,
                                            "cell.V2": "gru"})
    tg = tiny.materialise(values)
    assert list(tg.spec.areas) == ["V2"]
    assert [(e.type, e.source, e.target) for e in tg.spec.edges] == [("skip", "image", "V2")]
    assert tg.spec.areas["V2"].cell.type == "gru"
    tg = tiny.materialise(dict(tiny.default_values(), **{"param.width": 48, "param.gain": 0.25,
                                                         "edge.feedback:V2->V1": False}))
    assert tg.spec.areas["V1"].channels == 48 and tg.spec.edges[1].weight == 0.25
    assert [e.type for e in tg.spec.edges] == ["feedforward", "feedforward", "lateral", "attention", "skip"]


def test_same_values_same_text_other_values_other_digest(space):
    values = dict(space.default_values(), **{"param.k": 5})
    a, b = space.materialise(values), space.materialise(dict(reversed(list(values.items()))))
    assert a.text == b.text and a.digest == b.digest
    assert a.filename == f"ventral4-search-{a.digest[:12]}.yaml"
    import hashlib

    assert a.digest == hashlib.sha256(a.text.encode()).hexdigest()
    c = space.materialise(space.default_values())
    assert c.digest != a.digest and c.text != a.text
    assert space.materialise({}).text == c.text  # missing values take the defaults


def test_text_has_a_header_naming_the_space_and_values(space):
    tg = space.materialise(dict(space.default_values(), **{"edge.IT->V4": False}))
    header = [line for line in tg.text.splitlines() if line.startswith("#")]
    assert "ventral4.search.yaml" in header[0] and "ventral4-search" in header[0]
    assert "#   edge.IT->V4: false" in header and "#   param.k: 3" in header and '#   cell.V1: "identity"' in header
    assert tg.text.index("#   param.k") < tg.text.index("#   cell.V1")  # file order


def test_trial_graph_loads_on_its_own_from_another_directory(tiny, tmp_path, monkeypatch):
    tg = tiny.materialise(dict(tiny.default_values(), **{"param.k": 5}))
    out = tmp_path / "run"
    path = write_trial_graph(tg, out)
    assert path == out / "graphs" / tg.filename and path.read_text() == tg.text
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert tnnspec.load(path) == tg.spec == tnnspec.loads(tg.text)
    assert tnnspec.load(os.path.relpath(path)) == tg.spec


def test_write_trial_graph_is_atomic_and_idempotent(space, tmp_path):
    tg = space.materialise({})
    path = write_trial_graph(tg, tmp_path)
    before = path.stat().st_mtime_ns
    os.utime(path, ns=(before - 10**9, before - 10**9))
    assert write_trial_graph(tg, tmp_path) == path
    assert path.stat().st_mtime_ns == before - 10**9  # same content: not rewritten
    path.write_text("stale")
    write_trial_graph(tg, tmp_path)
    assert path.read_text() == tg.text
    assert sorted(p.name for p in path.parent.iterdir()) == [tg.filename]  # no temporary file left


def test_invalid_trial_graph_raises_naming_the_values(space):
    with pytest.raises(SpecError) as exc:
        space.materialise(dict(space.default_values(), **{"edge.V1->V2": False}))
    diags = exc.value.errors
    assert diags and all(d.file == str(space.file) and (d.line, d.column) == (9, 5) for d in diags)
    assert all(d.message.startswith("with edge.V1->V2 = False: ") for d in diags)
    assert any("areas.V2: unreachable" in d.message for d in diags)
    with pytest.raises(SpecError) as exc:
        space.materialise(dict(space.default_values(), **{"area.V4": False, "param.k": 5}))
    assert (exc.value.errors[0].line, exc.value.errors[0].column) == (5, 3)  # the first changed value
    assert "with param.k = 5, area.V4 = False: areas.IT: unreachable" in str(exc.value)


def test_a_parameter_value_the_graph_rejects_is_located_in_the_graph(tmp_path):
    (tmp_path / "graphs").mkdir()
    (tmp_path / "graphs" / "tiny.yaml").write_text(TINY)
    (tmp_path / "graphs" / "_common.yaml").write_text(COMMON)
    path = tmp_path / "s.yaml"
    path.write_text('tnnspec_search: "1"\ngraph: graphs/tiny.yaml\nparameters:\n  width: {choice: [16, 2.5]}\n'
                    "optional_areas: [V2]\n")
    space = load_space(path)
    with pytest.raises(SpecError) as exc:
        space.materialise({"param.width": 2.5})
    [d] = exc.value.errors
    assert (d.file, d.line, d.column) == (str(tmp_path / "graphs" / "tiny.yaml"), 7, 18)  # the `$width` use
    assert d.message.startswith("with param.width = 2.5: areas.V1.channels")
    with pytest.raises(SpecError, match="no readout is left"):
        space.materialise({"area.V2": False})


def test_values_that_are_not_the_space_s(space):
    with pytest.raises(SpecError) as exc:
        space.materialise({"param.k": 4, "cell.V1": "lstm", "edge.V9->V9": True, "area.V4": 1})
    text = str(exc.value)
    assert ":5:3: error: trial value param.k = 4: not one of the choices [3, 5]" in text
    assert "trial value cell.V1 = 'lstm'" in text and "trial value area.V4 = 1" in text
    assert "trial value 'edge.V9->V9' is not a choice of this space" in text


# ---------------------------------------------------------------------- diagnostics
def problems(tmp_path, body: str, header: str = f'tnnspec_search: "1"\ngraph: {VENTRAL4}\n') -> list[str]:
    """``line:col: message`` of each error located in the space file."""
    path = tmp_path / "space.yaml"
    path.write_text(header + textwrap.dedent(body))
    with pytest.raises(SpecError) as exc:
        load_space(path)
    return [f"{d.line}:{d.column}: {d.message}" for d in exc.value.errors if d.file == str(path)]


CASES = {
    "unknown top-level key": ("grpah: x\n", "3:1: unknown key 'grpah' (did you mean 'graph'?)"),
    "unknown version": ("", "1:17: tnnspec_search: format version '2' is not supported", 'tnnspec_search: "2"\n'
                                                                                          f"graph: {VENTRAL4}\n"),
    "missing version": ("", "1:1: missing 'tnnspec_search' format version", f"graph: {VENTRAL4}\n"),
    "missing graph": ("", "1:1: missing 'graph'", 'tnnspec_search: "1"\n'),
    "graph not found": ("", "2:8: graph: 'nope.yaml' not found", 'tnnspec_search: "1"\ngraph: nope.yaml\n'),
    "unknown zoo graph": ("", "2:8: graph: no zoo graph 'ventral5' (did you mean 'ventral4'?)",
                          'tnnspec_search: "1"\ngraph: zoo:ventral5\n'),
    "empty choice": ("parameters:\n  k: {choice: []}\n", "4:15: parameters.k.choice: empty list"),
    "low > high": ("parameters:\n  k: {int: [5, 3]}\n", "4:12: parameters.k.int: low (5) is greater than high (3)"),
    "log with low <= 0": ("parameters:\n  k: {float: [0, 1], log: true}\n",
                          "4:14: parameters.k.float: log: true needs low > 0"),
    "step <= 0": ("parameters:\n  k: {int: [1, 5], step: 0}\n", "4:26: parameters.k.step: must be > 0, got 0"),
    "step with log": ("parameters:\n  k: {float: [1, 5], log: true, step: 1}\n",
                      "4:33: parameters.k: step cannot be combined with log: true"),
    "unknown kind": ("parameters:\n  k: {flaot: [1, 5]}\n",
                     "4:7: parameters.k: unknown distribution key 'flaot' (did you mean 'float'?)"),
    "no kind": ("parameters:\n  k: {log: true}\n", "4:6: parameters.k: no distribution given"),
    "two kinds": ("parameters:\n  k: {int: [1, 5], float: [1, 5]}\n",
                  "4:20: parameters.k: two distributions ('int' and 'float')"),
    "non-numeric bound": ("parameters:\n  k: {int: [a, 5]}\n",
                          "4:13: parameters.k.int: low must be an integer, got 'a'"),
    "float bound for int": ("parameters:\n  k: {int: [1, 5.5]}\n", "4:16: parameters.k.int: high must be an integer"),
    "not a distribution": ("parameters:\n  k: 3\n", "4:6: parameters.k: expected a distribution"),
    "unknown parameter": ("parameters:\n  kk: {choice: [3]}\n",
                          "4:3: parameters.kk: the graph has no parameter 'kk' (did you mean 'k'?)"),
    "unknown edge": ("optional_edges: [V1->V3]\n", "3:18: optional_edges[0]: the graph has no edge 'V1->V3' (did you"),
    "same edge twice": ("optional_edges: [V1->V1, lateral:V1->V1]\n",
                        "3:26: optional_edges[1]: the same edge as optional_edges[0]"),
    "edge not a string": ("optional_edges: [{V1: V2}]\n", "3:18: optional_edges[0]: expected an edge key"),
    "unknown area": ("optional_areas: [V5]\n", "3:18: optional_areas[0]: the graph has no area 'V5'"),
    "an input is not an area": ("optional_areas: [image]\n", "3:18: optional_areas[0]: 'image' is an input"),
    "cells of an unknown area": ("cells:\n  V9: [gru]\n", "4:3: cells.V9: the graph has no area 'V9'"),
    "unknown cell type": ("cells:\n  V1: [gruu]\n", "4:8: cells.V1[0]: unknown cell type 'gruu' (did you mean 'gru'?)"),
    "cell needing settings": ("cells:\n  V1: [leaky]\n", "4:8: cells.V1[0]: the cell type 'leaky' has required "
                                                         "settings (tau_ms)"),
    "empty cell list": ("cells:\n  V1: []\n", "4:7: cells.V1: expected a non-empty list"),
    "unknown metric": ("objectives:\n  - {metric: val_acc}\n",
                       "4:14: objectives[0].metric: unknown metric 'val_acc' (did you mean 'val_accuracy'?)"),
    "bad direction": ("objectives:\n  - {metric: flops, direction: max}\n",
                      "4:32: objectives[0].direction: expected 'maximize' or 'minimize', got 'max'"),
    "occlusion without levels": ("objectives:\n  - {metric: occlusion_accuracy}\n",
                                 "4:14: objectives[0]: occlusion_accuracy needs levels"),
    "level outside [0, 1)": ("objectives:\n  - {metric: occlusion_accuracy, levels: [0.5, 1.0]}\n",
                             "4:48: objectives[0].levels[1]: an occlusion level is a number in [0, 1), got 1.0"),
    "levels on another metric": ("objectives:\n  - {metric: flops, levels: [0.5]}\n",
                                 "4:21: objectives[0].levels: only occlusion_accuracy has levels"),
    "duplicate metric": ("objectives:\n  - val_accuracy\n  - {metric: val_accuracy}\n",
                         "5:14: objectives[1].metric: 'val_accuracy' is already an objective (objectives[0])"),
    "empty objectives": ("objectives: []\n", "3:13: objectives: empty list"),
    "neural_score without neural": ("objectives: [neural_score]\n",
                                    "3:14: objectives[0].metric: neural_score needs the `neural:` settings"),
    "unknown constraint": ("constraints: {max_param: 5}\n",
                           "3:15: constraints: unknown key 'max_param' (did you mean 'max_params'?)"),
    "non-positive constraint": ("constraints: {max_flops: -1}\n",
                                "3:26: constraints.max_flops: expected a positive number, got -1"),
    "unknown sampler": ("sampler: {type: tps}\n", "3:17: sampler.type: unknown sampler 'tps' (did you mean 'tpe'?)"),
    "unknown pruner": ("pruner: {type: hyperband}\n", "3:16: pruner.type: unknown pruner 'hyperband'"),
    "training value": ("training:\n  epochs: 0\n", "4:11: training.epochs: input should be greater than or equal to 1"),
    "training key": ("training:\n  epohcs: 2\n", "4:3: training: unknown key 'epohcs' (did you mean 'epochs'?)"),
    "training dataset": ("training:\n  data: {name: digitz}\n",
                         "4:16: training.data.name: unknown dataset 'digitz' (did you mean 'digits'?)"),
    "section of the wrong shape": ("parameters: [k]\n", "3:13: parameters: expected a mapping"),
    "neural not a mapping": ("neural: 3\n", "3:9: neural: expected a mapping"),
    "bad name": ("name: my study\n", "3:7: name: invalid study name 'my study'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_diagnostic_is_located(tmp_path, case):
    body, expected, *header = CASES[case]
    found = problems(tmp_path, body, *header)
    assert any(p.startswith(expected) for p in found), found


def test_ambiguous_edge(tiny, tmp_path):
    body = "optional_edges: [V2->V1, 'V1 -> V2', feedback:V2->V1]\n"
    found = problems(tmp_path, body, f'tnnspec_search: "1"\ngraph: {tiny.graph_file}\n')
    assert found == ["3:18: optional_edges[0]: 'V2->V1' matches 2 edges (feedback, attention); name one by its "
                     "`name` or as 'type:source->target'"]


def test_every_problem_in_one_error(tmp_path):
    found = problems(tmp_path, "parameters:\n  k: {choice: []}\noptional_areas: [V5]\nobjectives: [flop]\n")
    assert [p.split(":")[0] for p in found] == ["4", "5", "6"]


def test_an_invalid_graph_brings_its_own_diagnostics(tmp_path):
    graph = tmp_path / "bad.yaml"
    graph.write_text(VENTRAL4.read_text().replace("channels: 32", "channels: -32"))
    path = tmp_path / "space.yaml"
    path.write_text(f'tnnspec_search: "1"\ngraph: bad.yaml\nparameters:\n  k: {{choice: []}}\n')
    with pytest.raises(SpecError) as exc:
        load_space(path)
    where = [(Path(d.file).name, d.line, d.column) for d in exc.value.errors]
    assert ("space.yaml", 2, 8) in where and ("space.yaml", 4, 15) in where
    assert ("bad.yaml", 18, 49) in where and "is not a valid graph file" in str(exc.value)


def test_not_a_mapping_and_unsafe_yaml(tmp_path):
    with pytest.raises(SpecError, match="a search-space file is a mapping"):
        loads_space("- a\n- b\n")
    with pytest.raises(SpecError, match="'!!python/object:os.system' is not allowed"):
        loads_space(f'tnnspec_search: "1"\ngraph: {VENTRAL4}\nname: !!python/object:os.system x\n')


def test_docs_example_space_is_valid():
    """docs/examples/search/search_space.yaml (the ventral4 family search of docs/search.md) loads,
    and its default trial graph is the example graph with every edge present."""
    root = Path(__file__).resolve().parents[1]
    space = load_space(root / "docs" / "examples" / "search" / "search_space.yaml")
    assert [o.metric for o in space.objectives] == ["occlusion_accuracy", "flops"]
    assert len(space.value_names) == 11
    tg = space.materialise(space.default_values())
    assert len(tg.spec.edges) == 10 and {a.cell.type for a in tg.spec.areas.values()} == {"identity"}
