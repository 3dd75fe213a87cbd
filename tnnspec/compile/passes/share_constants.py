"""Plan pass ``share_constants``: input-independent updates once per batch.

Before the input reaches it, an area may run on zero drives (``zero_drive``, ``zero_input``)
or on terms that are themselves input-independent (CORnet-RT's areas before the image reaches
them, a blank ``on_off`` frame's consequences). Such an update has the same value for every
sample of a batch. The pass marks it ``constant`` (an input shows a blank frame, or every read
is a zero stand-in or a constant source, and for a stateful area every earlier update was
constant too); the interpreter then computes it at batch size 1 and broadcasts it (a view)
where input-dependent updates read it.

Invariant: outputs equal the plain interpreter's to float rounding (oneDNN may pick another
convolution algorithm at batch size 1). It applies to a call (:func:`applies`) only with a
batch larger than one, no forward hook anywhere (a hook would see batch-1 tensors) and no
module whose output couples the samples of a batch (BatchNorm or dropout in train mode).
Clamped updates are never marked (a clamp value may differ per sample).
"""

from __future__ import annotations

from dataclasses import replace

from torch import nn

from ...graph.plan import Plan, replace_plan
from .. import torch_compat

NAME = "share_constants"


def mark_constants(plan: Plan) -> Plan:
    constant = {(name, t): frames[t].kind == "blank" for name, frames in plan.frames.items()
                for t in range(plan.steps)}
    state_constant = {a: True for a in plan.order}
    schedule = []
    for t, step in enumerate(plan.schedule):
        out = []
        for s in step:
            const = (not s.clamp and all(r.zeros or constant.get((r.source, r.at), True) for r in s.reads)
                     and (state_constant[s.area] or s.area not in plan.stateful))
            constant[(s.area, t)] = state_constant[s.area] = const
            out.append(replace(s, constant=const))
        schedule.append(tuple(out))
    return replace_plan(plan, NAME, schedule=tuple(schedule))


def applies(network: nn.Module, batch: int, hooked: bool) -> bool:
    """Whether this call may compute the plan's constant updates at batch size 1."""
    if batch <= 1 or hooked:
        return False
    coupled = (*torch_compat.batchnorm_types(), nn.Dropout)
    return not any(m.training and isinstance(m, coupled) for m in network.modules())
