"""Differential tests: every optimisation pass against the plain interpreter, across changes made
between calls.

The plain interpreter (``tnnspec.compile(spec, optimize="none")``) is the reference semantics: it
computes what the plan says at every call and keeps nothing from one call to the next. Every
optimisation pass must give what it gives — bit for bit where the pass is declared exact
(``PASSES[name].exact``), else to float rounding — not only on a fresh network but after anything
a user does to a network between calls. The harness draws:

1. a random valid spec (:mod:`differential_specs`: stateful and identity cells, every edge type
   with delays and ``from_step``, every ``before_arrival`` mode and ``combine``, static, on/off and
   sequence inputs, convs, batch norms (plain and per step), group norms, ReLUs, max pools, ...);
2. pass sets: ``"default"``, all compatible passes together (with one of the two packing
   modes), one single pass (or the empty set) and a random subset — each an "optimised"
   network; in the slow variant every single pass and both packing modes, in every example;
   one dtype per example (float32 mostly, float64 for a quarter);
3. a sequence of changes, applied identically to every optimised network and to the reference,
   with calls in between: in-place weight edits under ``torch.no_grad`` (``p.mul_``), edits
   through ``.data`` (``p.data[...] = v``, ``p.data = new``), ``load_state_dict`` of another
   random state (also with ``assign=True``), module swaps (a shape-keeping op, or a batch norm
   inside a cell, replaced by ``nn.Identity``; a conv or batch norm replaced by a fresh one of the
   same shape), float attributes (edge ``weight``, normalization ``sigma``/``power``, a fixed
   ``time_decay``'s ``decay``, a leaky cell's ``alpha``, a scale op's ``factor``), batch-norm
   running statistics (in place and through ``.data``), ``train()``/``eval()`` of the network or
   of one module, forward hooks registered and removed (one that stores outputs, one that returns a
   new output, a global one), and calls with gradients, under ``torch.no_grad`` and under
   ``torch.inference_mode``, with other batch sizes, ``steps``, ``readout_steps``, ``record`` and
   (when the network takes them) ``perturb``ations; half of the calls after the first repeat the
   previous call's arguments (what a network keeps between calls is kept per call form).

After every call it checks, for every optimised network:

- it raises exactly when the reference raises;
- every readout and recorded area equals the reference's: ``torch.equal`` when every active
  pass is exact, else ``|a - b| <= tol * max(1, |b|)`` (max over elements; ``tol`` per dtype,
  :data:`TOLERANCE`: 1e-6 in float64; 1e-3 in float32, where rounding differences of the
  non-exact passes grow through group norms over one channel and train-mode batch norms —
  measured up to 1.7e-4 over 80 examples, 99% of comparisons below 1.5e-6);
- after a call with gradients, every parameter's gradient equals the reference's to
  :data:`GRAD_TOLERANCE` relative (passes may reorder the sums of a backward pass: hoisting
  alone gave 2.1e-5 in float32 through a normalization edge);
- what a forward hook stored is not modified afterwards (a ReLU working in place on a tensor a
  hook holds); this is checked for the reference too.

At the end, the strongest form: a fresh plain network, compiled after all changes, given the
same module swaps, float attributes, hooks and train/eval flags, and then
``load_state_dict(optimised.state_dict())``, must agree with each optimised network on one more
call (a value an optimised network kept from before the changes shows here even where the
step-by-step reference would share the mistake).

Explicit cases below pin what the harness found (and one planted fault shows it can fail),
and a small property test checks the reference semantics of lesions: a cut (silenced) edge
(area) per call equals ``enabled: false`` in the file.

The tests work against two versions of the API: the one with ``tnnspec.compile.PASSES`` and
``optimize=``, and the older keyword options (``hoist``, ``fold``, ``packed_weights``,
``fuse_batchnorm``, ``share_constants``, ``cache_constants``), through :func:`build` and
:func:`call`. With the older API the "plain" network still runs the optimisations that had no
switch (zero convolutions, in-place ReLUs, channels-last max pools, readout pruning) and
perturbations are skipped.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st
from torch import nn

import tnnspec
from differential_specs import MAX_STEPS, specs, text

# ------------------------------------------------------------------------------------ the adapter


EXCLUSIVE = tuple(set(group) for group in tnnspec.compile.passes.EXCLUSIVE)  # at most one of each set

#: allowed difference of a non-exact pass, relative to max(1, the reference's magnitude)
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3}
GRAD_TOLERANCE = {torch.float64: 1e-5, torch.float32: 1e-4}


def passes() -> dict:
    """Pass name -> info with ``.exact`` and ``.default``."""
    return dict(tnnspec.compile.PASSES)


def build(spec, pass_set) -> nn.Module:
    """The network with ``pass_set`` (an iterable of pass names, or ``"default"``); the empty set
    is the plain interpreter."""
    if pass_set == "default":
        return tnnspec.compile(spec, optimize="default")
    names = list(pass_set)
    return tnnspec.compile(spec, optimize=names if names else "none")


def call(net, x, **kw):
    return net(x, **kw)


def active(pass_set) -> frozenset:
    table = passes()
    if pass_set == "default":
        return frozenset(n for n, p in table.items() if p.default)
    return frozenset(pass_set)


def exact(pass_set) -> bool:
    table = passes()
    return all(table[n].exact for n in active(pass_set))


def compatible(names, prefer: str | None = None) -> tuple:
    """``names`` without the conflicting members of :data:`EXCLUSIVE` (``prefer`` is kept)."""
    names = set(names)
    for group in EXCLUSIVE:
        both = sorted(names & group)
        if len(both) > 1:
            keep = prefer if prefer in both else both[0]
            names -= group - {keep}
    return tuple(sorted(names))


def label(pass_set) -> str:
    return pass_set if isinstance(pass_set, str) else ("{" + ", ".join(pass_set) + "}")


# ------------------------------------------------------------------------------------ changes

WEIGHT_FACTORS = (0.5, -1.0, 1.5, 0.0)
FLOAT_VALUES = {"weight": (0.0, 0.5, 2.0, -1.0, 1.0), "sigma": (0.5, 2.0), "power": (1.0, 2.0),
                "decay": (0.0, 0.3, 1.0), "alpha": (0.5, 1.0), "factor": (0.5, -1.0, 1.0)}
_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.ELU, nn.Sigmoid, nn.GroupNorm, nn.BatchNorm2d)


def _divisive(net) -> dict:
    """Normalization terms by edge name (``net.divisive``, or wherever they moved)."""
    found = getattr(net, "divisive", None)
    if found is not None:
        return dict(found.items())
    return {n.split(".")[-1]: m for n, m in net.named_modules() if type(m).__name__ == "DivisiveTerm"}


def _floats(net) -> list[tuple[str, str]]:
    """Float attributes a user may change: (kind, where)."""
    out = [("weight", name) for name in net.edges]
    for name in _divisive(net):
        out += [("sigma", name), ("power", name)]
    for name, area in net.areas.items():
        cell = area.cell
        if type(cell).__name__ == "TimeDecayCell" and not cell.learnable:
            out.append(("decay", name))
        if type(cell).__name__ == "LeakyCell":
            out.append(("alpha", name))
    out += [("factor", n) for n, m in net.named_modules() if type(m).__name__ == "Scale"]
    return out


def _set_float(net, kind: str, where: str, value: float) -> None:
    if kind == "weight":
        net.edges[where].weight = value
    elif kind in ("sigma", "power"):
        setattr(_divisive(net)[where], kind, value)
    elif kind in ("decay", "alpha"):
        setattr(net.areas[where].cell, kind, value)
    else:
        net.get_submodule(where).factor = value


def _is_geometry_keeping_conv(m: nn.Module) -> bool:
    k, s, p, d = m.kernel_size, m.stride, m.padding, m.dilation
    return (not isinstance(p, str) and s == (1, 1) and d == (1, 1) and m.in_channels == m.out_channels
            and all(pi == ki // 2 and ki % 2 == 1 for pi, ki in zip(p, k)))


def _swaps(net) -> list[tuple[str, str]]:
    """(module path, replacement) pairs that keep every shape: ``identity`` for shape-keeping
    ops (and batch norms inside cells), ``fresh`` for a new module of the same kind and shape."""
    out = []
    for path, m in net.named_modules():
        parts = path.split(".")
        if not path or parts[0] not in ("edges", "areas", "readouts"):
            continue
        in_cell = ".cell." in path
        if in_cell:
            if type(m) is nn.BatchNorm2d:
                out += [(path, "identity"), (path, "fresh")]
            continue
        if isinstance(m, _ELEMENTWISE) or type(m).__name__ == "Scale":
            out.append((path, "identity"))
            if isinstance(m, nn.BatchNorm2d):
                out.append((path, "fresh"))
        elif type(m).__name__ == "PerStepNorm":  # called with the step: a stand-in must take it too
            out.append((path, "identity"))
        elif isinstance(m, nn.MaxPool2d) and m.kernel_size == 3 and m.stride == 1 and m.padding == 1:
            out.append((path, "identity"))
        elif isinstance(m, nn.Conv2d) and not hasattr(m, "pad"):  # not a TF-SAME conv
            out.append((path, "fresh"))
            if _is_geometry_keeping_conv(m):
                out.append((path, "identity"))
    return out


def _replacement(old: nn.Module, kind: str, seed: int, like: torch.Tensor) -> nn.Module:
    if kind == "identity":
        return nn.Identity()
    gen = torch.Generator().manual_seed(seed)
    if isinstance(old, nn.Conv2d):
        new = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size, stride=old.stride, padding=old.padding,
                        dilation=old.dilation, groups=old.groups, bias=old.bias is not None)
    else:
        new = nn.BatchNorm2d(old.num_features, eps=old.eps, momentum=old.momentum, affine=old.affine)
    with torch.no_grad():
        for p in new.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.4)
    return new.to(like.dtype)


def _swap(net, path: str, kind: str, seed: int, dtype) -> None:
    parent, _, name = path.rpartition(".")
    old = net.get_submodule(path)
    new = _replacement(old, kind, seed, torch.empty((), dtype=dtype))
    new.train(old.training)
    setattr(net.get_submodule(parent), name, new)


def _random_state(net, seed: int) -> dict:
    """Another state dict for ``net``, from ``seed`` (the same values for every network)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in net.state_dict().items():
        if not value.is_floating_point():
            out[key] = value.clone()
            continue
        noise = torch.randn(value.shape, generator=gen, dtype=torch.float64)
        if key.endswith("running_var"):
            noise = noise.abs() * 0.5 + 0.5
        elif key.endswith("running_mean"):
            noise = noise * 0.3
        else:
            noise = noise * 0.5
        out[key] = noise.to(value.dtype)
    return out


