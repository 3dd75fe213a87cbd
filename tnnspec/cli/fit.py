"""``tnnspec fit`` and ``tnnspec compare``: models against neural recordings over time.

Settings come from the graph file's ``neural:`` section, then from the command line. Problems
are reported as messages naming the file and what is wrong, never as tracebacks (exit status 1).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def parse_map(text: str | None) -> dict[str, str] | None:
    """``V4=V4,IT=IT`` -> {region: area}; a bare name maps a region to the area of that name."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        region, _, area = part.partition("=")
        out[region.strip()] = (area or region).strip()
    return out


def parse_latency(text: str | None, regions: list[str] | None = None) -> dict[str, list[float]] | None:
    """``IT=40:120:10,V4=30`` (start:stop:step includes stop) or ``50`` for every region."""
    if not text:
        return None

    def values(v: str) -> list[float]:
        if ":" in v:
            a, b, c = (float(x) for x in v.split(":"))
            if c <= 0 or b < a:
                raise ValueError(f"latency range {v!r}: use start:stop:step with step > 0 and stop >= start")
            n = int(round((b - a) / c))
            return [a + k * c for k in range(n + 1)]
        return [float(x) for x in v.split("/")]

    out: dict[str, list[float]] = {}
    for part in text.split(","):
        region, eq, v = part.partition("=")
        if not eq:
            out["*"] = values(region)
        else:
            out[region.strip()] = values(v)
    return out


def _dynamics(spec, args):
    from ..spec.neural import Dynamics

    base = (spec.neural.dynamics if spec.neural is not None else Dynamics()).model_dump()
    over = {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "task_weight": args.task_weight,
            "heldout_neurons": args.heldout_neurons, "heldout_images": args.heldout_images, "seed": args.seed}
    if args.train:
        over["train"] = "all" if args.train == "all" else [x.strip() for x in args.train.split(",") if x.strip()]
    base.update({k: v for k, v in over.items() if v is not None})
    return Dynamics.model_validate(base)


