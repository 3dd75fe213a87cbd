"""Checkpoints: weights, optimiser state, RNG states and position, crash-safe.

A checkpoint in ``DIR`` is:

* ``checkpoint.json`` — the commit record: position (epoch, batch within the epoch, optimiser
  step), the optimiser's non-tensor state and param groups, RNG states (python, numpy, torch,
  CUDA), the training settings, the spec hash, the tnnspec version, and the names of the two
  tensor files it belongs to;
* ``checkpoint-<step>-<id>.safetensors`` — the network's weights (``state_dict``); its metadata
  holds the spec hash and the optimiser step, so a bare weights file still says what it is;
* ``checkpoint-<step>-<id>.optim.safetensors`` — the optimiser's tensors (moments, ...);
* ``checkpoint-<step>-<id>.rule.safetensors`` — the learning rule's state (feedback weights), only
  for a rule that has one (:mod:`tnnspec.train.learning_rules`); the record names it and its rule
  under ``learning_rule``;
* ``checkpoint.safetensors`` — a hard link to (or, where links are unsupported, a copy of) the
  latest weights, for people and tools that open weights by that name.

Saving writes the new tensor files (all of them, the rule's included) *beside* the previous checkpoint's (each to a temporary name,
flushed to disk, then renamed), then replaces ``checkpoint.json`` in one :func:`os.replace`:
that rename is the switch. Only after it are the previous checkpoint's files removed. A process
killed at any point leaves a ``checkpoint.json`` that names complete files: the new checkpoint
once the switch happened, the previous one before. Leftovers of an interrupted save (temporary
files, tensor files no record names) are removed by the next save. ``tests/test_checkpoint_kill.py``
kills training runs with SIGKILL inside every stage of a save and checks that each resumed run
ends bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

WEIGHTS = "checkpoint.safetensors"       # the latest weights under a fixed name (a link)
OPTIM = "checkpoint.optim.safetensors"   # format-1 name of the optimiser file (read only)
META = "checkpoint.json"
FORMAT = 1
_PREFIX = "checkpoint-"                  # checkpoint-<step>-<id>.safetensors / .optim / .rule .safetensors


def _stage(name: str) -> None:
    """Called after each stage of a save (``tests/test_checkpoint_kill.py`` kills the process
    here); does nothing otherwise."""


class CheckpointError(Exception):
    """A checkpoint that cannot be used: missing, incomplete, or written for another spec."""


# ---------------------------------------------------------------- spec identity
def spec_hash(spec) -> str:
    """sha256 of the spec's canonical JSON (sorted keys), leaving out ``training``: changing
    how a model is trained keeps its checkpoints usable; changing the model does not."""
    data = {k: v for k, v in spec.dump().items() if k != "training"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _version() -> str:
    from .. import __version__

    return __version__


# ---------------------------------------------------------------- atomic writes
_UMASK = os.umask(0)
os.umask(_UMASK)

def _fsync(path: str | Path) -> None:
    """Flush a file (or a directory's entries) to disk; a no-op where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic(path: Path, write) -> None:
    """Write ``path`` through a temporary file in the same folder, flushed, then renamed over it:
    readers see the old file or the complete new one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual permissions
        _fsync(tmp)
        _stage(f"written {path.name}")
        os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    path = Path(path)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)

    _atomic(path, write)


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    _atomic(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


# ---------------------------------------------------------------- RNG states
def capture_rng() -> dict:
    """The python, numpy, torch (and CUDA) RNG states as JSON-able data."""
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    out = {
        "python": [version, list(state), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode("ascii"),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode("ascii") for s in torch.cuda.get_rng_state_all()]
    return out


def _bytes_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def restore_rng(rng: dict) -> None:
    version, state, gauss = rng["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_bytes_tensor(rng["torch"]))
    if "cuda" in rng and torch.cuda.is_available():
        states = [_bytes_tensor(s) for s in rng["cuda"]]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# ---------------------------------------------------------------- optimiser state
def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimiser state_dict -> (tensors by 'param_id/name', JSON-able rest)."""
    tensors, plain = {}, {}
    for pid, entries in state["state"].items():
        plain[str(pid)] = {}
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}/{name}"] = value
            else:
                plain[str(pid)][name] = value
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict] = {int(pid): dict(entries) for pid, entries in plain["state"].items()}
    for key, value in tensors.items():
        pid, name = key.split("/", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


# ---------------------------------------------------------------- save / load
def save_checkpoint(out_dir: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    spec, position: dict, training: dict | None = None, rng: dict | None = None,
                    scheduler=None, metrics: dict | None = None, extra: dict | None = None,
                    rule_type: str | None = None, rule_state: dict[str, torch.Tensor] | None = None) -> Path:
    """Write a complete checkpoint into ``out_dir`` beside the previous one and switch to it
    atomically (see the module docstring); returns the path of the JSON record. ``rule_type`` and
    ``rule_state``: the learning rule and its tensors (a ``.rule.safetensors`` file, written only
    when there are any)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = spec_hash(spec)
    step = str(position.get("step", 0))
    stem = f"{_PREFIX}{int(step):08d}-{secrets.token_hex(4)}"
    weights, optim, rule_file = f"{stem}.safetensors", f"{stem}.optim.safetensors", f"{stem}.rule.safetensors"
    meta = {"spec_hash": digest, "spec_name": spec.name, "step": step, "tnnspec_version": _version()}
    _save_tensors(out / weights, dict(model.state_dict()), meta)
    _stage("weights")
    opt_plain = None
    if optimizer is not None:
        tensors, opt_plain = _split_optimizer(optimizer.state_dict())
        _save_tensors(out / optim, tensors, meta)
        _stage("optimizer")
    if rule_state:
        _save_tensors(out / rule_file, rule_state, {**meta, "learning_rule": rule_type or ""})
        _stage("rule")
    record = {
        "format": FORMAT,
        "tnnspec_version": _version(),
        "torch_version": torch.__version__,
        "spec_name": spec.name,
        "spec_hash": digest,
        "position": dict(position),
        "weights": weights,
        "optimizer": None if optimizer is None else {
            "type": type(optimizer).__name__, "tensors": optim, **opt_plain},
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "learning_rule": None if rule_type is None else {
            "type": rule_type, "tensors": rule_file if rule_state else None},
        "rng": rng if rng is not None else capture_rng(),
        "training": training,
        "metrics": metrics or {},
        **(extra or {}),
    }
    write_json_atomic(out / META, record)  # the switch
    _stage("switch")
    _link_latest(out / weights, out / WEIGHTS)
    _stage("link")
    _remove_stale(out, keep={weights, optim, rule_file})
    _stage("clean")
    return out / META


def _link_latest(target: Path, name: Path) -> None:
    """Point ``name`` at ``target`` (a hard link, else a copy), replacing it atomically."""
    def write(tmp):
        os.unlink(tmp)
        try:
            os.link(target, tmp)
        except OSError:  # a filesystem without hard links
            shutil.copyfile(target, tmp)

    _atomic(name, write)


def _remove_stale(out: Path, keep: set[str]) -> None:
    """Remove tensor files no record names and temporary files of interrupted saves."""
    for p in out.iterdir():
        stale_tensors = p.name.startswith(_PREFIX) and p.name.endswith(".safetensors") and p.name not in keep
        stale_tmp = p.name.startswith(".checkpoint") and p.name.endswith(".tmp")
        if stale_tensors or stale_tmp or p.name == OPTIM:
            p.unlink(missing_ok=True)


def resolve(path: str | Path) -> tuple[Path, Path | None]:
    """(weights file, JSON file or None) for a checkpoint directory, weights file or JSON file."""
    p = Path(path)
    if p.is_dir():
        weights, meta = p / WEIGHTS, p / META
        if meta.is_file():
            try:
                weights = p / json.loads(meta.read_text()).get("weights", WEIGHTS)
            except (OSError, ValueError):
                pass
    elif p.suffix == ".json":
        meta = p
        weights = p.parent / WEIGHTS
        if p.is_file():
            try:
                weights = p.parent / json.loads(p.read_text()).get("weights", WEIGHTS)
            except (OSError, ValueError):
                pass
    else:
        weights, meta = p, p.parent / META
    if not weights.is_file():
        raise CheckpointError(f"no checkpoint weights at {weights}")
    return weights, (meta if meta.is_file() else None)


def read_meta(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def weights_metadata(path: str | Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # not a safetensors file
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def check_spec(stored: str | None, spec, where: str | Path) -> None:
    """Refuse a checkpoint written for another spec."""
    if stored is None:
        return
    current = spec_hash(spec)
    if stored != current:
        raise CheckpointError(
            f"{where} was written for a different spec than '{spec.name}' (spec hash "
            f"{stored[:12]}… in the checkpoint, {current[:12]}… now): the areas, edges, inputs, time "
            "or readouts changed since it was saved. Use the spec it was trained with, or train into "
            "a new --out directory (without --resume).")


def load_weights(model: torch.nn.Module, path: str | Path, spec=None) -> dict:
    """Load weights (a directory, weights file or JSON file) into ``model``; with ``spec``,
    refuse weights saved for another spec. Returns the JSON record (or {})."""
    weights, meta_path = resolve(path)
    meta = read_meta(meta_path) if meta_path else {}
    if spec is not None:
        check_spec(weights_metadata(weights).get("spec_hash") or meta.get("spec_hash"), spec, weights)
    state = _read_tensors(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"{weights} does not fit this network: {exc}") from None
    return meta


def load_checkpoint(out_dir: str | Path, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                    spec, scheduler=None, restore_rng_states: bool = True, rule=None) -> dict:
    """Restore a full training checkpoint from ``out_dir`` (weights, optimiser, scheduler, RNG, and
    the state of ``rule`` — a learning rule, :mod:`tnnspec.train.learning_rules` — when the
    checkpoint was written with the same rule); returns the JSON record (its ``position`` says
    where to continue)."""
    out = Path(out_dir)
    meta_path = out / META
    if not meta_path.is_file():
        raise CheckpointError(f"no checkpoint in {out} ({META} missing)")
    meta = read_meta(meta_path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path}: unknown checkpoint format {meta.get('format')!r}")
    check_spec(meta.get("spec_hash"), spec, meta_path)
    step = str(meta["position"].get("step", 0))
    weights = out / meta.get("weights", WEIGHTS)
    if not weights.is_file():
        raise CheckpointError(f"checkpoint incomplete: {weights} missing")
    if weights_metadata(weights).get("step") != step:
        raise CheckpointError(f"checkpoint incomplete: {weights} is not from step {step} named in {meta_path} "
                              "(interrupted while saving?)")
    load_weights(model, weights, spec)
    if optimizer is not None and meta.get("optimizer"):
        opt = meta["optimizer"]
        if opt.get("type") != type(optimizer).__name__:
            raise CheckpointError(f"{meta_path} holds {opt.get('type')} state, but the optimiser is now "
                                  f"{type(optimizer).__name__}: resume with the same optimizer setting")
        opt_file = out / opt.get("tensors", OPTIM)
        if not opt_file.is_file() or weights_metadata(opt_file).get("step") != step:
            raise CheckpointError(f"checkpoint incomplete: optimiser state {opt_file} missing or not from step {step}")
        state = _join_optimizer(_read_tensors(opt_file), opt)
        optimizer.load_state_dict(state)
    saved_rule = meta.get("learning_rule") or {}
    if rule is not None and saved_rule.get("type") == rule.name and saved_rule.get("tensors"):
        rule_file = out / saved_rule["tensors"]
        if not rule_file.is_file() or weights_metadata(rule_file).get("step") != step:
            raise CheckpointError(f"checkpoint incomplete: learning rule state {rule_file} missing or not from "
                                  f"step {step}")
        rule.load_state_dict(_read_tensors(rule_file))
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if restore_rng_states and meta.get("rng"):
        restore_rng(meta["rng"])
    return meta