def _modify(output):
    """A hook's new output: an affine map of the tensor (or of a tuple's first tensor)."""
    if isinstance(output, torch.Tensor):
        return output * 0.5 + 0.125
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return (output[0] * 0.5 + 0.125, *output[1:])
    return None


def _tensors(output):
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (tuple, list)):
        return [t for o in output for t in _tensors(o)]
    return []


@dataclasses.dataclass
class _Net:
    """One network of the comparison and what the harness registered on it."""

    label: str
    net: nn.Module
    exact: bool
    hooks: dict = dataclasses.field(default_factory=dict)  # hook id -> handle
    stored: list = dataclasses.field(default_factory=list)  # (where, tensor, copy)


class _World:
    """The reference and the optimised networks, and the changes made to all of them."""

    def __init__(self, spec, pass_sets, dtype, seed: int, train: bool, make=build):
        self.spec, self.dtype, self.make = spec, dtype, make
        torch.manual_seed(seed)
        self.ref = _Net("plain", self._fresh(), True)
        self.opts = [_Net(label(p), self._fresh(p), exact(p)) for p in pass_sets]
        self.journal: list[tuple] = []  # swaps, float attributes and hooks, replayed on a fresh net
        self.global_hooks: list = []
        self.global_stored: list = []
        self.hook_ids = itertools.count()
        self.failures: dict[str, list[str]] = {"exception": [], "output": [], "gradient": [], "hook": [],
                                               "fresh": []}
        self.log: list[str] = []
        self.last_call = None
        state = _random_state(self.ref.net, seed)  # batch norms with statistics, weights not at init
        for n in self.nets:
            n.net.load_state_dict(state)
            n.net.train(train)

    @property
    def nets(self) -> list[_Net]:
        return [self.ref, *self.opts]

    def _fresh(self, pass_set=()):
        return self.make(self.spec, pass_set).to(self.dtype)

    def close(self) -> None:
        for n in self.nets:
            for h in n.hooks.values():
                h.remove()
            n.hooks.clear()
        for h in self.global_hooks:
            h.remove()
        self.global_hooks.clear()

    # ------------------------------------------------------------------ edits
    def apply(self, change: tuple) -> None:
        kind = change[0]
        ref = self.ref.net
        if kind == "call":
            return self.check_call(change)
        if kind == "again":  # the previous call's arguments (cached per call form: same plan, batch...)
            if self.last_call is not None:
                self.check_call(self.last_call)
            return
        if kind in ("mul", "data", "rebind"):
            names = [n for n, _ in ref.named_parameters()]
            if not names:
                return
            name = names[change[1] % len(names)]
            self.log.append(f"{kind} {name} {change[2:]}")
            for n in self.nets:
                _edit_param(n.net.get_parameter(name), kind, change[2], change[3] if len(change) > 3 else 0)
        elif kind == "load":
            seed, assign = change[1], change[2]
            self.log.append(f"load_state_dict(random state {seed}, assign={assign})")
            for n in self.nets:
                n.net.load_state_dict(_random_state(n.net, seed), assign=assign)
        elif kind == "swap":
            options = _swaps(ref)
            if not options:
                return
            path, how = options[change[1] % len(options)]
            self.log.append(f"swap {path} -> {how}")
            self.journal.append(("swap", path, how, change[2]))
            for n in self.nets:
                _swap(n.net, path, how, change[2], self.dtype)
        elif kind == "float":
            options = _floats(ref)
            if not options:
                return
            what, where = options[change[1] % len(options)]
            values = FLOAT_VALUES[what]
            value = values[change[2] % len(values)]
            self.log.append(f"set {what} of {where} = {value}")
            self.journal.append(("float", what, where, value))
            for n in self.nets:
                _set_float(n.net, what, where, value)
        elif kind == "weights":  # for e in net.edges.values(): e.weight = v
            value = FLOAT_VALUES["weight"][change[1] % len(FLOAT_VALUES["weight"])]
            self.log.append(f"set every edge's weight = {value}")
            for name in ref.edges:
                self.journal.append(("float", "weight", name, value))
            for n in self.nets:
                for e in n.net.edges.values():
                    e.weight = value
        elif kind == "bn":
            norms = [p for p, m in ref.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                     and m.running_mean is not None]
            if not norms:
                return
            path = norms[change[1] % len(norms)]
            self.log.append(f"batch norm statistics {path} edit {change[2]}")
            for n in self.nets:
                _edit_stats(n.net.get_submodule(path), change[2])
        elif kind == "mode":
            how = change[1]
            if how == "module":
                paths = [p for p, m in ref.named_modules() if p and not list(m.children())]
                path = paths[change[2] % len(paths)]
                self.log.append(f"toggle train/eval of {path}")
                for n in self.nets:
                    m = n.net.get_submodule(path)
                    m.train(not m.training)
            else:
                self.log.append(f"net.{how}()")
                for n in self.nets:
                    getattr(n.net, how)()
        elif kind == "hook":
            how = change[1]
            if how == "global":
                if self.global_hooks:
                    return
                self.log.append("global forward hook (stores outputs)")

                def keep(module, args, output, into=self.global_stored):
                    for t in _tensors(output):
                        into.append((id(module), t, t.detach().clone()))

                self.global_hooks.append(nn.modules.module.register_module_forward_hook(keep))
                return
            paths = [p for p, _ in ref.named_modules() if p]
            path = paths[change[2] % len(paths)]
            hid = next(self.hook_ids)
            self.log.append(f"forward hook #{hid} ({how}) on {path}")
            self.journal.append(("hook", hid, how, path))
            for n in self.nets:
                _hook(n, hid, how, path)
        elif kind == "unhook":
            if self.global_hooks and change[1] % 3 == 0:
                self.log.append("remove the global hook")
                for h in self.global_hooks:
                    h.remove()
                self.global_hooks.clear()
                return
            ids = sorted(self.ref.hooks)
            if not ids:
                return
            hid = ids[change[1] % len(ids)]
            self.log.append(f"remove forward hook #{hid}")
            self.journal.append(("unhook", hid))
            for n in self.nets:
                n.hooks.pop(hid).remove()
        else:
            raise AssertionError(change)

    # ------------------------------------------------------------------ calls
    def inputs(self, batch: int, seed: int):
        return _inputs(self.spec, batch, seed, self.dtype)

    def call_args(self, change: tuple) -> tuple[object, dict, str]:
        _, batch, seed, grad, readout_steps, record_mask, steps, perturb = change
        T = steps if steps is not None else self.ref.net.plan.steps
        kw: dict = {}
        if steps is not None:
            kw["steps"] = steps
        if readout_steps is not None:
            if readout_steps == "last":
                kw["readout_steps"] = "last"
            else:
                chosen = sorted({t % T for t in readout_steps})
                kw["readout_steps"] = chosen
        names = sorted(self.spec.areas)
        kw["record"] = tuple(a for i, a in enumerate(names) if record_mask >> i & 1)
        if perturb:
            kw["perturb"] = self.perturbation(perturb, T)
        return self.inputs(batch, seed), kw, grad

    def perturbation(self, drawn, T: int) -> dict:
        edge_names = list(self.ref.net.plan.edge_names)
        areas = sorted(self.spec.areas)
        out = {}
        for target, form, value, steps in drawn:
            on_edge = form < 4
            names = edge_names if on_edge else areas
            name = names[target % len(names)]
            at = sorted({s % T for s in steps}) if steps else None
            if form == 0:
                p = "cut" if at is None else {"cut": True, "steps": at}
            elif form in (1, 2, 3):
                scale = (0.0, 0.5, -2.0)[value % 3]
                p = scale if at is None else {"scale": scale, "steps": at}
            elif form == 4:
                p = "silence" if at is None else {"silence": True, "steps": at}
            else:
                clamp = (0.0, 0.25, -1.0)[value % 3]
                p = {"clamp": clamp} if at is None else {"clamp": clamp, "steps": at}
            out[name] = p
        return out

    def check_call(self, change: tuple) -> None:
        x, kw, grad = self.call_args(change)
        self.last_call = change
        self.log.append(f"call(batch={change[1]}, {grad}, {kw})")
        where = f"after: {' | '.join(self.log)}"
        context = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference": torch.inference_mode}[grad]
        with context():
            expected = call(self.ref.net, x, **kw)  # the reference raising is a failure of the test itself
        self._check_hooks(self.ref, where)
        ref_grads = self._backward(self.ref.net, expected) if grad == "grad" else None
        for n in self.opts:
            try:
                with context():
                    got = call(n.net, x, **kw)
            except Exception as exc:  # noqa: BLE001 - reported below with the pass set
                self.failures["exception"].append(f"{n.label}: {type(exc).__name__}: {exc}\n    {where}")
                continue
            self._compare(n, got, expected, where, "output")
            self._check_hooks(n, where)
            if ref_grads is not None:
                grads = self._backward(n.net, got)
                self._compare_grads(n, grads, ref_grads, where)
        self._check_global_hook(where)

    def _check_global_hook(self, where: str) -> None:
        """What the global hook stored, by network (it sees every module of every network)."""
        owner = {id(m): n for n in self.nets for m in n.net.modules()}
        for module, kept, copy in self.global_stored:
            if not (torch.equal(kept, copy) or bool(((kept == copy) | (kept.isnan() & copy.isnan())).all())):
                n = owner.get(module)
                self.failures["hook"].append(f"{n.label if n else '?'}: a tensor the global forward hook stored "
                                             f"was modified after the hook ran\n    {where}")
                break
        self.global_stored.clear()

    def _compare(self, n: _Net, got, expected, where: str, kind: str) -> None:
        tol = TOLERANCE[self.dtype]
        for part in ("readouts", "areas"):
            a, b = getattr(got, part), getattr(expected, part)
            if sorted(a) != sorted(b):
                self.failures[kind].append(f"{n.label}: {part} {sorted(a)} != {sorted(b)}\n    {where}")
                continue
            for key in b:
                ga, gb = a[key].detach(), b[key].detach()
                if ga.shape != gb.shape or ga.dtype != gb.dtype:
                    self.failures[kind].append(f"{n.label}: {part}[{key}] {tuple(ga.shape)} {ga.dtype} != "
                                               f"{tuple(gb.shape)} {gb.dtype}\n    {where}")
                    continue
                if n.exact:
                    same = torch.equal(ga, gb) or bool(((ga == gb) | (ga.isnan() & gb.isnan())).all())
                else:
                    same = _close(ga, gb, tol)
                if not same:
                    diff = (ga - gb).abs()
                    diff = diff[~diff.isnan()]
                    steps = sorted({int(t) for t in (ga != gb).reshape(ga.shape[0], -1).any(1).nonzero()})
                    self.failures[kind].append(
                        f"{n.label}: {part}[{key}] differs ({'exact' if n.exact else f'tol {tol:g}'}), max |diff| "
                        f"{float(diff.max()) if diff.numel() else float('nan'):.3g}, at steps {steps} of "
                        f"{ga.shape[0]}\n    {where}")

    def _backward(self, net, run) -> dict | None:
        outs = [v for part in (run.readouts, run.areas) for _, v in sorted(part.items())]
        loss = sum((v * (k + 1)).sum() for k, v in enumerate(outs) if v.requires_grad)
        grads = {}
        if isinstance(loss, torch.Tensor) and loss.requires_grad:
            loss.backward()
            grads = {name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None}
        for p in net.parameters():
            p.grad = None
        return grads

    def _compare_grads(self, n: _Net, grads: dict, expected: dict, where: str) -> None:
        tol = GRAD_TOLERANCE[self.dtype]
        if sorted(grads) != sorted(expected):
            missing, extra = sorted(set(expected) - set(grads)), sorted(set(grads) - set(expected))
            self.failures["gradient"].append(f"{n.label}: gradients missing {missing}, extra {extra}\n    {where}")
            return
        for name, g in expected.items():
            if not _close(grads[name], g, tol):
                self.failures["gradient"].append(
                    f"{n.label}: grad of {name} max |diff| {float((grads[name] - g).abs().max()):.3g} "
                    f"(|g| {float(g.abs().max()):.3g})\n    {where}")

    def _check_hooks(self, n: _Net, where: str) -> None:
        for what, kept, copy in n.stored:
            if not (torch.equal(kept, copy) or bool(((kept == copy) | (kept.isnan() & copy.isnan())).all())):
                self.failures["hook"].append(f"{n.label}: a tensor a forward hook on {what} stored was modified "
                                             f"after the hook ran\n    {where}")
                break
        n.stored.clear()

    # ------------------------------------------------------------------ the final check
    def check_fresh(self) -> None:
        """Each optimised network against a plain one compiled now, given the same swaps, float
        attributes, hooks and train/eval flags, and then the optimised network's state dict."""
        if self.last_call is None:
            return
        x, kw, grad = self.call_args(self.last_call)
        where = f"fresh plain network after: {' | '.join(self.log)}"
        context = {"grad": torch.enable_grad, "no_grad": torch.no_grad, "inference": torch.inference_mode}[grad]
        fresh = _Net("fresh plain", self._fresh(), True)
        try:
            for entry in self.journal:
                if entry[0] == "swap":
                    _swap(fresh.net, entry[1], entry[2], entry[3], self.dtype)
                elif entry[0] == "float":
                    _set_float(fresh.net, *entry[1:])
                elif entry[0] == "hook":
                    _hook(fresh, *entry[1:])
                else:
                    fresh.hooks.pop(entry[1]).remove()
            for n in self.opts:  # one fresh network serves all: the state dict sets all it holds
                modes = {p: m.training for p, m in n.net.named_modules()}
                for p, m in fresh.net.named_modules():
                    m.training = modes.get(p, m.training)
                try:
                    fresh.net.load_state_dict(n.net.state_dict())
                    with context():
                        expected = call(fresh.net, x, **kw)
                        got = call(n.net, x, **kw)
                except Exception as exc:  # noqa: BLE001
                    self.failures["fresh"].append(f"{n.label}: {type(exc).__name__}: {exc}\n    {where}")
                    continue
                self._compare(n, got, expected, where, "fresh")
        finally:
            for h in fresh.hooks.values():
                h.remove()
        self.global_stored.clear()

    def raise_failures(self) -> None:
        """One assertion per kind of failure (hypothesis reports each kind as its own bug)."""
        f = self.failures
        if f["exception"]:
            raise AssertionError(_report("an optimised network raised where the plain one did not", f["exception"]))
        if f["output"]:
            raise AssertionError(_report("outputs differ from the plain interpreter", f["output"]))
        if f["gradient"]:
            raise AssertionError(_report("gradients differ from the plain interpreter", f["gradient"]))
        if f["hook"]:
            raise AssertionError(_report("a hook's stored output was modified later", f["hook"]))
        if f["fresh"]:
            raise AssertionError(_report("outputs differ from a fresh plain network with the same state",
                                         f["fresh"]))


