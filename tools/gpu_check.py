"""GPU check: CUDA outputs against CPU for every zoo model, then eager vs torch.compile timings.

    python tools/gpu_check.py [--quick] [--json OUT.json]

Prints a table; exits 0 (and says so) when CUDA is not available. Timings use CUDA events,
median of repeated runs after warm-up. Models run at reduced resolution where the
architecture allows (the same override the tests use), so the check fits in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tnnspec  # noqa: E402
from tnnspec import zoo  # noqa: E402

SMALL = {3: 64}  # image inputs [3, H, W] are run at 64 px for the correctness check


def small_spec(spec):
    inputs = {}
    for name, inp in spec.inputs.items():
        shape = list(inp.shape)
        if len(shape) == 3 and shape[0] == 3 and shape[1] > 64:
            shape = [3, 64, 64]
        inputs[name] = inp.model_copy(update={"shape": shape})
    try:
        small = spec.model_copy(update={"inputs": inputs})
        tnnspec.compile(small)
        return small
    except Exception:
        return spec


def cuda_time(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no torch.compile")
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--models", nargs="*", default=None)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("CUDA not available: skipping the GPU check")
        return 0
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  "
          f"date {time.strftime('%Y-%m-%d')}")
    names = args.models or zoo.list()
    results, failed = [], 0
    print(f"{'model':<28} {'max|cuda-cpu|':>14} {'ok':>4} {'eager b1 ms':>12} {'eager b64 ms':>13} "
          f"{'compiled b64 ms':>16}")
    for name in names:
        row = {"model": name}
        try:
            spec = small_spec(zoo.load(name))
            torch.manual_seed(0)
            net = tnnspec.compile(spec).eval()
            x = net.example_inputs(2)
            with torch.no_grad():
                cpu = net(x).readouts
                gnet = net.to("cuda")
                gx = {k: v.cuda() for k, v in x.items()} if isinstance(x, dict) else x.cuda()
                gpu = gnet(gx).readouts
            diff = max(((cpu[k] - gpu[k].cpu()).abs().max().item() for k in cpu), default=0.0)
            scale = max((cpu[k].abs().max().item() for k in cpu), default=1.0)
            row["max_abs_diff"] = diff
            row["ok"] = diff <= 1e-4 * max(1.0, scale)
            failed += not row["ok"]
            for batch in (1, 64):
                bx = gnet.example_inputs(batch)
                with torch.inference_mode():
                    row[f"eager_b{batch}_ms"] = cuda_time(lambda: gnet(bx), 5 if args.quick else 20)
            if not args.quick:
                compiled = torch.compile(gnet)
                bx = gnet.example_inputs(64)
                with torch.inference_mode():
                    row["compiled_b64_ms"] = cuda_time(lambda: compiled(bx), 10)
        except Exception as exc:  # report and go on: one model must not hide the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:200]
            failed += 1
        results.append(row)
        fmt = lambda k: f"{row[k]:.2f}" if isinstance(row.get(k), float) else "-"  # noqa: E731
        print(f"{name:<28} {row.get('max_abs_diff', float('nan')):>14.2e} {str(row.get('ok', False)):>4} "
              f"{fmt('eager_b1_ms'):>12} {fmt('eager_b64_ms'):>13} {fmt('compiled_b64_ms'):>16}"
              + (f"  {row['error']}" if "error" in row else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"{len(results) - failed}/{len(results)} models ok on CUDA")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
