"""Benchmarks: compiled zoo models against the hand-written references, in one run.

    python tools/bench.py [--quick] [--json OUT.json] [--markdown OUT.md]

Each pair runs with the same weights (converted with tnnspec.zoo.convert_weights), the same
threads and inputs, in eval mode; times are medians of repeated runs after warm-up. Ratios
are compiled / reference (below 1: tnnspec is faster). Also: the gain of time-invariant
hoisting over a dense unroll on a ConvRNN-style net with a feedforward stem, and
validate+compile time of the Markov macaque graph and of generated graphs of growing size.
The last line is ``worst ratio compiled/reference: X.XX``. Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import tnnspec  # noqa: E402
from tnnspec import zoo  # noqa: E402


def median_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _pair(name: str, size: int | None):
    """(reference module, compiled network, forward functions) with shared weights."""
    from references.blt_ccn23 import BLTNet64
    from references.cornet import CORnetRT, CORnetS

    spec = zoo.load(name)
    if size is not None:
        inputs = {k: v.model_copy(update={"shape": [v.shape[0], size, size]}) for k, v in spec.inputs.items()}
        spec = spec.model_copy(update={"inputs": inputs})
    torch.manual_seed(0)
    if name == "cornet_rt":
        ref = CORnetRT(times=spec.time.steps)
        ref_fwd = lambda x: ref(x)  # noqa: E731  (final logits, as the peer returns)
    elif name == "cornet_s":
        ref = CORnetS()
        ref_fwd = lambda x: ref(x)  # noqa: E731
    elif name == "blt_net_64":
        ref = BLTNet64(interaction="multiplicative", times=spec.time.steps)
        ref_fwd = lambda x: ref(x)  # noqa: E731  (log-probabilities at every step)
    else:
        raise KeyError(name)
    net = tnnspec.compile(spec)
    net.load_state_dict(zoo.convert_weights(name, ref.state_dict(), check=False))
    return ref.eval(), net.eval(), ref_fwd, lambda x: net(x).readouts


def _loss(out) -> torch.Tensor:
    if isinstance(out, dict):
        return sum(v.float().square().mean() for v in out.values())
    if isinstance(out, (list, tuple)):
        return sum(v.float().square().mean() for v in out)
    return out.float().square().mean()


NETS_B8: dict = {}  # model -> (compiled net, forward seconds at batch 8), for the FLOP rate


def bench_pairs(quick: bool) -> list[dict]:
    cases = [("cornet_rt", 224, (1,) if quick else (1, 8)),
             ("cornet_s", 224, (1,) if quick else (1, 8)),
             ("blt_net_64", None, (4,) if quick else (4, 8))]
    repeats = 5 if quick else 10
    rows = []
    for name, size, batches in cases:
        ref, net, ref_fwd, net_fwd = _pair(name, size)
        for batch in batches:
            x = net.example_inputs(batch)
            row = {"model": name, "batch": batch}
            with torch.inference_mode():
                row["ref_fwd_s"] = median_time(lambda: ref_fwd(x), repeats)
                row["tnn_fwd_s"] = median_time(lambda: net_fwd(x), repeats)
                if name.startswith("cornet"):  # the CORnet references return the final logits only
                    row["tnn_fwd_last_s"] = median_time(lambda: net(x, readout_steps="last"), repeats)
                    row["fwd_last_ratio"] = row["tnn_fwd_last_s"] / row["ref_fwd_s"]
            if not (quick and name == "cornet_s"):
                row["ref_fwdbwd_s"] = median_time(lambda: _loss(ref_fwd(x)).backward(), max(3, repeats // 2), 1)
                row["tnn_fwdbwd_s"] = median_time(lambda: _loss(net_fwd(x)).backward(), max(3, repeats // 2), 1)
            row["fwd_ratio"] = row["tnn_fwd_s"] / row["ref_fwd_s"]
            if "ref_fwdbwd_s" in row:
                row["fwdbwd_ratio"] = row["tnn_fwdbwd_s"] / row["ref_fwdbwd_s"]
            rows.append(row)
            if batch == 8 and name.startswith("cornet"):
                NETS_B8[name] = (net, row["tnn_fwd_s"])
            print(f"  {name:<12} b{batch:<3} fwd {row['tnn_fwd_s'] * 1e3:8.1f} ms vs ref "
                  f"{row['ref_fwd_s'] * 1e3:8.1f} ms  ratio {row['fwd_ratio']:.2f}"
                  + (f" | last step only {row['fwd_last_ratio']:.2f}" if "fwd_last_ratio" in row else "")
                  + (f" | fwd+bwd ratio {row['fwdbwd_ratio']:.2f}" if "fwdbwd_ratio" in row else ""), flush=True)
    return rows


STEM_NET = """
tnnspec: "1.0"
name: stem_net
time: {steps: 12, default_delay: biological}
inputs: {image: {shape: [3, 64, 64]}}
areas:
  conv1: {level: 1, channels: 64, ops: [relu]}
  conv2: {level: 2, channels: 128, ops: [relu]}
  conv3: {level: 3, channels: 128, cell: {type: gru, kernel: 3}}
