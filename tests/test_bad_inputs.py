"""The bad-input corpus: every kind of mistake a user can make in a spec file, one per file.

``tests/bad_inputs/`` holds small files with exactly one mistake each (YAML files say what in
their header comment; ``parts/`` holds files they include). ``EXPECTED`` lists, per file,
*every* diagnostic ``check_file`` must return, as ``str(diagnostic)`` with the file path
written relative to ``tests/bad_inputs/`` (the test prepends ``tests/bad_inputs/``; files are
checked by their path relative to the repository root). An entry may be a compiled regex
where the exact wording is not the point.

Files in ``KNOWN_BAD`` show a problem in the package (a crash, a wrong location, a misleading
or missing diagnostic). Their entries say what *should* come out; they are marked
``xfail(strict=True)`` so that a fix is noticed (the test then passes unexpectedly and fails:
drop the file from ``KNOWN_BAD`` and write the exact strings).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tnnspec
from tnnspec.cli.main import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "bad_inputs"
PREFIX = "tests/bad_inputs/"  # how check_file names a corpus file given its repo-relative path

CELL_TYPES = ("additive_state, cornet_s_block, divisive_norm, gru, identity, intersection_rnn, leaky, lstm, "
              "reciprocal_gated, reciprocal_gated_convrnn, resnet_unit, simple_rnn, time_decay, ugrnn")
EDGE_TYPES = "attention, feedback, feedforward, lateral, normalization, skip"
OP_NAMES = ("conv, conv_transpose, dropout, elu, flatten, gelu, identity, leaky_relu, linear, log_softmax, lrn, "
            "norm, pool, power, relu, relu6, resample, scale, sigmoid, softmax, softplus, tanh")
NAME_RULE = "string should match pattern '^[A-Za-z0-9][A-Za-z0-9-]*(?:_[A-Za-z0-9-]+)*_?$'"
PLAIN_DATA = ("is not allowed: tnnspec files are plain data (mappings, lists, strings, numbers, booleans, null); "
              "nothing is imported or evaluated")
UNREACHABLE = "unreachable — no path of feedforward, lateral, feedback or skip edges leads to it from any input"
DELAY0 = "within one step it has no first area; give at least one of these edges a delay >= 1"
TOP_LEVEL = "top level must be a mapping with keys tnnspec, name, inputs, areas, edges, ...; got"


def rx(pattern: str) -> re.Pattern:
    """An expected diagnostic given as a regex over ``str(diagnostic)`` (path relative to the corpus)."""
    return re.compile(pattern)


EXPECTED: dict[str, list[str | re.Pattern]] = {
    # ------------------------------------------------------------------ YAML / file level
    "yaml_syntax_error.yaml": ["yaml_syntax_error.yaml:7:6: error: YAML syntax error: expected ',' or ']', but got ':'"],
    "tab_indentation.yaml": ["tab_indentation.yaml:6:1: error: tab character: YAML indents with spaces, never tabs"],
    "empty.yaml": ["empty.yaml:1:1: error: file is empty: a tnnspec file is a mapping that starts with 'tnnspec: \"1.1\"'"],
    "top_level_list.yaml": [f"top_level_list.yaml:1:1: error: {TOP_LEVEL} a list"],
    "top_level_scalar.yaml": [f"top_level_scalar.yaml:1:1: error: {TOP_LEVEL} a str value"],
    "python_tag.yaml": [f"python_tag.yaml:3:7: error: YAML tag '!!python/object/apply:os.system' {PLAIN_DATA}"],
    "custom_tag.yaml": [f"custom_tag.yaml:10:15: error: YAML tag '!wide' {PLAIN_DATA}"],
    "duplicate_area.yaml": ["duplicate_area.yaml:14:3: error: duplicate key 'V1' (first defined at line 8); "
                            "each key may appear once"],
    "duplicate_edge_key.yaml": ["duplicate_edge_key.yaml:22:5: error: duplicate key 'target' (first defined at "
                                "line 21); each key may appear once"],
    "multiple_documents.yaml": ["multiple_documents.yaml:27:1: error: YAML syntax error: but found another document"],
    'int_tag_bad_value.yaml': [
        "int_tag_bad_value.yaml:10:15: error: '8x' is not a valid int (tagged !!int)"],
    'float_tag_bad_value.yaml': [
        "float_tag_bad_value.yaml:5:10: error: 'ten' is not a valid float (tagged !!float)"],
    'deeply_nested.yaml': [
        'deeply_nested.yaml:4:78: error: nesting deeper than 64 levels; a tnnspec file is never nested this deeply'],
    # ------------------------------------------------------------------ version
    "unsupported_version.yaml": ["unsupported_version.yaml:2:10: error: tnnspec: format version '2.0' is not "
                                 "supported; supported: 1.0, 1.1"],
    "missing_version.yaml": ["missing_version.yaml:2:1: error: missing 'tnnspec' format version at the top, "
                             "e.g. tnnspec: \"1.1\""],
    # ------------------------------------------------------------------ structure: keys, types, ranges
    "unknown_top_level_key.yaml": ["unknown_top_level_key.yaml:23:1: error: (top level): unknown key 'readout' "
                                   "(did you mean 'readouts'?)"],
    "unknown_area_key.yaml": ["unknown_area_key.yaml:12:5: error: areas.V2: unknown key 'levle' (did you mean 'level'?)"],
    "unknown_edge_key.yaml": ["unknown_edge_key.yaml:22:5: error: edges[1]: unknown key 'dleay' (did you mean 'delay'?)"],
    "missing_channels.yaml": ["missing_channels.yaml:9:5: error: areas.V1: missing required key 'channels'"],
    "missing_inputs.yaml": ["missing_inputs.yaml:2:1: error: (top level): missing required key 'inputs'"],
    "edges_not_a_list.yaml": ["edges_not_a_list.yaml:15:3: error: edges: input should be a valid list (got a mapping)"],
    "wrong_type_channels.yaml": ["wrong_type_channels.yaml:10:15: error: areas.V1.channels: input should be a valid "
                                 "integer, unable to parse string as an integer (got 'many')"],
    'channels_bool.yaml': [
        'channels_bool.yaml:10:15: error: areas.V1.channels: expected an integer, got true'],
    "channels_zero.yaml": ["channels_zero.yaml:10:15: error: areas.V1.channels: input should be greater than 0 (got 0)"],
    "negative_delay.yaml": ["negative_delay.yaml:22:12: error: edges[1].delay: input should be greater than or "
                            "equal to 0 (got -1)"],
    "dt_zero.yaml": ["dt_zero.yaml:5:10: error: time.dt_ms: input should be greater than 0 (got 0)"],
    "bad_default_delay.yaml": ["bad_default_delay.yaml:5:18: error: time.default_delay: invalid value 'biologic': "
                               "expected 'biological' or 'sweep', got 'biologic' (did you mean 'biological'?); or "
                               "input should be a valid dictionary; or input should be a valid integer, unable to "
                               "parse string as an integer"],
    "unknown_edge_type.yaml": [f"unknown_edge_type.yaml:20:11: error: edges[1]: unknown edge type 'feedfoward' "
                               f"(did you mean 'feedforward'?); known: {EDGE_TYPES}"],
    "missing_edge_type.yaml": [f"missing_edge_type.yaml:19:5: error: edges[1]: missing 'type' (the edge type: one "
                               f"of {EDGE_TYPES})"],
    "unknown_cell_type.yaml": [f"unknown_cell_type.yaml:13:18: error: areas.V2.cell: unknown cell type 'gruu' "
                               f"(did you mean 'gru'?); known: {CELL_TYPES}"],
    "unknown_op.yaml": [f"unknown_op.yaml:18:17: error: edges[0].transform[0]: unknown op 'convv' (did you mean "
                        f"'conv'?); known ops: {OP_NAMES}"],
    "malformed_op.yaml": ["malformed_op.yaml:18:17: error: edges[0].transform[0]: an op is written as a name (relu) "
                          "or a one-key mapping ({conv: {kernel: 3}})"],
    "unknown_op_param.yaml": ["unknown_op_param.yaml:18:25: error: edges[0].transform[0].conv: unknown key 'kernal' "
                              "(did you mean 'kernel'?)"],
    "bad_norm_type.yaml": ["bad_norm_type.yaml:13:25: error: areas.V2.ops[0].norm.type: expected 'batch', 'group', "
                           "'instance' or 'layer', got 'batchnorm' (did you mean 'batch'?)"],
    "delay_and_delay_ms.yaml": ["delay_and_delay_ms.yaml:19:5: error: edges[1]: give either 'delay' (steps) or "
                                "'delay_ms', not both"],
    "on_off_order.yaml": ["on_off_order.yaml:7:15: error: inputs.image.schedule: 'stop' (2) must be after 'start' (3)"],
    "norm_pool_even.yaml": ["norm_pool_even.yaml:27:11: error: edges[2].pool: pool kernel must be odd, got 2"],
    'leaky_tau_below_dt.yaml': [
        'leaky_tau_below_dt.yaml:13:11: error: areas.V2.cell: leaky cell: dt_ms (10.0) must not exceed tau_ms (2.0); dt/tau > 1 overshoots (dt_ms 10 from time.dt_ms)'],
    # ------------------------------------------------------------------ names
    'name_double_underscore.yaml': [
        "name_double_underscore.yaml:3:7: error: name: invalid name 'tiny__model': use letters, digits, '-' and single '_' (no '__', no '.'), starting with a letter or digit"],
    'name_with_dot.yaml': [
        "name_with_dot.yaml:22:11: error: edges[1].name: invalid name 'ff.v2': use letters, digits, '-' and single '_' (no '__', no '.'), starting with a letter or digit"],
    'area_name_with_dot.yaml': [
        "area_name_with_dot.yaml:14:3: error: areas.V.3: invalid name 'V.3': use letters, digits, '-' and single '_' (no '__', no '.'), starting with a letter or digit"],
    'area_same_as_input.yaml': [
        "area_same_as_input.yaml:14:3: error: areas.image: 'image' is also an input name; names must be unique"],
    "duplicate_edge_names.yaml": ["duplicate_edge_names.yaml:20:5: error: edges[1]: module name 'ff' is already used "
                                  "by edges[0]; give one of them a distinct 'name'"],
    # ------------------------------------------------------------------ include / parameters / templates
    "unknown_template.yaml": ["unknown_template.yaml:15:10: error: areas.V2.use: unknown template 'blok' "
                              "(did you mean 'block'?)"],
    'template_not_mapping.yaml': [
        'template_not_mapping.yaml:8:10: error: templates.block: a template must be a mapping of area keys'],
    "unknown_parameter.yaml": ["unknown_parameter.yaml:12:15: error: unknown parameter '$widht' "
                               "(did you mean 'width'?)"],
    'parameters_not_mapping.yaml': [
        'parameters_not_mapping.yaml:4:13: error: parameters: expected a mapping of name -> value'],
    'include_missing.yaml': [
        "include_missing.yaml:4:11: error: include: 'parts/no_such_file.yaml' not found (looked for tests/bad_inputs/parts/no_such_file.yaml)"],
    'include_cycle.yaml': [
        'include_cycle.yaml:4:11: error: include cycle: include_cycle.yaml -> include_cycle.yaml'],
    'include_cycle_indirect.yaml': [
        'parts/cycle_back.yaml:2:11: error: include cycle: include_cycle_indirect.yaml -> cycle_back.yaml -> include_cycle_indirect.yaml'],
    "error_in_included.yaml": ["parts/bad_area.yaml:5:15: error: areas.V3.channels: input should be greater than 0 "
                               "(got -4)"],
    "error_from_template.yaml": [f"error_from_template.yaml:9:18: error: areas.V1.cell: unknown cell type 'lstmm' "
                                 f"(did you mean 'lstm'?); known: {CELL_TYPES}"],
    # ------------------------------------------------------------------ graph: endpoints, loops, reachability
    "edge_unknown_target.yaml": ["edge_unknown_target.yaml:21:13: error: edges[1].target: unknown area 'V2b' "
                                 "(did you mean 'V2'?)"],
    "edge_unknown_source.yaml": ["edge_unknown_source.yaml:16:13: error: edges[0].source: unknown area or input "
                                 "'imag' (did you mean 'image'?)"],
    "input_as_target.yaml": ["input_as_target.yaml:25:13: error: edges[2].target: unknown area 'image' "
                             "(inputs cannot be targets)"],
    "readout_unknown_area.yaml": ["readout_unknown_area.yaml:25:13: error: readouts.logits.source: unknown area "
                                  "'V22' (did you mean 'V2'?)"],
    "zero_delay_cycle.yaml": [f"zero_delay_cycle.yaml:21:5: error: edges[1]: loop of delay-0 edges V1 -> V2 -> V1: "
                              f"{DELAY0}"],
    "zero_delay_self_loop.yaml": [f"zero_delay_self_loop.yaml:23:5: error: edges[2]: loop of delay-0 edges "
                                  f"V1 -> V1: {DELAY0}"],
    "unreachable_area.yaml": [f"unreachable_area.yaml:14:3: error: areas.V3: {UNREACHABLE}"],
    "readout_unreachable.yaml": [f"readout_unreachable.yaml:15:3: error: areas.V3: {UNREACHABLE}",
                                 "readout_unreachable.yaml:32:13: error: readouts.extra.source: area 'V3' is "
                                 "unreachable from any input"],
    # ------------------------------------------------------------------ shapes
    'shape_mismatch_sum.yaml': [
        "shape_mismatch_sum.yaml:23:5: error: edges[2]: sum into 'V2': this edge delivers shape [8, 16, 16] but edges[1] delivers [8, 8, 8]; they must be equal"],
    'group_norm_single_value.yaml': [
        'group_norm_single_value.yaml:14:11: error: areas.IT.ops[0]: group norm on [8, 1, 1]: a channel group holds a single value, so there is nothing to normalise over (use fewer groups, or another norm on a 1x1 map) (input shape [8, 1, 1])'],
    'conv_kernel_too_large.yaml': [
        'conv_kernel_too_large.yaml:18:17: error: edges[0].transform[0]: conv kernel 21x21 does not fit input 16x16 with padding 0x0 (input shape [3, 16, 16])'],
    'linear_on_map.yaml': [
        "linear_on_map.yaml:26:12: error: readouts.logits.head[0]: linear needs a vector [F], got shape [8, 16, 16]; add a global 'pool' (e.g. {pool: avg}) or 'flatten' before it (input shape [8, 16, 16])"],
    'channels_mismatch_ops.yaml': [
        "channels_mismatch_ops.yaml:14:15: error: areas.V2.channels: 8 declared, but the area's cell and ops output 16 channels (output shape [16, 16, 16])"],
    # ------------------------------------------------------------------ hierarchy warnings
    "feedforward_down.yaml": ["feedforward_down.yaml:23:11: warning: edges[2]: feedforward edge V2 -> V1 does not go "
                              "up the hierarchy (level 2 -> 1); did you mean feedback or lateral?"],
    "feedback_up.yaml": ["feedback_up.yaml:23:11: warning: edges[2]: feedback edge V1 -> V2 does not go down the "
                         "hierarchy (level 1 -> 2)"],
    # ------------------------------------------------------------------ JSON
    'json_trailing_comma.json': [
        'json_trailing_comma.json:7:3: error: JSON syntax error: Expecting property name enclosed in double quotes'],
    "json_duplicate_key.json": ["json_duplicate_key.json:6:39: error: duplicate key 'level' (first defined at "
                                "line 6); each key may appear once"],
    "json_wrong_type.json": ["json_wrong_type.json:4:33: error: inputs.image.shape: input should be a valid list "
                             "(got '3x16x16')"],
    'json_unknown_key.json': [
        "json_unknown_key.json:9:29: error: edges[0]: unknown key 'sourc' (did you mean 'source'?)"],
}

#: files whose diagnostics are only warnings (the CLI exits 0 without --strict)
WARNING_ONLY = {"feedforward_down.yaml", "feedback_up.yaml"}

#: problems in the package that these files show; the reason says what happens today
KNOWN_BAD = {
}

#: known-bad files that take ~10 s each: run only by test_check_file_reports_exactly
SLOW: set[str] = set()

CORPUS_FILES = sorted(p.name for p in CORPUS.iterdir() if p.is_file())


def _cases(names, run_slow: bool = False):
    def marks(n):
        if n not in KNOWN_BAD:
            return []
        return [pytest.mark.xfail(strict=True, reason=KNOWN_BAD[n], run=run_slow or n not in SLOW)]

    return [pytest.param(n, id=n, marks=marks(n)) for n in names]


def _matches(expected: str | re.Pattern, actual: str) -> bool:
    if isinstance(expected, re.Pattern):
        return actual.startswith(PREFIX) and expected.fullmatch(actual[len(PREFIX):]) is not None
    return actual == PREFIX + expected


def _assert_exactly(actual: list[str], expected: list[str | re.Pattern]) -> None:
    """Every expected diagnostic matches a distinct actual one, and there are no others."""
    left = list(actual)
    missing = []
    for exp in expected:
        hit = next((a for a in left if _matches(exp, a)), None)
        if hit is None:
            missing.append(exp)
        else:
            left.remove(hit)
    shown = "\n".join(a[:500] for a in actual[:20])
    assert not missing and not left, (f"missing: {missing}\nunexpected: {[a[:500] for a in left[:10]]}\n"
                                      f"all {len(actual)} diagnostics:\n{shown}")


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


# ---------------------------------------------------------------------------------- the corpus itself
def test_corpus_is_large_and_fully_tabled():
    assert len(CORPUS_FILES) >= 45
    assert set(CORPUS_FILES) == set(EXPECTED), (f"not in the table: {sorted(set(CORPUS_FILES) - set(EXPECTED))}; "
                                                f"no such file: {sorted(set(EXPECTED) - set(CORPUS_FILES))}")
    assert set(KNOWN_BAD) <= set(EXPECTED) and WARNING_ONLY <= set(EXPECTED)


@pytest.mark.parametrize("name", [n for n in CORPUS_FILES if n.endswith(".yaml")])
def test_yaml_files_say_what_is_wrong(name):
    first = (CORPUS / name).read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# ") and len(first) > 12


# ---------------------------------------------------------------------------------- check_file
@pytest.mark.parametrize("name", _cases(sorted(EXPECTED), run_slow=True))
def test_check_file_reports_exactly(name):
    spec, diags = tnnspec.check_file(PREFIX + name)
    _assert_exactly([str(d) for d in diags], EXPECTED[name])
    for d in diags:
        assert d.line >= 1 and d.column >= 1 and d.severity in ("error", "warning")
    if name in WARNING_ONLY:
        assert spec is not None and all(d.severity == "warning" for d in diags)
    else:
        assert spec is None and any(d.severity == "error" for d in diags)


@pytest.mark.parametrize("name", _cases(sorted(EXPECTED)))
def test_load_raises_the_same_diagnostics(name):
    path = PREFIX + name
    if name in WARNING_ONLY:
        spec = tnnspec.load(path)
        _assert_exactly([str(w) for w in spec.warnings], EXPECTED[name])
        with pytest.raises(tnnspec.SpecError) as exc:
            tnnspec.load(path, strict=True)
        assert [d.severity for d in exc.value.diagnostics] == ["error"] * len(EXPECTED[name])
    else:
        with pytest.raises(tnnspec.SpecError) as exc:
            tnnspec.load(path)
        _assert_exactly([str(d) for d in exc.value.diagnostics], EXPECTED[name])
        assert exc.value.errors


# ---------------------------------------------------------------------------------- the CLI
@pytest.mark.parametrize("name", _cases(sorted(EXPECTED)))
def test_cli_validate_exit_code_and_no_traceback(name, capsys):
    path = PREFIX + name
    rc = cli_main(["validate", path])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert rc == (0 if name in WARNING_ONLY else 1)
    _assert_exactly([line for line in out.splitlines() if line.startswith(PREFIX) and ": ok (" not in line],
                    EXPECTED[name])
    rc_strict = cli_main(["validate", "--strict", path])
    out, err = capsys.readouterr()
    assert rc_strict == 1 and "Traceback" not in out + err
    assert ": warning: " not in out


@pytest.mark.parametrize("name", ["feedback_up.yaml", "unknown_edge_key.yaml", "error_in_included.yaml"])
def test_cli_json_format(name, capsys):
    path = PREFIX + name
    rc = cli_main(["validate", "--format", "json", path])
    out, _ = capsys.readouterr()
    (result,) = json.loads(out)
    _, diags = tnnspec.check_file(path)
    assert rc == (0 if name in WARNING_ONLY else 1)
    assert result["file"] == path and result["valid"] == (name in WARNING_ONLY)
    assert result["diagnostics"] == [d.to_dict() for d in diags]


def test_cli_subprocess_whole_corpus():
    """The real command on every file that does not show a package bug: exit 1, located lines, no traceback."""
    names = [n for n in sorted(EXPECTED) if n not in KNOWN_BAD]
    proc = subprocess.run([sys.executable, "-m", "tnnspec", "validate", *(PREFIX + n for n in names)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = set(proc.stdout.splitlines())
    for n in names:
        for exp in EXPECTED[n]:
            assert isinstance(exp, re.Pattern) or PREFIX + exp in lines, exp
    for n in WARNING_ONLY:
        assert any(line.startswith(PREFIX + n + ": ok (") for line in lines)
