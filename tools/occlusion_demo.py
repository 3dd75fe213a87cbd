"""The README's demo: does recurrence help under occlusion?

Trains the feedforward B and the recurrent BLT networks of Spoerer, McClure & Kriegeskorte
(2017) (graphs/spoerer2017_{b,blt}.yaml) on scikit-learn's digits with "digit debris"
occluders, shows every test image at every occlusion level, then writes ``OUT/report/``: the
rendered graphs, accuracy vs occlusion level, accuracy vs time step, BLT's solve times by
occlusion level (Kar et al.: hard images are solved later), and ``summary.md`` with the numbers,
their 95 % intervals and an honest verdict.

    python tools/occlusion_demo.py [--out out/demo] [--epochs 12] [--models b blt]

Small on purpose (minutes on 2 CPU cores) and one seed, so its intervals cover the sampling of
test images, not seed-to-seed variation; tools/experiments/occlusion.py runs the full comparison
(B, BL, BT, BLT, parameter-matched controls, several seeds, paired tests across seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tnnspec  # noqa: E402
from tnnspec import zoo  # noqa: E402
from tnnspec.spec.training import Data, LossOverTime, Training  # noqa: E402
from tnnspec.train import OccludedDigits, solve_times, train  # noqa: E402
from tnnspec.train.checkpoint import load_weights  # noqa: E402

LEVELS = [0.0, 0.25, 0.5, 0.75]
Z = 1.959964  # two-sided 95 % normal quantile


def config(epochs: int, seed: int, data: str = "digits", max_steps: int | None = None) -> Training:
    return Training(data=Data(name=data, size=32, occlusion=LEVELS), loss=LossOverTime(steps="all"),
                    epochs=epochs, max_steps=max_steps, batch_size=64, optimizer="adam", lr=2e-3, seed=seed)


def train_model(name: str, cfg: Training, out: Path, progress: bool) -> tuple:
    spec = zoo.load(name)
    run_dir = out / name
    t0 = time.time()
    train(spec, cfg, out_dir=run_dir, progress=progress)
    seconds = time.time() - t0
    net = tnnspec.compile(spec)
    load_weights(net, run_dir / "checkpoint.safetensors", spec)
    return spec, net.eval(), seconds


def test_images(data: str, seed: int, limit: int | None) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """The test split with every image at every occlusion level (the levels are paired by image)."""
    out = {}
    for level in LEVELS:
        ds = OccludedDigits(data, split="test", size=32, occlusion=[level], seed=seed)
        n = len(ds) if limit is None else min(limit, len(ds))
        out[level] = (torch.stack([ds[i][0] for i in range(n)]), ds.labels[:n].clone())
    return out


def predictions(net, tests: dict) -> tuple[np.ndarray, np.ndarray]:
    """Decoded class at every step: ``[L, T, N]``, and the labels ``[N]``."""
    preds = []
    with torch.inference_mode():
        for images, labels in tests.values():
            logits = torch.cat([net(images[i:i + 256]).readouts["logits"] for i in range(0, len(images), 256)], 1)
            preds.append(logits.argmax(-1).numpy())
    return np.stack(preds), labels.numpy()


def wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def paired_difference(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean of a − b over paired items with a 95 % normal interval, and for 0/1 outcomes the
    two-sided exact McNemar p (binomial test on the discordant pairs)."""
    d = a.astype(float) - b.astype(float)
    n = len(d)
    mean = float(d.mean()) if n else float("nan")
    half = Z * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else float("nan")
    out = {"mean": mean, "ci": [mean - half, mean + half], "n": n}
    if set(np.unique(a)) <= {0, 1} and set(np.unique(b)) <= {0, 1}:
        from scipy.stats import binomtest

        up, down = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        out["p"] = float(binomtest(up, up + down).pvalue) if up + down else 1.0
    return out


def summarise(pred: np.ndarray, labels: np.ndarray) -> dict:
    correct = pred == labels                                        # [L, T, N]
    n = correct.shape[-1]
    last = correct[:, -1, :]
    return {"accuracy": [float(c.mean()) for c in last],
            "interval": [wilson(int(c.sum()), n) for c in last],
            "accuracy_per_step": correct.mean(axis=-1).tolist(), "n": n, "steps": int(pred.shape[1]),
            "correct_last": last}


def solve_summary(pred: np.ndarray, labels: np.ndarray) -> dict:
    """Solve steps by level, and the same image occluded vs unoccluded (images solved in both)."""
    st = np.stack([solve_times(torch.from_numpy(p), torch.from_numpy(labels)).numpy() for p in pred])   # [L, N]
    by_level = {f"{lvl:g}": [int(x) for x in st[i] if x >= 0] for i, lvl in enumerate(LEVELS)}
    later = {}
    for i, lvl in enumerate(LEVELS[1:], 1):
        both = (st[0] >= 0) & (st[i] >= 0)
        later[f"{lvl:g}"] = paired_difference(st[i][both], st[0][both]) if both.sum() > 1 else None
    return {"by_level": by_level, "later": later}


