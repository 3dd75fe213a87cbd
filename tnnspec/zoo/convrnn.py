"""Weight converter for the ConvRNN ``gru_shallow`` of neuroailab/convrnns (Nayebi et al. 2018).

``convrnn_shallow_gru`` -- state dicts in the key names of the hand-written PyTorch reference
``tests/references/convrnn.py`` (``GRU_SHALLOW_KEYS``): ``<node>.pre_memory.{weight,bias}`` for
each node's conv, ``<node>.memory.gates`` and ``<node>.memory.candidate`` for the ConvGRUs of
conv3-conv5.  The published convrnns checkpoints are TensorFlow 1 files; they are not converted.

The reference's GRU convolves the concatenation ``[x; h]`` (x first) with one kernel per gate
group, as convrnns does; tnnspec's ``gru`` cell convolves x and h separately
(``input_conv``: x -> [r; u; c] with the biases, ``hidden_conv``: h -> [r; u],
``candidate_hidden_conv``: r.h -> c).  One kernel over a concatenation is the sum of its two
input-channel slices, so the converter splits each kernel at the input channel ``C_x``.
Model card: ``docs/zoo/convrnn.md``.
"""

from __future__ import annotations

from typing import Mapping

from .registry import WeightError, register_converter, rename

_FEEDFORWARD = {"conv1": "image", "conv2": "conv1", "conv3": "conv2", "conv4": "conv3", "conv5": "conv4",
                "imnetds": "conv5"}
_GRU_NODES = ("conv3", "conv4", "conv5")


def _gru_shallow_map() -> dict[str, str]:
    """Reference key -> compiled key for every key that is only renamed (not the GRU kernels)."""
    return {f"{node}.pre_memory.{p}": f"edges.{source}__{node}.conv.{p}"
            for node, source in _FEEDFORWARD.items() for p in ("weight", "bias")}


GRU_SHALLOW_MAP: dict[str, str] = _gru_shallow_map()
GRU_KERNELS: tuple[str, ...] = tuple(f"{n}.memory.{g}.{p}" for n in _GRU_NODES
                                     for g in ("gates", "candidate") for p in ("weight", "bias"))


@register_converter("convrnn_shallow_gru")
def convert_convrnn_shallow_gru(state: Mapping) -> dict:
    """Reference ``gru_shallow`` state dict -> ``convrnn_shallow_gru`` names (GRU kernels split)."""
    import torch

    missing = [k for k in GRU_KERNELS if k not in state]
    if missing:
        raise WeightError(f"convrnn_shallow_gru state dict: missing keys {missing}")
    out = rename(state, GRU_SHALLOW_MAP, GRU_KERNELS, "convrnn_shallow_gru")
    for node in _GRU_NODES:
        gates, gates_b = state[f"{node}.memory.gates.weight"], state[f"{node}.memory.gates.bias"]
        cand, cand_b = state[f"{node}.memory.candidate.weight"], state[f"{node}.memory.candidate.bias"]
        c = cand.shape[0]
        c_x = cand.shape[1] - c
        if gates.shape[:2] != (2 * c, c_x + c) or gates_b.shape != (2 * c,) or cand_b.shape != (c,):
            raise WeightError(f"convrnn_shallow_gru state dict: {node}'s GRU kernels do not fit one "
                              f"another: gates {tuple(gates.shape)}, candidate {tuple(cand.shape)}")
        cell = f"areas.{node}.cell"
        out[f"{cell}.input_conv.weight"] = torch.cat([gates[:, :c_x], cand[:, :c_x]]).contiguous()
        out[f"{cell}.input_conv.bias"] = torch.cat([gates_b, cand_b])
        out[f"{cell}.hidden_conv.weight"] = gates[:, c_x:].contiguous()
        out[f"{cell}.candidate_hidden_conv.weight"] = cand[:, c_x:].contiguous()
    return out
