"""CUDA-graph capture of a network's inference calls (``tnnspec.compile(spec, cuda_graphs=True)``).

A captured graph replays the whole unrolled run — every step, every kernel — with one CPU call,
which removes the per-kernel launch cost that dominates small batches on a GPU. A graph is
captured once per call signature (input shapes, dtypes and device; ``steps``; ``record``;
``readout_steps``; autocast) on the first inference call with that signature, after a few
eager warm-up runs on a side stream, and replayed on the next ones: the inputs are copied into
the graph's own input buffers, and the outputs are copied out of its output buffers (so a
returned :class:`Run` is never overwritten by a later call).

Only inference calls are captured (under ``torch.no_grad()`` or ``torch.inference_mode()``);
calls that need gradients run eagerly. Parameters are read in place, so training between
calls or ``load_state_dict`` is seen by the next replay; moving the network (``.to()``,
``.cuda()``, ``.half()``) drops the captured graphs.
"""

from __future__ import annotations

import torch

WARMUP_RUNS = 3  # eager runs on a side stream before capture (lazy init, cuDNN/cuBLAS workspaces)


class CapturedRuns:
    """The captured graphs of one network, by call signature. ``capture(forward, static_inputs)``
    returns ``(graph, static_outputs)`` with ``graph.replay()`` (tests substitute a CPU stand-in
    for :func:`capture_cuda_graph`); ``device`` is the device type the inputs must be on."""

    def __init__(self, capture=None, device: str = "cuda"):
        self._graphs: dict[tuple, tuple[object, dict, object]] = {}
        self._capture = capture or capture_cuda_graph
        self.device = device

    def clear(self) -> None:
        self._graphs.clear()

    def __len__(self) -> int:
        return len(self._graphs)

    def run(self, forward, xs: dict[str, torch.Tensor], key: tuple):
        """``forward(inputs)`` runs the network eagerly; returns the run for inputs ``xs``."""
        bad = [name for name, x in xs.items() if x.device.type != self.device]
        if bad:
            raise ValueError(f"cuda_graphs=True replays CUDA graphs, but input(s) {bad} are on "
                             f"{xs[bad[0]].device}: move the network and inputs to a GPU, or "
                             "compile without cuda_graphs")
        signature = key + tuple((n, tuple(x.shape), x.dtype, x.device) for n, x in sorted(xs.items())) + (
            torch.is_autocast_enabled("cuda"), torch.is_inference_mode_enabled())
        if signature not in self._graphs:
            static_in = {name: x.clone() for name, x in xs.items()}
            self._graphs[signature] = (*self._capture(forward, static_in), static_in)
        graph, static_out, static_in = self._graphs[signature]
        for name, x in xs.items():
            static_in[name].copy_(x)
        graph.replay()
        return type(static_out)(readouts={k: v.clone() for k, v in static_out.readouts.items()},
                                areas={k: v.clone() for k, v in static_out.areas.items()})


def capture_cuda_graph(forward, static_in):
    """Warm up on a side stream, then capture ``forward(static_in)``: ``(graph, static outputs)``."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(WARMUP_RUNS):
            forward(static_in)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = forward(static_in)
    return graph, static_out
