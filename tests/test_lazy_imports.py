"""``import tnnspec`` alone: ``tnnspec.zoo`` and ``tnnspec.compile`` load on first use (as the
README shows), and validating or listing the zoo never imports torch. Fresh interpreters: this
test process has imported both already."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tnnspec import zoo

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_zoo_is_reachable_from_the_package_and_needs_no_torch():
    out = _python("import tnnspec, sys; print(len(tnnspec.zoo.list())); tnnspec.load('graphs/ventral4.yaml'); "
                  "print('torch' in sys.modules)")
    assert out.splitlines() == [str(len(zoo.list())), "False"]