def cmd_fit(args) -> int:
    from pydantic import ValidationError

    from ..api import check_file
    from ..neural.errors import NeuralDataError
    from ..train.checkpoint import CheckpointError
    from ..train.trainer import TrainError
    from .train import _default_device, _print_diagnostics, run_reporting

    spec, diags = check_file(args.spec)
    _print_diagnostics(diags)
    if spec is None:
        return 1
    try:
        mapping = parse_map(args.map)
        latency = parse_latency(args.latency)
        if latency and "*" in latency:
            names = list(mapping or (spec.neural.regions if spec.neural else {}))
            latency = {r: latency["*"] for r in names} | {k: v for k, v in latency.items() if k != "*"}
        dynamics = _dynamics(spec, args) if args.mode == "dynamics" else None
    except (ValueError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    nwb = None
    if args.bin_ms is not None or args.window is not None:
        b = spec.neural.bins if spec.neural is not None else None
        start, stop = (args.window or (b.start_ms if b else 0.0, b.stop_ms if b else 250.0))
        nwb = {"bin_ms": args.bin_ms or (b.width_ms if b else 10.0), "start_ms": start, "stop_ms": stop}
    out = args.out or str(Path("runs") / f"fit-{spec.name}")
    from ..neural.fit import run_fit

    scores, code = run_reporting(lambda: run_fit(
        spec, args.neural, args.stimuli, mode=args.mode, mapping=mapping, latency_ms=latency, out_dir=out,
        checkpoint=args.checkpoint, steps=args.steps, device=_default_device(args.device), resume=args.resume,
        progress=not args.no_progress, shuffle=args.shuffle, method=args.method, pca=args.pca, folds=args.folds,
        dynamics=dynamics, backend=args.backend, report=not args.no_report, nwb_options=nwb),
        (NeuralDataError, CheckpointError, TrainError, ImportError))
    if code is not None:
        return code
    if int(os.environ.get("RANK", "0")) == 0:
        print(format_scores(scores))
        print(f"scores, metrics and report in {out}")
    return 0


def format_scores(scores: dict) -> str:
    """One line per region and kind: mean ceiled score over bins with a positive ceiling."""
    import numpy as np

    lines = [f"{scores['spec']} ({scores['mode']}{', SHUFFLED control' if scores.get('shuffled') else ''}):"]
    for r, entry in scores["regions"].items():
        for kind, s in entry["scores"].items():
            ok = [i for i, v in enumerate(s["ceiled"]) if v is not None]
            if not ok:
                lines.append(f"  {r} ({entry['area']}, {kind}): no bin with a positive noise ceiling")
                continue
            mean = float(np.mean([s["ceiled"][i] for i in ok]))
            lo = [s["low"][i] for i in ok if s["low"][i] is not None]
            hi = [s["high"][i] for i in ok if s["high"][i] is not None]
            interval = f" [{np.mean(lo):.2f}, {np.mean(hi):.2f}]" if lo and hi else ""
            lines.append(f"  {r} <- {entry['area']} ({kind}, latency {entry['latency_ms']:g} ms): mean ceiled "
                         f"score {mean:.3f}{interval} over {len(ok)} bins, {s['n_neurons']} neurons")
    return "\n".join(lines)


def cmd_compare(args) -> int:
    from ..neural.errors import NeuralDataError
    from ..neural.report import compare

    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    if labels is not None and len(labels) != len(args.runs):
        print(f"error: {len(labels)} labels for {len(args.runs)} runs", file=sys.stderr)
        return 1
    try:
        paths = compare(args.runs, args.out, labels=labels)
    except NeuralDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    md = next((p for p in paths if str(p).endswith(".md")), None)
    if md is not None:
        print(Path(md).read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


def add_fit_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("fit", help="compare a graph with neural recordings over time (mapping or dynamics fit)",
                       description="Score a graph against recordings per time bin: --mode mapping fits a "
                                   "linear map per bin (ridge or PLS) on the graph's area activity; --mode "
                                   "dynamics trains the network and per-neuron readouts to predict every bin. "
                                   "Settings: the file's neural: section, then these options.")
    p.add_argument("spec", metavar="GRAPH", help="graph file")
    p.add_argument("--neural", required=True, metavar="DATA",
                   help="recordings: .nc (netCDF), .npz or .nwb (spike times, binned)")
    p.add_argument("--stimuli", required=True, metavar="DIR|NPZ",
                   help="image folder (file stem = stimulus_id) or .npz with images [N,C,H,W] and stimulus_id")
    p.add_argument("--map", metavar="REGION=AREA,...", help="recorded region -> graph area (default: neural.regions)")
    p.add_argument("--latency", metavar="SPEC",
                   help="latency in ms: 50 (all regions), IT=60,V4=40, or a range IT=40:120:10 chosen by cross-validation")
    p.add_argument("--mode", choices=("mapping", "dynamics"), default="mapping")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/fit-<graph name>)")
    p.add_argument("--checkpoint", metavar="DIR|FILE", help="weights: a training run folder or a .safetensors file")
    p.add_argument("--steps", type=int, help="unroll this many steps (default: as many as the bins need)")
    p.add_argument("--method", choices=("ridge", "pls"), help="mapping: regression (default ridge)")
    p.add_argument("--pca", type=int, metavar="K", help="mapping: reduce activations to K components first")
    p.add_argument("--folds", type=int, metavar="K", help="mapping: cross-validation folds over images")
    p.add_argument("--train", metavar="WHAT", help="dynamics: 'all' or edge types/names, e.g. lateral,feedback")
    p.add_argument("--epochs", type=int, help="dynamics: passes over the training images")
    p.add_argument("--lr", type=float, help="dynamics: learning rate")
    p.add_argument("--batch-size", type=int, help="dynamics: images per step")
    p.add_argument("--task-weight", type=float, help="dynamics: weight of the classification loss (needs labels)")
    p.add_argument("--heldout-neurons", type=float, help="dynamics: fraction of neurons left out of the fit")
    p.add_argument("--heldout-images", type=float, help="dynamics: fraction of images left out of the fit")
    p.add_argument("--seed", type=int, help="dynamics: seed for splits and readouts")
    p.add_argument("--resume", action="store_true", help="dynamics: continue from the checkpoint in --out")
    p.add_argument("--bin-ms", type=float, help="NWB: bin width in ms (default: neural.bins)")
    p.add_argument("--window", type=float, nargs=2, metavar=("START", "STOP"), help="NWB: ms after onset to bin")
    p.add_argument("--shuffle", action="store_true", help="control: pair images and recordings at random")
    p.add_argument("--backend", choices=("numpy", "torch", "torch_cuda"), default="numpy",
                   help="himalaya backend for ridge (torch_cuda runs on the GPU)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--no-report", action="store_true", help="skip report.md and the plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(fn=cmd_fit)
    return p


def add_compare_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="put several fit runs' scores side by side (plot, table)")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders written by tnnspec fit")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--labels", metavar="A,B,...", help="names for the runs (default: their graph names)")
    p.set_defaults(fn=cmd_compare)
    return p
