"""The user-facing loading API: both validation tiers, one SpecError listing everything."""

from __future__ import annotations

from pathlib import Path

from .graph.checks import check
from .spec.diagnostics import Diagnostic, Report, SpecError
from .spec.load import SourceMap, parse_spec_file, parse_spec_text
from .spec.models import Spec


def _finish(spec: Spec, source: SourceMap) -> tuple[Spec, list[Diagnostic]]:
    report = Report()
    report.extend(source.warnings)  # from reading the file (e.g. an older format version)
    check(spec, source, report)
    spec._source = source
    spec._warnings = report.warnings
    return spec, report.diagnostics


def check_file(path: str | Path) -> tuple[Spec | None, list[Diagnostic]]:
    """Validate a file; return (spec or None, every diagnostic). Never raises for a bad file."""
    try:
        spec, source = parse_spec_file(path)
    except SpecError as exc:
        return None, exc.diagnostics
    spec, diags = _finish(spec, source)
    return (None if any(d.severity == "error" for d in diags) else spec), diags


def _raise_or_return(spec, diags, strict: bool) -> Spec:
    if any(d.severity == "error" for d in diags) or (strict and diags):
        if strict:
            diags = [Diagnostic(d.file, d.line, d.column, "error", d.message) for d in diags]
        raise SpecError(diags)
    return spec


def load(path: str | Path, strict: bool = False) -> Spec:
    """Load and fully validate a spec file. Raises :class:`SpecError` listing every problem;
    with ``strict=True`` warnings count as errors."""
    spec, source = parse_spec_file(path)
    return _raise_or_return(*_finish(spec, source), strict)


def loads(text: str, file: str = "<string>", strict: bool = False) -> Spec:
    """Load a spec from YAML/JSON text (``file`` names it in messages)."""
    spec, source = parse_spec_text(text, file)
    return _raise_or_return(*_finish(spec, source), strict)


def dumps(spec: Spec) -> str:
    """The spec as YAML text (format 1.1) that loads back to an equal spec, with PyYAML too."""
    import io

    from .spec.models import FORMAT_VERSIONS
    from .spec.yaml11 import portable_yaml

    yaml = portable_yaml()  # reads the same with YAML 1.1 tools (PyYAML) as with tnnspec
    data = spec.dump()
    data["tnnspec"] = FORMAT_VERSIONS[-1]  # the models hold the newest format, whatever was read
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()
