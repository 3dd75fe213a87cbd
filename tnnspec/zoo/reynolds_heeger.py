"""Harness for the Reynolds & Heeger (2009) normalization model of attention
(graphs/reynolds_heeger.yaml): the compiled model with the paper's identity stimulus drive,
and its equilibrium responses to a square stimulus under a square attention field.
Used by tests/test_zoo_misc.py and tools/plot_reynolds_heeger.py.
"""

from __future__ import annotations

import torch

STEPS = 40  # the shunting circuit (tau 2 steps) is at its fixed point long before


def model():
    """(spec, net): the zoo graph compiled, stimulus drive set to the identity (the paper's model)."""
    from .. import compile as compile_spec
    from . import load

    spec = load("reynolds_heeger", strict=True)
    net = compile_spec(spec).eval()
    channels = spec.inputs["stimulus"].shape[0]
    with torch.no_grad():
        net.edges["stimulus__V1"].conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
    return spec, net


def square(n: int, radius: int) -> torch.Tensor:
    """An n x n map that is 1 on the centred (2 radius + 1)² square, 0 elsewhere."""
    m = torch.zeros(n, n)
    c = n // 2
    m[c - radius:c + radius + 1, c - radius:c + radius + 1] = 1
    return m


def responses(net, stim_radius: int, field_radius: int, contrasts, attend: bool, steps: int = STEPS):
    """(stimulus, cue, V1 at the last step) for a square stimulus of the given contrasts in
    orientation channel 0 and, when ``attend``, a square attention field."""
    channels, n, _ = net.spec.inputs["stimulus"].shape
    b = len(contrasts)
    stim = torch.zeros(b, channels, n, n)
    stim[:, 0] = torch.as_tensor(list(contrasts), dtype=torch.float32).view(b, 1, 1) * square(n, stim_radius)
    cue = torch.zeros(b, 1, n, n)
    if attend:
        cue[:, 0] = square(n, field_radius)
    with torch.no_grad():
        run = net({"stimulus": stim, "attention_cue": cue}, steps=steps, record=("V1",))
    return stim, cue, run.areas["V1"][-1]
