"""Evaluation: accuracy at every step and per occlusion level, and a decoder's accuracy.

:func:`evaluate` runs a compiled network over a dataset of ``(image, label, level)`` items
and returns plain data (JSON-ready); :func:`format_table` prints it. The trainer uses the
same code for its validation pass (also across processes: counts are summed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class DataError(ValueError):
    """The data does not fit the spec (shape, classes, readout)."""


# ---------------------------------------------------------------- data in memory
@dataclass
class Tensors:
    """A dataset held as three tensors (all small: a few thousand digits)."""

    images: torch.Tensor  # [N, C, H, W] float32
    labels: torch.Tensor  # [N] int64
    levels: torch.Tensor  # [N] float32

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def materialize(dataset) -> Tensors:
    """Every item of ``dataset`` stacked into tensors (``Tensors`` pass through)."""
    if isinstance(dataset, Tensors):
        return dataset
    n = len(dataset)
    if n == 0:
        raise DataError("the dataset is empty")
    images, labels, levels = [], [], []
    for i in range(n):
        item = dataset[i]
        image, label = item[0], item[1]
        level = item[2] if len(item) > 2 else 0.0
        images.append(torch.as_tensor(image, dtype=torch.float32))
        labels.append(int(label))
        levels.append(float(level))
    return Tensors(torch.stack(images), torch.tensor(labels, dtype=torch.int64),
                   torch.tensor(levels, dtype=torch.float32))


def single_input(spec) -> tuple[str, object]:
    if len(spec.inputs) != 1:
        raise DataError(f"training and evaluation take specs with one input; '{spec.name}' has "
                        f"{len(spec.inputs)} ({', '.join(spec.inputs)})")
    name, inp = next(iter(spec.inputs.items()))
    return name, inp


def adapt(images: torch.Tensor, shape: list[int], input_name: str = "image") -> torch.Tensor:
    """Fit data images [B, C, H, W] to a spec input of per-sample ``shape``: same shape, grey
    repeated to C channels, or flattened to a vector."""
    got = list(images.shape[1:])
    if got == list(shape):
        return images
    if len(shape) == 3 and len(got) == 3 and got[0] == 1 and got[1:] == list(shape[1:]):
        return images.expand(-1, shape[0], -1, -1)
    if len(shape) == 1 and math.prod(got) == shape[0]:
        return images.flatten(1)
    hint = ""
    if len(shape) == 3 and shape[1] == shape[2] and len(got) == 3:
        hint = f" (use --size {shape[1]})"
    raise DataError(f"the data gives images of shape {got} but the spec's input '{input_name}' has shape "
                    f"{list(shape)}{hint}")


def pick_readout(spec, name: str | None) -> str:
    if name is not None:
        if name not in spec.readouts:
            raise DataError(f"unknown readout '{name}'; the spec has: {', '.join(spec.readouts) or 'none'}")
        return name
    if len(spec.readouts) != 1:
        raise DataError(f"the spec has {len(spec.readouts)} readouts ({', '.join(spec.readouts) or 'none'}): "
                        "choose one with training.readout or --readout")
    return next(iter(spec.readouts))


def check_classes(net, readout: str, labels: torch.Tensor) -> int:
    shape = tuple(net.plan.shapes.readout[readout])
    classes = int(labels.max()) + 1 if len(labels) else 0
    if len(shape) != 1:
        raise DataError(f"readout '{readout}' gives outputs of shape {list(shape)} per image; classification "
                        "needs a vector of class scores (end the head with flatten / pool and a linear layer)")
    if shape[0] < classes:
        raise DataError(f"readout '{readout}' gives {shape[0]} outputs but the data has {classes} classes")
    return shape[0]


def present_batch(spec, images: torch.Tensor, steps: int) -> torch.Tensor:
    """A data batch as the network's input tensor (adapted, then presented over time)."""
    from .data import present

    name, inp = single_input(spec)
    return present(adapt(images, list(inp.shape), name), inp.schedule, steps)


def unwrap(model):
    """The compiled :class:`~tnnspec.compile.Network` under torch.compile / DDP wrappers."""
    while True:
        inner = getattr(model, "_orig_mod", None)
        if inner is None:
            inner = getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module) or inner is model:
            return model
        model = inner


# ---------------------------------------------------------------- evaluation
DECODERS = ("last", "mean", "max_confidence", "threshold")


