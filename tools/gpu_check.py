"""GPU check: CUDA outputs against CPU for every zoo model, then eager vs CUDA-graph vs torch.compile timings.

    python tools/gpu_check.py [--quick] [--json OUT.json] [--batches 1 64] [--device cpu]

Prints a table; exits 0 (and says so) when CUDA is not available. Timings use CUDA events,
median of repeated runs after warm-up: eager, eager with ``channels_last=True``, with
``share_constants=True`` (models with input-independent updates; checked against eager), tnnspec's own
CUDA-graph capture (``cuda_graphs=True``, checked against eager) at batch 1 and 64 (``--batches``),
and for the ``--compile-models`` torch.compile (default mode at both batches, 'reduce-overhead' at
the larger). ``--device cpu --quick --batches 1 2`` dry-runs every check of every zoo model on the
CPU in a few minutes.
The correctness check runs models at reduced resolution where the architecture allows (the
same override the tests use), so the check fits in a few minutes.
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


def outputs(net, x) -> dict:
    """What the correctness checks compare: every readout, and every area's output at every step
    (a model without readouts, such as reynolds_heeger, is compared by its areas)."""
    run = net(x, record=tuple(net.spec.areas))
    return {**{f"readout:{k}": v for k, v in run.readouts.items()}, **run.areas}


def max_diff(a: dict, b: dict) -> float:
    return max(((a[k].float().cpu() - b[k].float().cpu()).abs().max().item() for k in a), default=0.0)


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
    ap.add_argument("--batches", type=int, nargs=2, default=[1, 64], metavar=("SMALL", "LARGE"),
                    help="the two batch sizes timed (a CPU dry run of every model: 1 2)")
    args = ap.parse_args()
    small, large = args.batches
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
    cols = [(f"eager_b{small}_ms", f"eager b{small}"), (f"graphs_b{small}_ms", f"graphs b{small}"),
            (f"compiled_b{small}_ms", f"compile b{small}"), (f"eager_b{large}_ms", f"eager b{large}"),
            (f"nhwc_b{large}_ms", f"nhwc b{large}"), (f"shared_b{large}_ms", f"shared b{large}"),
            (f"graphs_b{large}_ms", f"graphs b{large}"), (f"compiled_b{large}_ms", f"compile b{large}"),
            (f"reduce_overhead_b{large}_ms", f"r-o b{large}")]
    print(f"{'model':<28} {'max|cuda-cpu|':>14} {'ok':>4} " + " ".join(f"{c:>11}" for _, c in cols) + "  (ms)")
    for name in names:
        row = {"model": name}
        try:
            spec = small_spec(zoo.load(name))
            torch.manual_seed(0)
            net = tnnspec.compile(spec).eval()
            x = net.example_inputs(2)
            with torch.no_grad():
                cpu = {k: v.clone() for k, v in outputs(net, x).items()}
                gnet = net.to(dev)
                gx = {k: v.to(dev) for k, v in x.items()} if isinstance(x, dict) else x.to(dev)
                gpu = outputs(gnet, gx)
            diff = max_diff(cpu, gpu)
            scale = max((cpu[k].abs().max().item() for k in cpu), default=1.0)
            row["max_abs_diff"] = diff
            row["ok"] = diff <= 1e-4 * max(1.0, scale)
            torch.manual_seed(0)
            full = tnnspec.compile(zoo.load(name)).eval().to(dev)  # timings at the model's own resolution
            graphed = tnnspec.compile(full.spec, cuda_graphs=dev == "cuda").eval().to(dev)
            nhwc = tnnspec.compile(full.spec, channels_last=True).eval().to(dev)
            graphed.load_state_dict(full.state_dict())
            nhwc.load_state_dict(full.state_dict())
            shared = None  # share_constants: input-independent updates once per batch (where there are any)
            if full.plan.constant:
                shared = tnnspec.compile(full.spec, share_constants=True).eval().to(dev)
                shared.load_state_dict(full.state_dict())
            repeats = 5 if args.quick else 20
            for batch in (small, large):
                bx = full.example_inputs(batch)
                with torch.inference_mode():
                    row[f"eager_b{batch}_ms"] = cuda_time(lambda: full(bx), repeats)
                    if batch == large:
                        row[f"nhwc_b{large}_ms"] = cuda_time(lambda: nhwc(bx), repeats)
                    if batch == large and shared is not None:
                        row[f"shared_b{large}_maxdiff"] = max_diff(outputs(full, bx), outputs(shared, bx))
                        row[f"shared_b{large}_ms"] = cuda_time(lambda: shared(bx), repeats)
                    row[f"graphs_b{batch}_maxdiff"] = max_diff(outputs(full, bx), outputs(graphed, bx))
                    row[f"graphs_b{batch}_ms"] = cuda_time(lambda: graphed(bx), repeats)
            row["ok"] = row["ok"] and max(row[f"graphs_b{small}_maxdiff"], row[f"graphs_b{large}_maxdiff"],
                                          row.get(f"shared_b{large}_maxdiff", 0.0)) <= 1e-4 * max(1.0, scale)
            failed += not row["ok"]
            del graphed, nhwc, shared
            if name in args.compile_models and not args.quick:
                for key, mode, batch in ((f"compiled_b{small}_ms", "default", small),
                                         (f"compiled_b{large}_ms", "default", large),
                                         (f"reduce_overhead_b{large}_ms", "reduce-overhead", large)):
                    if time.time() - started > args.budget_s:
                        break
                    bx = full.example_inputs(batch)
                    torch._dynamo.reset()
                    compiled = torch.compile(full, mode=mode)
                    t0 = time.time()
                    with torch.no_grad():
                        out = compiled(bx).readouts
                        row[key.replace("_ms", "_compile_s")] = time.time() - t0
                        ref = full(bx).readouts
                        row[key.replace("_ms", "_maxdiff")] = max(
                            (out[k].float() - ref[k].float()).abs().max().item() for k in ref)
                        row[key] = cuda_time(lambda: compiled(bx), repeats)
            del full
        except Exception as exc:  # report and go on: one model must not hide the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:200]
            failed += 1
        results.append(row)
        fmt = lambda k: f"{row[k]:.2f}" if isinstance(row.get(k), float) else "-"  # noqa: E731
        print(f"{name:<28} {row.get('max_abs_diff', float('nan')):>14.2e} {str(row.get('ok', False)):>4} "
              + " ".join(f"{fmt(k):>11}" for k, _ in cols)
              + (f"  {row['error']}" if "error" in row else ""), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"{len(results) - failed}/{len(results)} models ok on {dev}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
