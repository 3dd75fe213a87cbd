"""The file format survives every YAML tool (issue 19, part 2).

* every shipped graph reads the same with PyYAML (YAML 1.1) as with tnnspec's loader (YAML 1.2),
  validates against the JSON Schema both ways, and survives a PyYAML load/dump;
* keys and plain values that YAML 1.1 reads as booleans, null or numbers are located errors;
* a format 1.0 file loads (migrated in memory, with warnings) and equals its upgraded version;
* ``tnnspec upgrade`` changes only the migrated spans, is idempotent, has ``--check``, writes
  atomically; the migration registry chains by version.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

import tnnspec
from tnnspec.cli.main import main as cli_main
from tnnspec.spec import migrate as M
from tnnspec.spec.diagnostics import SpecError
from tnnspec.spec.models import FORMAT_VERSIONS
from tnnspec.spec.source import parse_text
from tnnspec.spec.yaml11 import read_11

yaml = pytest.importorskip("yaml")  # PyYAML: the dev extra
jsonschema = pytest.importorskip("jsonschema")

ROOT = Path(__file__).resolve().parent.parent
GRAPHS = sorted({p.resolve() for p in [*(ROOT / "graphs").glob("*.yaml"),
                                       *(ROOT / "tnnspec" / "zoo" / "graphs").glob("**/*.yaml"),
                                       *(ROOT / "tnnspec" / "neural" / "graphs").glob("*.yaml"),
                                       *(ROOT / "tests" / "graphs_for_render").glob("*.yaml")]})
SCHEMA = json.loads((ROOT / "schemas" / "tnnspec.schema.json").read_text(encoding="utf-8"))


def plain(x):
    """A located tree as plain dicts and lists."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [plain(v) for v in x]
    return x