@torch.no_grad()
def accumulate(model, spec, data: Tensors, readout: str, *, indices: torch.Tensor | None = None,
               levels: list[float] | None = None, decoder: str = "last", threshold: float | None = None,
               batch_size: int = 256, device="cpu", amp: bool = False, loss_weights: torch.Tensor | None = None,
               steps: int | None = None) -> dict[str, torch.Tensor]:
    """Counts over ``data`` (or its rows ``indices``): per level, correct per step, items,
    decoder hits and decision steps, and the summed loss. Counts add across processes."""
    from .losses import decode, temporal_cross_entropy

    net = unwrap(model)
    T = net.plan_for(steps).steps
    levels = sorted(set(data.levels.tolist())) if levels is None else list(levels)
    L = len(levels)
    level_of = {lv: i for i, lv in enumerate(levels)}
    out = {
        "correct": torch.zeros(L, T, dtype=torch.float64),
        "n": torch.zeros(L, dtype=torch.float64),
        "decoded": torch.zeros(L, dtype=torch.float64),
        "decision_step": torch.zeros(L, dtype=torch.float64),
        "loss": torch.zeros(1, dtype=torch.float64),
    }
    order = torch.arange(len(data)) if indices is None else indices
    device = torch.device(device)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            x = present_batch(spec, data.images[idx], T).to(device)
            y = data.labels[idx].to(device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x, steps=steps).readouts[readout]
            logits = logits.float()
            lv = torch.tensor([level_of[v] for v in data.levels[idx].tolist()], dtype=torch.long)
            hits = (logits.argmax(-1) == y).cpu().double()  # [T, B]
            out["correct"].index_add_(0, lv, hits.T)
            out["n"].index_add_(0, lv, torch.ones(len(idx), dtype=torch.float64))
            pred, step = decode(logits, decoder, threshold)
            out["decoded"].index_add_(0, lv, (pred.to(y.device) == y).cpu().double())
            out["decision_step"].index_add_(0, lv, step.cpu().double())
            if loss_weights is not None:
                w = loss_weights.to(logits.device, logits.dtype)
                out["loss"] += float(temporal_cross_entropy(logits, y, w)) * len(idx)
    finally:
        model.train(was_training)
    out["levels"] = torch.tensor(levels, dtype=torch.float64)
    return out


def summarize(counts: dict[str, torch.Tensor], decoder: str = "last", threshold: float | None = None) -> dict:
    """Counts -> accuracies (plain data)."""
    n = counts["n"]
    total = float(n.sum())
    safe = n.clamp(min=1)
    per_level = {}
    for i, lv in enumerate(counts["levels"].tolist()):
        per_level[_level_key(lv)] = {
            "n": int(n[i]),
            "accuracy_per_step": (counts["correct"][i] / safe[i]).tolist(),
            "accuracy": float(counts["decoded"][i] / safe[i]),
            "mean_decision_step": float(counts["decision_step"][i] / safe[i]),
        }
    all_total = max(total, 1.0)
    return {
        "n": int(total),
        "steps": int(counts["correct"].shape[1]),
        "decoder": decoder,
        "threshold": threshold,
        "accuracy_per_step": (counts["correct"].sum(0) / all_total).tolist(),
        "accuracy": float(counts["decoded"].sum() / all_total),
        "mean_decision_step": float(counts["decision_step"].sum() / all_total),
        "loss": float(counts["loss"].sum() / all_total),
        "levels": per_level,
    }


def _level_key(level: float) -> str:
    return f"{level:g}"


def evaluate(net, spec, dataset, *, readout: str | None = None, decoder: str = "last",
             threshold: float | None = None, batch_size: int = 256, device=None, amp: bool = False,
             steps: int | None = None, loss=None) -> dict:
    """Accuracy of ``net`` (compiled from ``spec``) on ``dataset`` (items ``(image, label, level)``):
    per step, per occlusion level, and for ``decoder`` (see :func:`tnnspec.train.losses.decode`).

    Returns ``{"n", "steps", "decoder", "threshold", "accuracy_per_step": [T], "accuracy",
    "mean_decision_step", "loss", "levels": {"0.2": {"n", "accuracy_per_step", "accuracy",
    "mean_decision_step"}, ...}}``; ``loss`` (a LossOverTime) adds the mean loss.
    """
    if decoder not in DECODERS:
        raise ValueError(f"unknown decoder '{decoder}'; choose one of {', '.join(DECODERS)}")
    if decoder == "threshold" and threshold is None:
        raise ValueError("the 'threshold' decoder needs a threshold (--threshold)")
    data = materialize(dataset)
    readout = pick_readout(spec, readout)
    inner = unwrap(net)
    check_classes(inner, readout, data.labels)
    if device is None:
        param = next(inner.parameters(), None)
        device = param.device if param is not None else "cpu"
    weights = None
    if loss is not None:
        from .losses import time_weights

        weights = time_weights(inner.plan_for(steps).steps, loss)
    counts = accumulate(net, spec, data, readout, decoder=decoder, threshold=threshold, batch_size=batch_size,
                        device=device, amp=amp, loss_weights=weights, steps=steps)
    result = summarize(counts, decoder, threshold)
    if loss is None:
        result.pop("loss")
    return result


def format_table(result: dict) -> str:
    """Accuracy (%) per step (columns) for each occlusion level and all images (rows), and the
    decoder's accuracy and mean decision step."""
    T = result["steps"]
    head = ["occlusion", "n"] + [f"t={t}" for t in range(T)] + [result["decoder"], "step"]
    rows = []
    for key, r in result["levels"].items():
        rows.append([key, str(r["n"])] + [f"{100 * a:.1f}" for a in r["accuracy_per_step"]]
                    + [f"{100 * r['accuracy']:.1f}", f"{r['mean_decision_step']:.2f}"])
    rows.append(["all", str(result["n"])] + [f"{100 * a:.1f}" for a in result["accuracy_per_step"]]
                + [f"{100 * result['accuracy']:.1f}", f"{result['mean_decision_step']:.2f}"])
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) for i in range(len(head))]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    note = f" (threshold {result['threshold']:g})" if result.get("threshold") is not None else ""
    out.append(f"accuracy (%) per step; '{result['decoder']}'{note}: decoded accuracy and mean decision step")
    return "\n".join(out)
