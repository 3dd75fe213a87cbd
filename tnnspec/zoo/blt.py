"""Weight converters for the BLT family (Spoerer, Kietzmann, Kriegeskorte).

* ``blt_net_64``, ``blt_net_64_additive`` -- KietzmannLab/BLT-pytorch-CCN23 ``BLT_net_64``
  state dicts (HEAD f8505a9; the key list is ``BLT_NET_64_KEYS``).  The original allocates
  ``v1.lateral`` and ``v1.top_down`` but never uses them; the zoo graphs have no such edges
  and the converter drops exactly these two keys (:data:`BLT_NET_64_UNUSED`, 110,592
  parameters at the default sizes).
* ``spoerer2017_b``, ``spoerer2017_bl``, ``spoerer2017_bt``, ``spoerer2017_blt`` -- the
  paper-level B/BL/BT/BLT networks of Spoerer, McClure & Kriegeskorte (2017), in the key names
  of the hand-written reference ``tests/references/blt_spoerer2017.py`` (no official code).
* ``spoerer2020_bl`` -- Keras weights of cjspoerer/rcnn-sat ``bl_net`` (8 steps), keyed by
  Keras weight path, ``"<layer>/<weight>"`` with or without the ``":0"`` suffix
  (``{w.name: w.numpy() for w in model.weights}``); conv kernels HWIO -> OIHW, the dense
  kernel transposed, BatchNorm ``gamma, beta, moving_mean, moving_variance`` -> ``weight,
  bias, running_mean, running_var``.

Every converter is strict: a key it does not know, or a required key that is missing, raises
:class:`~tnnspec.zoo.registry.WeightError`.  Model card: ``docs/zoo/blt.md``.
"""

from __future__ import annotations

import re
from typing import Mapping

from .registry import register_converter, rename

#: Original key -> compiled key, for BLT_net_64 (both interaction modes).
BLT_NET_64_MAP: dict[str, str] = {
    "retina.weight": "edges.image__retina.conv.weight",
    "retina.bias": "edges.image__retina.conv.bias",
    "v1.bottom_up.weight": "edges.retina__v1.conv.weight",
    "v1_ln.weight": "areas.v1.ops.norm.weight",
    "v1_ln.bias": "areas.v1.ops.norm.bias",
    "v2.bottom_up.weight": "edges.v1__v2.conv.weight",
    "v2.lateral.weight": "edges.v2__v2.conv.weight",
    "v2.top_down.weight": "edges.v4__v2.conv_transpose.weight",
    "v2_ln.weight": "areas.v2.ops.norm.weight",
    "v2_ln.bias": "areas.v2.ops.norm.bias",
    "v4.bottom_up.weight": "edges.v2__v4.conv.weight",
    "v4.lateral.weight": "edges.v4__v4.conv.weight",
    "v4.top_down.weight": "edges.it__v4.conv_transpose.weight",
    "v4_ln.weight": "areas.v4.ops.norm.weight",
    "v4_ln.bias": "areas.v4.ops.norm.bias",
    "it.bottom_up.weight": "edges.v4__it.conv.weight",
    "it.lateral.weight": "edges.it__it.conv.weight",
    "it_ln.weight": "areas.it.ops.norm.weight",
    "it_ln.bias": "areas.it.ops.norm.bias",
    "gap.lateral.weight": "edges.gap__gap.linear.weight",
    "gap_ln.weight": "areas.gap.ops.norm.weight",
    "gap_ln.bias": "areas.gap.ops.norm.bias",
    "readout.weight": "readouts.logits.linear.weight",
    "readout.bias": "readouts.logits.linear.bias",
}

#: Keys of the original that are allocated but never used in its forward pass; dropped.
BLT_NET_64_UNUSED: tuple[str, ...] = ("v1.lateral.weight", "v1.top_down.weight")


