"""GPU check: the default-optimized network on the device against the plain interpreter in
float64 on the CPU, for every zoo model; then eager and torch.compile timings.

    python tools/gpu_check.py [--quick] [--json OUT.json] [--batches 1 64] [--device cpu]

Correctness: per model, at reduced resolution where the architecture allows (the same override
the tests use), a network compiled with the default passes (``optimize="default"``) runs on the
device in float32 and is compared with a plain ``optimize="none"`` network with the same state
dict, run in float64 on the CPU; so is a network with the ``share_constants`` pass (models with
input-independent updates). Every readout and every area's output at every step is compared;
a model passes when the largest difference is at most ``1e-4 · max(1, largest |reference|)``
(both the difference and the tolerance are reported).

Timings (CUDA events, median of repeated runs after warm-up; wall clock on the CPU), at the
model's own resolution and batch 1 and 64 (``--batches``): eager with the default passes, with
``share_constants`` at the larger batch, and for the ``--compile-models`` torch.compile (default
mode at both batches, 'reduce-overhead' at the larger; not with ``--quick``).

Prints a table; exits 0 (and says so) when CUDA is not available, 1 when a model fails.
``--device cpu --quick --batches 1 2`` dry-runs every check of every zoo model on the CPU.
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

def small_spec(spec):
    """``spec`` with image inputs [3, H, W] at 64 px (for the correctness check), where it compiles."""
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


SHARE = (*tnnspec.compile.DEFAULT, "share_constants")
RTOL = 1e-4  # tolerance: RTOL * max(1, largest |reference output|)


def outputs(net, x) -> dict:
    """What the correctness checks compare: every readout, and every area's output at every step
    (a model without readouts, such as reynolds_heeger, is compared by its areas)."""
    run = net(x, record=tuple(net.spec.areas))
    return {**{f"readout:{k}": v for k, v in run.readouts.items()}, **run.areas}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(((a[k].double().cpu() - b[k].double().cpu()).abs().max().item() for k in a), default=0.0)


def _to(x, dev, dtype=None):
    if isinstance(x, dict):
        return {k: v.to(dev, dtype) for k, v in x.items()}
    return x.to(dev, dtype)


def correctness(spec, dev: str, batch: int = 2) -> dict:
    """The default-optimized network (float32, on ``dev``) and, where the spec has
    input-independent updates, one with ``share_constants``, against the plain interpreter
    (``optimize="none"``, same state dict) in float64 on the CPU."""
    torch.manual_seed(0)
    net = tnnspec.compile(spec).eval()
    reference = tnnspec.compile(spec, optimize="none").eval().double()
    reference.load_state_dict(net.state_dict())  # (copied into float64)
    shared = tnnspec.compile(spec, optimize=SHARE).eval()
    shared.load_state_dict(net.state_dict())
    x = net.example_inputs(batch)
    with torch.no_grad():
        ref = outputs(reference, _to(x, "cpu", torch.float64))
        scale = max((v.abs().max().item() for v in ref.values()), default=1.0)
        row = {"max_abs_diff": max_diff(ref, outputs(net.to(dev), _to(x, dev))),
               "tolerance": RTOL * max(1.0, scale)}
        if shared.plan.constant:
            row["shared_maxdiff"] = max_diff(ref, outputs(shared.to(dev), _to(x, dev)))
    row["ok"] = max(row["max_abs_diff"], row.get("shared_maxdiff", 0.0)) <= row["tolerance"]
    return row


def cuda_time(fn, repeats: int, dev: str) -> float:
    if dev != "cuda":  # dry run of the script on CPU (--device cpu): wall clock
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
                    help="models also timed through torch.compile (default and mode='reduce-overhead')")
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
    results = []
    cols = [(f"eager_b{small}_ms", f"eager b{small}"), (f"compiled_b{small}_ms", f"compile b{small}"),
            (f"eager_b{large}_ms", f"eager b{large}"), (f"shared_b{large}_ms", f"shared b{large}"),
            (f"compiled_b{large}_ms", f"compile b{large}"), (f"reduce_overhead_b{large}_ms", f"r-o b{large}")]
    print(f"{'model':<28} {'max|dev-ref|':>13} {'shared':>9} {'tolerance':>9} {'ok':>5} "
          + " ".join(f"{c:>11}" for _, c in cols) + "  (ms)")
    for name in names:
        row = {"model": name}
        try:
            row.update(correctness(small_spec(zoo.load(name)), dev))
            torch.manual_seed(0)
            full = tnnspec.compile(zoo.load(name)).eval().to(dev)  # timings at the model's own resolution
            shared = tnnspec.compile(full.spec, optimize=SHARE).eval().to(dev)
            if shared.plan.constant:  # share_constants: input-independent updates once per batch
                shared.load_state_dict(full.state_dict())
            else:
                shared = None
            repeats = 5 if args.quick else 20
            for batch in (small, large):
                bx = full.example_inputs(batch)
                with torch.inference_mode():
                    row[f"eager_b{batch}_ms"] = cuda_time(lambda: full(bx), repeats, dev)
                    if batch == large and shared is not None:
                        row[f"shared_b{large}_ms"] = cuda_time(lambda: shared(bx), repeats, dev)
            del shared
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
                        row[key] = cuda_time(lambda: compiled(bx), repeats, dev)
            del full
        except Exception as exc:  # report and go on: one model must not hide the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:200]
            row["ok"] = False
        results.append(row)
        fmt = lambda k: f"{row[k]:.2f}" if isinstance(row.get(k), float) else "-"  # noqa: E731
        sci = lambda k: f"{row[k]:.2e}" if isinstance(row.get(k), float) else "-"  # noqa: E731
        print(f"{name:<28} {sci('max_abs_diff'):>13} {sci('shared_maxdiff'):>9} {sci('tolerance'):>9} "
              f"{str(row.get('ok', False)):>5} " + " ".join(f"{fmt(k):>11}" for k, _ in cols)
              + (f"  {row['error']}" if "error" in row else ""), flush=True)
    failed = sum(not r["ok"] for r in results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"{len(results) - failed}/{len(results)} models ok on {dev}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
