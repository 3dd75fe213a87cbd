"""Weight converters: published state dicts -> compiled tnnspec parameter names.

A converter is a function ``(state_dict) -> state_dict`` registered under the zoo names it
serves. :func:`convert_weights` strips a DataParallel ``module.`` prefix, runs the converter,
and checks the result against the compiled model strictly (no missing or unexpected keys).
"""

from __future__ import annotations

from typing import Callable, Mapping

CONVERTERS: dict[str, Callable[[Mapping], dict]] = {}


class WeightError(ValueError):
    """A state dict that does not map exactly onto the compiled model."""


def register_converter(*names: str):
    def deco(fn):
        for name in names:
            if name in CONVERTERS:
                raise ValueError(f"converter for '{name}' registered twice")
            CONVERTERS[name] = fn
        return fn

    return deco


def strip_prefix(state: Mapping, prefix: str = "module.") -> dict:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def rename(state: Mapping, mapping: Mapping[str, str], drop: tuple[str, ...] = (), model: str = "") -> dict:
    """``state`` with its keys renamed by ``mapping``; keys in ``drop`` are left out.

    Raises :class:`WeightError` for keys neither mapped nor dropped, and for mapped keys that
    are missing.
    """
    unknown = sorted(k for k in state if k not in mapping and k not in drop)
    missing = sorted(k for k in mapping if k not in state)
    if unknown or missing:
        raise WeightError(f"{model} state dict: unknown keys {unknown}, missing keys {missing}")
    return {mapping[k]: v for k, v in state.items() if k in mapping}


def convert_weights(name: str, state_dict: Mapping, check: bool = True) -> dict:
    """Map a published ``state_dict`` of zoo model ``name`` onto the compiled model's names.

    With ``check`` (default) the result is loaded strictly into ``tnnspec.compile(zoo.load(name))``
    shapes: missing or unexpected keys, or shape mismatches, raise :class:`WeightError` listing them.
    """
    _load_families()
    if name not in CONVERTERS:
        raise WeightError(f"no weight converter for '{name}'; available: {', '.join(sorted(CONVERTERS))}")
    out = CONVERTERS[name](strip_prefix(state_dict))
    if check:
        from .. import compile as compile_spec
        from . import load

        target = compile_spec(load(name)).state_dict()
        missing = sorted(set(target) - set(out))
        unexpected = sorted(set(out) - set(target))
        wrong = sorted(k for k in set(out) & set(target) if tuple(out[k].shape) != tuple(target[k].shape))
        if missing or unexpected or wrong:
            raise WeightError(f"weights for '{name}' do not match the compiled model: "
                              f"missing {missing[:10]}{'...' if len(missing) > 10 else ''}, "
                              f"unexpected {unexpected[:10]}{'...' if len(unexpected) > 10 else ''}, "
                              f"wrong shape {wrong[:10]}")
    return out


def _load_families() -> None:
    import importlib
    import pkgutil

    from . import __path__ as zoo_path

    for info in pkgutil.iter_modules(zoo_path):
        if info.name not in ("registry",):
            importlib.import_module(f"{__package__}.{info.name}")