def plots(results: dict, solve: dict, report: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    xs = [100 * x for x in LEVELS]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for k, (name, res) in enumerate(results.items()):
        acc = [100 * a for a in res["accuracy"]]
        err = [[100 * (a - lo) for a, (lo, _) in zip(res["accuracy"], res["interval"])],
               [100 * (hi - a) for a, (_, hi) in zip(res["accuracy"], res["interval"])]]
        ax.errorbar([x + (k - 0.5) * 1.2 for x in xs], acc, yerr=err, marker="o", capsize=3, label=name)
    ax.set_xlabel("occlusion (% of the digit covered)")
    ax.set_ylabel("test accuracy at the last step (%)")
    ax.set_title("Recurrence under occlusion (95 % intervals)")
    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(report / "accuracy_vs_occlusion.png", dpi=130)
    files.append("accuracy_vs_occlusion.png")
    plt.close(fig)

    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.4), sharey=True, squeeze=False)
    for ax, (name, res) in zip(axes[0], results.items()):
        for lvl, per_step in zip(LEVELS, res["accuracy_per_step"]):
            ax.plot(range(len(per_step)), [100 * a for a in per_step], marker="o", label=f"{100 * lvl:.0f}%")
        ax.set_title(name)
        ax.set_xlabel("time step")
        ax.set_xticks(range(len(per_step)))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(title="occlusion", fontsize=8)
    fig.tight_layout()
    fig.savefig(report / "accuracy_vs_step.png", dpi=130)
    files.append("accuracy_vs_step.png")
    plt.close(fig)

    if solve:
        name, summary = next(iter(solve.items()))
        by_level = summary["by_level"]
        fig, ax = plt.subplots(figsize=(5, 3.6))
        T = max((max(v) for v in by_level.values() if v), default=0) + 1
        width = 0.8 / len(LEVELS)
        for k, lvl in enumerate(LEVELS):
            times = by_level[f"{lvl:g}"]
            counts = [sum(1 for s in times if s == t) / max(len(times), 1) for t in range(T)]
            ax.bar([t + (k - len(LEVELS) / 2 + 0.5) * width for t in range(T)], [100 * c for c in counts],
                   width=width, label=f"{100 * lvl:.0f}%")
        ax.set_xlabel("solve time (first step from which the answer stays correct)")
        ax.set_ylabel("% of correctly solved images")
        ax.set_title(f"{name}: solve times by occlusion")
        ax.legend(title="occlusion", fontsize=8)
        fig.tight_layout()
        fig.savefig(report / "solve_times.png", dpi=130)
        files.append("solve_times.png")
        plt.close(fig)
    return files


def render_graphs(names, report: Path) -> list[str]:
    from tnnspec import render

    files = []
    for name in names:
        spec = zoo.load(name)
        for kind, graph in (("graph", render.area_graph(spec, detail=True)), ("unrolled", render.unrolled(spec))):
            path = report / f"{name}_{kind}.svg"
            try:
                render.render(graph, path)
            except render.RenderError:
                path = path.with_suffix(".dot")
                render.render(graph, path)
            files.append(path.name)
    return files


def _ci(d: dict, scale: float = 100.0, unit: str = " pt") -> str:
    lo, hi = d["ci"]
    if math.isnan(lo):
        return f"{scale * d['mean']:+.1f}{unit}"
    return f"{scale * d['mean']:+.1f}{unit} [{scale * lo:+.1f}, {scale * hi:+.1f}]"


