"""The training loop: deterministic data order, exact resume, optional DDP.

* **Data order** is a function of ``(seed, epoch)`` only: epoch ``e`` visits the training set in
  ``numpy.random.default_rng([seed, e]).permutation(N)`` order, cut into global batches of
  ``batch_size`` (the last, short one is dropped unless it is the only one). A checkpoint
  stores the position (epoch, batch within the epoch, optimiser step) and the RNG states, so
  ``resume=True`` skips the batches already done and continues bit-exactly (on CPU).
* **DDP**: under ``torchrun`` (``WORLD_SIZE`` > 1) the process group is initialised from the
  environment (gloo on CPU, NCCL on CUDA). Every rank computes the same global batch order and
  takes its shard of each global batch (``tensor_split``); the local loss is weighted by
  ``n_local / n_global`` and gradients are summed across ranks, so every rank applies the
  gradient of the global-batch mean loss. Only rank 0 writes metrics and checkpoints.
* **Metrics** go to ``out_dir/metrics.jsonl``, one JSON object per event (``start``, ``step``,
  ``epoch``, ``end``, ``interrupted``).
* **Learning rules** (``training.learning_rule``, :mod:`tnnspec.train.learning_rules`): the rule
  runs each step's forward and backward pass and may adjust updates; its state (feedback weights)
  is checkpointed beside the weights. With ``measure_alignment``, every ``log_every``-th step
  also computes the backprop gradient of the same batch (same dropout masks; batch-norm
  statistics and RNG states restored, so the run is the same as without measuring) and logs the
  angle between the two (``alignment_deg``, and ``alignment_s``, the seconds it took).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist

from ..spec.training import Training
from . import checkpoint as ckpt
from . import learning_rules as rules
from .evaluate import (DataError, Tensors, accumulate, check_classes, materialize, pick_readout, present_batch,
                       single_input, summarize, unwrap)

METRICS = "metrics.jsonl"


class TrainError(Exception):
    """A problem that stops training with a clear message (no traceback at the command line)."""


# ---------------------------------------------------------------- settings
def training_config(spec, cfg: Training | None = None) -> Training:
    """The settings to train with: ``cfg``, else the spec's ``training:`` section, else defaults."""
    if cfg is not None:
        return cfg
    return spec.training if spec.training is not None else Training()


def with_overrides(cfg: Training, **overrides) -> Training:
    """``cfg`` with the given settings replaced (``None`` values are ignored); ``data_*`` keys set
    fields of ``data`` (``data_name``, ``data_size``, ``data_occlusion``...). Validated again, so a
    bad value raises pydantic's ValidationError; settings the user never gave stay unset."""
    tree = cfg.model_dump(mode="json", exclude_unset=True)
    data = dict(tree.get("data") or {})
    for key, value in overrides.items():
        if value is None:
            continue
        if key.startswith("data_"):
            data[key[5:]] = value
        else:
            tree[key] = value
    if data:
        tree["data"] = data
    return Training.model_validate(tree)


def fit_to_spec(spec, cfg: Training) -> Training:
    """Settings the user left unset that the spec decides: the image size of a square input."""
    _, inp = single_input(spec)
    shape = list(inp.shape)
    if "size" not in cfg.data.model_fields_set and len(shape) == 3 and shape[1] == shape[2] \
            and shape[1] != cfg.data.size:
        return with_overrides(cfg, data_size=shape[1])
    return cfg


def spec_input_size(spec) -> int | None:
    _, inp = single_input(spec)
    shape = list(inp.shape)
    return shape[1] if len(shape) == 3 and shape[1] == shape[2] else None


def make_dataset(cfg: Training, split: str, occlusion: list[float] | None = None):
    from .data import DATASETS, OccludedDigits

    d = cfg.data
    if d.name not in DATASETS:
        raise DataError(f"unknown dataset '{d.name}'; known: {', '.join(sorted(DATASETS))} "
                        "(register more with tnnspec.train.data.register_dataset)")
    return OccludedDigits(name=d.name, split=split, size=d.size,
                          occlusion=list(occlusion if occlusion is not None else d.occlusion),
                          seed=cfg.seed, val_fraction=d.val_fraction, test_fraction=d.test_fraction)


