"""docs/spec.md cannot drift silently from the code.

Every registered op and cell, every parameter of each, every field of the file-format models
and every allowed literal value must be documented in its section; every key documented in a
key table must exist; the examples must load (and the error examples give the documented
diagnostics); the default-delay table must match the presets; the CLI synopsis must name every
command and option.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest

import tnnspec
from tnnspec.spec import models as M
from tnnspec.spec.components import CELLS, OPS

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "spec.md").read_text(encoding="utf-8")


# ------------------------------------------------------------------ helpers
def section(title: str, text: str = DOC, level: int = 2) -> str:
    """Text under the heading ``## title`` (exact heading text) up to the next heading of the
    same or a higher level."""
    hashes = "#" * level
    fenced = [m.span() for m in re.finditer(r"^```.*?^```", text, re.M | re.S)]

    def headings(pattern: str):
        return [m for m in re.finditer(pattern, text, re.M)
                if not any(a <= m.start() < b for a, b in fenced)]

    found = headings(rf"^{hashes} {re.escape(title)}\s*$")
    assert found, f"docs/spec.md has no heading '{hashes} {title}'"
    start = found[0].end()
    end = next((m.start() for m in headings(rf"^#{{1,{level}}} ") if m.start() > start), len(text))
    return text[start:end]


def ticked(text: str) -> set[str]:
    """Names written in backticks, with dotted names split too (``pool.kernel`` -> pool, kernel)."""
    out = set()
    for code in re.findall(r"`([^`\n]+)`", text):
        out.add(code)
        out.update(code.split("."))
    return out


def table_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.lstrip().startswith("|")]


def key_tables(text: str) -> list[list[str]]:
    """First-column names of every table whose header starts with ``| key |``."""
    tables, current = [], None
    for line in text.splitlines():
        if not line.lstrip().startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if current is None:
            current = [] if cells[0] == "key" else False
            if current is not False:
                tables.append(current)
            continue
        if current is False or set(cells[0]) <= set("-: "):
            continue
        m = re.fullmatch(r"`([^`]+)`", cells[0])
        assert m, f"key table row does not start with a `key`: {line!r}"
        current.append(m.group(1))
    return tables


def fields(model) -> set[str]:
    return set(model.model_fields)


def literals(annotation) -> set[str]:
    """All string values of the Literal types inside an annotation."""
    out: set[str] = set()
    if typing.get_origin(annotation) is typing.Literal:
        return {a for a in typing.get_args(annotation) if isinstance(a, str)}
    for arg in typing.get_args(annotation):
        out |= literals(arg)
    return out


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", DOC, re.S)


def text_block_after(marker: str) -> str:
    start = DOC.index(marker)
    m = re.compile(r"```text\n(.*?)```", re.S).search(DOC, start)
    assert m, f"no ```text block after {marker!r}"
    return m.group(1)


EDGE_MODELS = (M.Feedforward, M.Lateral, M.Feedback, M.Skip, M.Attention, M.Normalization)
SCHEDULES = (M.Static, M.OnOff, M.Sequence)
PREPROCESSING = {"include", "parameters", "templates"}


# ------------------------------------------------------------------ ops
OPS_SECTION = section("Ops")
OP_ROWS = {m.group(1): row for row in OPS_SECTION.splitlines()
           if (m := re.match(r"\|\s*`([a-z0-9_]+)`\s*\|", row))}


def test_ops_table_lists_exactly_the_registered_ops():
    assert set(OP_ROWS) == set(OPS), (
        f"undocumented ops: {sorted(set(OPS) - set(OP_ROWS))}; "
        f"documented but not registered: {sorted(set(OP_ROWS) - set(OPS))}")


@pytest.mark.parametrize("name", sorted(OPS))
def test_op_row_documents_shorthand_and_every_parameter(name):
    row = OP_ROWS[name]
    cells = [c.strip() for c in row.strip().strip("|").split("|")]
    shorthand = OPS[name].shorthand
    assert cells[1] == (f"`{shorthand}`" if shorthand else "—"), f"{name}: shorthand column {cells[1]!r}"
    documented = ticked(cells[2])
    missing = fields(OPS[name]) - documented
    assert not missing, f"op '{name}': parameters {sorted(missing)} are not in its row of the ops table"
    if not fields(OPS[name]):
        assert cells[2] == "—", f"op '{name}' has no parameters, but its row lists {cells[2]!r}"


# ------------------------------------------------------------------ cells
CELLS_SECTION = section("Cells")


def test_cell_summary_table_lists_exactly_the_registered_cells():
    summary = CELLS_SECTION.split("\n### ")[0]
    rows = {m.group(1): r for r in summary.splitlines() if (m := re.match(r"\|\s*`([a-z0-9_]+)`\s*\|", r))}
    assert set(rows) == set(CELLS)
    for name, row in rows.items():
        gates = row.strip().strip("|").split("|")[-1].strip()
        assert gates == ("yes" if CELLS[name].gates else "no"), f"cell '{name}': gates column {gates!r}"


@pytest.mark.parametrize("doc", ["docs/spec.md", "docs/cells.md"])
def test_generated_blocks_are_current(doc):
    """The cells and ops reference is generated from the registry (docstrings and fields); a
    changed or new cell or op needs `make docs`, never a hand edit."""
    from tnnspec.spec import docgen

    text = (ROOT / doc).read_text(encoding="utf-8")
    assert docgen.OPENING.findall(text), f"{doc} has no generated block"
    assert docgen.update(text, origin="tnnspec") == text, f"{doc} is stale: run `make docs`"


def test_every_cell_has_a_subsection():
    headings = set(re.findall(r"^### `([a-z0-9_]+)`\s*$", CELLS_SECTION, re.M))
    assert headings == set(CELLS), (f"cells without a subsection: {sorted(set(CELLS) - headings)}; "
                                    f"subsections of unknown cells: {sorted(headings - set(CELLS))}")


@pytest.mark.parametrize("name", sorted(CELLS))
def test_cell_subsection_documents_exactly_its_keys(name):
    text = section(f"`{name}`", CELLS_SECTION, level=3)
    keys = fields(CELLS[name]) - {"type"}
    tables = key_tables(text)
    documented = set(tables[0]) if tables else set()
    assert documented == keys, (f"cell '{name}': key table has {sorted(documented)}, "
                                f"the model has {sorted(keys)}")


# ------------------------------------------------------------------ the file-format models
MODEL_SECTIONS = [
    (M.Spec, "Top-level keys"),
    (M.Time, "`time`"),
    (M.Input, "`inputs`"),
    (M.OnOff, "`inputs`"),
    (M.Area, "`areas`"),
    (M.EdgeBase, "`edges`"),
    (M.Attention, "`edges`"),
    (M.Normalization, "`edges`"),
    (M.NormPool, "`edges`"),
    (M.Readout, "`readouts`"),
]


@pytest.mark.parametrize("model,title", MODEL_SECTIONS, ids=[m.__name__ for m, _ in MODEL_SECTIONS])
def test_every_model_field_is_documented_in_its_section(model, title):
    missing = fields(model) - ticked(section(title))
    assert not missing, f"{model.__name__} fields {sorted(missing)} are not documented under '## {title}'"


@pytest.mark.parametrize("model,title", MODEL_SECTIONS, ids=[m.__name__ for m, _ in MODEL_SECTIONS])
def test_every_literal_value_is_documented_in_its_section(model, title):
    documented = ticked(section(title))
    for name, info in model.model_fields.items():
        missing = literals(info.annotation) - documented
        assert not missing, f"{model.__name__}.{name}: values {sorted(missing)} are not documented under '{title}'"


def test_schedule_types_and_edge_types_are_documented():
    assert {m.model_fields["type"].default for m in SCHEDULES} <= ticked(section("Schedules", level=3))
    edge_types = {typing.get_args(m.model_fields["type"].annotation)[0] for m in EDGE_MODELS}
    assert edge_types == set(typing.get_args(M.EdgeType))
    assert edge_types <= ticked(section("Edge types", section("`edges`"), level=3))


def test_documented_keys_exist():
    """Every key in a key table of the format sections is a field of some model (no stale keys)."""
    known = set().union(*(fields(m) for m in (M.Spec, M.Time, M.Input, M.Area, M.EdgeBase, M.Attention,
                                              M.Normalization, M.Readout, *SCHEDULES)))
    known |= {f"pool.{f}" for f in fields(M.NormPool)} | PREPROCESSING | {"use"}
    for title in ("Top-level keys", "`time`", "`inputs`", "`areas`", "`edges`", "`readouts`"):
        for table in key_tables(section(title)):
            stale = set(table) - known
            assert not stale, f"'{title}' documents keys that no model has: {sorted(stale)}"


def test_top_level_table_is_complete():
    (table,) = key_tables(section("Top-level keys"))
    assert set(table) == fields(M.Spec) | PREPROCESSING


def test_default_delay_table_matches_the_presets():
    from tnnspec.graph.timing import PRESETS

    rows = table_rows(section("`time`"))
    header = next(r for r in rows if r[0] == "value")
    types = [t.strip("`") for t in header[1:-1]]
    assert set(types) == set(typing.get_args(M.EdgeType))
    assert set(PRESETS) == set(typing.get_args(M.DelayPreset))
    for preset, delays in PRESETS.items():
        row = next(r for r in rows if r[0] == f"`{preset}`")
        assert {t: int(v) for t, v in zip(types, row[1:-1])} == delays, f"default_delay row '{preset}'"
        assert row[-1] == "0", "edges from inputs take 0 steps under every preset"


# ------------------------------------------------------------------ examples
def test_complete_example_loads_and_its_parameter_names_are_listed():
    from tnnspec.compile.network import Network

    example = yaml_blocks()[0]
    assert example.startswith("# yaml-language-server: $schema=../schemas/tnnspec.schema.json\n")
    spec = tnnspec.loads(example, file="two_area.yaml", strict=True)
    names = text_block_after("All the parameters of the complete example").split()
    assert names == list(Network(spec).state_dict())


def test_error_example_gives_the_documented_diagnostics():
    block = next(b for b in yaml_blocks() if "name: typos" in b)
    with pytest.raises(tnnspec.SpecError) as err:
        tnnspec.loads(block, file="typos.yaml")
    want = text_block_after("name: typos").strip().splitlines()
    assert [str(d) for d in err.value.diagnostics] == want


def test_include_example_loads_and_errors_point_into_the_included_file(tmp_path, monkeypatch):
    files = {}
    for block in yaml_blocks():
        m = re.match(r"# ([\w-]+\.yaml)\n", block)
        if m:
            files[m.group(1)] = block
    assert {"common.yaml", "main.yaml"} <= set(files)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    spec = tnnspec.load("main.yaml", strict=True)
    assert spec.areas["V1"].channels == 32 and spec.areas["V2"].cell.type == "lstm"
    assert spec.areas["V1"].cell.type == "gru" and spec.edges[2].transform[0].op.kernel == 3

    bad = files["main.yaml"].replace("level: 2, channels: 64", "level: 2, channels: 20")
    assert bad != files["main.yaml"]
    (tmp_path / "main.yaml").write_text(bad)
    _, diags = tnnspec.check_file("main.yaml")
    want = text_block_after("Where errors point").strip().splitlines()
    assert [str(d) for d in diags] == want


def test_other_snippets_are_valid_yaml_of_known_keys():
    """The remaining snippets parse, and their top-level keys are format keys."""
    from tnnspec.spec.source import parse_text

    allowed = fields(M.Spec) | PREPROCESSING
    for block in yaml_blocks():
        if not [ln for ln in block.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]:
            continue  # a comment only (the editor modeline)
        tree = parse_text(block)
        assert isinstance(tree, dict) and set(tree) <= allowed, block


def test_modeline_matches_the_shipped_example():
    modeline = "# yaml-language-server: $schema=../schemas/tnnspec.schema.json"
    assert modeline in section("JSON Schema and editors")
    assert (ROOT / "graphs" / "ventral4.yaml").read_text().splitlines()[0] == modeline


# ------------------------------------------------------------------ command line
def test_cli_synopsis_names_every_command_and_option():
    import argparse

    from tnnspec.cli.main import build_parser

    text = section("Command line")
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, parser in sub.choices.items():
        line = next((ln for ln in text.splitlines()
                     if ln.startswith(f"tnnspec {command} ") or ln == f"tnnspec {command}"), None)
        assert line, f"the synopsis has no line for 'tnnspec {command}'"
        for action in parser._actions:
            if action.option_strings and "--help" not in action.option_strings:
                assert any(re.search(rf"{re.escape(opt)}\b", line) for opt in action.option_strings), \
                    f"tnnspec {command}: option {action.option_strings} is not in its synopsis line"
            if action.choices and action.option_strings:
                for choice in action.choices:
                    assert choice in text or choice == action.default, \
                        f"tnnspec {command} {action.option_strings[0]} {choice} is not documented"
        assert f"`{command}`" in text, f"the commands table has no row for '{command}'"
