"""``tnnspec fit``: compare a graph with recordings and write the scores, the metrics and a report.

A fit run folder holds ``scores.json`` (per region and bin: raw r, noise ceiling, ceiled score
and its bootstrap interval), ``predictions.npz`` (example neurons, recorded vs predicted on
held-out images), ``metrics.jsonl`` and the report (``report.md`` and PNG plots, from
:mod:`tnnspec.neural.report`). In dynamics mode the folder is also a training run (checkpoints,
``--resume``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from .errors import NeuralDataError

SCORES = "scores.json"
PREDICTIONS = "predictions.npz"
CEILING_CONVENTION = ("ceiled = median over neurons of Pearson r / median over neurons of sqrt(split-half "
                      "reliability, Spearman-Brown corrected): a noise-free perfect model scores 1")


def load_net_weights(net, path, spec) -> None:
    """Weights of a training run folder, a ``.safetensors`` file or a dynamics fit run (whose
    network parameters are stored under ``net.``) into ``net``; refused if saved for another spec."""
    from ..train import checkpoint as ckpt

    try:
        ckpt.load_weights(net, path, spec)
        return
    except ckpt.CheckpointError as first:
        weights, _ = ckpt.resolve(path)
        state = ckpt._read_tensors(weights)
        inner = {k[4:]: v for k, v in state.items() if k.startswith("net.")}
        if not inner:
            raise first
        ckpt.check_spec(ckpt.weights_metadata(weights).get("spec_hash"), spec, weights)
        try:
            net.load_state_dict(inner)
        except RuntimeError as exc:
            raise ckpt.CheckpointError(f"{weights} does not fit this network: {exc}") from None


def run_fit(spec, recordings, stimuli, *, mode: str = "mapping", mapping: dict[str, str] | None = None,
            latency_ms: dict[str, list[float]] | None = None, out_dir: str | Path | None = None,
            checkpoint=None, steps: int | None = None, device="cpu", resume: bool = False, progress: bool = True,
            shuffle: bool = False, method: str | None = None, pca: int | None = None, folds: int | None = None,
            dynamics=None, backend: str = "numpy", report: bool = True, nwb_options: dict | None = None) -> dict:
    """Compare ``spec`` with ``recordings`` (a path or a DataArray) on ``stimuli`` (a path or a
    :class:`~tnnspec.neural.stimuli.Stimuli`). ``mode``: ``"mapping"`` (per-bin linear mapping)
    or ``"dynamics"`` (fit the network, :mod:`tnnspec.neural.dynamics`). Settings left ``None``
    come from the spec's ``neural:`` section. Returns the scores (also written to ``out_dir``)."""
    import tnnspec

    from ..spec.neural import Mapping, Neural
    from .recordings import load_recordings, stimulus_ids
    from .score import map_regions, resolve_regions
    from .stimuli import Stimuli, load_stimuli

    if mode not in ("mapping", "dynamics"):
        raise NeuralDataError(f"mode must be 'mapping' or 'dynamics', got {mode!r}")
    t0 = time.time()
    section = spec.neural or Neural()
    rec_source = str(recordings) if isinstance(recordings, (str, Path)) else "<recordings>"
    if isinstance(recordings, (str, Path)):
        if nwb_options is None:
            b = section.bins
            nwb_options = {"bin_ms": b.width_ms, "start_ms": b.start_ms, "stop_ms": b.stop_ms}
        recordings = load_recordings(recordings, **(nwb_options if str(recordings).endswith(".nwb") else {}))
    stim = stimuli if isinstance(stimuli, Stimuli) else load_stimuli(stimuli)
    ids = stimulus_ids(recordings)
    images = stim.select(ids, source=rec_source)
    regions = resolve_regions(spec, recordings, mapping, latency_ms)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    if mode == "mapping":
        m = section.mapping
        m = Mapping(**{**m.model_dump(), **{k: v for k, v in (("method", method), ("pca", pca), ("folds", folds))
                                          if v is not None}})
        net = tnnspec.compile(spec)
        if checkpoint is not None:
            load_net_weights(net, checkpoint, spec)
        net = net.to(device)
        result = map_regions(net, images, recordings, regions, method=m.method, pca=m.pca, folds=m.folds,
                             pls_components=m.pls_components, n_boot=m.bootstrap, seed=m.seed, steps=steps,
                             device=device, backend=backend, shuffle=shuffle, progress=progress)
        settings = m.model_dump(mode="json")
    else:
        from .dynamics import fit_dynamics

        d = dynamics or section.dynamics
        labels = getattr(stim, "labels", None)
        if labels is not None:
            order = {s: i for i, s in enumerate(stim.ids)}
            labels = np.asarray(labels)[[order[s] for s in ids]]
        result = fit_dynamics(spec, images, recordings, regions, d, out_dir=out, steps=steps, device=device,
                              resume=resume, progress=progress, init=checkpoint, labels=labels,
                              n_boot=section.mapping.bootstrap, backend=backend, shuffle=shuffle)
        settings = d.model_dump(mode="json")

    scores = {"spec": spec.name, "mode": mode, "recordings": rec_source,
              "stimuli": getattr(stim, "source", None), "n_stimuli": len(ids), "time_steps": result["steps"],
              "dt_ms": spec.time.dt_ms, "shuffled": shuffle, "checkpoint": None if checkpoint is None else str(checkpoint),
              "ceiling_convention": CEILING_CONVENTION, "settings": settings, "regions": result["regions"],
              "time": round(time.time() - t0, 3)}
    if "split" in result:
        scores["split"] = result["split"]
    # under torchrun every process gets here with the same scores; only rank 0 writes them
    if out is not None and os.environ.get("RANK", "0") == "0":
        _write(out, scores, result.get("examples") or {}, mode)
        if report:
            from .report import write_report

            write_report(out)
    return scores