def _spoerer2017_map(lateral: bool, top_down: bool) -> dict[str, str]:
    m = {
        "layer1.bottom_up.weight": "edges.image__layer1.conv.weight",
        "layer1.bottom_up.bias": "edges.image__layer1.conv.bias",
        "layer2.bottom_up.weight": "edges.layer1__layer2.conv.weight",
        "layer2.bottom_up.bias": "edges.layer1__layer2.conv.bias",
        "readout.weight": "readouts.logits.linear.weight",
        "readout.bias": "readouts.logits.linear.bias",
    }
    if lateral:
        m["layer1.lateral.weight"] = "edges.layer1__layer1.conv.weight"
        m["layer2.lateral.weight"] = "edges.layer2__layer2.conv.weight"
    if top_down:
        m["layer1.top_down.weight"] = "edges.layer2__layer1.conv_transpose.weight"
    return m


#: Zoo name -> (reference key -> compiled key), for the Spoerer et al. (2017) networks.
SPOERER2017_MAPS: dict[str, dict[str, str]] = {
    "spoerer2017_b": _spoerer2017_map(False, False),
    "spoerer2017_bl": _spoerer2017_map(True, False),
    "spoerer2017_bt": _spoerer2017_map(False, True),
    "spoerer2017_blt": _spoerer2017_map(True, True),
}


@register_converter("blt_net_64", "blt_net_64_additive")
def convert_blt_net_64(state: Mapping) -> dict:
    """KietzmannLab ``BLT_net_64`` state dict -> compiled names (drops ``BLT_NET_64_UNUSED``)."""
    return rename(state, BLT_NET_64_MAP, BLT_NET_64_UNUSED, "BLT_net_64")


def _spoerer2017(name: str):
    def convert(state: Mapping) -> dict:
        return rename(state, SPOERER2017_MAPS[name], (), name)

    convert.__name__ = f"convert_{name}"
    convert.__doc__ = f"Reference ``{name}`` (Spoerer et al. 2017) state dict -> compiled names."
    return convert


for _name in SPOERER2017_MAPS:
    register_converter(_name)(_spoerer2017(_name))


# ---------------------------------------------------------------------------- Spoerer et al. 2020
SPOERER2020_BL_LAYERS = 7
SPOERER2020_BL_STEPS = 8
_BN = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def _spoerer2020_bl_map() -> dict[str, str]:
    """Keras weight path -> compiled key for rcnn-sat ``bl_net(..., n_timesteps=8)``."""
    m = {"ReadoutDense/kernel": "edges.layer6__decoder.linear.weight",
         "ReadoutDense/bias": "edges.layer6__decoder.linear.bias"}
    for n in range(SPOERER2020_BL_LAYERS):
        below = "image" if n == 0 else f"layer{n - 1}"
        m[f"RCL_{n}_BConv/kernel"] = f"edges.{below}__layer{n}.conv.weight"
        m[f"RCL_{n}_LConv/kernel"] = f"edges.layer{n}__layer{n}.conv.weight"
        for t in range(SPOERER2020_BL_STEPS):
            for keras, torch_name in _BN.items():
                m[f"BatchNorm_Layer_{n}_Time_{t}/{keras}"] = f"areas.layer{n}.ops.norm.steps.{t}.{torch_name}"
    return m


SPOERER2020_BL_MAP: dict[str, str] = _spoerer2020_bl_map()


@register_converter("spoerer2020_bl")
def convert_spoerer2020_bl(state: Mapping) -> dict:
    """rcnn-sat BL-net Keras weights (``{path: array}``) -> compiled names and layouts.

    BatchNorm ``num_batches_tracked`` buffers, which Keras does not have, are set to 0.
    """
    import torch

    keyed = {re.sub(r":\d+$", "", k): v for k, v in state.items()}
    out = {}
    for key, value in rename(keyed, SPOERER2020_BL_MAP, (), "spoerer2020_bl (Keras)").items():
        value = torch.as_tensor(value)
        if key.endswith("conv.weight"):
            value = value.permute(3, 2, 0, 1)  # HWIO -> OIHW
        elif key.endswith("linear.weight"):
            value = value.t()  # (in, out) -> (out, in)
        out[key] = value.contiguous()
        if key.endswith("running_var"):
            out[key[: -len("running_var")] + "num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    return out
