"""Weight converters for the CORnet family (dicarlolab/CORnet): Z, R, RT and S.

Each converter maps the ORIGINAL ``state_dict`` names of CORnet (the ``module.``
DataParallel prefix already stripped by :func:`tnnspec.zoo.convert_weights`) onto the
parameter names of the compiled zoo graphs ``graphs/cornet_{z,r,rt,s}.yaml``. The mapping
is a fixed table built from key names only (no tensor is inspected or changed):

========================================  ==============================================
CORnet                                    compiled tnnspec
========================================  ==============================================
Z   ``A.conv.{weight,bias}``              ``edges.P__A.conv.*``   (P = predecessor; image for V1)
R/RT ``A.conv_input.*``                   ``edges.P__A.conv.*``   (input pathway, on the edge)
R/RT ``A.norm_input.*``                   ``edges.P__A.norm.*``
R/RT ``A.conv1.weight``                   ``areas.A.ops.conv.weight``  (the core)
R/RT ``A.norm1.*``                        ``areas.A.ops.norm.*``
S   ``V1.conv1.weight``                   ``edges.image__V1.conv.weight``
S   ``V1.norm1.*`` / ``V1.conv2.weight`` /
    ``V1.norm2.*``                        ``areas.V1.ops.norm.*`` / ``.conv.weight`` / ``.norm_1.*``
S   ``A.conv_input.weight``               ``edges.P__A.conv.weight``
S   ``A.<anything else>``                 ``areas.A.cell.<same>`` (skip, norm_skip, conv1-3, normI_k)
all ``decoder.linear.*``                  ``readouts.logits.linear.*``
========================================  ==============================================

Converters are strict: a key not in the table, or a table key absent from the input,
raises :class:`~tnnspec.zoo.registry.WeightError` naming it. The one tolerance is BatchNorm's
``num_batches_tracked`` counter (CORnet-S): checkpoints written by PyTorch < 0.4.1 lack it,
and it is then filled with 0, as ``torch.nn.BatchNorm2d`` does when loading such a file. It
only matters when training with ``momentum: null``.
"""

from __future__ import annotations

from typing import Mapping

from .registry import WeightError, register_converter

AREAS = ("V1", "V2", "V4", "IT")
PRED = {"V1": "image", "V2": "V1", "V4": "V2", "IT": "V4"}
S_INNER_STEPS = {"V2": 2, "V4": 4, "IT": 2}

_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_GN = ("weight", "bias")
_DECODER = {f"decoder.linear.{p}": f"readouts.logits.linear.{p}" for p in ("weight", "bias")}


def _edge(area: str) -> str:
    return f"edges.{PRED[area]}__{area}"


def table_z() -> dict[str, str]:
    """CORnet-Z: original name -> compiled name."""
    t = {f"{a}.conv.{p}": f"{_edge(a)}.conv.{p}" for a in AREAS for p in ("weight", "bias")}
    return t | _DECODER


def table_r() -> dict[str, str]:
    """CORnet-R and CORnet-RT (same modules): original name -> compiled name."""
    t: dict[str, str] = {}
    for a in AREAS:
        e = _edge(a)
        t |= {f"{a}.conv_input.{p}": f"{e}.conv.{p}" for p in ("weight", "bias")}
        t |= {f"{a}.norm_input.{p}": f"{e}.norm.{p}" for p in _GN}
        t[f"{a}.conv1.weight"] = f"areas.{a}.ops.conv.weight"
        t |= {f"{a}.norm1.{p}": f"areas.{a}.ops.norm.{p}" for p in _GN}
    return t | _DECODER


def table_s() -> dict[str, str]:
    """CORnet-S: original name -> compiled name."""
    t = {"V1.conv1.weight": "edges.image__V1.conv.weight",
         "V1.conv2.weight": "areas.V1.ops.conv.weight"}
    t |= {f"V1.norm1.{p}": f"areas.V1.ops.norm.{p}" for p in _BN}
    t |= {f"V1.norm2.{p}": f"areas.V1.ops.norm_1.{p}" for p in _BN}
    for a, n in S_INNER_STEPS.items():
        t[f"{a}.conv_input.weight"] = f"{_edge(a)}.conv.weight"
        cell = [f"{m}.weight" for m in ("skip", "conv1", "conv2", "conv3")]
        cell += [f"norm_skip.{p}" for p in _BN]
        cell += [f"norm{i}_{k}.{p}" for k in range(n) for i in (1, 2, 3) for p in _BN]
        t |= {f"{a}.{c}": f"areas.{a}.cell.{c}" for c in cell}
    return t | _DECODER


TABLES = {"cornet_z": table_z, "cornet_r": table_r, "cornet_rt": table_r, "cornet_s": table_s}


def _convert(name: str, state: Mapping) -> dict:
    table = TABLES[name]()
    unknown = [k for k in state if k not in table]
    if unknown:
        raise WeightError(f"{name}: unknown key(s) in the state dict: {', '.join(map(str, unknown[:10]))}"
                          f"{' ...' if len(unknown) > 10 else ''} (expected CORnet's original names, "
                          f"e.g. {next(iter(table))!r})")
    out = {table[k]: v for k, v in state.items()}
    missing = [k for k in table if table[k] not in out]
    filled = [k for k in missing if k.endswith(".num_batches_tracked")]
    missing = [k for k in missing if k not in filled]
    if missing:
        raise WeightError(f"{name}: missing key(s) in the state dict: {', '.join(missing[:10])}"
                          f"{' ...' if len(missing) > 10 else ''}")
    if filled:
        import torch

        for k in filled:
            out[table[k]] = torch.tensor(0, dtype=torch.long)
    return out


@register_converter("cornet_z")
def convert_cornet_z(state: Mapping) -> dict:
    """CORnet-Z checkpoint (``cornet_z-5c427c9c.pth``) -> ``cornet_z`` parameter names."""
    return _convert("cornet_z", state)


@register_converter("cornet_r")
def convert_cornet_r(state: Mapping) -> dict:
    """CORnet-R checkpoint (``cornet_r-5930a990.pth``) -> ``cornet_r`` parameter names."""
    return _convert("cornet_r", state)


@register_converter("cornet_rt")
def convert_cornet_rt(state: Mapping) -> dict:
    """CORnet-RT checkpoint (``cornet_rt-933c001c.pth``) -> ``cornet_rt`` parameter names."""
    return _convert("cornet_rt", state)


@register_converter("cornet_s")
def convert_cornet_s(state: Mapping) -> dict:
    """CORnet-S checkpoint (``cornet_s-1d3f7974.pth``) -> ``cornet_s`` parameter names."""
    return _convert("cornet_s", state)
