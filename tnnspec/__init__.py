"""tnnspec: brain-area graphs with typed, timed edges — validated, scheduled, compiled to torch.

>>> import tnnspec
>>> spec = tnnspec.load("graphs/ventral4.yaml")   # raises tnnspec.SpecError listing every problem
>>> net = tnnspec.compile(spec)                    # a torch.nn.Module unrolled in time
"""

from __future__ import annotations

from .api import check_file, dumps, load, loads
from .spec.diagnostics import Diagnostic, SpecError
from .spec.models import Spec

__version__ = "0.1.0"
__all__ = ["Spec", "SpecError", "Diagnostic", "load", "loads", "dumps", "check_file", "compile", "zoo", "__version__"]



def __getattr__(name: str):
    # torch is imported only when the compiler is first used: validating needs no torch.
    # tnnspec.compile is a callable package: tnnspec.compile(spec) -> Network.
    # tnnspec.zoo is imported on first use too (``import tnnspec; tnnspec.zoo.list()``).
    if name in ("compile", "zoo"):
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tnnspec' has no attribute {name!r}")
