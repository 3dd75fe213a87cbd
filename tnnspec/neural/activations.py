"""The activity of a compiled network's areas over time, for a set of stimulus images."""

from __future__ import annotations

import numpy as np
import torch

from .errors import NeuralDataError


def model_input(spec, images: torch.Tensor, steps: int, source: str = "stimuli") -> torch.Tensor:
    """Stimulus images [S, C, H, W] as the network's input (fed as they are: a grey image is
    repeated over the input's channels, nothing is resized or normalised)."""
    from ..train.evaluate import DataError, present_batch

    try:
        return present_batch(spec, images, steps)
    except DataError as exc:
        raise NeuralDataError(f"{source}: {exc}") from None


def area_activity(net, images: torch.Tensor, areas, *, steps: int, batch_size: int = 64, device="cpu",
                  perturb=None, source: str = "stimuli", progress: bool = False) -> dict[str, np.ndarray]:
    """Run ``net`` on ``images`` for ``steps`` steps and return each area's output, flattened:
    ``{area: float32 array [steps, S, D]}``. Evaluation mode, no gradients; ``perturb`` as in a
    network call (lesions)."""
    from ..train.evaluate import unwrap

    inner = unwrap(net)
    areas = list(dict.fromkeys(areas))
    unknown = [a for a in areas if a not in inner.areas]
    if unknown:
        raise NeuralDataError(f"unknown area(s) {unknown}; the graph has {list(inner.areas)}")
    was_training = net.training
    net.eval()
    chunks: dict[str, list[np.ndarray]] = {a: [] for a in areas}
    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="activations", unit="batch", leave=False)
    try:
        with torch.no_grad():
            for i in starts:
                x = model_input(inner.spec, images[i:i + batch_size], steps, source).to(device)
                run = net(x, steps=steps, record=areas, readout_steps="last", perturb=perturb)
                for a in areas:
                    chunks[a].append(run.areas[a].flatten(2).float().cpu().numpy())
    finally:
        net.train(was_training)
    return {a: np.concatenate(c, axis=1) for a, c in chunks.items()}