def _write(out: Path, scores: dict, examples: dict, mode: str) -> None:
    from ..train.checkpoint import write_json_atomic

    write_json_atomic(out / SCORES, scores)
    if examples:
        arrays = {}
        for r, ex in examples.items():
            for k, v in ex.items():
                arrays[f"{r}/{k}"] = np.asarray(v)
            arrays[f"{r}/bins"] = np.asarray(scores["regions"][r]["bins"])
        tmp = out / f".{PREDICTIONS}.tmp.npz"
        np.savez(tmp, **arrays)
        tmp.replace(out / PREDICTIONS)
    if mode == "mapping":  # dynamics: the trainer wrote metrics.jsonl; add the scores at its end
        (out / "metrics.jsonl").unlink(missing_ok=True)
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        for r, entry in scores["regions"].items():
            for key, s in entry["scores"].items():
                vals = [v for v in s["ceiled"] if v is not None]
                f.write(json.dumps({"event": "score", "region": r, "area": entry["area"], "kind": key,
                                    "latency_ms": entry["latency_ms"],
                                    "mean_ceiled": float(np.mean(vals)) if vals else None,
                                    "ceiled": s["ceiled"]}) + "\n")


def summary_lines(spec, steps: int | None = None) -> list[str]:
    """The time mapping of the spec's ``neural:`` section, for ``tnnspec summary``."""
    from .timemap import TimeMap, equal_bins

    section = spec.neural
    if section is None or not section.regions:
        return []
    b = section.bins
    bins = equal_bins(b.start_ms, b.stop_ms, b.width_ms)
    lines = [f"time mapping (neural): step t covers [latency + t*{spec.time.dt_ms:g}, latency + (t+1)*"
             f"{spec.time.dt_ms:g}) ms; bins of {b.width_ms:g} ms from {b.start_ms:g} to {b.stop_ms:g} ms"]
    for r, reg in section.regions.items():
        for lat in reg.latencies:
            tm = TimeMap(spec.time.dt_ms, bins, lat)
            need = tm.steps_needed()
            rows = tm.describe(max(need, steps or 0))
            rest = sum(1 for x in tm.before_onset() if x >= 1 - 1e-9)
            shown = rows[rest:]
            head = f"  {r} <- area {reg.area}, latency {lat:g} ms: needs {need} steps"
            if rest:
                head += f"; {rest} bin(s) before {lat:g} ms see the model at rest"
            lines.append(head)
            if len(shown) > 6:
                shown = shown[:3] + [f"... ({len(shown) - 5} more)"] + shown[-2:]
            lines += [f"    {x}" for x in shown]
    return lines
