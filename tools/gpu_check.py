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
    if not torch.cuda.is_available():  # dry run of the script on CPU (--device cpu)
        for _ in range(2):
            fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
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
    ap.add_argument("--device", default="cuda", help="'cpu' dry-runs the script without a GPU")
    ap.add_argument("--compile-models", nargs="*", default=["cornet_rt", "blt_net_64"],
                    help="models also timed through torch.compile and CUDA graphs (mode='reduce-overhead')")
    ap.add_argument("--budget-s", type=float, default=300, help="skip compile timings once this much time has passed")
    args = ap.parse_args()
    started = time.time()
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        print("CUDA not available: skipping the GPU check")
        return 0
    if dev == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    name_of = torch.cuda.get_device_name() if dev == "cuda" else "cpu (dry run)"
    print(f"device: {name_of}  torch {torch.__version__}  date {time.strftime('%Y-%m-%d')}")
    names = args.models or zoo.list()
    results, failed = [], 0
    print(f"{'model':<28} {'max|cuda-cpu|':>14} {'ok':>4} {'eager b1 ms':>12} {'eager b64 ms':>13} "
          f"{'compiled b64 ms':>16} {'cudagraph b64 ms':>17}")
    for name in names:
        row = {"model": name}
        try:
            spec = small_spec(zoo.load(name))
            torch.manual_seed(0)
            net = tnnspec.compile(spec).eval()
            x = net.example_inputs(2)
            with torch.no_grad():
                cpu = net(x).readouts
                cpu = {k: v.clone() for k, v in cpu.items()}
                gnet = net.to(dev)
                gx = {k: v.to(dev) for k, v in x.items()} if isinstance(x, dict) else x.to(dev)
                gpu = gnet(gx).readouts
            diff = max(((cpu[k] - gpu[k].cpu()).abs().max().item() for k in cpu), default=0.0)
            scale = max((cpu[k].abs().max().item() for k in cpu), default=1.0)
            row["max_abs_diff"] = diff
            row["ok"] = diff <= 1e-4 * max(1.0, scale)
            failed += not row["ok"]
            torch.manual_seed(0)
            full = tnnspec.compile(zoo.load(name)).eval().to(dev)  # timings at the model's own resolution
            for batch in (1, 64):
                bx = full.example_inputs(batch)
                with torch.inference_mode():
                    row[f"eager_b{batch}_ms"] = cuda_time(lambda: full(bx), 5 if args.quick else 20)
            if name in args.compile_models and not args.quick and time.time() - started < args.budget_s:
                bx = full.example_inputs(64)
                for key, mode in (("compiled_b64_ms", "default"), ("cudagraph_b64_ms", "reduce-overhead")):
                    torch._dynamo.reset()
                    compiled = torch.compile(full, mode=mode)
                    t0 = time.time()
                    with torch.no_grad():
                        out = compiled(bx).readouts
                        row[key.replace("_ms", "_compile_s")] = time.time() - t0
                        ref = full(bx).readouts
                        row[key.replace("_ms", "_maxdiff")] = max(
                            (out[k].float() - ref[k].float()).abs().max().item() for k in ref)
                        row[key] = cuda_time(lambda: compiled(bx), 20)
            del full
        except Exception as exc:  # report and go on: one model must not hide the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:200]
            failed += 1
        results.append(row)
        fmt = lambda k: f"{row[k]:.2f}" if isinstance(row.get(k), float) else "-"  # noqa: E731
        print(f"{name:<28} {row.get('max_abs_diff', float('nan')):>14.2e} {str(row.get('ok', False)):>4} "
              f"{fmt('eager_b1_ms'):>12} {fmt('eager_b64_ms'):>13} {fmt('compiled_b64_ms'):>16} "
              f"{fmt('cudagraph_b64_ms'):>17}"
              + (f"  {row['error']}" if "error" in row else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"{len(results) - failed}/{len(results)} models ok on {dev}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
