"""Plugins: cells and ops from other packages, found through entry points.

The example plugin in tests/plugins/tnnspec_example_plugin (the ``leaky_tanh`` cell and the ``clip``
op) is "installed" for these tests without pip: its source folder and a temporary
``*.dist-info`` (METADATA, and entry_points.txt written from its pyproject.toml) go on
``sys.path``, which is all importlib.metadata looks at. A fixture installs it, and removes
it again after each test (components unregistered, models rebuilt), so the tests without it
and the other test files see only the built-ins. Subprocesses get it through PYTHONPATH.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch

import tnnspec
from tnnspec import plugins as P
from tnnspec.spec import components as C
from tnnspec.spec import docgen
from tnnspec.spec import models as M
from tnnspec.spec.schema import json_schema, schema_text

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SRC = ROOT / "tests" / "plugins" / "tnnspec_example_plugin"
DIST = "tnnspec-example-plugin"

VERSION = M.FORMAT_VERSIONS[-1]
DEMO = f"""\
tnnspec: "{VERSION}"
name: plugin_demo
requires: [{DIST}]
time: {{steps: 5}}
inputs:
  image: {{shape: [3, 6, 7]}}
areas:
  V1:
    channels: 4
    cell: {{type: leaky_tanh, alpha: 0.3, kernel: 3}}
    ops: [{{clip: {{low: -0.4, high: 0.5}}}}]
edges:
  - {{type: feedforward, source: image, target: V1}}
readouts:
  out: {{source: V1, head: [{{pool: avg}}, {{clip: 0.2}}, clip]}}