# ---------------------------------------------------------------- data order
def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order in which epoch ``epoch`` visits ``n`` items: a function of (seed, epoch) only."""
    rng = np.random.default_rng([seed % (2 ** 63), epoch])
    return torch.from_numpy(rng.permutation(n).astype(np.int64))


def batches_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // batch_size)


def global_batch(seed: int, epoch: int, batch: int, n: int, batch_size: int) -> torch.Tensor:
    order = epoch_order(seed, epoch, n)
    return order[batch * batch_size:(batch + 1) * batch_size]


def shard(indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's part of a global batch (contiguous, sizes differ by at most one)."""
    return indices.tensor_split(world_size)[rank] if world_size > 1 else indices


# ---------------------------------------------------------------- distributed
def init_distributed(device: str | torch.device) -> tuple[torch.device, bool]:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1). Returns (the device this
    rank uses, whether this call created the group)."""
    try:
        device = torch.device(device)
    except RuntimeError:
        raise TrainError(f"unknown device '{device}' (use cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("device cuda: no CUDA device is available")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    created = False
    if device.type == "cuda" and device.index is None and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and dist.is_available() and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            dist.init_process_group(backend, device_id=device)
        else:
            dist.init_process_group(backend)
        created = True
    return device, created


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


# ---------------------------------------------------------------- the trainer
class Task:
    """What a run learns, when it is not the spec's classification readout (the default). The
    trainer keeps the data order, DDP, checkpoints, resume, metrics and progress bars; a task
    says what is trained and what the loss is. :mod:`tnnspec.neural.dynamics` is one.

    * ``module(net)`` — the module whose parameters are trained and checkpointed (``net`` itself,
      or a module holding it and more, e.g. per-neuron readouts).
    * ``n_train`` — number of training items; the trainer draws global batches of their indices.
    * ``loss(module, indices)`` — (mean loss over ``indices`` as a tensor, a metric summed over
      them as a float); the trainer reports metric / batch size as ``acc``.
    * ``validate(module)`` — a dict of numbers (logged with a ``val_`` prefix) or None.
    * ``steps`` — the number of steps the network is unrolled for (for the log).
    """

    n_train: int = 0
    steps: int | None = None

    def module(self, net):
        return net

    def loss(self, module, indices):  # pragma: no cover - interface
        raise NotImplementedError

    def validate(self, module) -> dict | None:
        return None


class Trainer:
    """Holds the network, optimiser and data of one run. :func:`train` drives it; tests use
    :meth:`compute_gradients` directly. ``task`` (a :class:`Task`) replaces the default
    classification of the spec's readout."""

    def __init__(self, spec, cfg: Training | None = None, *, device="cpu", amp: bool = False,
                 compile: bool = False, dataset=None, val_dataset=None, steps: int | None = None,
                 network_options: dict | None = None, task: Task | None = None):
        import tnnspec

        self.spec = spec
        self.cfg = cfg = fit_to_spec(spec, training_config(spec, cfg))
        self.device = torch.device(device)
        self.amp = amp
        self.rank, self.world_size = _rank_world()
        self.steps = steps
        self.task = task
        self.readout = pick_readout(spec, cfg.readout) if task is None else None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TrainError("device cuda: no CUDA device is available")
        if cfg.batch_size < self.world_size:
            raise TrainError(f"batch size {cfg.batch_size} is smaller than the number of processes "
                             f"({self.world_size}): every process needs at least one image per step")

        try:
            self.rule = rules.build(cfg.learning_rule)
            options = dict(network_options or {})
            for key, value in self.rule.network_options().items():
                if key in options and options[key] != value:
                    raise TrainError(f"learning rule '{self.rule.name}' sets the network option {key}={value!r}, "
                                     f"but {key}={options[key]!r} was asked for")
                options[key] = value
            self.rule.check(compile=compile, network_options=options, task=task)
        except rules.LearningRuleError as exc:
            raise TrainError(str(exc)) from None

        seed_everything(cfg.seed)
        # execution options of the compiled network (checkpoint, optimize=...): they change
        # memory and speed, not the model, so checkpoints stay interchangeable
        self.net = tnnspec.compile(spec, **options).to(self.device)
        self.module = (task.module(self.net) if task is not None else self.net).to(self.device)
        self.model = torch.compile(self.module) if compile else self.module
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        self.param_names = [n for n, _ in named]
        self.params = [p for _, p in named]
        if not self.params:
            raise TrainError(f"spec '{spec.name}' has no trainable parameters")
        self.optimizer = make_optimizer(self.params, cfg)
        try:
            self.rule.setup(self.module, self.net, readout=self.readout)
        except rules.LearningRuleError as exc:
            raise TrainError(str(exc)) from None
        self.last_alignment: dict | None = None
        if task is not None:
            self.train_data = self.val_data = None
            self.T = task.steps
            self.n_train = task.n_train
            self.steps_per_epoch = batches_per_epoch(self.n_train, cfg.batch_size)
            return

        self.train_data = materialize(dataset if dataset is not None else make_dataset(cfg, "train"))
        if val_dataset is False:
            self.val_data = None
        else:
            self.val_data = materialize(val_dataset if val_dataset is not None else make_dataset(cfg, "val"))
        if self.device.type == "cuda":  # a few thousand small images: keep them on the GPU
            self.train_data = _to(self.train_data, self.device)
            if self.val_data is not None:
                self.val_data = _to(self.val_data, self.device)
        check_classes(self.net, self.readout, self.train_data.labels)
        self.T = self.net.plan_for(steps).steps
        present_batch(spec, self.train_data.images[:1], self.T)  # shape problems show up now
        from .losses import time_weights

        self.weights = time_weights(self.T, cfg.loss).to(self.device, torch.float32)
        self.n_train = len(self.train_data)
        self.steps_per_epoch = batches_per_epoch(self.n_train, cfg.batch_size)

    # ------------------------------------------------------------ one step
    def compute_gradients(self, indices: torch.Tensor, rule: bool = True) -> tuple[float, float]:
        """Zero the gradients, then leave in ``.grad`` the gradient of the mean loss over the
        global batch ``indices`` (all ranks together) that the learning rule gives (``rule=False``:
        backprop's). Returns (global mean loss, accuracy at the last step)."""
        n_global = len(indices)
        local = shard(indices, self.rank, self.world_size)
        self.optimizer.zero_grad(set_to_none=True)
        learning = self.rule if rule else None
        with learning.context() if learning is not None else contextlib.nullcontext():
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                if self.task is not None:
                    loss, correct = self.task.loss(self.model, local)
                    correct = torch.as_tensor(float(correct))
                    logits = None
                else:
                    loss, correct, logits = self._classification_loss(local)
            scaled = loss * (len(local) / n_global) if self.world_size > 1 else loss
            if learning is not None:
                learning.backward(scaled, logits)
            else:
                scaled.backward()
        if self.world_size == 1:
            return float(loss.detach()), float(correct) / n_global
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads]
                         + [scaled.detach().reshape(1).to(grads[0].dtype), correct.reshape(1).to(grads[0].dtype)])
        dist.all_reduce(flat)
        offset = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[offset:offset + g.numel()].view_as(p).clone()
            offset += g.numel()
        return float(flat[-2]), float(flat[-1]) / n_global

    def _classification_loss(self, local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = present_batch(self.spec, self.train_data.images[local], self.T).to(self.device)
        y = self.train_data.labels[local].to(self.device)
        logits = self.model(x, steps=self.steps).readouts[self.readout].float()
        from .losses import temporal_cross_entropy

        loss = temporal_cross_entropy(logits, y, self.weights)
        return loss, (logits[-1].detach().argmax(-1) == y).sum(), logits

    def step(self, indices: torch.Tensor, measure: bool = False) -> tuple[float, float]:
        """One optimiser step on the global batch ``indices``: (loss, accuracy at the last step).
        ``measure``: also measure the angle between the rule's gradient and backprop's on this
        batch (:attr:`last_alignment`; every rank must ask at the same steps)."""
        before = _rng_states(self.device) if measure else None
        loss, acc = self.compute_gradients(indices)
        if not math.isfinite(loss):
            raise TrainError(f"the loss is {loss}: training diverged (lower --lr, or set grad_clip)")
        self.last_alignment = self.alignment(indices, before) if measure else None
        if self.cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        self.rule.before_update()
        self.optimizer.step()
        self.rule.after_update()
        return loss, acc

    def alignment(self, indices: torch.Tensor, rng_before: tuple | None = None) -> dict:
        """The angle in degrees between the gradient in ``.grad`` (the rule's, just computed on
        ``indices``) and backprop's on the same batch, over all trained parameters
        (``alignment_deg``) and, with the rule's ``alignment_per_layer``, per parameter tensor.
        ``rng_before``: the RNG states the rule's pass started from (the same dropout masks);
        leaves ``.grad``, buffers (batch-norm statistics) and RNG states as it found them."""
        t0 = time.time()
        ruled = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in self.params]
        buffers = {k: v.clone() for k, v in self.module.named_buffers()}
        after = _rng_states(self.device)
        if rng_before is not None:
            _set_rng_states(self.device, rng_before)
        try:
            self.compute_gradients(indices, rule=False)
            true = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        finally:
            _set_rng_states(self.device, after)
            with torch.no_grad():
                for k, v in self.module.named_buffers():
                    v.copy_(buffers[k])
        result: dict = {"alignment_deg": rules.angle_deg(ruled, true)}
        if self.rule.alignment_per_layer:
            result["alignment_deg_per_layer"] = {n: rules.angle_deg([a], [b])
                                                 for n, a, b in zip(self.param_names, ruled, true)}
        for p, g in zip(self.params, ruled):
            p.grad = g
        result["alignment_s"] = round(time.time() - t0, 4)
        return result

    # ------------------------------------------------------------ validation
    def validate(self) -> dict | None:
        if self.task is not None:
            return self.task.validate(self.model)
        if self.val_data is None or len(self.val_data) == 0:
            return None
        order = torch.arange(len(self.val_data))
        levels = sorted(set(self.val_data.levels.tolist()))
        counts = accumulate(self.model, self.spec, self.val_data, self.readout,
                            indices=shard(order, self.rank, self.world_size) if self.world_size > 1 else None,
                            levels=levels, batch_size=max(256, self.cfg.batch_size), device=self.device,
                            amp=self.amp, loss_weights=self.weights, steps=self.steps)
        if self.world_size > 1:
            for key in ("correct", "n", "decoded", "decision_step", "loss"):
                t = counts[key].to(self.device)
                dist.all_reduce(t)
                counts[key] = t.cpu()
        return summarize(counts)

    def batch(self, epoch: int, index: int) -> torch.Tensor:
        return global_batch(self.cfg.seed, epoch, index, self.n_train, self.cfg.batch_size)


