"""The full occlusion experiment: B, BL, BT, BLT and parameter-matched feedforward controls.

Spoerer, McClure & Kriegeskorte (2017) compared recurrent networks (BL, BT, BLT) with a
feedforward network (B) and with feedforward controls matched to BLT's parameter count:
B-K (larger bottom-up kernels) and B-F (more feature maps). This script trains all six on
occluded digits for several seeds and reports mean ± sd accuracy per occlusion level.

    python tools/experiments/occlusion.py [--seeds 0 1 2] [--epochs 20] [--out out/occlusion]

It takes about (models x seeds x epochs) x 10-20 s on 2 CPU cores; use --device cuda on a GPU.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tools")]

import tnnspec  # noqa: E402
from occlusion_demo import LEVELS, config  # noqa: E402
from tnnspec import zoo  # noqa: E402
from tnnspec.train import OccludedDigits, evaluate, train  # noqa: E402
from tnnspec.train.checkpoint import load_weights  # noqa: E402

RECURRENT = ["spoerer2017_b", "spoerer2017_bl", "spoerer2017_bt", "spoerer2017_blt"]


def n_params(spec) -> int:
    return sum(p.numel() for p in tnnspec.compile(spec).parameters())


def b_variant(kernel: int = 3, channels: int = 32, name: str = "b_k"):
    """B with other bottom-up kernels or feature counts (text edits of graphs/spoerer2017_b.yaml)."""
    text = zoo.path("spoerer2017_b").read_text()
    text = text.replace("name: spoerer2017_b", f"name: {name}")
    text = re.sub(r"\{conv: \{kernel: 3\}\}", f"{{conv: {{kernel: {kernel}}}}}", text)
    text = text.replace("channels: 32", f"channels: {channels}")
    return tnnspec.loads(text, file=f"<{name}>")


def matched_controls():
    """B-K and B-F whose parameter counts come closest to BLT's."""
    target = n_params(zoo.load("spoerer2017_blt"))
    b_k = min((b_variant(kernel=k, name="b_k") for k in (3, 5, 7, 9)), key=lambda s: abs(n_params(s) - target))
    b_f = min((b_variant(channels=c, name="b_f") for c in range(32, 97, 2)),
              key=lambda s: abs(n_params(s) - target))
    return {"b_k": b_k, "b_f": b_f}, target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=ROOT / "out" / "occlusion")
    args = ap.parse_args(argv)
    controls, target = matched_controls()
    specs = {name.removeprefix("spoerer2017_"): zoo.load(name) for name in RECURRENT} | controls
    print("parameters: " + ", ".join(f"{k} {n_params(s):,}" for k, s in specs.items()) + f" (BLT {target:,})")
    acc = {name: {f"{lvl:g}": [] for lvl in LEVELS} for name in specs}
    for seed in args.seeds:
        test = OccludedDigits("digits", split="test", size=32, occlusion=LEVELS, seed=seed)
        for name, spec in specs.items():
            run = args.out / f"{name}_seed{seed}"
            train(spec, config(args.epochs, seed), out_dir=run, device=args.device, progress=False)
            net = tnnspec.compile(spec).to(args.device)
            load_weights(net, run / "checkpoint.safetensors", spec)
            res = evaluate(net.eval(), spec, test)
            for lvl in LEVELS:
                acc[name][f"{lvl:g}"].append(res["levels"][f"{lvl:g}"]["accuracy"])
            print(f"seed {seed} {name:<4} " + "  ".join(
                f"{100 * lvl:.0f}%: {100 * res['levels'][f'{lvl:g}']['accuracy']:.1f}" for lvl in LEVELS), flush=True)
    lines = ["| model | params | " + " | ".join(f"{100 * x:.0f}% occluded" for x in LEVELS) + " |",
             "|---|---|" + "---|" * len(LEVELS)]
    for name, spec in specs.items():
        cells = []
        for lvl in LEVELS:
            v = acc[name][f"{lvl:g}"]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{100 * statistics.mean(v):.1f} ± {100 * sd:.1f}")
        lines.append(f"| {name} | {n_params(spec):,} | " + " | ".join(cells) + " |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    (args.out / "accuracy.json").write_text(json.dumps(acc, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