"""


# ------------------------------------------------------------------ installing the example plugin
def write_dist(site: Path, name: str, version: str, entry_points: dict[str, dict[str, str]]) -> Path:
    """A ``*.dist-info`` folder: what an installed distribution looks like to importlib.metadata."""
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, eps in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{k} = {v}" for k, v in eps.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    return info


def example_entry_points() -> dict[str, dict[str, str]]:
    project = tomllib.loads((PLUGIN_SRC / "pyproject.toml").read_text())["project"]
    return project["entry-points"]


def _forget_plugin_modules() -> None:
    for mod in [m for m in sys.modules if m.split(".")[0] in ("tnnspec_example_plugin", "tnnspec_broken_plugin")]:
        del sys.modules[mod]


class installed:
    """Context: the given folders on sys.path, plugins loaded afresh; on exit, the components they
    registered are removed and the models rebuilt."""

    def __init__(self, *paths: Path):
        self.paths = [str(p) for p in paths]

    def __enter__(self):
        self.before = set(C.REGISTRY)
        for p in self.paths:
            sys.path.insert(0, p)
        P._reset()
        return self

    def __exit__(self, *exc):
        for p in self.paths:
            sys.path.remove(p)
        for kind, name in set(C.REGISTRY) - self.before:
            C.unregister(kind, name)
        _forget_plugin_modules()
        P._reset()
        M.rebuild()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("site")
    write_dist(site, DIST, "0.1.0", example_entry_points())
    return site


@pytest.fixture
def example(site):
    with installed(site, PLUGIN_SRC):
        P.load_plugins()
        yield


def _unregister(kind: str, name: str) -> None:
    C.unregister(kind, name)
    M.rebuild()  # so that nothing validates against the removed component


def _env(*paths: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, paths), env.get("PYTHONPATH", "")])
    env.pop(P.DISABLE_ENV, None)
    return env


def _python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


# ------------------------------------------------------------------ discovery
def test_entry_points_are_discovered_and_register_their_components(example):
    found = {(p.group, p.name): p for p in P.plugins()}
    assert set(found) == {("tnnspec.cells", "leaky_tanh"), ("tnnspec.ops", "clip")}
    assert found["tnnspec.cells", "leaky_tanh"].components == ["cell leaky_tanh"]
    assert found["tnnspec.ops", "clip"].components == ["op clip"]  # a callable entry point, called once
    assert all(p.distribution == DIST and p.version == "0.1.0" and p.error is None for p in found.values())
    assert C.origin("cell", "leaky_tanh") == DIST and C.origin("op", "clip") == DIST
    assert C.origin("cell", "gru") == "tnnspec"
    assert P.load_plugins() and P.plugins() == P.load_plugins()  # once per process: no second import


def test_validation_follows_the_registry(example):
    spec = tnnspec.loads(DEMO, strict=True)
    assert spec.requires == [DIST]
    assert spec.areas["V1"].cell.type == "leaky_tanh" and spec.areas["V1"].cell.alpha == 0.3
    assert spec.areas["V1"].ops[0].op_name == "clip" and spec.areas["V1"].ops[0].op.high == 0.5
    head = spec.readouts["out"].head
    assert [e.op_name for e in head] == ["pool", "clip", "clip"] and head[1].op.high == 0.2
    assert head[2].op.low is None and head[2].op.high is None
    assert tnnspec.loads(tnnspec.dumps(spec)) == spec  # the round trip keeps the plugin's parts
    again = pickle.loads(pickle.dumps(spec))  # specs pickle (torch.save of a checkpoint)
    assert again == spec and copy.deepcopy(spec) == spec


def test_error_messages_suggest_plugin_components(example):
    bad = (DEMO.replace("type: leaky_tanh, alpha", "type: leaky_tanhh, alpha")
           .replace("[{clip: {low", "[{clpi: {low"))
    with pytest.raises(tnnspec.SpecError) as err:
        tnnspec.loads(bad, file="demo.yaml")
    assert [str(d) for d in err.value.diagnostics] == [
        "demo.yaml:10:18: error: areas.V1.cell: unknown cell type 'leaky_tanhh' (did you mean 'leaky_tanh'?); "
        f"known: {', '.join(sorted(C.CELLS))}",
        "demo.yaml:11:11: error: areas.V1.ops[0]: unknown op 'clpi' (did you mean 'clip'?); "
        f"known ops: {', '.join(sorted(C.OPS))}",
    ]
    assert "leaky_tanh" in str(err.value) and "clip" in str(err.value)
    with pytest.raises(tnnspec.SpecError) as err:
        tnnspec.loads(DEMO.replace("alpha: 0.3, kernel: 3", "alpah: 0.3, kernel: 4"), file="demo.yaml")
    assert [str(d) for d in err.value.diagnostics] == [
        "demo.yaml:10:30: error: areas.V1.cell: unknown key 'alpah' (did you mean 'alpha'?)",
        "demo.yaml:10:50: error: areas.V1.cell.kernel: leaky_tanh kernel must be odd, got 4",
    ]


def test_schema_includes_plugin_components(example):
    schema = json_schema()
    defs = schema["definitions"]
    assert "LeakyTanh" in defs and "ClipOp" in defs
    assert defs["LeakyTanh"]["properties"]["alpha"]["description"].startswith("α, the share")
    cell_alts = defs["Area"]["properties"]["cell"]["oneOf"]
    assert {"$ref": "#/definitions/LeakyTanh"} in cell_alts
    names = next(a["enum"] for a in cell_alts if a.get("type") == "string")
    assert names == sorted(C.CELLS) and "leaky_tanh" in names
    op_alts = defs["Area"]["properties"]["ops"]["items"]["oneOf"]
    assert {"$ref": "#/definitions/ClipOp"} in op_alts
    assert "clip" in next(a["enum"] for a in op_alts if a.get("type") == "string")  # `clip` alone is valid
    import jsonschema
    from tnnspec.spec.source import parse_text

    jsonschema.Draft7Validator.check_schema(schema)
    assert not list(jsonschema.Draft7Validator(schema).iter_errors(json.loads(json.dumps(parse_text(DEMO)))))


def test_a_plugin_cell_compiles_and_matches_its_numpy_reference(example):
    """Five steps of a static image through ``leaky_tanh`` and ``clip`` (float64): the network's
    area outputs equal the plugin's NumPy reference to 1e-12."""
    from tnnspec_example_plugin.reference import clip, leaky_tanh

    spec = tnnspec.loads(DEMO)
    net = tnnspec.compile(spec).double()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(0.4 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.randn(2, 3, 6, 7, generator=gen, dtype=torch.float64)
    run = net(x, record=("V1",))
    got = run.areas["V1"].detach().numpy()
    assert got.shape == (5, 2, 4, 6, 7)
    weights = {k.removeprefix("areas.V1.cell."): v.detach().numpy() for k, v in net.state_dict().items()
               if k.startswith("areas.V1.cell.")}
    assert set(weights) == {"input_conv.weight", "input_conv.bias", "hidden_conv.weight"}
    # the clip is an area op: it shapes the output, not the cell's state
    want = [clip(h, -0.4, 0.5) for h in leaky_tanh(0.3, weights, [x.numpy()] * 5)]
    assert np.abs(got - np.stack(want)).max() < 1e-12
    assert 0 < np.mean(np.abs(got) == 0.5) < 1  # the clip bites, and not everywhere
    out = run.readouts["out"].detach().numpy()
    assert out.shape == (5, 2, 4)
    assert np.abs(out - np.clip(np.stack(want).mean(axis=(3, 4)), None, 0.2)).max() < 1e-12


def test_docs_generator_includes_plugin_components(example):
    page = docgen.reference()
    assert "### `leaky_tanh`" in page and "From the plugin package `tnnspec-example-plugin`." in page
    assert "| `alpha` | `0.5` | α, the share of the new value taken at each step (> 0, ≤ 1) |" in page
    assert "| `leaky_tanh` | Leaky tanh conv RNN: `h_t = (1 - α) h_{t-1} + α tanh(W_x * x_t + b + W_h * h_{t-1})`." \
           " | any | no |" in page
    assert ("| `clip` | `high` | `low` (none), `high` (none) | Clamp each value to `[low, high]`: "
            "`y = min(max(x, low), high)`.") in page
    only = docgen.reference(origin=DIST)
    assert "leaky_tanh" in only and "`gru`" not in only
    assert "leaky_tanh" not in docgen.reference(origin="tnnspec")
    for doc in ("docs/spec.md", "docs/cells.md"):  # the project's docs stay the built-ins'
        text = (ROOT / doc).read_text()
        assert docgen.update(text, origin="tnnspec") == text


def test_requires_accepts_an_installed_plugin_under_any_spelling(example):
    for spelling in (DIST, "tnnspec_example_plugin", "TNNSpec.Example_Plugin"):
        spec = tnnspec.loads(DEMO.replace(f"requires: [{DIST}]", f"requires: [{spelling}]"))
        assert spec.requires == [spelling]


# ------------------------------------------------------------------ a plugin that is not there
def test_requires_names_the_missing_package_with_a_located_error():
    text = DEMO.replace(f"requires: [{DIST}]", "requires: [tnnspec-absent-cells, numpy, 'absent>=1.0']")
    with pytest.raises(tnnspec.SpecError) as err:
        tnnspec.loads(text, file="needs.yaml")
    hint = ("; it may come from the plugin package 'tnnspec-absent-cells', which this file requires and which "
            "is not installed: pip install tnnspec-absent-cells")
    assert [str(d) for d in err.value.diagnostics] == [
        "needs.yaml:3:12: error: requires[0]: this file needs the plugin package 'tnnspec-absent-cells', "
        "which is not installed: pip install tnnspec-absent-cells",
        "needs.yaml:3:34: error: requires[1]: the package 'numpy' is installed but is not a tnnspec plugin "
        "(it declares no 'tnnspec.cells' or 'tnnspec.ops' entry points)",
        "needs.yaml:3:41: error: requires[2]: 'absent>=1.0' is not a package name: give the distribution "
        "name only, as for pip install (no version), e.g. tnnspec-mylab-cells",
        "needs.yaml:10:18: error: areas.V1.cell: unknown cell type 'leaky_tanh' (did you mean 'leaky'?); "
        f"known: {', '.join(sorted(C.CELLS))}{hint}",
        f"needs.yaml:11:11: error: areas.V1.ops[0]: unknown op 'clip'; known ops: {', '.join(sorted(C.OPS))}{hint}",
        "needs.yaml:15:41: error: readouts.out.head[1]: unknown op 'clip'; "
        f"known ops: {', '.join(sorted(C.OPS))}{hint}",
        "needs.yaml:15:54: error: readouts.out.head[2]: unknown op 'clip'; "
        f"known ops: {', '.join(sorted(C.OPS))}{hint}",
    ]


def test_requires_in_an_included_file_is_merged_and_located_there(tmp_path):
    (tmp_path / "lib.yaml").write_text("requires: [tnnspec-absent-cells]\n")
    (tmp_path / "main.yaml").write_text(f'tnnspec: "{VERSION}"\nname: m\ninclude: lib.yaml\n'
                                        "requires: [tnnspec-absent-cells, tnnspec-other-absent]\n"
                                        "inputs: {x: {shape: [2]}}\nareas: {A: {channels: 2}}\n")
    _, diags = tnnspec.check_file(tmp_path / "main.yaml")
    assert [(Path(d.file).name, d.line, d.message.split(":")[0]) for d in diags] == [
        ("lib.yaml", 1, "requires[0]"), ("main.yaml", 4, "requires[1]")]


def test_a_broken_entry_point_is_a_clear_error_naming_its_package(tmp_path):
    site = tmp_path / "site"
    write_dist(site, "tnnspec-broken-plugin", "0.2.0",
               {"tnnspec.cells": {"broken": "tnnspec_no_such_module"},
                "tnnspec.ops": {"clash": "tnnspec_broken_plugin"}})
    # its second entry point registers the example plugin's `clip` first
    (site / "tnnspec_broken_plugin.py").write_text(
        "from tnnspec.plugins import register_op\n"
        "from tnnspec_example_plugin.ops import Clip\n"
        "register_op('clip', Clip, builder='tnnspec_example_plugin.torch_builders:build_clip')\n")
    write_dist(site, DIST, "0.1.0", example_entry_points())
    with installed(site, PLUGIN_SRC):
        with pytest.raises(P.PluginError) as err:
            tnnspec.loads(DEMO)
        message = str(err.value)
        assert ("plugin package 'tnnspec-broken-plugin' (0.2.0): entry point 'broken = tnnspec_no_such_module' "
                "in group 'tnnspec.cells' failed to load: ModuleNotFoundError: No module named "
                "'tnnspec_no_such_module'") in message
        assert ("plugin package 'tnnspec-example-plugin' (0.1.0): entry point 'clip = "
                "tnnspec_example_plugin.ops:register' in group 'tnnspec.ops' failed to load: RegistrationError: "
                "op 'clip' registered twice: already registered by 'tnnspec-broken-plugin'") in message
        assert f"{P.DISABLE_ENV}=1 skips all plugins" in message
        with pytest.raises(P.PluginError):  # every later call says it again
            P.load_plugins()
        assert [p.error is not None for p in P.plugins()] == [True, False, False, True]

    env = _env(site, PLUGIN_SRC)
    proc = subprocess.run([sys.executable, "-m", "tnnspec", "validate", "graphs/ventral4.yaml"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: plugin package 'tnnspec-broken-plugin' (0.2.0): entry point 'broken")
    proc = _python("import tnnspec; print(tnnspec.Spec.__name__)", env)  # importing never loads plugins
    assert proc.returncode == 0 and proc.stdout.strip() == "Spec"
    proc = subprocess.run([sys.executable, "-m", "tnnspec", "validate", "graphs/ventral4.yaml"], cwd=ROOT,
                          env=dict(env, **{P.DISABLE_ENV: "1"}), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr


# ------------------------------------------------------------------ other processes: CLI, lazy torch
def test_cli_schema_and_docs_change_and_validating_needs_no_torch(site, tmp_path):
    """In a fresh process with the plugin installed: validating a file that uses it imports neither
    torch nor the plugin's torch builders; ``tnnspec schema`` and ``tnnspec docs`` show it."""
    env = _env(site, PLUGIN_SRC)
    (tmp_path / "demo.yaml").write_text(DEMO)
    proc = _python(f"import sys, tnnspec; spec = tnnspec.load({str(tmp_path / 'demo.yaml')!r}); "
                   "print(spec.areas['V1'].cell.type, 'torch' in sys.modules, "
                   "'tnnspec_example_plugin.torch_builders' in sys.modules)", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["leaky_tanh", "False", "False"]

    with installed(site, PLUGIN_SRC):  # a spec pickled here unpickles where nothing has loaded plugins yet
        (tmp_path / "spec.pkl").write_bytes(pickle.dumps(tnnspec.loads(DEMO)))
    proc = _python(f"import pickle; spec = pickle.loads(open({str(tmp_path / 'spec.pkl')!r}, 'rb').read()); "
                   "print(spec.areas['V1'].ops[0].op_name, spec.areas['V1'].ops[0].op.high)", env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["clip", "0.5"]

    out = tmp_path / "schema.json"
    proc = subprocess.run([sys.executable, "-m", "tnnspec", "schema", "-o", str(out)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    schema = json.loads(out.read_text())
    assert {"LeakyTanh", "ClipOp"} <= set(schema["definitions"])
    builtin = json.loads(schema_text())  # this process has no plugin
    assert set(schema["definitions"]) - set(builtin["definitions"]) == {"LeakyTanh", "Clip", "ClipOp"}

    proc = subprocess.run([sys.executable, "-m", "tnnspec", "plugins"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"{DIST} 0.1.0  [tnnspec.cells] leaky_tanh = tnnspec_example_plugin.cells: cell leaky_tanh",
        f"{DIST} 0.1.0  [tnnspec.ops] clip = tnnspec_example_plugin.ops:register: op clip"]


# ------------------------------------------------------------------ registering by hand
def test_every_builtin_is_one_registration_whose_builder_resolves():
    builtin = [r for r in C.REGISTRY.values() if r.origin == "tnnspec"]
    assert {r.name for r in builtin if r.kind == "cell"} == set(C.CELLS)
    assert {r.name for r in builtin if r.kind == "op"} == set(C.OPS)
    for r in builtin:
        assert isinstance(r.builder, str) and callable(C.builder(r.kind, r.name)), (r.kind, r.name)
        assert r.params.name == r.name and docgen.summary(r.params), (r.kind, r.name)



class Twice(C.CellParams):
    """Doubles its drive: ``y_t = 2 x_t``.

    Zero state: ``y = 2 x``.  Does not gate.
    """

    type: Literal["twice"] = "twice"


class NoType(C.CellParams):
    """No ``type`` field."""


def _twice_builder():
    from tnnspec.compile.registry import Cell

    class TwiceCell(Cell):
        def forward(self, drive, state, step):
            return 2 * drive, None

    return TwiceCell


def test_registering_in_a_script_is_seen_by_the_next_load_and_unregistering_restores_the_schema():
    text = f'tnnspec: "{VERSION}"\nname: m\ninputs: {{x: {{shape: [2, 3, 3]}}}}\n' \
           "areas: {A: {channels: 2, cell: twice}}\nedges: [{type: feedforward, source: x, target: A}]\n"
    with pytest.raises(tnnspec.SpecError, match="unknown cell type 'twice'"):
        tnnspec.loads(text)
    builtin_schema = schema_text()
    C.register_cell("twice", Twice, builder=lambda *args: _twice_builder()(*args))
    try:
        spec = tnnspec.loads(text)
        x = torch.randn(1, 2, 3, 3)
        assert torch.equal(tnnspec.compile(spec)(x, record=("A",)).areas["A"][-1], 2 * x)
        assert C.origin("cell", "twice") == "test_plugins"
        assert "twice" in schema_text()
        with pytest.raises(C.RegistrationError, match="cell 'twice' registered twice: already registered by "
                                                      "'test_plugins' \\(test_plugins.Twice\\)"):
            C.register_cell("twice", Twice, builder="x.y:Z")
    finally:
        _unregister("cell", "twice")
    assert schema_text() == builtin_schema
    with pytest.raises(tnnspec.SpecError, match="unknown cell type 'twice'"):
        tnnspec.loads(text)


@pytest.mark.parametrize("call,message", [
    (lambda: C.register_cell("Bad-Name", Twice, builder="a.b:C"), "cell name 'Bad-Name': use lower-case"),
    (lambda: C.register_cell("no_type", NoType, builder="a.b:C"),
     "cell 'no_type': the model must declare  type: Literal['no_type'] = 'no_type'"),
    (lambda: C.register_cell("other", Twice, builder="a.b:C"),
     "cell 'other': the model must declare  type: Literal['other'] = 'other'"),
    (lambda: C.register_cell("twice", Twice, builder="not a path"), "builder 'not a path' is not an import path"),
    (lambda: C.register_op("twice", Twice, builder="a.b:C"), "op 'twice': the parameters model must subclass"),
    (lambda: C.register_cell("gated", type("GRU", (C.CellParams,), {"__annotations__": {"type": Literal["gated"]},
                                                                      "type": "gated"}), builder="a.b:C"),
     "cell 'gated': the class name 'GRU' is taken by cell 'gru' (the JSON Schema names its definitions"),
    (lambda: C.register_op("area", type("Area", (C.OpParams,), {}), builder="a.b:C"),
     "op 'area': the class name 'Area' is taken in tnnspec.spec.models"),
])
def test_registration_mistakes_are_explained(call, message):
    with pytest.raises(C.RegistrationError) as err:
        call()
    assert message in str(err.value)
    assert not {"twice", "other", "gated"} & set(C.CELLS) and "area" not in C.OPS


def test_a_builder_that_cannot_be_imported_names_the_component_and_its_package():
    C.register_cell("twice", Twice, builder="tnnspec_nowhere.cells:TwiceCell")
    try:
        from tnnspec.compile.registry import CELL_BUILDERS

        with pytest.raises(C.BuilderError, match="cell 'twice' \\(from plugin package 'test_plugins'\\): cannot "
                                                 "import its builder 'tnnspec_nowhere.cells:TwiceCell': "
                                                 "ModuleNotFoundError"):
            CELL_BUILDERS["twice"]
    finally:
        _unregister("cell", "twice")


# ------------------------------------------------------------------ the docs' example
def _plugins_section() -> str:
    doc = (ROOT / "docs" / "spec.md").read_text()
    return doc[doc.index("\n## Plugins\n"):doc.index("\n## Include, parameters and templates\n")]


def test_the_docs_example_plugin_works_as_written():
    """The Python blocks of docs/spec.md's "Plugins" section, run as the modules they name, give a
    cell that the section's YAML file validates and compiles with; without them, that file gives
    the documented errors."""
    import re
    import types

    section = _plugins_section()
    cells_code, torch_code = re.findall(r"```python\n(.*?)```", section, re.S)
    model_yaml = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    documented = next(b for b in re.findall(r"```text\n(.*?)```", section, re.S) if "requires[0]" in b)
    with pytest.raises(tnnspec.SpecError) as err:
        tnnspec.loads(model_yaml, file="model.yaml")
    got = [re.sub(r"known: [^;]*;", "known: additive_state, ...;", str(d)) for d in err.value.diagnostics]
    assert got == documented.strip().splitlines()

    package = types.ModuleType("mylab_cells")
    torch_cells = types.ModuleType("mylab_cells.torch_cells")
    exec(compile(torch_code, "mylab_cells/torch_cells.py", "exec", dont_inherit=True), torch_cells.__dict__)
    package.torch_cells = torch_cells
    sys.modules.update({"mylab_cells": package, "mylab_cells.torch_cells": torch_cells})
    try:
        exec(compile(cells_code, "mylab_cells/cells.py", "exec", dont_inherit=True), {"__name__": "mylab_cells.cells"})
        spec = tnnspec.loads(model_yaml.replace("requires: [tnnspec-mylab-cells]\n", ""))
        net = tnnspec.compile(spec)
        out = net(torch.randn(2, 3, 32, 32), steps=3, record=("V1",)).areas["V1"]
        assert out.shape == (3, 2, 16, 32, 32) and torch.isfinite(out).all()
        assert C.origin("cell", "leaky_tanh") == "mylab_cells"
    finally:
        if ("cell", "leaky_tanh") in C.REGISTRY:
            _unregister("cell", "leaky_tanh")
        for name in ("mylab_cells", "mylab_cells.torch_cells"):
            sys.modules.pop(name, None)
