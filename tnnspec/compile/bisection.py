"""Logarithmic activation checkpointing (``checkpoint="recursive"``): a run of T steps whose
backward pass recomputes steps from a few stored carries, found by bisection.

Forward runs every step without building a graph and stores the carry (what one step hands to
the next) before steps T/2, 3T/4, 7T/8, ... — the bisection points between step 0 and the
last step. Backward goes through the steps from last to first; to reach step t it starts from
the latest stored carry s <= t and, again by bisection, stores carries at the midpoints
between s and t while running forward to t, then runs step t once more with a graph and
backpropagates through that one step. The stored carries form a stack of at most
log2(T) + 1 entries, each step is computed at most log2(T) + 2 times, and the memory peak is
those carries plus one step's activations — it grows with log T, not with T.

Unlike ``torch.utils.checkpoint``, the whole run is one autograd function that returns the
gradients of the parameters it used (so ``torch.autograd.grad`` and gradient hooks work), the
random number generator is replayed from its state at each stored carry (dropout masks match),
module buffers (BatchNorm running statistics) are restored after the recomputations, and the
recomputation runs under the autocast state of the forward pass. Backpropagating through the
same run twice is refused: the stored carries are consumed.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from .torch_compat import tree_flatten, tree_unflatten


def bisection_points(start: int, end: int) -> list[int]:
    """The steps (after ``start``, up to ``end``) whose carries are stored to reach ``end``:
    halve the remaining distance each time (``(s + end + 1) // 2``)."""
    points = []
    while start < end:
        start = (start + end + 1) // 2
        points.append(start)
    return points


def run_bisected(module: nn.Module, advance: Callable, steps: int, carry, run, inputs: dict) -> list:
    """Runs ``advance(t, carry, run) -> (carry, emitted)`` for t in 0..steps-1 as one autograd
    function and returns the list of each step's ``emitted``. ``run`` holds the tensors that
    stay fixed during the run; ``inputs`` names those among them that may carry gradients
    (path -> tensor, see :func:`_with_leaves`)."""
    params = [p for p in module.parameters() if p.requires_grad]
    paths = list(inputs)
    driver = _Driver(module, advance, steps, carry, run, paths, params)
    flat = _BisectedRun.apply(driver, *params, *(inputs[p] for p in paths))
    return tree_unflatten(list(flat), driver.emitted_spec)


class _Driver:
    """What the autograd function needs between forward and backward."""

    def __init__(self, module, advance, steps, carry, run, paths, params):
        self.module, self.advance, self.steps, self.carry, self.run = module, advance, steps, carry, run
        self.paths, self.params = paths, params  # the parameters given to the function, in order
        self.emitted_spec = None
        self.stack: list[tuple[int, object, dict]] = []
        self.consumed = False


class _BisectedRun(torch.autograd.Function):
    @staticmethod
    def forward(ctx, driver: _Driver, *tensors):
        ctx.driver = driver
        ctx.autocast = _autocast_state(tensors)
        ctx.devices = devices = _cuda_devices(tensors)
        stored = set(bisection_points(0, driver.steps - 1))
        carry, emitted = driver.carry, []
        driver.stack.append((0, carry, _rng_state(devices)))
        for t in range(driver.steps):
            if t in stored:
                driver.stack.append((t, carry, _rng_state(devices)))
            carry, out = driver.advance(t, carry, driver.run)
            emitted.append(out)
        driver.carry = None
        ctx.per_step = [len(tree_flatten(out)[0]) for out in emitted]
        flat, driver.emitted_spec = tree_flatten(emitted)
        # fresh views: a tensor kept elsewhere (a cached zero drive) must not become an output
        return tuple(leaf.view_as(leaf) for leaf in flat)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grad_emitted):
        driver = ctx.driver
        if driver.consumed:
            raise RuntimeError("checkpoint='recursive': this run was already backpropagated (its stored "
                               "carries are consumed); run the forward pass again")
        driver.consumed = True
        module, params = driver.module, driver.params
        buffers = {name: b.clone() for name, b in module.named_buffers()}
        run, leaves = _with_leaves(driver.run, driver.paths, ctx.needs_input_grad[1 + len(params):])
        grads_in = [None] * (len(params) + len(leaves))
        offsets = [0]
        for n in ctx.per_step:
            offsets.append(offsets[-1] + n)
        grad_carry = None
        stack = driver.stack
        wanted = params + [x for x in leaves if x.requires_grad]
        slot = list(range(len(params))) + [len(params) + i for i, x in enumerate(leaves) if x.requires_grad]
        with torch.random.fork_rng(devices=ctx.devices), _autocast(ctx.autocast):
            for t in reversed(range(driver.steps)):
                while stack[-1][0] > t:
                    stack.pop()
                s, carry, rng = stack[-1]
                _set_rng_state(rng)
                with torch.no_grad():
                    for m in bisection_points(s, t):
                        for u in range(s, m):
                            carry, _ = driver.advance(u, carry, driver.run)
                        s = m
                        stack.append((m, carry, _rng_state(ctx.devices)))
                carry_leaves, carry_spec = tree_flatten(carry)
                detached = [x.detach().requires_grad_(x.is_floating_point()) if isinstance(x, torch.Tensor) else x
                            for x in carry_leaves]
                with torch.enable_grad():
                    new_carry, out = driver.advance(t, tree_unflatten(detached, carry_spec), run)
                outs = tree_flatten(new_carry)[0]
                grads = grad_carry if grad_carry is not None else [None] * len(outs)
                outs = outs + tree_flatten(out)[0]
                grads = list(grads) + list(grad_emitted[offsets[t]:offsets[t + 1]])
                roots = [(o, g) for o, g in zip(outs, grads)
                         if isinstance(o, torch.Tensor) and o.requires_grad and g is not None]
                wrt = wanted + [x for x in detached if isinstance(x, torch.Tensor) and x.requires_grad]
                got = torch.autograd.grad([o for o, _ in roots], wrt, [g for _, g in roots],
                                          allow_unused=True) if roots else [None] * len(wrt)
                for i, g in zip(slot, got[:len(wanted)]):
                    if g is not None:
                        grads_in[i] = g if grads_in[i] is None else grads_in[i] + g
                carried = iter(got[len(wanted):])
                grad_carry = [next(carried) if isinstance(x, torch.Tensor) and x.requires_grad else None
                              for x in detached]
                stack.pop()
        stack.clear()
        with torch.no_grad():  # the recomputations updated BatchNorm statistics again
            for name, b in module.named_buffers():
                b.copy_(buffers[name])
        return (None, *grads_in)


