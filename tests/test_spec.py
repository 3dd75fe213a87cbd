"""The file format's tooling: committed schema is current, graphs validate, round trips, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
from ruamel.yaml import YAML

import tnnspec
from tnnspec.spec.schema import json_schema, schema_text

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
GRAPHS = sorted(p for p in (ROOT / "graphs").glob("**/*.yaml") if not p.name.startswith("_"))  # _x: include parts


def test_committed_schema_is_current():
    committed = (ROOT / "schemas" / "tnnspec.schema.json").read_text()
    assert committed == schema_text(), "run `make schema` and commit schemas/tnnspec.schema.json"


def test_schema_is_draft7_and_describes_every_field():
    schema = json_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    for name, d in schema["definitions"].items():
        for field, prop in d.get("properties", {}).items():
            assert prop.get("description") or "$ref" in prop or field == "type", f"{name}.{field}"


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_graph_files_validate_and_match_the_schema(path):
    spec = tnnspec.load(path, strict=True)
    data = YAML(typ="safe", pure=True).load(path.read_text())
    errors = list(jsonschema.Draft7Validator(json_schema()).iter_errors(data))
    assert errors == []
    assert tnnspec.loads(tnnspec.dumps(spec)) == spec


def test_schema_rejects_what_the_loader_rejects():
    bad = {"tnnspec": "1.0", "name": "x", "inputs": {"i": {"shape": [1]}},
           "areas": {"A": {"channels": 2, "chanels": 3}}}
    assert list(jsonschema.Draft7Validator(json_schema()).iter_errors(bad))


def test_json_files_load_like_yaml(tmp_path):
    spec = tnnspec.load(ROOT / "graphs" / "ventral4.yaml")
    path = tmp_path / "v.json"
    path.write_text(json.dumps(spec.dump(), indent=1))
    assert tnnspec.load(path) == spec


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "tnnspec", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_validate_exit_codes_and_json(tmp_path):
    ok = _cli("validate", str(ROOT / "graphs" / "ventral4.yaml"))
    assert ok.returncode == 0 and "ok (4 areas" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text('tnnspec: "1.0"\nname: b\ninputs: {i: {shape: [1]}}\nareas:\n  A: {channels: 0}\n')
    res = _cli("validate", str(bad), "--format", "json")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    report = json.loads(res.stdout)
    assert report[0]["valid"] is False
    assert report[0]["diagnostics"][0]["line"] == 5


def test_cli_schema_matches_committed(tmp_path):
    out = tmp_path / "s.json"
    assert _cli("schema", "-o", str(out)).returncode == 0
    assert out.read_text() == (ROOT / "schemas" / "tnnspec.schema.json").read_text()


def test_cli_summary_lists_areas_and_plan():
    res = _cli("summary", str(ROOT / "graphs" / "ventral4.yaml"), "--steps", "2")
    assert res.returncode == 0
    assert "total parameters: 478,154" in res.stdout and "t=1:" in res.stdout


def test_cli_render_text_and_dot(tmp_path):
    graph = str(ROOT / "graphs" / "ventral4.yaml")
    text = _cli("render", graph, "--format", "text")
    assert text.returncode == 0 and "V4" in text.stdout and "feedback" in text.stdout
    out = tmp_path / "g.dot"
    res = _cli("render", graph, "-o", str(out))
    assert res.returncode == 0 and "digraph" in out.read_text()


def test_schema_modeline_key_is_accepted():
    spec = tnnspec.loads('$schema: ../schemas/tnnspec.schema.json\ntnnspec: "1.0"\nname: m\n'
                         'inputs: {i: {shape: [2]}}\nareas: {A: {channels: 2}}\n'
                         'edges: [{type: feedforward, source: i, target: A}]\n')
    assert spec.name == "m"


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.name)
def test_every_zoo_spec_pickles(path):
    """Specs are plain data: pickle (and so deepcopy, torch.save of a compiled network) round-trips."""
    import pickle

    spec = tnnspec.load(path)
    assert pickle.loads(pickle.dumps(spec)) == spec
