"""Fitting a network's dynamics to recordings directly (the ConvRNN papers' "fit the dynamics").

The network's weights (all, or only chosen edges) and one linear readout per region are trained
together so that, at every time bin, the readout of the region's area predicts every neuron's
trial-averaged response:

    pred_n(s, bin) = b_n + sum_d  W_nd * sum_t  M[bin, t] * a_d(s, t)       (M: the time map)
    loss = mean over regions of  mean over images, bins, neurons of  (pred - z)^2

where ``z`` is the response standardised per neuron with the training images' mean and standard
deviation over images and bins. An optional task loss (the spec's readout, cross-entropy over
steps) is added with weight ``task_weight``.

Cross-validation, both reported with the noise ceiling (:mod:`tnnspec.neural.stats`):

* **held-out images**: the fitted neurons' predictions on images left out of the fit;
* **held-out neurons**: neurons left out of the fit are mapped afterwards from the fitted
  network's area, per bin, by ridge regression on the training images only, and scored on the
  held-out images ("test on another with just linear regression fit").

Training runs in :func:`tnnspec.train.train` (progress bars, ``metrics.jsonl``, checkpoints,
``--resume`` and torchrun DDP) through a :class:`tnnspec.train.trainer.Task`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..train.trainer import Task
from .errors import NeuralDataError


class NeuralModel(nn.Module):
    """A compiled network and a linear readout per region: ``forward(x)`` returns
    ``{region: [batch, bins, neurons]}`` predictions (standardised units)."""

    def __init__(self, net, regions: dict[str, dict], steps: int):
        super().__init__()
        self.net = net
        self.steps = steps
        self.areas = {r: v["area"] for r, v in regions.items()}
        shapes = net.plan_for(steps).shapes.output
        self.heads = nn.ModuleDict({r: nn.Linear(math.prod(shapes[v["area"]]), v["n_neurons"]) for r, v in regions.items()})
        for r, v in regions.items():
            self.register_buffer(f"time_map_{r}", torch.as_tensor(v["weights"], dtype=torch.float32), persistent=False)
            # features are multiplied by this fixed scale (1 / their initial standard deviation) so
            # the readout's weights are of order 1 whatever the area's activity level
            self.register_buffer(f"scale_{r}", torch.ones(()))

    def forward(self, x, readouts: bool = False):
        run = self.net(x, steps=self.steps, record=tuple(dict.fromkeys(self.areas.values())),
                       readout_steps=None if readouts else "last")
        out = {}
        for r, area in self.areas.items():
            a = run.areas[area].flatten(2)  # [T, batch, D]
            m = getattr(self, f"time_map_{r}").to(a.dtype)
            out[r] = self.heads[r](torch.einsum("bt,tnd->nbd", m, a) * getattr(self, f"scale_{r}"))
        return (out, run.readouts) if readouts else out


def he_normal_(net, spec) -> None:
    """Fresh weights for a dynamics fit (``neural.dynamics.init: he_normal``): every weight
    ~ N(0, 2 / (fan_in * k)), biases 0, where ``k`` is the number of enabled edges into the
    target area for an edge's weights and 1 for an area's own (He et al. 2015, with the drive of
    an area being the sum of its ``k`` incoming edges). Activity keeps its scale through ReLU
    areas whatever the number of pathways, so recurrent edges start strong enough to carry
    activity over steps without a feedback loop running away."""
    from ..graph.checks import edge_names

    incoming: dict[str, int] = {}
    for e in spec.edges:
        if e.enabled:
            incoming[e.target] = incoming.get(e.target, 0) + 1
    share = {}
    for name, e in zip(edge_names(spec), spec.edges):
        for p in net.edges[name].parameters():
            share[id(p)] = max(1, incoming.get(e.target, 1))
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0.0, (2.0 / (p[0].numel() * share.get(id(p), 1))) ** 0.5)
            else:
                p.zero_()


def check_train_choice(spec, train) -> None:
    """``train`` is 'all' or names edge types used in the graph and edge names."""
    if train == "all":
        return
    from ..graph.checks import edge_names

    known = set(edge_names(spec)) | {e.type for e in spec.edges}
    unknown = [x for x in train if x not in known]
    if unknown:
        raise NeuralDataError(f"train: {', '.join(map(repr, unknown))} is neither an edge type used in "
                              f"'{spec.name}' nor an edge name (known: {', '.join(sorted(known))})")


def _trainable(net, spec, train) -> None:
    """Leave ``requires_grad`` on only for the chosen edges' parameters (``train`` a list of
    edge types and names), or for every parameter (``"all"``)."""
    if train == "all":
        return
    from ..graph.checks import edge_names

    chosen = set(train)
    names = edge_names(spec)
    for p in net.parameters():
        p.requires_grad_(False)
    for name, e in zip(names, spec.edges):
        if name in chosen or e.type in chosen:
            for p in net.edges[name].parameters():
                p.requires_grad_(True)


class DynamicsTask(Task):
    """The trainer's task for dynamics fitting (see the module docstring)."""

    def __init__(self, spec, inputs: torch.Tensor, targets: dict[str, torch.Tensor], regions: dict[str, dict],
                 train_idx: np.ndarray, val_idx: np.ndarray, steps: int, train="all", init=None,
                 labels: torch.Tensor | None = None, task_weight: float = 0.0, device="cpu",
                 init_scheme: str = "he_normal"):
        self.spec, self.inputs, self.targets, self.regions = spec, inputs, targets, regions
        self.train_idx = torch.as_tensor(train_idx)
        self.val_idx = torch.as_tensor(val_idx)
        self.n_train = len(train_idx)
        self.steps = steps
        self.train_choice, self.init, self.init_scheme = train, init, init_scheme
        self.labels, self.task_weight, self.device = labels, task_weight, torch.device(device)
        self.trained: NeuralModel | None = None
        if task_weight > 0:
            from ..train.evaluate import pick_readout
            from ..train.losses import time_weights

            from ..train.evaluate import DataError

            if labels is None:
                raise NeuralDataError("task_weight > 0 needs class labels for the stimuli (an .npz with 'labels')")
            try:
                self.readout = pick_readout(spec, None)
            except DataError as exc:
                raise NeuralDataError(f"task_weight > 0: {exc}") from None
            self.time_weights = time_weights(steps)

    def module(self, net):
        if self.init is not None:
            from .fit import load_net_weights

            load_net_weights(net, self.init, self.spec)
        elif self.init_scheme == "he_normal":
            he_normal_(net, self.spec)
        _trainable(net, self.spec, self.train_choice)
        self.trained = NeuralModel(net, self.regions, self.steps)
        self._init_heads(self.trained)
        return self.trained

    def _init_heads(self, model: NeuralModel, ridge: float = 1e-2) -> None:
        """Start each readout at the ridge solution for the initial network's activity on the
        training images (one map for all bins, penalty ``ridge`` times the mean feature
        variance), so training starts from the best linear readout instead of a random one.
        Deterministic, so every DDP process starts the same; a resumed run then loads its own."""
        was = model.training
        model.eval()
        idx = self.train_idx
        with torch.no_grad():
            run = model.net(self.inputs[idx], steps=self.steps, record=tuple(dict.fromkeys(model.areas.values())),
                            readout_steps="last")
            for r, area in model.areas.items():
                a = run.areas[area].flatten(2).double()  # [T, S, D]
                f = torch.einsum("bt,tsd->sbd", getattr(model, f"time_map_{r}").double(), a).reshape(-1, a.shape[-1])
                sd = float(f.std(0).pow(2).mean().sqrt())
                scale = 1.0 / sd if sd > 0 else 1.0
                getattr(model, f"scale_{r}").fill_(scale)
                f = f * scale
                y = self.targets[r][idx].double().reshape(-1, self.targets[r].shape[-1])  # [S*B, N]
                fm, ym = f.mean(0), y.mean(0)
                fc, yc = f - fm, y - ym
                gram = fc.T @ fc
                lam = ridge * float(gram.diagonal().mean()) + 1e-12
                w = torch.linalg.solve(gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype), fc.T @ yc)  # [D, N]
                model.heads[r].weight.copy_(w.T.float())
                model.heads[r].bias.copy_((ym - fm @ w).float())
        model.train(was)

    def _loss(self, model, idx: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """(the loss on images ``idx``, the predictions it was computed from)."""
        x = self.inputs[idx].to(self.device)
        if self.task_weight > 0:
            preds, readouts = model(x, readouts=True)
        else:
            preds = model(x)
        losses = [(preds[r].float() - self.targets[r][idx].to(self.device)).pow(2).mean() for r in self.regions]
        loss = torch.stack(losses).mean()
        if self.task_weight > 0:
            from ..train.losses import temporal_cross_entropy

            logits = readouts[self.readout].float()
            loss = loss + self.task_weight * temporal_cross_entropy(
                logits, self.labels[idx].to(self.device), self.time_weights.to(self.device))
        return loss, preds

    def loss(self, model, indices):
        return self._loss(model, self.train_idx[indices])[0], 0.0

    def validate(self, model) -> dict | None:
        if len(self.val_idx) < 3:
            return None
        was = model.training
        model.eval()
        try:
            with torch.no_grad():  # one forward pass gives the loss and the predictions
                loss, preds = self._loss(model, self.val_idx)
                loss = float(loss)
                preds = {r: p.float().cpu().numpy() for r, p in preds.items()}
        finally:
            model.train(was)
        from .stats import pearson_columns

        rs = []
        for r in self.regions:
            p, y = preds[r], self.targets[r][self.val_idx].numpy()  # [S, B, N]
            rs.append(np.nan_to_num(pearson_columns(p.reshape(len(p), -1), y.reshape(len(y), -1)), nan=0.0))
        return {"loss": loss, "r": float(np.median(np.concatenate(rs)))}


def predict(model: NeuralModel, inputs: torch.Tensor, device="cpu", batch_size: int = 64) -> dict[str, np.ndarray]:
    """Predictions ``{region: [S, bins, neurons]}`` (standardised units) in evaluation mode."""
    out: dict[str, list] = {}
    with torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            for r, p in model(inputs[i:i + batch_size].to(device)).items():
                out.setdefault(r, []).append(p.float().cpu().numpy())
    return {r: np.concatenate(v) for r, v in out.items()}


def split(n: int, fraction: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held out) indices: ``round(fraction * n)`` held out at random (at least 3 of each
    when ``fraction`` > 0)."""
    held = int(round(fraction * n))
    if fraction > 0:
        held = max(held, 3)
        if n - held < 3:
            raise NeuralDataError(f"{n} {what} are too few to hold out {fraction:g} of them and fit the rest")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[held:]), np.sort(order[:held])


def fit_dynamics(spec, images: torch.Tensor, recordings, regions: dict[str, dict], settings=None, *, out_dir=None,
                 steps: int | None = None, device="cpu", resume: bool = False, progress: bool = True,
                 init=None, labels=None, n_boot: int = 1000, backend: str = "numpy", shuffle: bool = False,
                 keep_examples: int = 4, checkpoint_every: int | None = None, log_every: int = 10) -> dict:
    """Fit the dynamics of ``spec`` (fresh weights, or ``init``: a checkpoint path) to
    ``recordings`` and score it on held-out images and held-out neurons. ``images`` [S, C, H, W]
    in the recordings' stimulus order; ``regions`` from :func:`tnnspec.neural.score.resolve_regions`
    (the first candidate latency is used unless a list is given, then the candidates are
    compared by mapping the initial network on the training images); ``settings`` a
    :class:`tnnspec.spec.neural.Dynamics` (default: the spec's ``neural.dynamics``). Writes
    training metrics and checkpoints to ``out_dir`` (if given). Returns the scores in the layout
    of :func:`tnnspec.neural.score.map_regions`."""
    from ..spec.neural import Dynamics
    from ..spec.training import Training
    from ..train.trainer import train as run_training
    from . import regression, stats
    from .activations import area_activity, model_input
    from .recordings import bins as rec_bins, select_region, stimulus_ids
    from .score import check_covered, region_trials
    from .timemap import TimeMap, bin_activity

    d = settings or (spec.neural.dynamics if spec.neural is not None else Dynamics())
    check_train_choice(spec, d.train)
    ids = stimulus_ids(recordings)
    if len(images) != len(ids):
        raise NeuralDataError(f"{len(images)} images for {len(ids)} recorded stimuli")
    if shuffle:
        images = images[np.random.default_rng(d.seed + 1).permutation(len(images))]
    b = rec_bins(recordings)
    dt = spec.time.dt_ms
    latencies = {r: v["latencies"] for r, v in regions.items()}
    train_img, test_img = split(len(ids), d.heldout_images, d.seed, "images")
    if any(len(v) > 1 for v in latencies.values()):
        latencies = _choose_latencies(spec, images, recordings, regions, train_img, steps, device, backend, d.seed)
    maps = {r: TimeMap(dt, b, latencies[r][0]) for r in regions}
    need = max(m.steps_needed() for m in maps.values())
    steps = need if steps is None else steps
    check_covered(maps.values(), steps)
    inputs = model_input(spec, images, steps)

    setup, targets, held_neurons, data = {}, {}, {}, {}
    for k, (r, v) in enumerate(regions.items()):
        rec = select_region(recordings, r)
        trials = region_trials(rec, ids)
        mean = np.stack([t.mean(axis=0) for t in trials])  # [S, N, B]
        fit_n, held_n = split(mean.shape[1], d.heldout_neurons, d.seed + 7 * (k + 1), f"neurons of {r}")
        mu = mean[train_img][:, fit_n].mean(axis=(0, 2))
        sd = mean[train_img][:, fit_n].std(axis=(0, 2))
        sd = np.where(sd > 0, sd, 1.0)
        z = (mean[:, fit_n] - mu[None, :, None]) / sd[None, :, None]  # [S, N_fit, B]
        targets[r] = torch.as_tensor(z.transpose(0, 2, 1), dtype=torch.float32)  # [S, B, N_fit]
        setup[r] = {"area": v["area"], "weights": maps[r].weights(steps), "n_neurons": len(fit_n)}
        held_neurons[r] = held_n
        data[r] = (rec, trials, mean, fit_n, held_n, mu, sd)

    cfg = Training(epochs=d.epochs, batch_size=min(d.batch_size, len(train_img)), lr=d.lr,
                   weight_decay=d.weight_decay, seed=d.seed)
    task = DynamicsTask(spec, inputs, targets, setup, train_img, test_img, steps, train=d.train, init=init,
                        labels=None if labels is None else torch.as_tensor(labels, dtype=torch.long),
                        task_weight=d.task_weight, device=device, init_scheme=d.init)
    result = run_training(spec, cfg, out_dir=out_dir, device=device, resume=resume, progress=progress,
                          task=task, checkpoint_every=checkpoint_every, log_every=log_every)
    model = task.trained.eval()

    preds = predict(model, inputs[torch.as_tensor(test_img)], device)
    activity = area_activity(model.net, images, {v["area"] for v in regions.values()}, steps=steps, device=device)
    out: dict = {"regions": {}, "steps": steps, "examples": {}, "training": result,
                 "split": {"train_images": len(train_img), "heldout_images": len(test_img)}}
    for r, v in regions.items():
        rec, trials, mean, fit_n, held_n, mu, sd = data[r]
        # the noise ceiling is a property of the data alone: estimated on every image (more
        # stable than on the held-out ones only; no model is involved, so nothing leaks)
        reliability = stats.split_half_reliability(trials, seed=d.seed)  # [N, B]
        pred = preds[r].transpose(0, 2, 1) * sd[None, :, None] + mu[None, :, None]  # [S_test, N_fit, B]
        recorded = mean[test_img][:, fit_n]
        r_img = np.stack([stats.pearson_columns(pred[:, :, k], recorded[:, :, k]) for k in range(len(b))])
        scores = {"heldout_images": _per_bin(r_img, reliability[fit_n], n_boot, d.seed)}
        if len(held_n):
            feats = bin_activity(activity[v["area"]], maps[r].weights(steps)).astype(np.float64)  # [B, S, D]
            r_held = np.stack([
                stats.pearson_columns(
                    regression.fit_predict(feats[k][train_img], mean[train_img][:, held_n, k], feats[k][test_img],
                                           backend=backend),
                    mean[test_img][:, held_n, k]) for k in range(len(b))])
            scores["heldout_neurons"] = _per_bin(r_held, reliability[held_n], n_boot, d.seed)
        out["regions"][r] = {"area": v["area"], "latency_ms": latencies[r][0],
                             "latency_search": None, "bins": b.tolist(), "scores": scores,
                             "neurons": {"fitted": len(fit_n), "heldout": len(held_n)}}
        if keep_examples:
            kk = min(keep_examples, len(fit_n))
            out["examples"][r] = {"recorded": recorded[:, :kk], "predicted": pred[:, :kk],
                                  "neuroid_id": np.asarray(rec["neuroid_id"].values).astype(str)[fit_n[:kk]],
                                  "stimulus_id": np.asarray(ids)[test_img]}
    return out


def _per_bin(r_bn: np.ndarray, reliability_nb: np.ndarray, n_boot: int, seed: int) -> dict:
    from .stats import ceiled_score

    per = [ceiled_score(r_bn[k], reliability_nb[:, k], n_boot=n_boot, seed=seed) for k in range(r_bn.shape[0])]
    out = {key: [None if p.get(key) is None or not np.isfinite(p[key]) else float(p[key]) for p in per]
           for key in ("raw", "ceiling", "ceiled", "low", "high")}
    out["n_neurons"] = int(r_bn.shape[1])
    return out


def _choose_latencies(spec, images, recordings, regions, train_img, steps, device, backend, seed):
    """With several candidate latencies: compare them by mapping the initial network (fresh
    weights, seeded) on the training images only; keep the best per region."""
    import tnnspec

    from .recordings import stimulus_ids
    from .score import map_regions

    ids = stimulus_ids(recordings)
    keep = set(np.asarray(ids)[train_img])
    sub = recordings.isel(presentation=np.isin(np.asarray(recordings["stimulus_id"].values).astype(str),
                                               list(keep)))
    torch.manual_seed(seed)
    net = tnnspec.compile(spec)
    scores = map_regions(net, images[torch.as_tensor(train_img)], sub, regions, n_boot=0, seed=seed, steps=steps,
                         device=device, backend=backend, keep_examples=0)
    return {r: [scores["regions"][r]["latency_ms"]] for r in regions}