def _with_leaves(run, paths, needs_grad):
    """``run`` with each tensor named by a path ((field, key) or (field, key, step)) replaced
    by a detached copy that requires grad where the function's input does; and those copies."""
    fields = {}
    leaves = []
    for path, needed in zip(paths, needs_grad):
        field, *keys = path
        container = fields.setdefault(field, _copy_nested(getattr(run, field)))
        holder = container
        for k in keys[:-1]:
            holder = holder[k]
        leaf = holder[keys[-1]].detach().requires_grad_(bool(needed))
        holder[keys[-1]] = leaf
        leaves.append(leaf)
    return dataclasses.replace(run, **fields), leaves


def _copy_nested(d: dict) -> dict:
    return {k: _copy_nested(v) if isinstance(v, dict) else v for k, v in d.items()}


def _cuda_devices(tensors) -> list[int]:
    return sorted({t.device.index or 0 for t in tensors if isinstance(t, torch.Tensor) and t.is_cuda})


def _rng_state(devices: list[int]) -> dict:
    state = {"cpu": torch.get_rng_state()}
    for d in devices:
        state[d] = torch.cuda.get_rng_state(d)
    return state


def _set_rng_state(state: dict) -> None:
    for key, value in state.items():
        if key == "cpu":
            torch.set_rng_state(value)
        else:
            torch.cuda.set_rng_state(value, key)


def _autocast_state(tensors) -> dict:
    kinds = {"cpu"} | {t.device.type for t in tensors if isinstance(t, torch.Tensor)}
    return {k: (torch.is_autocast_enabled(k), torch.get_autocast_dtype(k)) for k in kinds}


class _autocast:
    """Re-enters the autocast state recorded in forward (for every device type seen)."""

    def __init__(self, state: dict):
        self.contexts = [torch.autocast(k, enabled=on, dtype=dtype) for k, (on, dtype) in state.items()]

    def __enter__(self):
        for c in self.contexts:
            c.__enter__()

    def __exit__(self, *exc):
        for c in reversed(self.contexts):
            c.__exit__(*exc)
