"""The compiled network: executes a plan step by step.

All graph analysis happened in :func:`tnnspec.graph.plan.build_plan`; here each step is a
loop over the plan's precomputed area steps, each reading the delivered terms from a
per-source history that keeps only as many past steps as the plan says.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch
from torch import nn
from torch.utils._pytree import tree_map
from torch.utils.checkpoint import checkpoint

from ..graph.plan import AreaStep, Plan, build_plan, prune
from ..spec.components import ShapeContext
from ..spec.models import DRIVING, Normalization, Spec
from . import kept, packing
from .bisection import run_bisected
from .cuda_graphs import CapturedRuns
from .modules import AreaModule, DivisiveTerm, EdgeModule, ReadoutModule, gain_view


@dataclass
class Run:
    """What a forward pass returns: readouts at every step, and the recorded areas."""

    readouts: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [T, B, ...]
    areas: dict[str, torch.Tensor] = field(default_factory=dict)  # name -> [T, B, ...]


torch.export.register_dataclass(Run, serialized_type_name="tnnspec.Run")  # torch.export / pytrees


class Network(nn.Module):
    """A spec compiled to a torch module. ``net(x, steps=None, record=())`` returns a :class:`Run`.

    ``x`` is a tensor for a single-input spec ([B, C, H, W], or [B, T, C, H, W] for a sequence
    input) or a mapping input name -> tensor. ``tbptt=k`` cuts gradients every k steps
    (truncated backpropagation through time; the plan's reused outputs are then computed at
    every step, see ``forward``). ``checkpoint=True`` recomputes each step's
    activations during backward instead of storing them (memory ~ one step plus, for every
    step, the outputs later steps read; forward hooks and BatchNorm statistics in train mode
    then see each step twice). ``checkpoint="recursive"`` stores only ~log2(T) carries and
    recomputes steps from them by bisection (:mod:`tnnspec.compile.bisection`): memory grows
    with log T, each step runs at most log2(T) + 2 times; gradients equal to float rounding.

    ``channels_last=True`` stores 4-d weights and inputs in channels-last (NHWC) memory order,
    which oneDNN and cuDNN convolutions often run faster (outputs equal to float rounding).
    ``cuda_graphs=True`` captures inference calls on CUDA as CUDA graphs and replays them
    (:mod:`tnnspec.compile.cuda_graphs`); ``fuse_batchnorm=True`` runs each conv followed by a
    BatchNorm as one conv in eval mode (:mod:`tnnspec.compile.fusion`; equal to float rounding);
    ``packed_weights`` keeps conv weights in oneDNN's blocked layout for CPU inference calls
    instead of reordering them at every call (:mod:`tnnspec.compile.packing`): ``"exact"`` (the
    default) runs the very primitive ``conv2d`` runs, bit-identical; ``"fast"`` a faster one,
    equal to float rounding; ``"off"`` none;
    ``hoist``/``fold`` turn time-invariant hoisting and time folding off when False.
    ``share_constants=True`` computes the plan's input-independent updates (an area driven by
    zeros, or only by such updates, before the input reaches it) once for the batch, at batch
    size 1, and broadcasts them where input-dependent updates read them (equal to float
    rounding: oneDNN may pick another convolution algorithm at batch size 1 for small maps).
    ``cache_constants=True`` (the default) keeps those updates from one inference call to the
    next with the same batch size, plan and settings, while the parameters and buffers they
    read are unchanged (:mod:`tnnspec.compile.kept`); bit-identical, since the kept values are
    what the same computation returned. It applies to CPU calls without gradients, in eval mode,
    without autocast and while no forward hook is registered.
    """

    def __init__(self, spec: Spec, tbptt: int | None = None, checkpoint: bool | str = False, hoist: bool = True,
                 fold: bool = True, channels_last: bool = False, cuda_graphs: bool = False,
                 fuse_batchnorm: bool = False, packed_weights: bool | str = "exact",
                 share_constants: bool = False, cache_constants: bool = True):
        super().__init__()
        if checkpoint not in (False, True, "recursive"):
            raise ValueError(f"checkpoint must be False, True (per step) or 'recursive', got {checkpoint!r}")
        self._captured = CapturedRuns()
        self.cuda_graphs = cuda_graphs
        self.channels_last = channels_last
        self.hoist = hoist
        self.fold = fold
        self.spec = spec
        self.tbptt = tbptt
        self.checkpoint = checkpoint
        self.share_constants = share_constants
        self.cache_constants = cache_constants
        self._plans: dict[int, Plan] = {}
        self._constant_modules: dict[int, tuple] = {}  # id(plan) -> the modules its constant updates use
        self._pruned_plans: dict[tuple, Plan] = {}
        plan = self.plan = self.plan_for(None)
        shapes = plan.shapes
        T = plan.steps
        self.areas = nn.ModuleDict({
            name: AreaModule(area, shapes.drive[name], shapes.output[name], T, spec.time.dt_ms)
            for name, area in spec.areas.items()})
        self.edges = nn.ModuleDict()
        self.divisive: dict[str, DivisiveTerm] = {}
        for i, e in enumerate(spec.edges):
            name = plan.edge_names[i]
            target_hw = tuple(shapes.drive[e.target][1:3]) if len(shapes.drive[e.target]) == 3 else None
            ctx = ShapeContext(channels=spec.areas[e.target].channels, target_hw=target_hw)
            self.edges[name] = EdgeModule(e, shapes.of(e.source), ctx, T)
            if isinstance(e, Normalization):
                self.divisive[name] = DivisiveTerm(e)
        # concat areas stack every driving edge's channels; an absent term is stacked as zeros
        self.concat_inputs = {a: [] for a, area in spec.areas.items() if area.combine == "concat"}
        for i, e in enumerate(spec.edges):
            if e.target in self.concat_inputs and e.type in DRIVING:
                self.concat_inputs[e.target].append(i)
        self.readouts = nn.ModuleDict({
            name: ReadoutModule(r, shapes.output[r.source], T) for name, r in spec.readouts.items()})
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.fuse_batchnorm = fuse_batchnorm
        self.packed_weights = packing.mode(packed_weights)
        for module in self.modules():
            for option in ("fuse_batchnorm", "packed_weights"):
                if hasattr(type(module), option) and module is not self:
                    setattr(module, option, getattr(self, option))

    def _apply(self, fn, recurse=True):
        self._captured.clear()  # captured CUDA graphs and packed weights point at the old memory
        packing.clear(self)
        return super()._apply(fn, recurse)

    # ------------------------------------------------------------------ plans and inputs
    def plan_for(self, steps: int | None) -> Plan:
        """The plan for ``steps`` steps (``None``: the spec's horizon), cached."""
        key = -1 if steps is None else int(steps)
        if key not in self._plans:
            self._plans[key] = _ready(build_plan(self.spec, steps))
        return self._plans[key]

    def example_inputs(self, batch_size: int = 2, steps: int | None = None, seed: int | None = 0):
        """Random inputs valid for this spec (a tensor, or a dict for several inputs)."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        T = self.plan_for(steps).steps
        param = next(self.parameters(), None)
        kw = dict(dtype=param.dtype if param is not None else torch.float32)
        out = {}
        for name, inp in self.spec.inputs.items():
            shape = [batch_size] + ([T] if inp.schedule.type == "sequence" else []) + list(inp.shape)
            x = torch.randn(shape, generator=gen, **kw)
            out[name] = x.to(param.device) if param is not None else x
        return next(iter(out.values())) if len(out) == 1 else out

    def _inputs(self, x, T: int) -> dict[str, torch.Tensor]:
        names = list(self.spec.inputs)
        if isinstance(x, torch.Tensor):
            if len(names) != 1:
                raise ValueError(f"this network has inputs {names}: pass a dict name -> tensor")
            x = {names[0]: x}
        if not isinstance(x, dict):
            raise TypeError(f"expected a tensor or a dict of tensors, got {type(x).__name__}")
        missing, unknown = set(names) - set(x), set(x) - set(names)
        if missing or unknown:
            raise ValueError(f"inputs: missing {sorted(missing)}, unknown {sorted(unknown)}; expected {names}")
        for name, inp in self.spec.inputs.items():
            t = x[name]
            seq = inp.schedule.type == "sequence"
            want = list(inp.shape)
            got = list(t.shape[2:] if seq else t.shape[1:])
            if got != want or t.dim() != len(want) + (2 if seq else 1):
                form = "[B, T, " if seq else "[B, "
                raise ValueError(f"input '{name}': expected shape {form}{', '.join(map(str, want))}], "
                                 f"got {list(t.shape)}")
            if seq and t.shape[1] < T:
                raise ValueError(f"input '{name}': sequence has {t.shape[1]} frames but the run has {T} steps")
        return x

    def _frame(self, name: str, x: torch.Tensor, t: int, blanks: dict) -> torch.Tensor:
        sched = self.spec.inputs[name].schedule
        if sched.type == "sequence":
            return x[:, t]
        if sched.type == "on_off" and not (sched.on <= t and (sched.off is None or t < sched.off)):
            if name not in blanks:
                blanks[name] = torch.full_like(x, sched.blank)
            return blanks[name]
        return x

    # ------------------------------------------------------------------ execution
    def forward(self, x, steps: int | None = None, record=(), readout_steps=None) -> Run:
        """``readout_steps``: None (every step), ``"last"`` or a list of steps; readouts are then
        returned at those steps only ([len(steps), B, ...]) and the plan computes only the area
        updates that can reach them (and the recorded areas)."""
        if not torch.compiler.is_compiling():
            with kept.session():  # kept weights are value-checked once per forward (compile.kept)
                return self._forward(x, steps, record, readout_steps)
        return self._forward(x, steps, record, readout_steps)

    def _forward(self, x, steps, record, readout_steps) -> Run:
        if self.cuda_graphs and not torch.is_grad_enabled():
            xs = self._inputs(x, self.plan_for(steps).steps)
            key = (steps, readout_steps if isinstance(readout_steps, (str, type(None))) else tuple(readout_steps),
                   tuple(record))
            return self._captured.run(lambda inputs: self._run(inputs, steps, record, readout_steps), xs, key)
        return self._run(x, steps, record, readout_steps)

    def _run(self, x, steps, record, readout_steps) -> Run:
        plan = self.plan_for(steps)
        keep = self._readout_steps(plan, readout_steps)
        if keep is not None:
            plan = self._pruned(plan, keep, tuple(record))
        xs = self._inputs(x, plan.steps)
        if self.channels_last:
            xs = {name: _channels_last(v) for name, v in xs.items()}
        first = next(iter(xs.values()))
        batch, dtype, device = first.shape[0], first.dtype, first.device
        record = tuple(record)
        for name in record:
            if name not in self.areas:
                raise ValueError(f"record: unknown area '{name}'; areas: {list(self.areas)}")
        outputs: dict[str, dict[int, torch.Tensor]] = {n: {} for n in list(self.spec.inputs) + list(self.areas)}
        blanks: dict[str, torch.Tensor] = {}
        # zeros are marked as such (a conv of them is its bias, compile.packing) unless a hook
        # could write into one in place
        hooked = self._hooked()
        marked = not hooked
        zero = _Zeros(batch, dtype, device, marked)
        shares = batch > 1 and self._shares_constants(hooked)
        if shares:
            zero.one = _Zeros(1, dtype, device, marked)
            for name, inp in self.spec.inputs.items():  # blank frames are input-independent too
                if inp.schedule.type == "on_off":
                    blanks[name] = torch.full_like(xs[name][:1], inp.schedule.blank)
        if plan.constant and not hooked and self._caches_constants(device):
            zero.constants = self._kept_constants(plan, batch, dtype, device, shares)

        # With truncated BPTT nothing is reused: a value kept from an earlier step can reach back
        # across a window cut differently from the one recomputed now (equal values, different
        # gradients), so hoisting is off there.
        run = _RunContext(plan, keep, record, xs, blanks, zero, self._fold(plan, xs, blanks, zero, batch),
                          reuse=self.hoist and not self.tbptt)
        emitted = self._range(_Carry(outputs, {}, {}, {}), run)
        recorded = {n: [e[0][n] for e in emitted] for n in record}
        readouts = {n: [e[1][n] for e in emitted if n in e[1]] for n in self.readouts}
        return Run(readouts={n: torch.stack(v) for n, v in readouts.items()},
                   areas={n: torch.stack(v) for n, v in recorded.items()})

    def _range(self, carry: _Carry, run: _RunContext) -> list:
        """Every step of the run: per step, (recorded outputs, readouts). With
        ``checkpoint="recursive"`` and gradients needed, one bisected run
        (:mod:`tnnspec.compile.bisection`)."""
        if self.checkpoint == "recursive" and torch.is_grad_enabled():
            inputs = {("xs", n): x for n, x in run.xs.items()}
            inputs.update({("folded", a, t): y for a, by_step in run.folded.items() for t, y in by_step.items()})
            if any(p.requires_grad for p in self.parameters()) or any(x.requires_grad for x in inputs.values()):
                return run_bisected(self, self._advance, run.plan.steps, carry, run, inputs)
        emitted = []
        for t in range(run.plan.steps):
            carry, out = self._advance(t, carry, run)
            emitted.append(out)
        return emitted

    def _advance(self, t: int, carry: _Carry, run: _RunContext):
        """One step: the new carry and (recorded outputs, readouts) of step ``t``. Does not mutate
        ``carry`` (regions of steps can be recomputed)."""
        plan, keep = run.plan, run.keep
        outputs, states, kept, totals = carry
        area_steps = plan.schedule[t]
        if self.tbptt and t and t % self.tbptt == 0:
            outputs = {n: {s: v.detach() for s, v in h.items()} for n, h in outputs.items()}
            states = {n: _detach(s) for n, s in states.items()}
        frames = {name: self._frame(name, inp, t, run.blanks) for name, inp in run.xs.items()}
        frames.update({a: by_step[t] for a, by_step in run.folded.items() if t in by_step})
        past = {(r.source, r.at): outputs[r.source][r.at] for s in area_steps for r in s.reads
                if r.at < t and not r.zeros}
        past.update({(s.area, t - 1): outputs[s.area][t - 1] for s in area_steps if s.reuse})
        wanted = tuple(n for n, h in self.readouts.items() if keep is None or t in keep or h.cumulative)
        args = (t, area_steps, past, states, kept, frames, run.zero, wanted, plan.kept, run.reuse)
        if self.checkpoint is True and torch.is_grad_enabled():  # ("recursive": see _range)
            current, states, kept, heads = checkpoint(self._step, *args, use_reentrant=False)
        else:
            current, states, kept, heads = self._step(*args)
        outputs = {name: dict(history) for name, history in outputs.items()}
        for name, value in current.items():
            outputs[name][t] = value
        for name, history in outputs.items():  # drop what no later step reads (they read t+1-h and on)
            history.pop(t - plan.history.get(name, 0), None)
        totals = dict(totals)
        shown = {}
        for name, y in heads.items():
            if self.readouts[name].cumulative:
                y = totals[name] + y if name in totals else y
                totals[name] = y
            if keep is None or t in keep:
                shown[name] = y
        return _Carry(outputs, states, kept, totals), ({n: _full(current[n], run.zero.batch) for n in run.record},
                                                       shown)

    def _readout_steps(self, plan, readout_steps) -> tuple[int, ...] | None:
        if readout_steps is None:
            return None
        steps = (plan.steps - 1,) if readout_steps == "last" else tuple(sorted({int(t) for t in readout_steps}))
        bad = [t for t in steps if not 0 <= t < plan.steps]
        if bad or not steps:
            raise ValueError(f"readout_steps: steps {bad or list(steps)} are outside 0..{plan.steps - 1}")
        return steps

    def _pruned(self, plan, keep: tuple[int, ...], record: tuple[str, ...]):
        key = (plan.steps, keep, record)
        if key not in self._pruned_plans:
            demand = set()
            for name, r in self.spec.readouts.items():
                upto = range(max(keep) + 1) if r.cumulative else keep
                demand.update((r.source, t) for t in upto)
            demand.update((a, t) for a in record for t in range(plan.steps))
            self._pruned_plans[key] = _ready(prune(plan, self.spec, demand))
        return self._pruned_plans[key]

    def _shares_constants(self, hooked: bool | None = None) -> bool:
        """Whether input-independent updates can run once for the whole batch (at batch size 1,
        broadcast where input-dependent updates read them): asked for, no module whose output
        couples the samples of a batch (BatchNorm or dropout in train mode), and no forward
        hooks anywhere (they would see batch-1 tensors)."""
        if not self.share_constants or (self._hooked() if hooked is None else hooked):
            return False
        return not any(m.training and isinstance(m, _BATCH_COUPLED) for m in self.modules())

    def _caches_constants(self, device) -> bool:
        """Whether input-independent updates may be kept across calls (``cache_constants``)."""
        return (self.cache_constants and device.type == "cpu" and not torch.is_grad_enabled()
                and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling()
                and not any(m.training for m in self.modules()))

    def _kept_constants(self, plan: Plan, batch: int, dtype, device, shares: bool) -> dict:
        """The input-independent updates kept for this plan and call settings: (step, area) ->
        (output, state, edge terms kept during the update); empty when anything they read
        changed. Valid while the parameters and buffers of the areas and edges that these
        updates use are unchanged (identity and version at every call, values once per call)."""
        modules = self._constant_modules.get(id(plan))
        if modules is None:
            found = {}
            for steps in plan.schedule:
                for s in steps:
                    if s.constant and not s.reuse:
                        found.setdefault(("area", s.area), self.areas[s.area])
                        found.update((("edge", r.name), self.edges[r.name])
                                     for r in s.reads if r.name in self.edges)
            modules = self._constant_modules[id(plan)] = tuple(found.values())
        # gathered at every call: load_state_dict(assign=True) puts new tensors in the modules
        used = {id(t): t for m in modules for t in itertools.chain(m.parameters(), m.buffers())}
        key = (id(plan), batch, dtype, str(device), torch.get_num_threads(), shares, self.packed_weights,
               self.fuse_batchnorm, self.channels_last)
        return kept.kept(kept.store(self, "constants"), key, tuple(used.values()), limit=8).values

    def _hooked(self) -> bool:
        """Whether any forward hook (global or on a module of the network) is registered."""
        if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
            return True
        return any(m._forward_hooks or m._forward_pre_hooks for m in self.modules())

    def _fold(self, plan, xs, blanks, zero, batch) -> dict[str, dict[int, torch.Tensor]]:
        """Time folding: each folded area's outputs for all its steps from one batched call."""
        out: dict[str, dict[int, torch.Tensor]] = {}
        if not self.fold:
            return out
        for area, steps in plan.folded.items():
            first = next(s for s in plan.schedule[steps[0]] if s.area == area)
            reads, past = [], {}
            for k, r in enumerate(first.reads):
                delay = steps[0] - r.at
                past[(r.source, -1 - k)] = torch.cat([self._frame(r.source, xs[r.source], t - delay, blanks)
                                                      for t in steps])
                reads.append(replace(r, at=-1 - k))
            y = self._update(AreaStep(area, tuple(reads)), past, {}, {}, {}, frozenset(), 0, zero, probe=False,
                             reuse=False)
            out[area] = dict(zip(steps, y.split(batch)))
        return out

    def _step(self, t: int, area_steps, past, states, kept, given, zero, wanted, keep_terms, reuse=True):
        """One step: returns (this step's outputs by node, the new states, the kept edge terms,
        the heads of the readouts named in ``wanted``).
        ``given`` holds outputs known before the step (input frames, time-folded areas); earlier
        steps are read from ``past`` ((source, step) -> output); ``kept`` holds the last term of
        each edge in ``keep_terms`` (edge-level hoisting) and the last input term of the cell of
        each area named there (a reused drive, ``AreaStep.drive_reuse``). Mutates none of its
        arguments, so a step can be recomputed (activation checkpointing). ``reuse``: take the plan's reused
        outputs and terms (time-invariant hoisting) instead of computing them."""
        current = dict(given)
        states = dict(states)
        kept = dict(kept)
        for step in area_steps:
            if step.fold and self.fold:
                current[step.area] = self.areas[step.area].probe(current[step.area])
            elif step.reuse and reuse:  # time-invariant: the previous step's output, exactly
                current[step.area] = self.areas[step.area].probe(past[(step.area, t - 1)])
            elif step.constant and zero.constants is not None:  # kept from an earlier call
                hit = zero.constants.get((t, step.area))
                if hit is None:
                    before = dict(kept)
                    y = self._update(step, past, current, states, kept, keep_terms, t, zero.one, reuse=reuse)
                    hit = zero.constants[(t, step.area)] = (
                        y, states[step.area], {e: v for e, v in kept.items() if before.get(e) is not v})
                y, states[step.area], terms = hit
                kept.update(terms)
                current[step.area] = y
            else:  # an input-independent update runs at batch size 1 when constants are shared
                current[step.area] = self._update(step, past, current, states, kept, keep_terms, t,
                                                  zero.one if step.constant else zero, reuse=reuse)
        for name, module in self.areas.items():
            if name not in current:  # silent: exactly zero, nothing computed
                current[name] = module.probe(zero.one("out:" + name, module.out_shape))
        computed = {s.area for s in area_steps}
        heads = {}
        for name in wanted:
            head, src = self.readouts[name], self.spec.readouts[name].source
            heads[name] = (_full(head(current[src], t), zero.batch) if src in computed
                           else zero("readout:" + name, self.plan.shapes.readout[name]))
        return current, states, kept, heads

    def _update(self, step, past, current, states, kept, keep_terms, t: int, zero,
                probe: bool = True, reuse: bool = True) -> torch.Tensor:
        area = self.areas[step.area]
        edges = self.edges
        shared = zero.one is not zero  # this run shares input-independent values at batch size 1
        combine = self.spec.areas[step.area].combine
        bottom, recurrent, driving = [], [], []
        drive = None
        delivered = {}
        for read in step.reads:
            if read.reuse and reuse:  # time-invariant term: the one delivered last time, exactly
                y = kept[read.edge]
            else:
                if read.zeros:  # a zero_input area's stand-in for a source without output yet
                    source = zero("out:" + read.source, self.plan.shapes.of(read.source))
                else:
                    source = current[read.source] if read.at == t else past[(read.source, read.at)]
                y = edges[read.name](source, t)
                if read.edge in keep_terms and reuse:
                    kept[read.edge] = y
            if shared:  # a shared input-independent term meets the batch here
                y = _full(y, zero.batch)
            delivered[read.edge] = y
            if read.role == "bottom_up":
                bottom.append(y)
                driving.append(y)
            elif read.role == "recurrent":
                recurrent.append(y)
                driving.append(y)
            else:
                if drive is None:
                    drive = self._combine(combine, driving, bottom, recurrent, step.area, zero, delivered, t)
                if read.role == "gain":
                    drive = drive * gain_view(y, drive)
                elif read.role == "relative_gain":
                    drive = drive * (1 + gain_view(y, drive))
                else:
                    drive = self.divisive[read.name](drive, y)
        if drive is None:
            drive = self._combine(combine, driving, bottom, recurrent, step.area, zero, delivered, t)
        if step.area in states:
            state = states[step.area]
            if shared and state is not None:
                state = tree_map(lambda s: _full(s, zero.batch) if isinstance(s, torch.Tensor) else s, state)
        else:
            state = area.cell.initial_state(drive)
        if reuse and step.area in keep_terms and area.cell.has_input_term:  # the drive recurs
            term = kept[step.area] if step.drive_reuse else area.cell.input_term(drive)
            kept[step.area] = term
            y, state = area.cell(drive, state, t, term)
        else:
            y, state = area.cell(drive, state, t)
        y = area.ops(y, t)
        states[step.area] = area.cell.after_ops(y, state)
        return area.probe(y) if probe else y

    def _combine(self, combine: str, driving, bottom, recurrent, name: str, zero, delivered, t) -> torch.Tensor:
        if not driving:
            return zero("drive:" + name, self.areas[name].drive_shape)
        if combine == "concat":
            shapes = self.plan_for(None).shapes.edge
            return torch.cat([delivered[i] if i in delivered else zero(f"edge:{i}", shapes[i])
                              for i in self.concat_inputs[name]], dim=1)
        if combine == "multiplicative":
            b = _sum(bottom) if bottom else zero("drive:" + name, self.areas[name].drive_shape)
            if not recurrent:
                return b
            gain = 1 + recurrent[0]  # (1 + l) + t, left to right, as written
            for term in recurrent[1:]:
                gain = gain + term
            return b * gain
        return _sum(driving)


class _Zeros:
    """Zero tensors of one batch size, made once per run and name. ``one``: the factory for
    input-independent updates — batch size 1 when they are shared (see
    ``Network._shares_constants``), else this one."""

    def __init__(self, batch: int, dtype, device, marked: bool = True):
        self.batch, self.dtype, self.device, self.marked = batch, dtype, device, marked
        self.made: dict[str, torch.Tensor] = {}
        self.one = self
        self.constants: dict | None = None  # kept input-independent updates (cache_constants)

    def __call__(self, name: str, shape) -> torch.Tensor:
        if name not in self.made:
            z = torch.zeros((self.batch,) + tuple(shape), dtype=self.dtype, device=self.device)
            self.made[name] = packing.mark_zero(z) if self.marked else z
        return self.made[name]


def _full(x: torch.Tensor, batch: int) -> torch.Tensor:
    """``x`` with ``batch`` samples: a shared (batch-1) value broadcast as a view, else itself."""
    return x.expand(batch, *x.shape[1:]) if x.shape[0] == 1 and batch != 1 else x


_BATCH_COUPLED = (nn.modules.batchnorm._BatchNorm, nn.Dropout)


class _Carry(NamedTuple):
    """What one step hands to the next: outputs still to be read (node -> step -> tensor),
    cell states, kept edge terms (edge -> tensor) and running totals of cumulative readouts."""

    outputs: dict
    states: dict
    kept: dict
    totals: dict


@dataclass
class _RunContext:
    """What stays fixed during one run."""

    plan: Plan
    keep: tuple[int, ...] | None
    record: tuple[str, ...]
    xs: dict
    blanks: dict
    zero: _Zeros
    folded: dict
    reuse: bool


def _ready(plan: Plan) -> Plan:
    """Evaluate the plan's cached properties now, outside any torch.compile region (functools'
    cached_property takes a lock that dynamo cannot trace)."""
    plan.folded, plan.kept  # noqa: B018
    return plan


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """An image batch [B, C, H, W] (or a sequence [B, T, C, H, W], frame by frame) in NHWC order."""
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5:  # each frame x[:, t] is then a channels-last view
        return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
    return x


def _sum(terms: list[torch.Tensor]) -> torch.Tensor:
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _detach(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(_detach(s) for s in state)
    return state