edges:
  - {type: feedforward, source: image, target: conv1, transform: [{conv: {kernel: 5, stride: 2}}]}
  - {type: feedforward, source: conv1, target: conv2, transform: [{conv: {kernel: 3}}]}
  - {type: feedforward, source: conv2, target: conv3, transform: [{pool: {type: max, kernel: 2}}, {conv: 128}]}
readouts: {logits: {source: conv3, head: [{pool: avg}, {linear: 10}]}}
"""


def _gain(spec, quick: bool, **off) -> tuple[float, float, object]:
    """(seconds optimised, seconds with the options in ``off`` turned off, optimised net)."""
    fast, plain = tnnspec.compile(spec).eval(), tnnspec.compile(spec, **off).eval()
    plain.load_state_dict(fast.state_dict())
    x = fast.example_inputs(8)
    with torch.inference_mode():
        return (median_time(lambda: fast(x), 3 if quick else 10),
                median_time(lambda: plain(x), 3 if quick else 10), fast)


def bench_hoisting(quick: bool) -> dict:
    t_h, t_d, hoisted = _gain(tnnspec.loads(STEM_NET), quick, hoist=False)
    row = {"hoisted_s": t_h, "dense_s": t_d, "speedup": t_d / t_h,
           "saved_updates": hoisted.plan.reused, "total_updates": hoisted.plan.work + hoisted.plan.reused}
    print(f"  stem net (static image, T=12, b8): dense {t_d * 1e3:.1f} ms, hoisted {t_h * 1e3:.1f} ms, "
          f"speedup {row['speedup']:.2f}x ({row['saved_updates']} of {row['total_updates']} updates reused)")
    movie = tnnspec.loads(STEM_NET.replace("{shape: [3, 64, 64]}", "{shape: [3, 64, 64], schedule: sequence}"))
    t_f, t_s, folded = _gain(movie, quick, fold=False)
    row.update(folded_s=t_f, stepwise_s=t_s, fold_speedup=t_s / t_f, folded_areas=sorted(folded.plan.folded))
    print(f"  stem net (sequence input, T=12, b8): step by step {t_s * 1e3:.1f} ms, time-folded "
          f"{t_f * 1e3:.1f} ms, speedup {row['fold_speedup']:.2f}x (folded: {', '.join(row['folded_areas'])})")
    return row


_MEMORY_PROBE = r"""
import resource, sys, torch, tnnspec
torch.manual_seed(0)
T, ckpt = int(sys.argv[1]), sys.argv[2] == "1"
net = tnnspec.compile(tnnspec.load(sys.argv[3]), checkpoint=ckpt)
x = net.example_inputs(8)
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
before = rss_mb()
net(x, steps=T).readouts["logits"].square().sum().backward()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(peak - before)
"""


def bench_memory() -> list[dict]:
    """Peak extra memory of forward+backward at T=4 and T=32, with and without checkpointing
    (each in a fresh process: peak RSS minus RSS before the forward pass)."""
    import subprocess

    rows = []
    graph = str(ROOT / "graphs" / "ventral4.yaml")
    for ckpt in (False, True):
        for T in (4, 32):
            out = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, str(T), str(int(ckpt)), graph],
                                 capture_output=True, text=True, cwd=ROOT)
            mb = float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")
            rows.append({"checkpoint": ckpt, "steps": T, "extra_mb": mb})
    for ckpt in (False, True):
        a, b = (next(r["extra_mb"] for r in rows if r["checkpoint"] == ckpt and r["steps"] == T) for T in (4, 32))
        print(f"  ventral4 b8 fwd+bwd, checkpoint={ckpt}: T=4 {a:.0f} MB, T=32 {b:.0f} MB "
              f"(ratio {b / a:.2f})")
    return rows


def bench_flops(pairs_net) -> dict:
    """Achieved GFLOP/s of compiled CORnet-RT inference at batch 8 against a float32 GEMM."""
    from torch.utils.flop_counter import FlopCounterMode

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    gemm_s = median_time(lambda: a @ b, 5)
    gemm = 2 * n ** 3 / gemm_s / 1e9
    rows = {"gemm_gflops": gemm}
    for name, (net, seconds) in pairs_net.items():
        x = net.example_inputs(8)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            net(x)
        flops = counter.get_total_flops()
        rows[name] = {"gflop": flops / 1e9, "gflops": flops / seconds / 1e9,
                      "fraction_of_gemm": flops / seconds / 1e9 / gemm}
        print(f"  {name} b8 inference: {flops / 1e9:.1f} GFLOP in {seconds * 1e3:.0f} ms = "
              f"{flops / seconds / 1e9:.0f} GFLOP/s, {100 * rows[name]['fraction_of_gemm']:.0f}% of the "
              f"{gemm:.0f} GFLOP/s float32 GEMM ({n}^3)")
    return rows


def bench_torch_compile(names=("cornet_rt",), batch: int = 8) -> list[dict]:
    """Both sides through torch.compile (what a savvy user would do); compile time excluded."""
    rows = []
    for name in names:
        ref, net, ref_fwd, net_fwd = _pair(name, 224)
        x = net.example_inputs(batch)
        row = {"model": name, "batch": batch}
        for side, module, fwd in (("ref", ref, ref_fwd), ("tnn", net, net_fwd)):
            torch._dynamo.reset()
            compiled = torch.compile(module)
            # the same work on both sides: logits at every step (a reference returning only the
            # last step lets inductor drop the area updates that cannot reach it)
            call = (lambda: torch.stack(compiled(x, return_steps=True).step_logits)) if side == "ref" \
                else (lambda: compiled(x).readouts)
            t0 = time.perf_counter()
            with torch.inference_mode():
                call()
                row[f"{side}_compile_s"] = time.perf_counter() - t0
                row[f"{side}_fwd_s"] = median_time(call, 10)
        row["ratio"] = row["tnn_fwd_s"] / row["ref_fwd_s"]
        rows.append(row)
        print(f"  {name} b{batch} torch.compile: tnnspec {row['tnn_fwd_s'] * 1e3:.0f} ms vs reference "
              f"{row['ref_fwd_s'] * 1e3:.0f} ms, ratio {row['ratio']:.2f} (compile {row['tnn_compile_s']:.0f} s "
              f"vs {row['ref_compile_s']:.0f} s)")
    return rows


def _generated_graph(n_edges: int) -> str:
    n_areas = max(4, n_edges // 4)
    lines = ['tnnspec: "1.0"', f"name: gen{n_edges}", "time: {steps: 4}",
             "inputs: {x: {shape: [4, 8, 8]}}", "areas:"]
    lines += [f"  A{i}: {{level: {i + 1}, channels: 4}}" for i in range(n_areas)]
    lines.append("edges:")
    lines.append("  - {type: feedforward, source: x, target: A0}")
    count = 1
    i = 0
    while count < n_edges:
        a, b = i % n_areas, (i * 7 + 3) % n_areas
        if a < b:
            lines.append(f"  - {{type: feedforward, source: A{a}, target: A{b}, name: e{count}}}")
        elif a > b:
            lines.append(f"  - {{type: feedback, source: A{a}, target: A{b}, name: e{count}}}")
        else:
            lines.append(f"  - {{type: lateral, source: A{a}, target: A{a}, name: e{count}}}")
        count += 1
        i += 1
    for j in range(1, n_areas):  # keep every area reachable
        lines.append(f"  - {{type: feedforward, source: A{j - 1}, target: A{j}, name: chain{j}}}")
    return "\n".join(lines) + "\n"


def bench_compile_times(quick: bool) -> list[dict]:
    rows = []
    macaque = zoo.path("macaque_markov2014")
    t0 = time.perf_counter()
    spec = tnnspec.load(macaque)
    t1 = time.perf_counter()
    tnnspec.compile(spec)
    t2 = time.perf_counter()
    rows.append({"graph": "macaque_markov2014", "edges": len(spec.edges), "validate_s": t1 - t0,
                 "compile_s": t2 - t1})
    sizes = (100, 1000) if quick else (100, 1000, 10000)
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"gen{n}.yaml"
            path.write_text(_generated_graph(n))
            t0 = time.perf_counter()
            spec = tnnspec.load(path)
            t1 = time.perf_counter()
            tnnspec.compile(spec)
            t2 = time.perf_counter()
            rows.append({"graph": f"generated-{n}", "edges": len(spec.edges), "validate_s": t1 - t0,
                         "compile_s": t2 - t1})
    for r in rows:
        print(f"  {r['graph']:<20} {r['edges']:>6} edges: validate {r['validate_s']:.3f} s, "
              f"compile {r['compile_s']:.3f} s")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="under 2 minutes on 2 cores")
    ap.add_argument("--json", help="write all results as JSON")
    ap.add_argument("--torch-compile", action="store_true",
                    help="also compare both sides through torch.compile (minutes of compile time on a CPU)")
    args = ap.parse_args()
    torch.manual_seed(0)
    info = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(), "processor": platform.processor()}
    print(f"tnnspec benchmarks {info['date']}: torch {info['torch']}, {info['threads']} threads, {info['machine']}")
    print("compiled vs hand-written reference (same weights, eval):")
    pairs = bench_pairs(args.quick)
    print("time-invariant hoisting and time folding vs a dense unroll:")
    hoist = bench_hoisting(args.quick)
    print("validate + compile:")
    compile_rows = bench_compile_times(args.quick)
    flops = memory = None
    if not args.quick:
        print("arithmetic rate:")
        flops = bench_flops(NETS_B8)
        print("memory with per-step activation checkpointing:")
        memory = bench_memory()
    compiled_rows = None
    if args.torch_compile:
        print("through torch.compile:")
        compiled_rows = bench_torch_compile()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_mb:.0f} MB")
    ratios = [r[k] for r in pairs for k in ("fwd_ratio", "fwdbwd_ratio") if k in r]
    worst = max(ratios)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "pairs": pairs, "hoisting": hoist,
                                               "compile": compile_rows, "flops": flops, "memory": memory,
                                               "torch_compile": compiled_rows,
                                               "peak_rss_mb": peak_mb}, indent=2, default=str))
    print(f"worst ratio compiled/reference: {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
