"""Scoring one trial of a search: constraints, training, and the metrics the objectives name.

A trial goes through these stages (:class:`TrialObjective`):

1. **The graph.** The sampler's values become a graph file (``space.materialise``), written to
   ``OUT/graphs/<name>-<digest12>.yaml``. A combination that makes an invalid graph is *pruned*
   with the user attributes ``pruned_reason`` (the first error) and ``invalid_graph`` (all the
   diagnostics): an invalid graph is a region of the space the sampler should learn to avoid,
   not an error of the run.
2. **Constraints, before any training.** ``params`` is the number of elements of every parameter
   of the compiled network; ``flops`` counts the floating-point operations of one forward pass
   of a batch of one image over *all* steps of the unroll, with
   ``torch.utils.flop_counter.FlopCounterMode`` (it counts matrix products: convolutions,
   linear layers, matmuls — 2 per multiply-add; elementwise ops, norms and activations are not
   counted), measured on a second call of the plain interpreter (``optimize="none"``: the
   speed passes change what the counter sees, e.g. oneDNN-packed convolutions go uncounted). A trial over ``max_params`` or ``max_flops`` is *pruned* (user attribute
   ``pruned_reason``), not failed: a pruned trial counts towards the budget and tells the
   sampler that region is unwanted, while a failed one is ignored by the samplers and would not
   count, so a space mostly over the limits would never finish.
3. **Training** with :func:`tnnspec.train.train` and the space's ``training:`` settings, into
   ``OUT/trials/<trial number>-<digest12>/`` (metrics.jsonl, checkpoint). In a single-objective
   study whose objective is an accuracy to maximise (or ``val_loss`` to minimise), the
   validation accuracy (or loss) is reported to Optuna after every epoch and the pruner may
   stop the trial (``PRUNED``, with its intermediate values). Optuna cannot prune
   multi-objective studies, so those always train to the end.
4. **Metrics**: ``val_accuracy`` and ``val_loss`` (last-step accuracy and loss on the
   validation split after training, as :func:`~tnnspec.train.train` returns them),
   ``occlusion_accuracy`` (mean last-step accuracy on the validation split with every image
   occluded at each of the objective's levels; no levels: the training data's levels),
   ``params``, ``flops``, ``latency_ms`` (median wall time of a forward pass of one image over
   all steps, 5 repeats after a warm-up, on the trial's device) and ``neural_score`` (see
   :func:`neural_score`). All computed metrics are stored as trial user attributes
   (``metric.<name>``), with the graph file, its digest and the worker's pid and host.

A trial whose graph file (digest) equals that of a complete trial is not trained again: it takes
that trial's values and metrics (user attribute ``same_as_trial``), since every trial trains with
the same settings and seed. Samplers propose a point again when a space is small and discrete.

A retried trial (its worker was lost) whose first attempt left a checkpoint continues training
from it (the trainer's exact resume) in the first attempt's folder.
"""

from __future__ import annotations

import os
import socket
import statistics
import time
from pathlib import Path

TRAINED = {"val_accuracy", "val_loss", "occlusion_accuracy", "neural_score"}
# a pause (seconds) before training, for tests that must catch a trial while it runs
DELAY_ENV = "TNNSPEC_SEARCH_TEST_DELAY"


class ConstraintViolated(Exception):
    pass


# ---------------------------------------------------------------- cheap measures
def count_params(net) -> int:
    return int(sum(p.numel() for p in net.parameters()))