def same_tree(a, b, path="") -> list[str]:
    """Differences between two data trees, types included (True is not 1, no bool keys)."""
    if type(a) is not type(b):
        return [f"{path or '(top)'}: {a!r} ({type(a).__name__}) vs {b!r} ({type(b).__name__})"]
    if isinstance(a, dict):
        out = [f"{path}: key {k!r} only on one side" for k in set(a) ^ set(b)]
        out += [f"{path}: key {k!r} is not a string" for k in a if not isinstance(k, str)]
        return out + [d for k in a if k in b for d in same_tree(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list):
        if len(a) != len(b):
            return [f"{path}: lengths {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in same_tree(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def _id(p: Path) -> str:
    return str(p.relative_to(ROOT))


# ------------------------------------------------------------------ shipped graphs
@pytest.mark.parametrize("path", GRAPHS, ids=_id)
def test_graph_reads_the_same_with_pyyaml(path):
    text = path.read_text(encoding="utf-8")
    ours = plain(parse_text(text, str(path)))
    theirs = yaml.safe_load(text)
    assert not same_tree(theirs, ours), same_tree(theirs, ours)
    assert ours["tnnspec"] == FORMAT_VERSIONS[-1], "run `tnnspec upgrade` on the shipped graphs"


@pytest.mark.parametrize("path", GRAPHS, ids=_id)
def test_graph_validates_against_the_schema_both_ways(path):
    text = path.read_text(encoding="utf-8")
    validator = jsonschema.Draft7Validator(SCHEMA)
    for name, tree in (("PyYAML", yaml.safe_load(text)), ("tnnspec", plain(parse_text(text, str(path))))):
        if "name" not in tree:  # an included fragment (e.g. _convrnn_common.yaml) is not a whole file
            tree = {"name": "fragment", **tree}
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(tree)]
        assert not errors, f"{name}'s reading fails the schema: {errors[:5]}"


@pytest.mark.parametrize("path", [p for p in GRAPHS if not p.name.startswith("_")], ids=_id)
def test_graph_survives_a_pyyaml_load_and_dump(path):
    """A script that loads a graph with PyYAML and dumps it back does not change it; and
    tnnspec.dumps writes what PyYAML reads the same."""
    spec = tnnspec.load(path)
    assert spec.tnnspec == FORMAT_VERSIONS[-1] and not [w for w in spec.warnings if "upgrade" in w.message]
    text = yaml.safe_dump(yaml.safe_load(path.read_text(encoding="utf-8")), sort_keys=False)
    assert tnnspec.loads(text, file=str(path)) == spec
    dumped = tnnspec.dumps(spec)
    assert not same_tree(yaml.safe_load(dumped), plain(parse_text(dumped)))
    assert tnnspec.loads(dumped, file=str(path)) == spec


def test_dumps_quotes_and_writes_floats_for_yaml_1_1():
    spec = tnnspec.loads(SMALL.format(extra="description: \"yes\"\n", area="V1", combine="sum")
                         .replace("inputs:", "references: [\"on\", \"1:20\", \"1e3\", \"y\"]\ninputs:"))
    data = spec.dump()
    data["areas"]["V1"]["ops"] = [{"log_softmax": {"clip_min": 1e-10}}]
    text = tnnspec.dumps(tnnspec.Spec.model_validate(data))
    assert "1.0e-10" in text
    assert not same_tree(yaml.safe_load(text), plain(parse_text(text)))


# ------------------------------------------------------------------ rejected keys and values
SMALL = """tnnspec: "1.1"
name: small
{extra}inputs:
  image: {{shape: [3, 8, 8]}}
areas:
  {area}: {{channels: 4, level: 1, combine: {combine}}}
edges:
  - {{type: feedforward, source: image, target: V1, transform: [conv]}}
"""

#: every key YAML 1.1 or 1.2 reads as something other than a string
BAD_KEYS = ("y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF "
            "null Null NULL ~ 1 -1 1e3 1E3 1.0e3 1.5 0x10 010 0o10 0b11 1_000 .inf -.inf .nan 1:20 "
            "2001-12-14").split()
#: plain values that YAML 1.1 and 1.2 read differently
BAD_VALUES = ("y Y yes Yes YES n N no No NO on On ON off Off OFF "
              "1e3 1E3 1.0e3 1e-3 1.0e3 010 0o10 1:20 -1:20 1:20.5").split()
#: plain values both read the same
GOOD_VALUES = "true false True null ~ 0x10 0b11 1_000 .inf -.inf 1.0e-4 1.0e+3 1.5 10 +1 sum V1-x".split()


@pytest.mark.parametrize("quote", ["", '"'], ids=["plain", "quoted"])
@pytest.mark.parametrize("word", BAD_KEYS)
def test_ambiguous_key_is_a_located_error(word, quote):
    text = SMALL.format(extra="", area=f"{quote}{word}{quote}", combine="sum")
    with pytest.raises(SpecError) as exc:
        tnnspec.loads(text, file="k.yaml")
    mine = [d for d in exc.value.errors if "not a string" in d.message]
    assert mine and (mine[0].line, mine[0].column) == (6, 3), exc.value
    assert f"key '{word}'" in mine[0].message
    assert "rename it" in mine[0].message and "quoting it is not enough" in mine[0].message


@pytest.mark.parametrize("word", ["on", "no", "off", "y"])
def test_user_names_that_are_booleans_are_rejected_everywhere(word):
    """Parameter and readout names are keys too."""
    text = SMALL.format(extra=f"parameters: {{{word}: 3}}\n", area="V1", combine="sum")
    with pytest.raises(SpecError) as exc:
        tnnspec.loads(text, file="p.yaml")
    assert [(d.line, d.column) for d in exc.value.errors] == [(3, 14)]


def test_on_off_keys_in_a_1_1_file_point_to_start_stop():
    text = SMALL.format(extra="", area="V1", combine="sum").replace(
        "{shape: [3, 8, 8]}", "{shape: [3, 8, 8], schedule: {type: on_off, on: 0, off: 2}}")
    with pytest.raises(SpecError) as exc:
        tnnspec.loads(text, file="s.yaml")
    line = text.splitlines()[3]
    got = [(d.line, d.column) for d in exc.value.errors]
    assert got == [(4, line.index(" on:") + 2), (4, line.index(" off:") + 2)], exc.value
    assert all("'start' and 'stop' since format 1.1" in d.message for d in exc.value.errors)


@pytest.mark.parametrize("word", BAD_VALUES)
def test_ambiguous_value_is_a_located_error(word):
    text = SMALL.format(extra="", area="V1", combine=word)
    with pytest.raises(SpecError) as exc:
        tnnspec.loads(text, file="v.yaml")
    d = exc.value.errors[0]
    assert (d.line, d.column) == (6, text.splitlines()[5].index(f"combine: {word}") + 10) and "YAML 1.1" in d.message and f"'{word}'" in d.message
    assert "write" in d.message or "quote" in d.message


@pytest.mark.parametrize("word", BAD_VALUES)
def test_quoting_an_ambiguous_value_makes_it_a_string_everywhere(word):
    text = f'k: "{word}"\n'
    assert parse_text(text) == yaml.safe_load(text) == {"k": word}


@pytest.mark.parametrize("word", GOOD_VALUES)
def test_unambiguous_values_are_accepted_and_read_the_same(word):
    text = f"k: {word}\n"
    assert not same_tree(yaml.safe_load(text), plain(parse_text(text)))


def test_json_values_are_json_but_keys_are_checked(tmp_path):
    spec = {"tnnspec": "1.1", "name": "j", "inputs": {"image": {"shape": [3, 8, 8]}},
            "areas": {"V1": {"channels": 4, "level": 1,
                             "ops": [{"log_softmax": {"clip_min": 1e-10}}]}},
            "edges": [{"type": "feedforward", "source": "image", "target": "V1", "transform": ["conv"]}]}
    path = tmp_path / "j.json"
    path.write_text(json.dumps(spec))
    assert "1e-10" in path.read_text()
    tnnspec.load(path)
    spec["areas"]["on"] = spec["areas"].pop("V1")
    path.write_text(json.dumps(spec))
    with pytest.raises(SpecError, match="key 'on'"):
        tnnspec.load(path)


@pytest.mark.parametrize("word", sorted(set(BAD_KEYS + BAD_VALUES + GOOD_VALUES) - {"y", "Y", "n", "N"}))
def test_the_yaml_1_1_reading_is_pyyaml_s(word):
    """read_11 is PyYAML's resolution (y/n aside: PyYAML keeps them strings, other YAML 1.1
    tools, following the 1.1 type repository, read them as booleans)."""
    import datetime

    theirs = yaml.safe_load(f"k: {word}\n")["k"]
    mine = read_11(word)
    if isinstance(theirs, datetime.date):
        assert type(mine).__name__ == "Timestamp"
    else:
        assert not same_tree(theirs, mine), (theirs, mine)


def test_the_format_has_no_ambiguous_keys_or_enum_values():
    """Every key and enum value the schema (so the models) knows is a string in YAML 1.1 and 1.2."""
    words: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            words.update(node.get("properties", {}))
            words.update(v for v in node.get("enum", []) if isinstance(v, str))
            if isinstance(node.get("const"), str):
                words.add(node["const"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    from tnnspec.spec.components import CELLS, OPS
    from tnnspec.spec.schema import json_schema
    from tnnspec.spec.source import plain_reading
    from tnnspec.spec.yaml11 import key_problem

    walk(json_schema())
    words |= set(CELLS) | set(OPS)
    assert {"on_off", "start", "stop", "feedforward", "gru", "sum"} <= words
    assert not sorted(w for w in words if key_problem(w, plain_reading(w)))


# ------------------------------------------------------------------ format 1.0 and tnnspec upgrade
FIXTURE_10 = """\
# A format 1.0 file with comments and an odd layout.
tnnspec: '1.0'     # the version, single-quoted

name: layout   # trailing comment
inputs:
  image:
    shape: [3, 8, 8]
    schedule:
      type: on_off
      on: 1      # shown from step 1
      # a comment between keys
      off:   4
      blank: 0.5
  cue: {shape: [3,   8, 8],   schedule: { type: on_off, 'on': 0, "off": 2 }}   # flow
areas:
  V1: {channels: 4, level: 1}
edges:
  - {type: feedforward, source: image, target: V1, transform: [conv]}
  - {type: feedforward, source: cue,   target: V1, transform: [conv]}
"""

EXPECTED_11 = (FIXTURE_10
               .replace("tnnspec: '1.0'     #", "tnnspec: '1.1'     #")
               .replace("      on: 1      #", "      start: 1      #")
               .replace("      off:   4\n", "      stop:   4\n")
               .replace("""'on': 0, "off": 2 }""", """'start': 0, "stop": 2 }"""))


def test_expected_fixture_differs_only_in_the_migrated_lines():
    old, new = FIXTURE_10.splitlines(), EXPECTED_11.splitlines()
    assert len(old) == len(new)
    assert [i + 1 for i, (a, b) in enumerate(zip(old, new)) if a != b] == [2, 10, 12, 14]


def test_upgrade_text_keeps_everything_but_the_changed_spans():
    assert M.upgrade_text(FIXTURE_10) == EXPECTED_11
    assert M.upgrade_text(EXPECTED_11) == EXPECTED_11  # idempotent
    crlf = "\ufeff" + FIXTURE_10.replace("\n", "\r\n")
    assert M.upgrade_text(crlf) == "\ufeff" + EXPECTED_11.replace("\n", "\r\n")


def test_a_1_0_file_loads_with_warnings_and_equals_its_upgrade():
    old = tnnspec.loads(FIXTURE_10, file="layout.yaml")
    new = tnnspec.loads(EXPECTED_11, file="layout.yaml")
    assert old == new and old.tnnspec == new.tnnspec == "1.1"
    assert new.warnings == []
    got = [(w.line, w.column) for w in old.warnings]
    flow = FIXTURE_10.splitlines()[13]
    assert got == [(10, 7), (12, 7), (14, flow.index("'on'") + 1), (14, flow.index('"off"') + 1)], old.warnings
    assert all(w.severity == "warning" and "tnnspec upgrade layout.yaml" in w.message
               and "format 1.0" in w.message for w in old.warnings)
    assert "'on' -> 'start'" in old.warnings[0].message
    sched = old.inputs["image"].schedule
    assert (sched.type, sched.start, sched.stop, sched.blank) == ("on_off", 1, 4, 0.5)
    with pytest.raises(SpecError):
        tnnspec.loads(FIXTURE_10, file="layout.yaml", strict=True)


def test_a_1_0_file_without_on_off_loads_silently():
    spec = tnnspec.loads(SMALL.format(extra="", area="V1", combine="sum").replace('"1.1"', '"1.0"'))
    assert spec.warnings == [] and spec.tnnspec == "1.1"


def test_included_files_are_migrated_in_their_own_or_the_including_version(tmp_path):
    (tmp_path / "common.yaml").write_text(
        "inputs:\n  image: {shape: [3, 8, 8], schedule: {type: on_off, on: 0, off: 2}}\n")
    main = "tnnspec: \"{v}\"\nname: m\ninclude: [common.yaml]\nareas:\n  V1: {{channels: 4, level: 1}}\n" \
           "edges:\n  - {{type: feedforward, source: image, target: V1, transform: [conv]}}\n"
    (tmp_path / "main.yaml").write_text(main.format(v="1.0"))
    spec = tnnspec.load(tmp_path / "main.yaml")
    assert spec.inputs["image"].schedule.stop == 2
    assert [(Path(w.file).name, w.line) for w in spec.warnings] == [("common.yaml", 2)] * 2
    (tmp_path / "main.yaml").write_text(main.format(v="1.1"))  # the fragment is read as 1.1: on/off are errors
    with pytest.raises(SpecError, match="common.yaml:2:.*key 'on'"):
        tnnspec.load(tmp_path / "main.yaml")
    (tmp_path / "common.yaml").write_text(
        "tnnspec: \"1.0\"\ninputs:\n  image: {shape: [3, 8, 8], schedule: {type: on_off, on: 0, off: 2}}\n")
    spec = tnnspec.load(tmp_path / "main.yaml")  # its own version wins
    assert [(Path(w.file).name, w.line) for w in spec.warnings] == [("common.yaml", 3)] * 2


def test_cli_upgrade_check_and_idempotence(tmp_path, capsys):
    path = tmp_path / "layout.yaml"
    path.write_text(FIXTURE_10)
    assert cli_main(["upgrade", "--check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "needs upgrading, format 1.0 -> 1.1" in out and f"{path}:10:7: inputs.image.schedule: 'on' -> 'start'" in out
    assert path.read_text() == FIXTURE_10  # --check writes nothing
    assert cli_main(["upgrade", str(path)]) == 0
    assert "upgraded, format 1.0 -> 1.1" in capsys.readouterr().out
    assert path.read_bytes() == EXPECTED_11.encode()
    assert cli_main(["upgrade", str(path)]) == 0
    assert "already format 1.1" in capsys.readouterr().out
    assert path.read_bytes() == EXPECTED_11.encode()
    assert cli_main(["upgrade", "--check", str(path)]) == 0


def test_cli_upgrade_names_included_files_and_refuses_unknown_versions(tmp_path, capsys):
    (tmp_path / "common.yaml").write_text("tnnspec: \"1.0\"\ninputs:\n  image: {shape: [3, 8, 8]}\n")
    (tmp_path / "main.yaml").write_text("tnnspec: \"1.0\"\nname: m\ninclude: common.yaml\n")
    (tmp_path / "fragment.yaml").write_text("inputs:\n  image: {shape: [3, 8, 8]}\n")
    (tmp_path / "future.yaml").write_text("tnnspec: \"9.0\"\nname: f\n")
    assert cli_main(["upgrade", str(tmp_path / "main.yaml")]) == 0
    assert "note: includes" in capsys.readouterr().out
    assert cli_main(["upgrade", str(tmp_path / "main.yaml"), str(tmp_path / "common.yaml")]) == 0
    assert "note" not in capsys.readouterr().out
    assert (tmp_path / "common.yaml").read_text().startswith('tnnspec: "1.1"\n')
    assert cli_main(["upgrade", str(tmp_path / "fragment.yaml")]) == 1
    assert "no 'tnnspec' format version" in capsys.readouterr().err
    assert cli_main(["upgrade", str(tmp_path / "future.yaml")]) == 1
    assert "future.yaml:1:10: error: tnnspec: format version '9.0' is not known" in capsys.readouterr().err


def test_cli_upgrade_is_atomic(tmp_path, capsys, monkeypatch):
    path = tmp_path / "layout.yaml"
    path.write_text(FIXTURE_10)

    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(M.os, "replace", failing_replace)
    assert cli_main(["upgrade", str(path)]) == 1
    assert "the file is unchanged" in capsys.readouterr().err
    assert path.read_text() == FIXTURE_10
    assert os.listdir(tmp_path) == ["layout.yaml"]  # no temporary file left


def test_migrations_chain_in_version_order(monkeypatch):
    calls = []
    first = M.MIGRATIONS["1.0"]

    def recorded_first(doc):
        calls.append("1.0 -> 1.1")
        first[1](doc)

    def rename_start(doc):
        calls.append("1.1 -> 1.2")
        for path, mapping in doc.walk():
            if doc.scalar(doc.get(mapping, "type")) == "on_off":
                doc.rename_key(mapping, "start", "begin", path)

    monkeypatch.setitem(M.MIGRATIONS, "1.0", ("1.1", recorded_first))
    monkeypatch.setitem(M.MIGRATIONS, "1.1", ("1.2", rename_start))
    assert M.latest_version() == "1.2" and M.known_versions() == ["1.0", "1.1", "1.2"]
    out = M.upgrade_text(FIXTURE_10)
    assert calls == ["1.0 -> 1.1", "1.1 -> 1.2"]
    assert out == (EXPECTED_11.replace("tnnspec: '1.1'", "tnnspec: '1.2'")
                   .replace("      start: 1", "      begin: 1").replace("'start': 0", "'begin': 0"))
    calls.clear()
    assert M.upgrade_text(EXPECTED_11).startswith("# A format") and calls == ["1.1 -> 1.2"]


def test_register_migration_refuses_a_second_migration_from_a_version():
    with pytest.raises(ValueError, match="already registered"):
        M.register_migration("1.0", "1.1")(lambda doc: None)


def test_the_registry_reaches_every_format_version():
    assert M.known_versions() == list(FORMAT_VERSIONS)
    assert M.latest_version() == FORMAT_VERSIONS[-1]


def test_upgrade_a_json_file():
    text = ('{\n  "tnnspec": "1.0",\n  "name": "j",\n'
            '  "inputs": {"image": {"shape": [3, 8, 8], "schedule": {"type": "on_off", "on": 0, "off": 2}}}\n}\n')
    new = M.upgrade_text(text, "j.json")
    assert new == text.replace('"1.0"', '"1.1"').replace('"on"', '"start"').replace('"off"', '"stop"')
    json.loads(new)


def test_dumps_writes_the_newest_format():
    spec = tnnspec.loads(SMALL.format(extra="", area="V1", combine="sum").replace('"1.1"', '"1.0"'))
    old = tnnspec.Spec.model_validate(dict(spec.dump(), tnnspec="1.0"))
    assert yaml.safe_load(tnnspec.dumps(old))["tnnspec"] == FORMAT_VERSIONS[-1]
