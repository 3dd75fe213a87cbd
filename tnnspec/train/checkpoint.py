"""Checkpoints: weights, optimiser state, RNG states and position, written atomically.

A checkpoint in ``DIR`` is three files:

* ``checkpoint.safetensors`` — the network's weights (``state_dict``); its metadata holds the
  spec hash and the optimiser step, so a bare weights file still says what it belongs to;
* ``checkpoint.optim.safetensors`` — the optimiser's tensors (moments, momentum buffers, ...);
* ``checkpoint.json`` — everything else: position (epoch, batch within the epoch, optimiser
  step), the optimiser's non-tensor state and param groups, RNG states (python, numpy, torch,
  CUDA), the training settings, the spec hash and the tnnspec version.

Each file is written to a temporary name and moved into place with :func:`os.replace`;
the JSON file goes last and names the step of the two tensor files, so a half-written
checkpoint is detected instead of silently loaded.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

WEIGHTS = "checkpoint.safetensors"
OPTIM = "checkpoint.optim.safetensors"
META = "checkpoint.json"
FORMAT = 1


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

def _atomic(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any) -> None:
    path = Path(path)

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())

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
                    scheduler=None, metrics: dict | None = None, extra: dict | None = None) -> Path:
    """Write the checkpoint into ``out_dir``; returns the path of the JSON file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = spec_hash(spec)
    step = str(position.get("step", 0))
    meta = {"spec_hash": digest, "spec_name": spec.name, "step": step, "tnnspec_version": _version()}
    _save_tensors(out / WEIGHTS, dict(model.state_dict()), meta)
    opt_plain = None
    if optimizer is not None:
        tensors, opt_plain = _split_optimizer(optimizer.state_dict())
        _save_tensors(out / OPTIM, tensors, meta)
    record = {
        "format": FORMAT,
        "tnnspec_version": _version(),
        "torch_version": torch.__version__,
        "spec_name": spec.name,
        "spec_hash": digest,
        "position": dict(position),
        "weights": WEIGHTS,
        "optimizer": None if optimizer is None else {
            "type": type(optimizer).__name__, "tensors": OPTIM, **opt_plain},
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": rng if rng is not None else capture_rng(),
        "training": training,
        "metrics": metrics or {},
        **(extra or {}),
    }
    write_json_atomic(out / META, record)
    return out / META


def resolve(path: str | Path) -> tuple[Path, Path | None]:
    """(weights file, JSON file or None) for a checkpoint directory, weights file or JSON file."""
    p = Path(path)
    if p.is_dir():
        weights, meta = p / WEIGHTS, p / META
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
                    spec, scheduler=None, restore_rng_states: bool = True) -> dict:
    """Restore a full training checkpoint from ``out_dir`` (weights, optimiser, scheduler, RNG);
    returns the JSON record (its ``position`` says where to continue)."""
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
    if scheduler is not None and meta.get("scheduler") is not None:
        scheduler.load_state_dict(meta["scheduler"])
    if restore_rng_states and meta.get("rng"):
        restore_rng(meta["rng"])
    return meta