def count_flops(spec, steps: int | None = None) -> float:
    """FLOPs of one forward pass of a batch of one over all ``steps`` (default: the spec's), as the
    plain interpreter runs the plan (``optimize="none"``). Counted there because the speed passes
    change what the counter sees, not what the model computes: a convolution packed for oneDNN is
    not an ``aten.convolution`` and would go uncounted (with the default passes, a k = 5 variant
    of a graph counted fewer FLOPs than its k = 3 variant), and the hoist pass's savings depend
    on the input. Weights do not matter: a fresh network is counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import tnnspec

    net = tnnspec.compile(spec, optimize="none").eval()
    x = net.example_inputs(batch_size=1, steps=steps)
    with torch.no_grad():
        net(x, steps=steps)  # a warm-up call: the first call may run one-off feature probes
        with FlopCounterMode(display=False) as counter:
            net(x, steps=steps)
    return float(counter.get_total_flops())


def latency_ms(net, repeats: int = 5, steps: int | None = None) -> float:
    """Median wall time (ms) of a forward pass of one image over all steps (after a warm-up)."""
    import torch

    x = net.example_inputs(batch_size=1, steps=steps)
    cuda = next(net.parameters()).is_cuda if any(True for _ in net.parameters()) else False
    was = net.training
    net.eval()
    times = []
    try:
        with torch.no_grad():
            net(x, steps=steps)
            for _ in range(repeats):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                net(x, steps=steps)
                if cuda:
                    torch.cuda.synchronize()
                times.append(1000 * (time.perf_counter() - t0))
    finally:
        net.train(was)
    return float(statistics.median(times))


# ---------------------------------------------------------------- trained measures
def occlusion_accuracy(net, spec, cfg, levels, device="cpu") -> tuple[float, dict]:
    """Mean last-step accuracy on the validation split, every image occluded at each level of
    ``levels`` (empty: the training data's levels). Returns (mean, {level: accuracy})."""
    from ..train.evaluate import evaluate
    from ..train.trainer import make_dataset

    levels = list(levels) or list(cfg.data.occlusion)
    per = {}
    for level in levels:
        data = make_dataset(cfg, "val", occlusion=[float(level)])
        result = evaluate(net, spec, data, readout=cfg.readout, device=device)
        per[f"{level:g}"] = float(result["accuracy_per_step"][-1])
    return float(sum(per.values()) / len(per)), per


def neural_score(space, spec, trained_dir, device="cpu") -> float:
    """The mean ceiled mapping score (``tnnspec fit --mode mapping``) of the trained network
    against the recordings the space's ``neural:`` section names: mean over regions of the
    mean over time bins of the ceiled score. The section takes ``recordings`` and ``stimuli``
    (paths, relative to the space file) and, optionally, ``map`` ({region: area}),
    ``latency_ms`` ({region: [ms, ...]}) and ``checkpoint: false`` (score the untrained
    network). The graph's own ``neural:`` section supplies the other settings (method,
    folds, bins)."""
    from ..neural.errors import NeuralDataError
    from ..neural.fit import run_fit

    cfg = dict(space.neural or {})
    base = Path(space.file).parent if getattr(space, "file", None) else Path.cwd()

    def path(key):
        value = cfg.get(key)
        if not value:
            raise NeuralDataError(f"the search space's neural: section needs '{key}' (a path) for the "
                                  "neural_score metric")
        p = Path(value)
        return p if p.is_absolute() else base / p

    mapping = cfg.get("map") or cfg.get("mapping")
    latency = cfg.get("latency_ms")
    if isinstance(latency, (int, float)):
        latency = None if latency is None else {"*": [float(latency)]}
    scores = run_fit(spec, path("recordings"), path("stimuli"), mode="mapping", mapping=mapping,
                     latency_ms=latency, checkpoint=trained_dir if cfg.get("checkpoint", True) else None,
                     out_dir=None, device=device, progress=False, report=False)
    values = []
    for entry in scores["regions"].values():
        ceiled = [v for v in entry["scores"]["mapping"]["ceiled"] if v is not None]
        if ceiled:
            values.append(sum(ceiled) / len(ceiled))
    if not values:
        raise NeuralDataError("the neural score is undefined: no region has a ceiled score (noise ceiling 0?)")
    return float(sum(values) / len(values))


# ---------------------------------------------------------------- the objective
def pruning_metric(space) -> tuple[str, str] | None:
    """(trainer metric, direction) reported per epoch, or None when this study cannot prune."""
    if len(space.objectives) != 1 or (getattr(space, "pruner", None) or {}).get("type", "median") == "none":
        return None
    o = space.objectives[0]
    if o.metric in ("val_accuracy", "occlusion_accuracy", "neural_score") and o.direction == "maximize":
        return "val_acc", "maximize"
    if o.metric == "val_loss" and o.direction == "minimize":
        return "val_loss", "minimize"
    return None


class TrialObjective:
    """The Optuna objective of a search: ``objective(trial)`` -> the objectives' values."""

    def __init__(self, space, out: str | Path, device: str = "cpu", progress: bool = False):
        self.space = space
        self.out = Path(out)
        self.device = device
        self.progress = progress

    def __call__(self, trial):
        import optuna

        from ..spec.diagnostics import SpecError
        from .space import write_trial_graph

        space = self.space
        trial.set_user_attr("worker_pid", os.getpid())
        trial.set_user_attr("worker_host", socket.gethostname())
        values = space.suggest(trial)
        try:
            tg = space.materialise(values)
        except SpecError as exc:
            errors = [d for d in exc.diagnostics if d.severity == "error"] or exc.diagnostics
            trial.set_user_attr("pruned_reason", f"invalid graph: {errors[0].message}"[:300])
            trial.set_user_attr("invalid_graph", "\n".join(str(d) for d in errors)[:5000])
            raise optuna.TrialPruned("invalid graph")
        graph_path = write_trial_graph(tg, self.out)
        trial.set_user_attr("graph_file", str(graph_path))
        trial.set_user_attr("digest", tg.digest)
        same = self._same_graph(trial, tg.digest)
        if same is not None:  # this graph was trained already, with the same settings: the same result
            for key, value in same.user_attrs.items():
                if key.startswith("metric.") or key in ("train_dir", "occlusion_accuracy_per_level"):
                    trial.set_user_attr(key, value)
            trial.set_user_attr("same_as_trial", same.number)
            return tuple(same.values)
        metrics = self.evaluate(trial, tg)
        return tuple(float(metrics[o_key]) for o_key in self._keys())

    @staticmethod
    def _same_graph(trial, digest: str):
        """A complete trial of this study with the same graph file (the same digest), if any."""
        from optuna.trial import TrialState

        for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("digest") == digest and t.values is not None:
                return t
        return None

    def _keys(self) -> list[str]:
        from .engine import objective_label

        return [objective_label(o) for o in self.space.objectives]

    def evaluate(self, trial, tg) -> dict:
        import optuna
        import tnnspec

        from ..train.trainer import fit_to_spec, load_for_eval, train

        space, spec = self.space, tg.spec
        metrics: dict = {}

        def record(name, value):
            metrics[name] = value
            trial.set_user_attr(f"metric.{name}", value)

        net = tnnspec.compile(spec)
        record("params", count_params(net))
        record("flops", count_flops(spec))
        limits = dict(getattr(space, "constraints", None) or {})
        for key, metric in (("max_params", "params"), ("max_flops", "flops")):
            limit = limits.get(key)
            if limit is not None and metrics[metric] > limit:
                reason = f"constraint {key}: {metric} {metrics[metric]:.4g} > {limit:.4g}"
                trial.set_user_attr("pruned_reason", reason)
                raise optuna.TrialPruned(reason)
        wanted = {o.metric for o in space.objectives}
        if "neural_score" in wanted and not getattr(space, "neural", None):
            raise ValueError("the objective neural_score needs a neural: section in the search space")

        delay = float(os.environ.get(DELAY_ENV, "0") or 0)
        if delay > 0:
            time.sleep(delay)
        trained_dir = None
        if wanted & TRAINED:
            cfg = fit_to_spec(spec, space.training)
            trained_dir, resume = self._train_dir(trial, tg)
            trial.set_user_attr("train_dir", str(trained_dir))
            prune = pruning_metric(space)

            def on_epoch(epoch: int, event: dict) -> None:
                if prune is None or event.get(prune[0]) is None:
                    return
                trial.report(float(event[prune[0]]), epoch)
                if trial.should_prune():
                    trial.set_user_attr("pruned_reason", f"pruner at epoch {epoch} ({prune[0]} {event[prune[0]]:.4g})")
                    raise optuna.TrialPruned(f"epoch {epoch}")

            result = train(spec, cfg, out_dir=trained_dir, device=self.device, resume=resume,
                           progress=self.progress, on_epoch=on_epoch)
            if "val_acc" in result:
                record("val_accuracy", float(result["val_acc"]))
                record("val_loss", float(result["val_loss"]))
            trial.set_user_attr("train_steps", int(result["step"]))
            net, _ = load_for_eval(spec, trained_dir, self.device)
            for o in space.objectives:
                if o.metric == "occlusion_accuracy":
                    from .engine import objective_label

                    mean, per = occlusion_accuracy(net, spec, cfg, o.levels, self.device)
                    record(objective_label(o), mean)
                    trial.set_user_attr("occlusion_accuracy_per_level", per)
                    metrics.setdefault("occlusion_accuracy", mean)
        else:
            net = net.to(self.device)
        record("latency_ms", latency_ms(net))
        if "neural_score" in wanted:
            record("neural_score", neural_score(space, spec, trained_dir, self.device))
        missing = [k for k in self._keys() if k not in metrics]
        if missing:
            raise ValueError(f"no value for objective(s) {missing} (validation split empty?)")
        return metrics

    def _train_dir(self, trial, tg) -> tuple[Path, bool]:
        """This trial's training folder, and whether to resume in it: a retry of a trial whose
        worker was lost continues from the first attempt's checkpoint when it is here."""
        from ..train import checkpoint as ckpt

        first = trial.storage.get_trial_system_attrs(trial._trial_id).get("retry_history")
        previous = trial.user_attrs.get("train_dir") if first else None
        if previous and (Path(previous) / ckpt.META).is_file():
            trial.set_user_attr("resumed_from_trial", int(first[0]))
            return Path(previous), True
        return self.out / "trials" / f"{trial.number}-{tg.digest[:12]}", False
