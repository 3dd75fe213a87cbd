"""Reference ConvRNN ``gru_shallow`` (neuroailab/convrnns), written by hand for equivalence tests.

Source
------
Nayebi et al., "Task-driven convolutional recurrent models of the visual system", NeurIPS
2018; graph ``convrnns/models/gru_shallow.json`` and unroller ``convrnns/utils/main.py`` of
neuroailab/convrnns (HEAD b76a44d), as summarised in ``/work/shared/reference/tnn_convrnns.md``
(sections 3.1 unroll, 3.5 presentation, 3.8 stand-ins, 4.4 ConvGRU, 5.3 sizes).  Written from
those equations, not from tnnspec's cells, and not a copy of the TensorFlow code.  The
published checkpoints are TensorFlow 1 files that cannot be fetched here, so the key names are
this module's own (``state_dict()``, in the order of ``GRU_SHALLOW_KEYS``), laid out like tnn's
node anatomy: ``<node>.pre_memory`` is the node's conv, ``<node>.memory.{gates,candidate}`` its
ConvGRU.

Nodes (a node is harbor -> pre_memory conv -> memory -> post_memory)
--------------------------------------------------------------------
- ``conv1``: conv 7x7 stride 2, 3->64, TF 'SAME' (asymmetric at even sizes: 224 -> pad 2 | 3);
  memory decay 0 (none); ELU; max pool 2x2/2 'SAME'.
- ``conv2``: conv 3x3, 64->128; ELU; max pool.
- ``conv3``, ``conv4``, ``conv5``: conv 3x3 to 256, 256, 512; ConvGRU (3x3 kernels); max pool.
- ``imnetds``: conv 2x2 'VALID', 512->1000; global average pool -> logits.
Every conv has a bias.  TF 'SAME' max pooling pads the end of an odd side (7 -> 4).

ConvGRU (convrnns version, tnn_convrnns.md section 4.4), one kernel over the concatenation
``[x; h]`` (x first), ``beta_f`` = ``forget_bias`` = 1.0 added to the *reset* gate:
``[r~; u~] = W_g * [x; h_{t-1}] + b_g``; ``r = sigmoid(r~ + beta_f)``; ``u = sigmoid(u~)``;
``c = tanh(W_c * [x; r . h_{t-1}] + b_c)``; ``h_t = u . h_{t-1} + (1 - u) . c``; ``h_{-1} = 0``.

Unroll (tnn's ``unroll``: one step per arrow)
----------------------------------------------
``conv1`` reads the frame of step t; every other node reads its predecessor's output of step
t - 1, and at t = 0 an all-zero stand-in of that output's shape, so every node computes from
t = 0 (its first image-driven step is its depth minus one).  Frames: the image for steps
``t < image_off`` (12), then the constant 0.5 (in normalised input space), 16 steps.
``forward`` returns the logits of every step, ``[T, B, 1000]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NODES = ("conv1", "conv2", "conv3", "conv4", "conv5", "imnetds")
GRU_NODES = ("conv3", "conv4", "conv5")


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow 'SAME': output ceil(size / stride); the odd pixel of padding goes at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Conv2d):
    """A conv with TensorFlow 'SAME' padding (computed from the input size)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(c_in, c_out, kernel, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = tf_same_padding(x.shape[-2], kh, sh)
        left, right = tf_same_padding(x.shape[-1], kw, sw)
        if top == bottom and left == right:  # symmetric: the conv pads (no padded copy of x)
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)


def tf_same_max_pool(x: Tensor) -> Tensor:
    """2x2 stride-2 max pool, TensorFlow 'SAME' (an odd side is padded at its end by -inf):
    ``ceil_mode`` keeps the last, partial window of an odd side, which is that maximum."""
    return F.max_pool2d(x, 2, ceil_mode=True)


class ConvGRU(nn.Module):
    """The convrnns ConvGRU (equations in the module docstring)."""

    def __init__(self, channels: int, kernel: int = 3, forget_bias: float = 1.0) -> None:
        super().__init__()
        self.forget_bias = forget_bias
        self.gates = SameConv(2 * channels, 2 * channels, kernel)
        self.candidate = SameConv(2 * channels, channels, kernel)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        r, u = self.gates(torch.cat([x, h], 1)).chunk(2, 1)
        r = torch.sigmoid(r + self.forget_bias)
        u = torch.sigmoid(u)
        c = torch.tanh(self.candidate(torch.cat([x, r * h], 1)))
        return u * h + (1 - u) * c


class Node(nn.Module):
    def __init__(self, pre_memory: nn.Conv2d, memory: ConvGRU | None = None) -> None:
        super().__init__()
        self.pre_memory = pre_memory
        if memory is not None:
            self.memory = memory


class GRUShallow(nn.Module):
    """``gru_shallow``: 5 conv layers (GRUs in conv3-conv5) and the ``imnetds`` readout node."""

    def __init__(self, times: int = 16, image_off: int = 12, blank: float = 0.5, classes: int = 1000) -> None:
        super().__init__()
        self.times, self.image_off, self.blank = times, image_off, blank
        self.conv1 = Node(SameConv(3, 64, 7, stride=2))
        self.conv2 = Node(SameConv(64, 128, 3))
        self.conv3 = Node(SameConv(128, 256, 3), ConvGRU(256))
        self.conv4 = Node(SameConv(256, 256, 3), ConvGRU(256))
        self.conv5 = Node(SameConv(256, 512, 3), ConvGRU(512))
        self.imnetds = Node(nn.Conv2d(512, classes, 2))  # 'VALID'

    def step(self, name: str, drive: Tensor, states: dict[str, Tensor]) -> Tensor:
        """One node's pipeline at one step; updates ``states`` for the GRU nodes."""
        node = getattr(self, name)
        x = node.pre_memory(drive)
        if name in GRU_NODES:
            h = states.get(name)
            states[name] = x = node.memory(x, torch.zeros_like(x) if h is None else h)
            return tf_same_max_pool(x)
        if name == "imnetds":
            return x.mean(dim=(2, 3))
        return tf_same_max_pool(F.elu(x))

    def forward(self, image: Tensor, record: tuple[str, ...] = ()) -> Tensor | tuple[Tensor, dict]:
        """Logits of every step ``[T, B, classes]``; with ``record``, also those nodes' outputs."""
        prev: dict[str, Tensor] = {}
        states: dict[str, Tensor] = {}
        logits, recorded = [], {n: [] for n in record}
        blank = torch.full_like(image, self.blank)
        for t in range(self.times):
            now: dict[str, Tensor] = {}
            for i, name in enumerate(NODES):
                if i == 0:
                    drive = image if t < self.image_off else blank
                else:  # the predecessor's output of step t - 1; zeros of its shape at t = 0
                    pred = NODES[i - 1]
                    drive = prev[pred] if t else torch.zeros_like(now[pred])
                now[name] = self.step(name, drive, states)
            prev = now
            logits.append(now["imnetds"])
            for n in record:
                recorded[n].append(now[n])
        out = torch.stack(logits)
        return (out, {n: torch.stack(v) for n, v in recorded.items()}) if record else out


GRU_SHALLOW_KEYS: tuple[str, ...] = tuple(
    [f"{n}.pre_memory.{p}" for n in ("conv1", "conv2") for p in ("weight", "bias")]
    + [f"{n}.{m}.{p}" for n in GRU_NODES for m in ("pre_memory", "memory.gates", "memory.candidate")
       for p in ("weight", "bias")]
    + ["imnetds.pre_memory.weight", "imnetds.pre_memory.bias"])