def _inputs(spec, batch: int, seed: int, dtype):
    """Inputs for a call (sequences with :data:`MAX_STEPS` frames), the same for every network."""
    gen = torch.Generator().manual_seed(seed)
    xs = {}
    for name, inp in spec.inputs.items():
        shape = [batch] + ([MAX_STEPS] if inp.schedule.type == "sequence" else []) + list(inp.shape)
        xs[name] = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    return next(iter(xs.values())) if len(xs) == 1 else xs


def _report(title: str, lines: list[str]) -> str:
    return f"{title} ({len(lines)}):\n  " + "\n  ".join(lines[:6])


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    if a.shape != b.shape:
        return False
    if a.numel() == 0:
        return True
    nan = a.isnan() | b.isnan()
    if not torch.equal(a.isnan(), b.isnan()):
        return False
    diff = (a - b).abs()[~nan]
    scale = max(1.0, float(b[~nan].abs().max())) if diff.numel() else 1.0
    return diff.numel() == 0 or float(diff.max()) <= tol * scale


def _edit_param(p: torch.Tensor, kind: str, a, b) -> None:
    if kind == "mul":  # in place under no_grad (version counter bumped)
        with torch.no_grad():
            p.mul_(WEIGHT_FACTORS[a % len(WEIGHT_FACTORS)])
    elif kind == "data":  # through .data (no version counter bump): all of it, or one element
        if a % 2 == 0:
            p.data[...] = 0
        else:
            p.data.view(-1)[b % p.numel()] = (0.75, -2.0)[a % 4 // 2]
    else:  # a new tensor behind the same parameter
        p.data = p.data * WEIGHT_FACTORS[a % len(WEIGHT_FACTORS)] + 0.0625


def _edit_stats(norm: nn.Module, how: int) -> None:
    how %= 4
    if how == 0:
        norm.running_mean.add_(0.25)
    elif how == 1:
        norm.running_var.mul_(1.5)
    elif how == 2:
        norm.running_mean.data[0] = 0.7
    else:
        norm.running_var.data = norm.running_var.data * 0.5 + 0.25


def _hook(n: _Net, hid: int, how: str, path: str) -> None:
    module = n.net.get_submodule(path)
    if how == "store":
        def fn(module, args, output, into=n.stored, path=path):
            for t in _tensors(output):
                into.append((path, t, t.detach().clone()))
    else:
        def fn(module, args, output):
            return _modify(output)
    n.hooks[hid] = module.register_forward_hook(fn)


# ------------------------------------------------------------------------------------ strategies

_IDX = st.integers(0, 10**6)


def _calls():
    return st.tuples(
        st.just("call"),
        st.sampled_from([2, 2, 1, 3]),  # batch
        st.integers(0, 3),  # input seed: repeated inputs too
        st.sampled_from(["no_grad", "no_grad", "grad", "inference"]),
        st.one_of(st.none(), st.none(), st.just("last"), st.lists(st.integers(0, MAX_STEPS), min_size=1, max_size=3)),
        st.integers(0, 31),  # record mask over the sorted area names
        st.one_of(st.none(), st.none(), st.none(), st.integers(1, MAX_STEPS)),  # steps
        _perturbations(),
    )


@st.composite
def _perturbations(draw):
    if draw(st.integers(0, 2)):
        return ()
    return tuple(draw(st.lists(st.tuples(_IDX, st.integers(0, 5), _IDX, st.lists(st.integers(0, MAX_STEPS),
                                                                                 max_size=2)),
                               min_size=1, max_size=2)))


def _edits():
    return st.one_of(
        st.tuples(st.just("mul"), _IDX, st.integers(0, 3)),
        st.tuples(st.just("data"), _IDX, st.integers(0, 3), _IDX),
        st.tuples(st.just("rebind"), _IDX, st.integers(0, 3)),
        st.tuples(st.just("load"), st.integers(0, 99), st.booleans()),
        st.tuples(st.just("swap"), _IDX, st.integers(0, 99)),
        st.tuples(st.just("float"), _IDX, _IDX),
        st.tuples(st.just("float"), _IDX, _IDX),
        st.tuples(st.just("weights"), st.integers(0, 3)),
        st.tuples(st.just("bn"), _IDX, st.integers(0, 3)),
        st.tuples(st.just("mode"), st.sampled_from(["train", "eval", "eval", "module"]), _IDX),
        st.tuples(st.just("hook"), st.sampled_from(["store", "modify", "global"]), _IDX),
        st.tuples(st.just("unhook"), _IDX),
    )


@st.composite
def _changes(draw, segments: tuple[int, int] = (2, 4)) -> list:
    """A first call, then segments of 1-2 edits each followed by a call (half of them with the
    previous call's arguments: what a network keeps between calls is kept per call form)."""
    out = [draw(_calls())]
    for _ in range(draw(st.integers(*segments))):
        out += draw(st.lists(_edits(), min_size=1, max_size=2))
        out.append(draw(st.one_of(st.just(("again",)), _calls())))
    return out


@st.composite
def _pass_sets(draw, every_single: bool = False) -> list:
    """``"default"``, all compatible passes together, one single pass (or the empty set) and a
    random subset; with ``every_single``, every single pass and both packing modes."""
    names = sorted(passes())
    singles = [()] + [(n,) for n in names]
    packings = sorted({n for g in EXCLUSIVE for n in g if n in names}) or [None]
    sets: list = ["default"]
    if every_single:
        sets += [compatible(names, prefer=p) for p in packings] + singles
    else:
        sets += [compatible(names, prefer=draw(st.sampled_from(packings))), draw(st.sampled_from(singles))]
    sets.append(compatible(draw(st.sets(st.sampled_from(names))), prefer=draw(st.sampled_from(names))))
    unique = []
    for s in sets:
        if s not in unique:
            unique.append(s)
    return unique


@st.composite
def cases(draw, every_single: bool = False, segments: tuple[int, int] = (2, 4)):
    return dict(data=draw(specs()), pass_sets=draw(_pass_sets(every_single)),
                dtype=draw(st.sampled_from([torch.float32, torch.float32, torch.float32, torch.float64])),
                train=draw(st.integers(0, 3)) == 0, seed=draw(st.integers(0, 2**16)),
                changes=draw(_changes(segments)))


# ------------------------------------------------------------------------------------ the runner


def _load(data):
    """The drawn plain data through the loader (as JSON text: YAML 1.2, and faster to parse)."""
    return tnnspec.loads(json.dumps(data))


def run_case(spec, pass_sets, dtype, changes, seed: int = 0, train: bool = False, make=build) -> _World:
    """Build the networks, apply ``changes`` (calls checked as they come), compare with a fresh
    plain network at the end; raises AssertionError listing what differed."""
    world = _World(spec, pass_sets, dtype, seed, train, make)
    try:
        for change in changes:
            world.apply(change)
        world.check_fresh()
    finally:
        world.close()
    world.raise_failures()
    return world


SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _run_drawn(case) -> None:
    spec = _load(case["data"])
    note("spec:\n" + text(case["data"]))
    note(f"pass sets: {[label(p) for p in case['pass_sets']]}, dtype {case['dtype']}, train {case['train']}")
    run_case(spec, case["pass_sets"], case["dtype"], case["changes"], case["seed"], case["train"])


@settings(max_examples=70, phases=[Phase.explicit, Phase.generate], **SETTINGS)
@given(case=cases())
def test_passes_match_the_plain_interpreter_across_changes(case, one_thread):
    """Random specs, pass sets and changes between calls (module docstring). Failing examples
    are not shrunk here (shrinking one takes minutes): the report lists the pass sets, the
    changes and calls up to each difference, and the spec (as YAML)."""
    _run_drawn(case)


@pytest.mark.slow
@settings(max_examples=400, **SETTINGS)
@given(case=cases(every_single=True, segments=(2, 6)))
def test_passes_match_the_plain_interpreter_across_changes_slow(case, one_thread):
    """The same with every single pass in every example, longer change sequences, more examples."""
    _run_drawn(case)


# ------------------------------------------------------------------------------------ explicit cases

CONSTANT_EDGE = """
tnnspec: "1.1"
name: constant_edge
time: {steps: 5}
inputs: {x: {shape: [2, 4, 4]}}
areas:
  A: {level: 1, channels: 2}
  B: {level: 2, channels: 2, before_arrival: zero_drive, cell: gru}
  C: {level: 3, channels: 2, before_arrival: zero_drive}
edges:
  - {type: feedforward, source: x, target: A, transform: [conv]}
  - {type: feedforward, source: A, target: B, transform: [conv]}
  - {type: lateral, source: B, target: B, delay: 1, transform: [conv]}
  - {type: feedforward, source: B, target: C, transform: [conv]}
readouts:
  out: {source: C, head: [{pool: avg}, {linear: 3}]}
"""

_EVAL_CALL = ("call", 2, 0, "no_grad", None, 0b111, None, ())


def _every_edge_weight(value):
    """Changes setting every edge's float weight."""
    return [("float", i, FLOAT_VALUES["weight"].index(value)) for i in range(4)]


def test_edge_weight_change_between_inference_calls(one_thread):
    """C's update at step 1 reads only B's zero-driven step 0 through the edge B__C: an
    input-independent update. Changing ``edge.weight`` (a float, not a tensor) between two eval
    no-grad calls must change it: a pass that keeps such updates across calls must see the float."""
    spec = tnnspec.loads(CONSTANT_EDGE)
    run_case(spec, ["default", compatible(passes(), "packed_weights")], torch.float32,
             [_EVAL_CALL, *_every_edge_weight(0.5), _EVAL_CALL])


def test_the_harness_fails_on_a_planted_stale_cache(one_thread):
    """The harness is not vacuous: an "optimised" network that returns its first result for a
    repeated input and call (a cache that ignores changes) is reported."""

    def make(spec, pass_set):
        net = build(spec, ())
        if pass_set:
            memo, inner = {}, net.forward

            def forward(x, **kw):
                key = (float(x.sum()), repr(sorted(kw.items())))
                if key not in memo:
                    memo[key] = inner(x, **kw)
                return memo[key]

            net.forward = forward
        return net

    spec = tnnspec.loads(CONSTANT_EDGE)
    with pytest.raises(AssertionError, match="outputs differ"):
        run_case(spec, [("hoist",)], torch.float32, [_EVAL_CALL, ("mul", 0, 0), _EVAL_CALL], make=make)


def test_convrnn_shallow_gru_edge_weights_between_calls(one_thread):
    """The zoo's ConvRNN (GRU cells, zero_input stand-ins: input-independent updates at the
    first steps, an on/off image) on 72 px inputs (the smallest its 2x2 valid readout conv
    allows), 8 steps: the default passes against the plain interpreter, with every edge's
    weight set to 0.5 between two inference calls."""
    from tnnspec import zoo

    spec = zoo.load("convrnn_shallow_gru")
    spec = spec.model_copy(update={"inputs": {k: v.model_copy(update={"shape": [3, 72, 72]})
                                              for k, v in spec.inputs.items()}})
    start = time.perf_counter()
    torch.manual_seed(0)
    ref = build(spec, ()).eval()
    opt = build(spec, "default").eval()
    opt.load_state_dict(ref.state_dict())
    x = torch.randn(1, 3, 72, 72, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        first = (opt(x, steps=8).readouts["logits"], ref(x, steps=8).readouts["logits"])
        if time.perf_counter() - start > 5:
            pytest.skip("convrnn_shallow_gru takes more than 5 s here")
        for net in (ref, opt):
            for e in net.edges.values():
                e.weight = 0.5
        second = (opt(x, steps=8).readouts["logits"], ref(x, steps=8).readouts["logits"])
    assert torch.equal(*first)
    assert not torch.equal(second[1], first[1])  # the weights matter
    assert torch.equal(*second), f"max |diff| {float((second[0] - second[1]).abs().max()):.3g}"


PER_STEP_NORM = """
tnnspec: "1.1"
name: per_step_norm
time: {steps: 3}
inputs: {x: {shape: [2, 4, 4]}}
areas:
  A: {level: 1, channels: 3, ops: [conv, {norm: {type: batch, per_step: true}}, relu]}
edges:
  - {type: feedforward, source: x, target: A, transform: [conv]}
readouts:
  out: {source: A}
"""


@pytest.mark.parametrize("pass_set", ["plain", "default"])
def test_a_hook_on_a_per_step_norm_layer_keeps_what_it_stored(pass_set, one_thread):
    """A forward hook on ``areas.A.ops.norm.steps[0]`` (one layer of a per-step batch norm)
    stores its output; the ReLU after the norm must not then work in place on that tensor, and
    outputs must match the plain interpreter."""
    spec = tnnspec.loads(PER_STEP_NORM)
    torch.manual_seed(0)
    net = build(spec, () if pass_set == "plain" else "default").eval()
    layer = net.areas["A"].ops.norm.steps[0]
    assert isinstance(layer, nn.BatchNorm2d)
    stored = []
    handle = layer.register_forward_hook(lambda m, a, out: stored.append((out, out.detach().clone())))
    try:
        with torch.no_grad():
            run = net(net.example_inputs(2), record=("A",))
    finally:
        handle.remove()
    assert stored
    for out, copy in stored:
        assert torch.equal(out, copy), "the ReLU after the norm modified the tensor the hook stored"
    assert run.areas["A"].min() >= 0


def test_a_hook_returning_a_new_output_on_an_area_probe(one_thread):
    """A forward hook that returns a new output on an area's ``probe`` (called once per step on
    the area's output): time-invariant areas reused from the previous step must not be
    transformed again."""
    spec = tnnspec.loads(CONSTANT_EDGE)
    changes = [("hook", "modify", _path_index(spec, "areas.A.probe")), _EVAL_CALL]
    run_case(spec, [("hoist",)], torch.float32, changes)


def _path_index(spec, path: str) -> int:
    net = build(spec, ())
    paths = [p for p, _ in net.named_modules() if p]
    return paths.index(path)


BATCH_NORMS = """
tnnspec: "1.1"
name: batch_norms
time: {steps: 3}
inputs: {x: {shape: [2, 4, 4]}}
areas:
  A: {level: 1, channels: 2, ops: [{norm: batch}]}
  B: {level: 2, channels: 2, ops: [{norm: batch}]}
edges:
  - {type: feedforward, source: x, target: A, transform: [conv, {norm: batch}]}
  - {type: feedforward, source: A, target: B, transform: [conv]}
readouts:
  a: {source: A, head: [{pool: avg}]}
  b: {source: B, head: [{pool: avg}]}
"""


def test_a_pruned_training_call_updates_batch_norm_statistics_as_the_plain_one(one_thread):
    """A training call that asks for the readouts at step 0 only: the plain interpreter runs
    every update, and each train-mode batch norm updates its running statistics; a pass that
    skips updates must leave the statistics (and so every later eval call) as they are there."""
    spec = tnnspec.loads(BATCH_NORMS)
    train_call = ("call", 2, 0, "no_grad", [0], 0, None, ())
    changes = [("mode", "train", 0), train_call, ("mode", "eval", 0), _EVAL_CALL]
    run_case(spec, [("prune",)], torch.float32, changes)


def test_forward_hooks_of_a_fused_conv_and_batch_norm_are_called(one_thread):
    """A forward hook returning a new output on the conv of a conv + BatchNorm pair: the plain
    interpreter calls it, so batch-norm fusion must too (or not fuse the hooked pair)."""
    spec = tnnspec.loads(BATCH_NORMS)
    changes = [("hook", "modify", _path_index(spec, "edges.x__A.conv")), _EVAL_CALL]
    run_case(spec, [("fuse_batchnorm",)], torch.float32, changes)


@st.composite
def _lesions(draw):
    """A spec (no lesions in the file), and one edge or area to lesion at every step."""
    data = draw(specs())
    for e in data["edges"]:
        e.pop("enabled", None)
    for a in data["areas"].values():
        a.pop("enabled", None)
    if draw(st.booleans()):
        return data, "edge", draw(st.integers(0, len(data["edges"]) - 1))
    return data, "area", draw(st.sampled_from(sorted(data["areas"])))


@settings(max_examples=15, **SETTINGS)
@given(case=_lesions(), seed=st.integers(0, 2**16))
def test_a_lesion_per_call_equals_the_lesion_written_in_the_file(case, seed, one_thread):
    """The reference semantics of perturbations: ``perturb={edge: "cut"}`` (``{area:
    "silence"}``) on the plain interpreter equals ``enabled: false`` on that edge (area) in the
    file, with the same weights."""
    data, kind, which = case
    lesioned = json.loads(json.dumps(data))
    if kind == "edge":
        lesioned["edges"][which]["enabled"] = False
    else:
        lesioned["areas"][which]["enabled"] = False
    spec, spec_lesioned = _load(data), _load(lesioned)
    note("spec:\n" + text(lesioned))
    torch.manual_seed(seed)
    net = build(spec, ()).eval()
    other = build(spec_lesioned, ()).eval()
    other.load_state_dict(_random_state(net, seed))
    net.load_state_dict(other.state_dict())
    name = net.plan.edge_names[which] if kind == "edge" else which
    perturb = {name: "cut" if kind == "edge" else "silence"}
    x = _inputs(spec, 2, seed, torch.float32)
    record = tuple(sorted(spec.areas))
    with torch.no_grad():
        got = call(net, x, record=record, perturb=perturb)
        expected = call(other, x, record=record)
    for part in ("readouts", "areas"):
        for key, value in getattr(expected, part).items():
            assert torch.equal(getattr(got, part)[key], value), (part, key, perturb)


ONE_AREA = """
tnnspec: "1.1"
name: one_area
time: {steps: 2}
inputs: {x: {shape: [1, 4, 4]}}
areas:
  A0: {level: 1, channels: 1}
edges:
  - {type: feedforward, source: x, target: A0}
readouts:
  r: {source: A0}
"""

ZERO_DRIVE_FEEDBACK = """
tnnspec: "1.1"
name: zero_drive_feedback
time: {steps: 6, default_delay: {feedforward: 1}}
inputs: {image: {shape: [2, 5, 5], schedule: {type: on_off, start: 1, blank: 0.5}}}
areas:
  A0: {level: 1, channels: 2, before_arrival: zero_drive}
  A1: {level: 2, channels: 2}
  A2: {level: 3, channels: 2}
edges:
  - {type: feedforward, source: image, target: A0}
  - {type: feedforward, source: A0, target: A1}
  - {type: feedforward, source: A1, target: A2}
  - {type: feedback, source: A1, target: A0}
readouts:
  r: {source: A2, cumulative: true}
"""


@pytest.mark.parametrize("text_, readout_steps", [(ONE_AREA, "last"), (ZERO_DRIVE_FEEDBACK, (4,))],
                         ids=["one_area", "zero_drive_feedback"])
def test_readout_steps_skip_updates_without_breaking_later_ones(text_, readout_steps, one_thread):
    """Calls that ask for some readout steps only: the updates a pass skips must not be ones
    that a later update's state starts from (found by the harness: KeyError in the network's
    state lookup)."""
    spec = tnnspec.loads(text_)
    changes = [("call", 2, 0, "no_grad", readout_steps, 0, None, ())]
    run_case(spec, ["default", ("prune",)], torch.float32, changes)


CORNET_BLOCK = """
tnnspec: "1.1"
name: cornet_block
time: {steps: 2}
inputs: {x: {shape: [2, 6, 6]}}
areas:
  A: {level: 1, channels: 2, cell: {type: cornet_s_block, inner_steps: 1, scale: 1}}
edges:
  - {type: feedforward, source: x, target: A, transform: [{conv: {kernel: 1}}]}
readouts:
  r: {source: A}
"""


def test_a_batch_norm_of_a_cornet_block_swapped_for_identity(one_thread):
    """A lesion inside a CORnet-S block: ``cell.norm2_0`` replaced by ``nn.Identity``, then
    ``net.eval()``. The plain interpreter runs conv2 without the norm; batch-norm fusion must
    see that there is no norm left to fold."""
    spec = tnnspec.loads(CORNET_BLOCK)
    swaps = _swaps(build(spec, ()))
    changes = [("swap", swaps.index(("areas.A.cell.norm2_0", "identity")), 0), ("mode", "eval", 0), _EVAL_CALL]
    run_case(spec, [("fuse_batchnorm",)], torch.float32, changes)