def verdict(results: dict, solve: dict, b: str, r: str) -> list[str]:
    diffs = [paired_difference(results[r]["correct_last"][i], results[b]["correct_last"][i])
             for i in range(len(LEVELS))]
    growth = paired_difference(results[r]["correct_last"][-1].astype(int) - results[b]["correct_last"][-1],
                               results[r]["correct_last"][0].astype(int) - results[b]["correct_last"][0])
    better = all(d["ci"][0] > 0 for d in diffs[1:])
    grows = growth["ci"][0] > 0
    lines = [f"- Recurrent {r} minus feedforward {b}, same test images, accuracy difference with 95 % interval "
             "(McNemar p): " + "; ".join(f"{100 * lvl:.0f}%: {_ci(d)} (p {d.get('p', float('nan')):.3g})"
                                        for lvl, d in zip(LEVELS, diffs)) + ".",
             f"  {'Reproduced' if better else 'Not reproduced'}: {r} "
             f"{'beats' if better else 'does not clearly beat'} {b} on every occluded level (interval above 0); "
             f"the advantage {'grows' if grows else 'does not clearly grow'} from no occlusion to 75 % "
             f"({_ci(growth)})."]
    if r in solve:
        by_level, later = solve[r]["by_level"], solve[r]["later"]
        means = [float(np.mean(by_level[f"{lvl:g}"])) if by_level[f"{lvl:g}"] else float("nan") for lvl in LEVELS]
        lines.append(f"- {r}'s mean solve step of solved images by occlusion level: "
                     + ", ".join(f"{100 * lvl:.0f}%: {m:.2f}" for lvl, m in zip(LEVELS, means)) + ".")
        last = later.get(f"{LEVELS[-1]:g}")
        if last is not None:
            yes = last["ci"][0] > 0
            lines.append(f"  The same image at {100 * LEVELS[-1]:.0f}% occlusion is solved "
                         f"{_ci(last, 1.0, ' steps')} later than unoccluded ({last['n']} images solved in both): "
                         f"{'reproduced' if yes else 'not reproduced'} (Kar et al. 2019: hard images are solved later).")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "demo")
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--max-steps", type=int, default=None, help="stop training after this many optimiser steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default="digits", help="digits (default) or mnist5k")
    ap.add_argument("--test-limit", type=int, default=None, help="use only the first N test images")
    ap.add_argument("--models", nargs=2, default=["spoerer2017_b", "spoerer2017_blt"], metavar=("FF", "REC"))
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    report = args.out / "report"
    report.mkdir(parents=True, exist_ok=True)
    cfg = config(args.epochs, args.seed, args.data, args.max_steps)
    tests = test_images(args.data, args.seed, args.test_limit)
    results, seconds, solve = {}, {}, {}
    for name in args.models:
        print(f"training {name} ({args.epochs} epochs) ...", flush=True)
        spec, net, seconds[name] = train_model(name, cfg, args.out, not args.no_progress)
        pred, labels = predictions(net, tests)
        results[name] = summarise(pred, labels)
        if spec.edges and any(e.type in ("lateral", "feedback") for e in spec.edges):
            solve[name] = solve_summary(pred, labels)
    pictures = plots(results, solve, report) + render_graphs(args.models, report)
    b, r = args.models
    n = results[r]["n"]
    lines = ["# Recurrence under occlusion: tnnspec demo", "",
             f"Models: `{b}` (feedforward) and `{r}` (bottom-up, lateral and top-down), "
             f"graphs/{b}.yaml and graphs/{r}.yaml. Data: {args.data} at 32x32 with digit-debris "
             f"occluders at levels {', '.join(f'{100 * x:.0f}%' for x in LEVELS)} (fraction of the digit's ink "
             f"covered); each of the {n} test images is shown at every level. Training: {args.epochs} epochs"
             + (f" (at most {args.max_steps} steps)" if args.max_steps else "")
             + f", Adam lr 2e-3, batch 64, cross-entropy averaged over all {results[r]['steps']} steps, seed {args.seed}. "
             "Accuracy at the last step, % with its 95 % Wilson interval over test images.", "",
             "| model | params | train time (s) | " + " | ".join(f"acc @ {100 * x:.0f}%" for x in LEVELS) + " |",
             "|---|---|---|" + "---|" * len(LEVELS)]
    for name, res in results.items():
        params = sum(p.numel() for p in tnnspec.compile(zoo.load(name)).parameters())
        lines.append(f"| {name} | {params:,} | {seconds[name]:.0f} | " + " | ".join(
            f"{100 * a:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]" for a, (lo, hi) in zip(res["accuracy"], res["interval"]))
            + " |")
    found = verdict(results, solve, b, r)
    lines += ["", "## What was reproduced", ""] + found
    lines += ["", "One seed on a small dataset: the intervals cover which test images were drawn, not how another "
              "seed would train; BLT also has more parameters than B. tools/experiments/occlusion.py repeats this "
              "over seeds with parameter-matched B-K/B-F controls and paired tests (docs/experiments/occlusion.md).",
              "", "## Pictures", ""]
    lines += [f"![{p}]({p})" for p in pictures]
    (report / "summary.md").write_text("\n".join(lines) + "\n")
    plain = {name: {k: v for k, v in res.items() if k != "correct_last"} for name, res in results.items()}
    (report / "results.json").write_text(json.dumps({"results": plain, "solve_times": solve,
                                                     "train_seconds": seconds}, indent=1))
    print("\n".join(lines[:8 + len(results)]))
    print("\n".join(found))
    print(f"\nreport: {report / 'summary.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
