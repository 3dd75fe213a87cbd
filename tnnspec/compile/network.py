"""The compiled network: a plain interpreter of the plan.

All graph analysis happened in :func:`tnnspec.graph.plan.build_plan`; the plan is closed, so
the interpreter never reads the spec. Each call computes, from the modules' current state,
what the plan says: for each step, each scheduled area combines the terms its reads deliver,
updates its cell and applies its ops; silent areas output zeros; readout heads run on the
areas computed at that step. Nothing survives from one call to the next.

Optimisation passes (:mod:`tnnspec.compile.passes`) rewrite the plan before it is run, or change
how modules compute while it runs; the interpreter executes what they produce, and with
``optimize="none"`` it is the reference semantics the passes are tested against.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..graph.perturb import NO_PERTURBATIONS, Perturbations, parse
from ..graph.plan import AreaStep, Plan, build_plan
from ..spec.components import ShapeContext
from ..spec.models import Normalization, Spec
from . import feedback, kept, passes, torch_compat
from .bisection import run_bisected
from .modules import AreaModule, DivisiveTerm, EdgeModule, ReadoutModule, gain_view
from .packing import clear, mark_zero
from .passes.hoist import hoist
from .passes.prune import prune
from .passes.share_constants import applies as shares_constants, mark_constants


@dataclass
class Run:
    """What a forward pass returns: readouts at every returned step, and the recorded areas."""

    readouts: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [T, B, ...]
    areas: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [T, B, ...]


torch.export.register_dataclass(Run, serialized_type_name="tnnspec.Run")  # torch.export / pytrees


class Network(nn.Module):
    """A spec compiled to a torch module: ``net(x, steps=None, record=(), readout_steps=None,
    perturb=None)`` returns a :class:`Run`.

    ``x`` is a tensor for a single-input spec ([B, C, H, W], or [B, T, C, H, W] for a sequence
    input) or a mapping input name -> tensor. ``steps``: the horizon (default: the spec's).
    ``record``: areas whose outputs are returned at every step. ``readout_steps``: None (every
    step), ``"last"`` or a list of steps at which readouts are returned. ``perturb``: lesions and
    manipulations for this call (:mod:`tnnspec.graph.perturb`), e.g. ``{"V1__V2": "cut",
    "V4": {"clamp": 0.0, "steps": [2, 3]}}``.

    Options that change the computation: ``tbptt=k`` cuts gradients every k steps (truncated
    backpropagation through time); ``checkpoint=True`` recomputes each step's activations
    during backward instead of storing them (forward hooks and BatchNorm statistics in train
    mode then see each step twice); ``checkpoint="recursive"`` stores only ~log2(T) carries
    and recomputes steps from them by bisection (:mod:`tnnspec.compile.bisection`).

    ``optimize``: the passes (:mod:`tnnspec.compile.passes`): ``"default"``, ``"none"`` or names.
    """

    def __init__(self, spec: Spec, optimize="default", tbptt: int | None = None, checkpoint: bool | str = False):
        super().__init__()
        if checkpoint not in (False, True, "recursive"):
            raise ValueError(f"checkpoint must be False, True (per step) or 'recursive', got {checkpoint!r}")
        if tbptt is not None and (isinstance(tbptt, bool) or not isinstance(tbptt, int) or tbptt < 1):
            raise ValueError(f"tbptt must be a positive number of steps, got {tbptt!r}")
        self.spec = spec
        self.passes = passes.resolve(optimize)
        self.tbptt = tbptt
        self.checkpoint = checkpoint
        self._plans: dict[tuple, Plan] = {}
        plan = self.plan
        shapes = plan.shapes
        T = plan.steps
        self.areas = nn.ModuleDict({
            name: AreaModule(area, shapes.drive[name], shapes.output[name], T, spec.time.dt_ms)
            for name, area in spec.areas.items()})
        self.edges = nn.ModuleDict()
        divisive = {}
        for i, e in enumerate(spec.edges):
            name = plan.edge_names[i]
            target_hw = tuple(shapes.drive[e.target][1:3]) if len(shapes.drive[e.target]) == 3 else None
            ctx = ShapeContext(channels=spec.areas[e.target].channels, target_hw=target_hw)
            self.edges[name] = EdgeModule(e, shapes.of(e.source), ctx, T)
            if isinstance(e, Normalization):
                divisive[name] = DivisiveTerm(e)
        self.divisive = nn.ModuleDict(divisive)  # parameter-free: state_dict keys are unchanged
        self.readouts = nn.ModuleDict({
            name: ReadoutModule(r, shapes.output[r.source], T) for name, r in spec.readouts.items()})

    def _apply(self, fn, recurse=True):
        clear(self)  # packed and folded weights derive from the old tensors (.to(), .double())
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ plans and inputs
    @property
    def plan(self) -> Plan:
        """The plan of a default call (the spec's horizon, every step returned), after the passes."""
        return self.plan_for(None)

    def plan_for(self, steps: int | None = None, perturbations: Perturbations = NO_PERTURBATIONS,
                 emit: tuple[int, ...] | None = None, record: tuple[str, ...] = ()) -> Plan:
        """The plan for a call, after this network's plan passes. A plan is a function of the
        (immutable) spec and these arguments alone, so it is built once per combination."""
        key = (id(self.spec), steps, perturbations, emit, tuple(record))
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) > 64:
                self._plans.clear()
            plan = build_plan(self.spec, steps, perturbations, emit, tuple(record))
            if "hoist" in self.passes and not self.tbptt:
                plan = hoist(plan)
            if "share_constants" in self.passes:
                plan = mark_constants(plan)
            if "prune" in self.passes:
                plan = prune(plan)
            for cached in ("work", "reused", "constant"):  # outside any torch.compile region
                getattr(plan, cached)
            self._plans[key] = plan
        return plan

    def example_inputs(self, batch_size: int = 2, steps: int | None = None, seed: int | None = 0):
        """Random inputs valid for this spec (a tensor, or a dict for several inputs)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        plan = self.plan_for(steps)
        param = next(self.parameters(), None)
        kw = dict(dtype=param.dtype if param is not None else torch.float32)
        out = {}
        for name, shape in plan.shapes.inputs.items():
            sequence = plan.frames[name][0].kind == "frame"
            x = torch.randn([batch_size] + ([plan.steps] if sequence else []) + list(shape), generator=gen, **kw)
            out[name] = x.to(param.device) if param is not None else x
        return next(iter(out.values())) if len(out) == 1 else out

    def _inputs(self, x, plan: Plan) -> dict[str, torch.Tensor]:
        names = list(plan.frames)
        if isinstance(x, torch.Tensor):
            if len(names) != 1:
                raise ValueError(f"this network has inputs {names}: pass a dict name -> tensor")
            x = {names[0]: x}
        if not isinstance(x, dict):
            raise TypeError(f"expected a tensor or a dict of tensors, got {type(x).__name__}")
        missing, unknown = set(names) - set(x), set(x) - set(names)
        if missing or unknown:
            raise ValueError(f"inputs: missing {sorted(missing)}, unknown {sorted(unknown)}; expected {names}")
        for name in names:
            t = x[name]
            seq = plan.frames[name][0].kind == "frame"
            want = list(plan.shapes.inputs[name])
            got = list(t.shape[2:] if seq else t.shape[1:])
            if got != want or t.dim() != len(want) + (2 if seq else 1):
                form = "[B, T, " if seq else "[B, "
                raise ValueError(f"input '{name}': expected shape {form}{', '.join(map(str, want))}], "
                                 f"got {list(t.shape)}")
            if seq and t.shape[1] < plan.steps:
                raise ValueError(f"input '{name}': sequence has {t.shape[1]} frames but the run has "
                                 f"{plan.steps} steps")
        return x

    def call_plan(self, steps: int | None = None, record=(), readout_steps=None, perturb=None) -> Plan:
        """The plan a call with these arguments runs (``print`` it to see what is computed)."""
        return self._call_plan(steps, record, readout_steps, perturb)[0]

    def _call_plan(self, steps, record, readout_steps, perturb) -> tuple[Plan, dict]:
        """The plan of one call and its clamp values; raises ``ValueError`` for bad arguments."""
        horizon = self.plan_for(steps).steps
        record = tuple(record)
        for name in record:
            if name not in self.areas:
                raise ValueError(f"record: unknown area '{name}'; areas: {list(self.areas)}")
        emit = None
        if readout_steps is not None:
            emit = ((horizon - 1,) if readout_steps == "last"
                    else tuple(sorted({int(t) for t in readout_steps})))
            bad = [t for t in emit if not 0 <= t < horizon]
            if bad or not emit:
                raise ValueError(f"readout_steps: steps {bad or list(emit)} are outside 0..{horizon - 1}")
        perturbations, clamps = parse(perturb, self.spec, self.plan.edge_names, horizon)
        return self.plan_for(steps, perturbations, emit, record), clamps

    # ------------------------------------------------------------------ execution
    def forward(self, x, steps: int | None = None, record=(), readout_steps=None, perturb=None) -> Run:
        plan, clamps = self._call_plan(steps, record, readout_steps, perturb)
        xs = self._inputs(x, plan)
        if torch.compiler.is_compiling():  # kernel passes are off; kept weights are not used
            return self._run(plan, xs, clamps)
        with kept.session(), passes.running(self.passes):  # kept weights are value-checked once per call
            return self._run(plan, xs, clamps)

    def _run(self, plan: Plan, xs: dict, clamps: dict) -> Run:
        first = next(iter(xs.values()))
        batch, dtype, device = first.shape[0], first.dtype, first.device
        hooked = torch_compat.forward_hooked(self)
        # zeros the plan makes are marked as such (a conv of them is its bias) unless a hook
        # could write into one in place
        zero = _Zeros(batch, dtype, device, marked=passes.on("zero_convs") and not hooked)
        shared = plan.constant > 0 and "share_constants" in self.passes and shares_constants(self, batch, hooked)
        if shared:
            zero.one = _Zeros(1, dtype, device, zero.marked)
        run = _RunContext(plan, xs, zero, shared, self._clamps(plan, clamps, batch, dtype, device),
                          tap=feedback.tap())
        emitted = self._range(_Carry({}, {}, {}, {}), run)
        steps = range(plan.steps) if plan.emit is None else plan.emit
        readouts = {n: torch.stack([emitted[t][1][n] for t in steps]) for n in plan.readouts}
        areas = {n: torch.stack([_full(e[0][n], batch) for e in emitted]) for n in plan.record}
        return Run(readouts=readouts, areas=areas)

    def _clamps(self, plan: Plan, values: dict, batch: int, dtype, device) -> dict:
        out = {}
        for area, value in values.items():
            shape = (batch,) + tuple(plan.shapes.output[area])
            try:
                out[area] = torch.as_tensor(value, dtype=dtype, device=device).expand(shape)
            except (RuntimeError, TypeError, ValueError):
                raise ValueError(f"perturb: clamp value of '{area}' must be a number or a tensor "
                                 f"broadcastable to {list(shape)}") from None
        return out

    def _range(self, carry: _Carry, run: _RunContext) -> list:
        """Every step of the run: per step, (outputs of the recorded areas, readouts). With
        ``checkpoint="recursive"`` and gradients needed, one bisected run."""
        if self.checkpoint == "recursive" and torch.is_grad_enabled():
            inputs = {("xs", n): x for n, x in run.xs.items()}
            if any(p.requires_grad for p in self.parameters()) or any(x.requires_grad for x in inputs.values()):
                return run_bisected(self, self._advance, run.plan.steps, carry, run, inputs)
        emitted = []
        for t in range(run.plan.steps):
            carry, out = self._advance(t, carry, run)
            emitted.append(out)
        return emitted

    def _advance(self, t: int, carry: _Carry, run: _RunContext):
        """Step ``t``: the new carry and (recorded outputs, readout values). Does not mutate
        ``carry`` (steps can be recomputed by checkpointing)."""
        plan = run.plan
        outputs, states, kept_terms, totals = carry
        if self.tbptt and t and t % self.tbptt == 0:
            outputs = {n: {s: v.detach() for s, v in h.items()} for n, h in outputs.items()}
            states = {n: torch_compat.tree_map(_detach, s) for n, s in states.items()}
        past = {(r.source, r.at): outputs[r.source][r.at] for s in plan.schedule[t] for r in s.reads
                if r.at < t and not r.zeros}
        if self.checkpoint is True and torch.is_grad_enabled():  # ("recursive": see _range)
            current, states, kept_terms, heads = checkpoint(self._step, t, run, past, states, kept_terms,
                                                            use_reentrant=False)
        else:
            current, states, kept_terms, heads = self._step(t, run, past, states, kept_terms)
        outputs = {name: dict(history) for name, history in outputs.items()}
        for name, value in current.items():
            outputs.setdefault(name, {})[t] = value
            outputs[name].pop(t - plan.history.get(name, 0), None)  # no later step reads it
        totals = dict(totals)
        for name, y in heads.items():
            if plan.readouts[name][1]:  # cumulative
                y = totals[name] = totals[name] + y if name in totals else y
            heads[name] = y
        return _Carry(outputs, states, kept_terms, totals), ({n: current[n] for n in plan.record}, heads)

    def _step(self, t: int, run: _RunContext, past: dict, states: dict, kept_terms: dict):
        """Step ``t`` from the outputs it reads (``past``: (node, step) -> output), the cell
        states and the kept terms: (every node's output, new states, new kept terms, readout
        heads). Mutates none of its arguments."""
        plan, zero = run.plan, run.zero
        states, kept_terms = dict(states), dict(kept_terms)
        current = {name: self._frame(name, frames[t], t, run) for name, frames in plan.frames.items()}
        computed = set()
        for s in plan.schedule[t]:
            area = self.areas[s.area]
            if s.reuse:  # the plan proved it equal to the previous step's output (kept before its probe)
                y = area.probe(kept_terms[("output", s.area)])
            else:
                y = self._update(s, t, run, current, past, states, kept_terms)
            if run.tap is not None:  # a learning rule's training step (direct feedback alignment)
                run.tap.output(s.area, t, y)
            current[s.area] = run.clamps[s.area] if s.clamp else y
            computed.add(s.area)
        for name in plan.order:
            if name not in computed:  # silent: exactly zero, nothing computed
                current[name] = self.areas[name].probe(zero.one("out:" + name, plan.shapes.output[name]))
        heads = {}
        for name in plan.heads[t]:
            source = plan.readouts[name][0]
            x = current[source] if run.tap is None else current[source].detach()
            heads[name] = (_full(self.readouts[name](x, t), zero.batch) if source in computed
                           else zero("readout:" + name, plan.shapes.readout[name]))
        return current, states, kept_terms, heads

    def _frame(self, name: str, frame, t: int, run: _RunContext) -> torch.Tensor:
        x = run.xs[name]
        if frame.kind == "frame":
            return x[:, t]
        if frame.kind == "image":
            return x
        key = ("blank", name)
        if key not in run.blanks:  # one blank tensor per run (input-independent: batch 1 when shared)
            size = (1,) + tuple(x.shape[1:]) if run.shared else x.shape
            run.blanks[key] = torch.full(size, frame.blank, dtype=x.dtype, device=x.device)
        return run.blanks[key]

    def _update(self, s: AreaStep, t: int, run: _RunContext, current, past, states, kept_terms) -> torch.Tensor:
        """One area update: combine the delivered terms, update the cell, apply the ops."""
        plan = run.plan
        zero = run.zero.one if s.constant and run.shared else run.zero  # batch 1 for shared updates
        broadcast = run.shared and not s.constant  # shared terms meet the batch here
        area = self.areas[s.area]
        driving, bottom, recurrent, modulators, delivered = [], [], [], [], {}
        for r in s.reads:
            if r.reuse:  # the plan proved the transform equal to the one computed at the previous step
                y = kept_terms[r.edge]
            else:
                if r.zeros:  # a zero_input area's stand-in for a source without output yet
                    source = zero("out:" + r.source, plan.shapes.of(r.source))
                else:
                    source = current[r.source] if r.at == t else past[(r.source, r.at)]
                    if run.tap is not None and r.source != s.area:  # no backprop between areas
                        source = source.detach()
                y = self.edges[r.name](source, t)
                if r.edge in plan.kept:
                    kept_terms[r.edge] = y
            if r.scale != 1.0:
                y = y * r.scale
            if broadcast:
                y = _full(y, zero.batch)
            delivered[r.edge] = y
            if r.role == "bottom_up":
                bottom.append(y)
            elif r.role == "recurrent":
                recurrent.append(y)
            else:
                modulators.append((r, y))
            if r.role in ("bottom_up", "recurrent"):
                driving.append(y)
        drive = self._combine(s, plan, driving, bottom, recurrent, delivered, zero)
        for r, y in modulators:
            if r.role == "gain":
                drive = drive * gain_view(y, drive)
            elif r.role == "relative_gain":
                drive = drive * (1 + gain_view(y, drive))
            else:
                drive = self.divisive[r.name](drive, y)
        if s.initial:
            state = area.cell.initial_state(drive)
        else:
            state = states[s.area]
            if broadcast:
                state = torch_compat.tree_map(lambda v: _full(v, zero.batch) if isinstance(v, torch.Tensor) else v,
                                              state)
        if s.area in plan.kept and area.cell.has_input_term:  # the drive recurs: keep the input term
            term = kept_terms[s.area] if s.drive_reuse else area.cell.input_term(drive)
            kept_terms[s.area] = term
            y, state = area.cell(drive, state, t, term)
        else:
            y, state = area.cell(drive, state, t)
        y = area.ops(y, t)
        states[s.area] = area.cell.after_ops(y, state)
        if ("output", s.area) in plan.kept:
            kept_terms[("output", s.area)] = y
        return area.probe(y)

    def _combine(self, s: AreaStep, plan: Plan, driving, bottom, recurrent, delivered, zero) -> torch.Tensor:
        """The drive from the driving terms, by the area's combine mode (no term: zeros)."""
        if not driving:
            return zero("drive:" + s.area, plan.shapes.drive[s.area])
        if s.combine == "concat":
            return torch.cat([delivered[i] if i in delivered else zero(f"edge:{i}", plan.shapes.edge[i])
                              for i in plan.concat[s.area]], dim=1)
        if s.combine == "multiplicative":
            b = _sum(bottom) if bottom else zero("drive:" + s.area, plan.shapes.drive[s.area])
            if not recurrent:
                return b
            gain = 1 + recurrent[0]  # (1 + l) + t, left to right, as written
            for term in recurrent[1:]:
                gain = gain + term
            return b * gain
        return _sum(driving)


class _Zeros:
    """Zero tensors of one batch size, made once per run and name. ``one``: the factory for
    input-independent updates — batch size 1 when they are shared, else this one."""

    def __init__(self, batch: int, dtype, device, marked: bool = False):
        self.batch, self.dtype, self.device, self.marked = batch, dtype, device, marked
        self.made: dict[str, torch.Tensor] = {}
        self.one = self

    def __call__(self, name: str, shape) -> torch.Tensor:
        if name not in self.made:
            z = torch.zeros((self.batch,) + tuple(shape), dtype=self.dtype, device=self.device)
            self.made[name] = mark_zero(z) if self.marked else z
        return self.made[name]


def _full(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``x`` with ``batch`` samples: a shared (batch-1) value broadcast as a view, else itself."""
    return x.expand(batch, *x.shape[1:]) if x.shape[0] == 1 and batch != 1 else x


class _Carry(NamedTuple):
    """What one step hands to the next: outputs still to be read (node -> step -> tensor),
    cell states, kept terms (edge or area -> tensor) and running totals of cumulative readouts."""

    outputs: dict
    states: dict
    kept: dict
    totals: dict


@dataclass
class _RunContext:
    """What stays fixed during one call."""

    plan: Plan
    xs: dict
    zero: _Zeros
    shared: bool  # input-independent updates run at batch size 1 (share_constants)
    clamps: dict
    blanks: dict = field(default_factory=dict)
    tap: feedback.Tap | None = None  # a learning rule's view of a training step (direct feedback alignment)


def _sum(terms: list[torch.Tensor]) -> torch.Tensor:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _detach(v):
    return v.detach() if isinstance(v, torch.Tensor) else v

