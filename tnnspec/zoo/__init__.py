"""The model zoo: famous recurrent vision models as tnnspec files, with weight import.

>>> from tnnspec import zoo
>>> zoo.list()                      # names of the shipped graphs
>>> spec = zoo.load("cornet_rt")    # a validated Spec
>>> state = zoo.convert_weights("cornet_rt", torch.load(ckpt)["state_dict"])

Graph files live in graphs/ at the repository root (shipped with the package through the
``tnnspec/zoo/graphs`` link). Weight converters are registered per model family in
:mod:`tnnspec.zoo.registry`.
"""

from __future__ import annotations

from pathlib import Path

from .registry import CONVERTERS, convert_weights

GRAPHS = Path(__file__).resolve().parent / "graphs"

__all__ = ["list", "load", "path", "convert_weights", "CONVERTERS"]


def list() -> list[str]:  # noqa: A001  (zoo.list() reads naturally)
    """Names of the zoo graphs (file stems under graphs/, sub-folders included)."""
    return sorted(p.stem for p in GRAPHS.glob("**/*.yaml") if not p.name.startswith("_"))


def path(name: str) -> Path:
    """The file of zoo graph ``name``."""
    matches = [p for p in GRAPHS.glob("**/*.yaml") if p.stem == name]
    if not matches:
        from ..spec.diagnostics import did_you_mean

        raise KeyError(f"no zoo graph '{name}'{did_you_mean(name, list())}; available: {', '.join(list())}")
    return matches[0]


def load(name: str, strict: bool = False):
    """Load zoo graph ``name`` as a validated :class:`~tnnspec.Spec`."""
    from ..api import load as load_file

    return load_file(path(name), strict=strict)