def _rng_states(device: torch.device) -> tuple:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_states(device: torch.device, states: tuple) -> None:
    torch.set_rng_state(states[0])
    if states[1] is not None:
        torch.cuda.set_rng_state(states[1], device)


def _to(data: Tensors, device) -> Tensors:
    return Tensors(data.images.to(device), data.labels.to(device), data.levels)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def make_optimizer(params, cfg: Training) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _apply_settings(optimizer, cfg: Training) -> None:
    """After loading optimiser state, use the current settings (they may have been overridden)."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr
        group["weight_decay"] = cfg.weight_decay
        if "momentum" in group:
            group["momentum"] = cfg.momentum


# ---------------------------------------------------------------- metrics log
class _Log:
    def __init__(self, path: Path | None):
        self.path = path
        self.file = None

    def open(self, fresh: bool, keep_upto: int | None = None) -> None:
        if self.path is None:
            return
        if fresh:
            self.path.unlink(missing_ok=True)
        elif keep_upto is not None and self.path.exists():  # drop events after the checkpoint
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= keep_upto:
                        kept.append(line)
                except ValueError:
                    continue
            ckpt._atomic(self.path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in kept)))
        self.file = open(self.path, "a", encoding="utf-8")

    def write(self, event: str, **data) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps({"event": event, **data}) + "\n")
        self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def _progress(enabled: bool, **kw):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(dynamic_ncols=True, **kw)


# ---------------------------------------------------------------- the loop
def train(spec, cfg: Training | None = None, out_dir: str | Path | None = "runs", device="cpu",
          resume: bool = False, progress: bool = True, *, amp: bool = False, compile: bool = False,
          log_every: int = 1, checkpoint_every: int | None = None, dataset=None, val_dataset=None,
          steps: int | None = None, network_options: dict | None = None, task: Task | None = None,
          on_epoch: Callable[[int, dict], None] | None = None) -> dict:
    """Train ``spec`` with ``cfg`` (default: the spec's ``training:`` section) and return the final
    metrics. Writes ``out_dir/metrics.jsonl`` and a crash-safe checkpoint (``checkpoint.json``,
    the tensor files it names, ``checkpoint.safetensors``: see :mod:`tnnspec.train.checkpoint`)
    at every epoch end, every ``checkpoint_every`` steps, at the end and on Ctrl-C. ``resume=True`` continues from the checkpoint in ``out_dir`` (refused if it was written
    for another spec). ``dataset``/``val_dataset`` replace the built-in data (``val_dataset=False``:
    no validation). ``out_dir=None`` writes nothing. ``network_options`` go to
    :func:`tnnspec.compile` (e.g. ``{"checkpoint": "recursive"}`` for long unrolls). Under
    torchrun, runs data-parallel. ``task`` (a :class:`Task`) trains something other than the
    spec's classification readout (e.g. :mod:`tnnspec.neural.dynamics`). ``on_epoch(epoch, metrics)``
    is called after each epoch's validation and checkpoint with the epoch's metrics event (as
    written to metrics.jsonl); an exception it raises stops training and propagates (the search
    prunes trials this way)."""
    device, created = init_distributed(device)
    try:
        return _train(spec, cfg, out_dir, device, resume, progress, amp, compile, log_every,
                      checkpoint_every, dataset, val_dataset, steps, network_options, task, on_epoch)
    finally:
        if created:
            dist.destroy_process_group()


def _train(spec, cfg, out_dir, device, resume, progress, amp, compile, log_every, checkpoint_every,
           dataset, val_dataset, steps, network_options, task=None, on_epoch=None) -> dict:
    t0 = time.time()
    if resume and out_dir is not None and (Path(out_dir) / ckpt.META).is_file():  # refuse early, before the data
        ckpt.check_spec(ckpt.read_meta(Path(out_dir) / ckpt.META).get("spec_hash"), spec, Path(out_dir) / ckpt.META)
    try:
        trainer = Trainer(spec, cfg, device=device, amp=amp, compile=compile, dataset=dataset,
                          val_dataset=val_dataset, steps=steps, network_options=network_options, task=task)
    except DataError as exc:
        raise TrainError(str(exc)) from None
    cfg = trainer.cfg
    main = trainer.rank == 0
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
    say = (lambda msg: print(msg, file=sys.stderr)) if main else (lambda msg: None)

    position = {"epoch": 0, "batch": 0, "step": 0, "epoch_loss": 0.0, "epoch_correct": 0.0, "epoch_seen": 0}
    last_val: dict | None = None
    resumed_from = None
    if resume:
        if out is None:
            raise TrainError("resume needs an output directory")
        if (out / ckpt.META).is_file():
            try:
                meta = ckpt.load_checkpoint(out, model=trainer.module, optimizer=trainer.optimizer, spec=spec,
                                            rule=trainer.rule)
            except rules.LearningRuleError as exc:
                raise TrainError(str(exc)) from None
            trained_with = (meta.get("learning_rule") or {}).get("type", "backprop")
            if trained_with != trainer.rule.name:
                say(f"warning: the checkpoint was trained with learning rule '{trained_with}', resuming with "
                    f"'{trainer.rule.name}' (its state starts afresh)")
            _apply_settings(trainer.optimizer, cfg)
            position.update(meta["position"])
            resumed_from = position["step"]
            last_val = meta.get("metrics", {}).get("val")
            before = meta.get("training") or {}
            now = cfg.model_dump(mode="json")
            changed = [k for k in ("seed", "batch_size", "data") if k in before and before[k] != now[k]]
            if changed:
                say(f"warning: resuming with different {', '.join(changed)} than the checkpoint: "
                    "the data order differs from an uninterrupted run")
            say(f"resuming from {out / ckpt.META}: epoch {position['epoch']}, step {position['step']}")
        else:
            say(f"no checkpoint in {out}: starting from scratch")

    log = _Log(out / METRICS if out is not None and main else None)
    log.open(fresh=resumed_from is None, keep_upto=resumed_from)
    log.write("start", spec=spec.name, spec_hash=ckpt.spec_hash(spec), step=position["step"],
              epoch=position["epoch"], resumed=resumed_from is not None, world_size=trainer.world_size,
              device=str(trainer.device), n_train=trainer.n_train,
              n_val=len(trainer.val_data) if trainer.val_data is not None else 0,
              steps_per_epoch=trainer.steps_per_epoch, time_steps=trainer.T, readout=trainer.readout,
              task=type(trainer.task).__name__ if trainer.task is not None else "classification",
              training=cfg.model_dump(mode="json"))

    boundary_rng = ckpt.capture_rng()

    def save(reason: str, rng=None) -> None:
        if out is None or not main:
            return
        ckpt.save_checkpoint(out, model=trainer.module, optimizer=trainer.optimizer, spec=spec,
                             position=dict(position), training=cfg.model_dump(mode="json"),
                             rng=rng if rng is not None else ckpt.capture_rng(),
                             metrics={"val": last_val, "reason": reason},
                             extra={"world_size": trainer.world_size},
                             rule_type=trainer.rule.name, rule_state=trainer.rule.state_dict())

    def done() -> bool:
        return (cfg.max_steps is not None and position["step"] >= cfg.max_steps) or position["epoch"] >= cfg.epochs

    epochs_bar = _progress(progress and main, total=cfg.epochs, initial=min(position["epoch"], cfg.epochs),
                           desc="epochs", unit="epoch")
    loss = acc = float("nan")
    try:
        while not done():
            epoch = position["epoch"]
            bar = _progress(progress and main, total=trainer.steps_per_epoch, initial=position["batch"],
                            desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", leave=False)
            try:
                while position["batch"] < trainer.steps_per_epoch and not done():
                    boundary_rng = ckpt.capture_rng()
                    indices = trainer.batch(epoch, position["batch"])
                    measure = trainer.rule.measures_alignment and (position["step"] + 1) % log_every == 0
                    loss, acc = trainer.step(indices, measure=True) if measure else trainer.step(indices)
                    position["batch"] += 1
                    position["step"] += 1
                    position["epoch_loss"] += loss * len(indices)
                    position["epoch_correct"] += acc * len(indices)
                    position["epoch_seen"] += len(indices)
                    boundary_rng = None
                    if position["step"] % log_every == 0:
                        log.write("step", epoch=epoch, batch=position["batch"], step=position["step"], loss=loss,
                                  acc=acc, lr=trainer.optimizer.param_groups[0]["lr"],
                                  time=round(time.time() - t0, 3), **(trainer.last_alignment or {}))
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{loss:.4f}", **({} if trainer.task else {"acc": f"{acc:.3f}"}))
                    if checkpoint_every and position["step"] % checkpoint_every == 0 \
                            and position["batch"] < trainer.steps_per_epoch:
                        save("every")
            finally:
                if bar is not None:
                    bar.close()
            if position["batch"] >= trainer.steps_per_epoch:  # the epoch is complete
                last_val = trainer.validate()
                seen = max(position["epoch_seen"], 1)
                event = {"epoch": epoch, "step": position["step"], "train_loss": position["epoch_loss"] / seen,
                         "train_acc": position["epoch_correct"] / seen, "time": round(time.time() - t0, 3)}
                if trainer.task is not None:  # a task's metric is its own; accuracy means nothing here
                    event.pop("train_acc")
                if last_val is not None and trainer.task is not None:
                    event.update(_val_fields(last_val))
                elif last_val is not None:
                    event.update(val_loss=last_val["loss"], val_acc=last_val["accuracy_per_step"][-1],
                                 val_acc_per_step=last_val["accuracy_per_step"],
                                 val_acc_per_level={k: v["accuracy_per_step"][-1]
                                                    for k, v in last_val["levels"].items()})
                log.write("epoch", **event)
                position.update(epoch=epoch + 1, batch=0, epoch_loss=0.0, epoch_correct=0.0, epoch_seen=0)
                if epochs_bar is not None:
                    epochs_bar.update(1)
                    shown = {k: v for k, v in event.items() if k.startswith("val_") and isinstance(v, float)}
                    epochs_bar.set_postfix(loss=f"{event['train_loss']:.4f}",
                                           **{k: f"{v:.3f}" for k, v in list(shown.items())[:2]})
                save("epoch")
                if on_epoch is not None:
                    on_epoch(epoch, event)
    except KeyboardInterrupt:
        save("interrupted", rng=boundary_rng)
        log.write("interrupted", epoch=position["epoch"], step=position["step"])
        say(f"interrupted at step {position['step']}; checkpoint in {out}: continue with --resume")
        raise
    finally:
        if epochs_bar is not None:
            epochs_bar.close()
        log.close()
    # the end: a checkpoint at the final position (mid-epoch when max_steps stopped it)
    final_val = last_val if position["batch"] == 0 and last_val is not None else trainer.validate()
    last_val = final_val
    save("end")
    result = {"epoch": position["epoch"], "step": position["step"], "loss": loss, "train_acc": acc,
              "time": round(time.time() - t0, 3), "world_size": trainer.world_size}
    if final_val is not None and trainer.task is not None:
        result.update(_val_fields(final_val))
    elif final_val is not None:
        result.update(val_loss=final_val["loss"], val_acc=final_val["accuracy_per_step"][-1],
                      val_acc_per_step=final_val["accuracy_per_step"])
    if out is not None:
        result["out_dir"] = str(out)
    if main and out is not None:
        with open(out / METRICS, "a", encoding="utf-8") as f:
            f.write(json.dumps({"event": "end", **result}) + "\n")
    if trainer.world_size > 1:
        dist.barrier()
    return result


def _val_fields(val: dict) -> dict:
    """A task's validation numbers as ``val_<name>`` fields of a metrics event."""
    return {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float, list))}


def load_for_eval(spec, checkpoint_path, device="cpu"):
    """A network compiled from ``spec`` with the weights of ``checkpoint_path`` (refused if they
    were saved for another spec). Returns (net, the checkpoint's JSON record or {})."""
    import tnnspec

    net = tnnspec.compile(spec)
    meta = ckpt.load_weights(net, checkpoint_path, spec)
    return net.to(device), meta


__all__ = ["train", "Trainer", "Task", "TrainError", "training_config", "with_overrides", "epoch_order", "global_batch",
           "shard", "init_distributed", "load_for_eval", "unwrap", "Tensors"]
