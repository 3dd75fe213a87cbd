"""Diagnostics: every problem a user can cause in a file, located as ``file:line:col``.

A :class:`SpecError` carries *all* diagnostics found in one pass, so a user fixes
their file in one round trip instead of one error at a time.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Pos:
    """A position in a source file; ``line`` and ``col`` are 1-based."""

    file: str
    line: int = 1
    col: int = 1

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Diagnostic:
    """One located problem: ``file:line:col: severity: message``."""

    file: str
    line: int
    column: int
    severity: Severity
    message: str

    @classmethod
    def at(cls, pos: Pos, severity: Severity, message: str) -> "Diagnostic":
        return cls(pos.file, pos.line, pos.col, severity, message)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def sort_key(self) -> tuple:
        return (self.file, self.line, self.column, self.message)


class SpecError(Exception):
    """Raised for any mistake in a spec file; ``.diagnostics`` lists every problem found."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics: list[Diagnostic] = sorted(diagnostics, key=lambda d: d.sort_key)
        super().__init__(self._text())

    def _text(self) -> str:
        errors = [d for d in self.diagnostics if d.severity == "error"]
        head = f"{len(errors)} error(s) in spec" if errors else "spec has problems"
        return head + ":\n" + "\n".join(str(d) for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


@dataclass
class Report:
    """Collects diagnostics while a file is checked."""

    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, pos: Pos, message: str) -> None:
        self.diagnostics.append(Diagnostic.at(pos, "error", message))

    def warning(self, pos: Pos, message: str) -> None:
        self.diagnostics.append(Diagnostic.at(pos, "warning", message))

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        self.diagnostics.extend(diagnostics)

    @property
    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def raise_if_errors(self, strict: bool = False) -> None:
        if self.has_errors or (strict and self.diagnostics):
            diags = self.diagnostics
            if strict:
                diags = [Diagnostic(d.file, d.line, d.column, "error", d.message) for d in diags]
            raise SpecError(diags)

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss among ``choices``, else ``''``."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""


def one_of(choices: Iterable[str]) -> str:
    """``'a', 'b' or 'c'`` for messages listing allowed values."""
    items = [f"'{c}'" for c in sorted(choices)]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
