"""Benchmarks: compiled zoo models against the hand-written references, in one run.

    python tools/bench.py [--quick] [--json OUT.json] [--torch-compile]

Each pair runs with the same weights (converted with tnnspec.zoo.convert_weights), the same
threads and inputs, in eval mode; times are medians of repeated runs after warm-up, the
variants timed in alternating rounds. Ratios are compiled / reference (below 1: tnnspec is
faster) of the medians; in brackets, the quartiles of the ratios of single rounds (the noise of
this run). They are for the call that returns what the reference returns (CORnet: the last
step's logits, ``readout_steps="last"``; BLT and the ConvRNN gru_shallow: every step), with the
default passes, with none (the plain interpreter) and with the passes equal to float rounding
(``packed_weights_fast``, ``fuse_batchnorm``, ``share_constants``); the every-step ratio of the
CORnets is reported too. No variant keeps anything computed from one call to the next (only
packed and folded weights, behind a bitwise check), so there is one figure per variant. Also:
what each pass gains on each pair (``--passes``: the default without it, or with it added,
against the default), the gain of time-invariant hoisting over a dense unroll on a
ConvRNN-style net with a feedforward stem, FLOP rates against a GEMM, memory with activation
checkpointing, and validate+compile time of the Markov macaque graph and of generated graphs of
growing size.
The last line is ``worst ratio compiled/reference: X.XX``. Timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import json
import os
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


def interleaved_rounds(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each function in each round, timed in alternating rounds (a, b, c, a, b, c, ...),
    so that slow drift on a shared machine affects every variant alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    return times


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each function, timed in alternating rounds (:func:`interleaved_rounds`)."""
    return {k: statistics.median(v) for k, v in interleaved_rounds(fns, repeats, warmup).items()}


def round_ratio_spread(times: dict[str, list[float]], variant: str, base: str = "ref") -> tuple[float, float]:
    """Lowest and highest quartile of ``variant / base`` within one round (paired, as the rounds
    alternate): how far this machine's noise moves a ratio within one run."""
    ratios = sorted(a / b for a, b in zip(times[variant], times[base]))
    if len(ratios) < 4:
        return ratios[0], ratios[-1]
    q = statistics.quantiles(ratios, n=4)
    return q[0], q[2]


FAST = tuple(p for p in tnnspec.compile.DEFAULT if p != "packed_weights") + (
    "packed_weights_fast", "fuse_batchnorm", "share_constants")  # the passes equal to float rounding


def _without(*names) -> tuple[str, ...]:
    return tuple(p for p in tnnspec.compile.DEFAULT if p not in names)


def _pair(name: str, size: int | None, optimize="default"):
    """(reference module, compiled network, reference forward, the call arguments that make the
    network return what the reference returns), with shared weights."""
    from references.blt_ccn23 import BLTNet64
    from references.convrnn import GRUShallow
    from references.cornet import CORnetRT, CORnetS

    spec = zoo.load(name)
    if size is not None:
        inputs = {k: v.model_copy(update={"shape": [v.shape[0], size, size]}) for k, v in spec.inputs.items()}
        spec = spec.model_copy(update={"inputs": inputs})
    torch.manual_seed(0)
    if name == "cornet_rt":
        ref = CORnetRT(times=spec.time.steps)
        same = {"readout_steps": "last"}  # the peer returns the final logits only
    elif name == "cornet_s":
        ref = CORnetS()
        same = {"readout_steps": "last"}
    elif name == "blt_net_64":
        ref = BLTNet64(interaction="multiplicative", times=spec.time.steps)
        same = {}  # log-probabilities at every step
    elif name == "convrnn_shallow_gru":
        ref = GRUShallow(times=spec.time.steps)
        same = {}  # logits at every step
    else:
        raise KeyError(name)
    net = tnnspec.compile(spec, optimize=optimize)
    net.load_state_dict(zoo.convert_weights(name, ref.state_dict(), check=False))
    return ref.eval(), net.eval(), (lambda x: ref(x)), same


def _loss(out) -> torch.Tensor:
    if isinstance(out, tnnspec.compile.Run):
        out = out.readouts
    if isinstance(out, dict):
        return sum(v.float().square().mean() for v in out.values())
    if isinstance(out, (list, tuple)):
        return sum(v.float().square().mean() for v in out)
    return out.float().square().mean()


#: The model pairs: image size (None: the zoo graph's own) and the batch sizes of a full run; the
#: last batch is also the one of the memory and torch.compile comparisons. The ConvRNN runs at
#: 112 px, batch 4: at 224 px a batch-8 forward of its reference takes ~40 s on 2 cores.
PAIRS = {"cornet_rt": (224, (1, 8)), "cornet_s": (224, (1, 8)), "blt_net_64": (None, (4, 8)),
         "convrnn_shallow_gru": (112, (1, 4))}

NETS_B8: dict = {}  # model -> (compiled nets, the same-output call, forward seconds), for the FLOP rate


def bench_pairs(quick: bool) -> list[dict]:
    """Forward (inference mode) and forward+backward against the reference. ``tnn``: the call that
    returns what the reference returns (CORnet: the last step's logits; BLT, ConvRNN: every step),
    default passes; ``plain``: the same with no pass (forward only); ``all``: readouts at every
    step; ``opt``: as ``tnn`` with the passes that are equal to float rounding — ``packed_weights_fast``,
    ``fuse_batchnorm`` (inference only) and ``share_constants``; ``share``: the default plus
    ``share_constants``, forward+backward (for models with input-independent updates)."""
    cases = [(name, size, batches[:1] if quick else batches) for name, (size, batches) in PAIRS.items()]
    repeats = 5 if quick else 10
    rows = []
    for name, size, batches in cases:
        ref, net, ref_fwd, same = _pair(name, size)
        opt = _pair(name, size, FAST)[1]
        plain = _pair(name, size, "none")[1]
        share = _pair(name, size, (*tnnspec.compile.DEFAULT, "share_constants"))[1]
        share = share if share.plan.constant else None
        for batch in batches:
            x = net.example_inputs(batch)
            row = {"model": name, "batch": batch, "same_outputs": same or "every step"}
            fwd = {"ref": lambda: ref_fwd(x), "tnn": lambda: net(x, **same), "opt": lambda: opt(x, **same)}
            if same:
                fwd["all"] = lambda: net(x)
            rounds = {}
            with torch.inference_mode():
                rounds["fwd"] = interleaved_rounds({**fwd, "plain": lambda: plain(x, **same)}, repeats)
            if not (quick and name in ("cornet_s", "convrnn_shallow_gru")):
                if share is not None:
                    fwd["share"] = lambda: share(x, **same)
                bwd = {k: (lambda f=f: _loss(f()).backward()) for k, f in fwd.items() if k in ("ref", "tnn", "share")}
                fwd.pop("share", None)
                rounds["fwdbwd"] = interleaved_rounds(bwd, max(3, repeats // 2))
            for kind, times in rounds.items():
                row.update({f"{k}_{kind}_s": statistics.median(v) for k, v in times.items()})
                for variant in ("tnn", "plain", "all", "opt", "share"):
                    if variant in times:
                        row[f"{variant}_{kind}_ratio"] = row[f"{variant}_{kind}_s"] / row[f"ref_{kind}_s"]
                row[f"tnn_{kind}_round_ratios"] = round_ratio_spread(times, "tnn")
            rows.append(row)
            if batch == 8 and name.startswith("cornet"):
                NETS_B8[name] = (net, same, row["tnn_fwd_s"], row["opt_fwd_s"])
            r = lambda k: f"{row[k]:.2f}" if k in row else "-"  # noqa: E731
            q = lambda k: "[{:.2f}-{:.2f}]".format(*row[k]) if k in row else ""  # noqa: E731
            print(f"  {name:<12} b{batch:<3} fwd {row['tnn_fwd_s'] * 1e3:8.1f} ms vs ref {row['ref_fwd_s'] * 1e3:8.1f} ms"
                  f"  ratio {r('tnn_fwd_ratio')} {q('tnn_fwd_round_ratios')} (no pass {r('plain_fwd_ratio')}, rounding-equal passes "
                  f"{r('opt_fwd_ratio')}, every step {r('all_fwd_ratio')}) | fwd+bwd ratio {r('tnn_fwdbwd_ratio')} "
                  f"{q('tnn_fwdbwd_round_ratios')} (share_constants {r('share_fwdbwd_ratio')})", flush=True)
    return rows


STEM_NET = """
tnnspec: "1.1"
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


def _gain(spec, quick: bool, off: tuple[str, ...]) -> tuple[float, float, object]:
    """(seconds with the default passes, seconds without the passes ``off``, the default net)."""
    fast, plain = tnnspec.compile(spec).eval(), tnnspec.compile(spec, optimize=_without(*off)).eval()
    plain.load_state_dict(fast.state_dict())
    x = fast.example_inputs(8)
    with torch.inference_mode():
        t = interleaved({"fast": lambda: fast(x), "plain": lambda: plain(x)}, 3 if quick else 10)
    return t["fast"], t["plain"], fast


def bench_hoisting(quick: bool) -> dict:
    t_h, t_d, hoisted = _gain(tnnspec.loads(STEM_NET), quick, ("hoist",))
    row = {"hoisted_s": t_h, "dense_s": t_d, "speedup": t_d / t_h,
           "saved_updates": hoisted.plan.reused, "total_updates": hoisted.plan.work + hoisted.plan.reused}
    print(f"  stem net (static image, T=12, b8): dense {t_d * 1e3:.1f} ms, hoisted {t_h * 1e3:.1f} ms, "
          f"speedup {row['speedup']:.2f}x ({row['saved_updates']} of {row['total_updates']} updates reused)")
    return row


def bench_passes(quick: bool) -> list[dict]:
    """What each pass gains, on each model pair's first batch (forward, inference mode, the call
    that returns what the reference returns): ``gain`` = seconds of the default without the pass
    (or, for a pass not in the default, of the default) / seconds with it. Above 1: the pass helps."""
    rows = []
    names = list(tnnspec.compile.PASSES)
    for model, (size, batches) in PAIRS.items():
        batch = batches[0]
        _, net, _, same = _pair(model, size)
        variants = {"default": net}
        for p in names:
            if p == "packed_weights_fast":
                optimize = (*_without("packed_weights"), p)
            else:
                optimize = _without(p) if p in tnnspec.compile.DEFAULT else (*tnnspec.compile.DEFAULT, p)
            variants[p] = _pair(model, size, optimize)[1]
        x = net.example_inputs(batch)
        with torch.inference_mode():
            times = interleaved({k: (lambda v=v: v(x, **same)) for k, v in variants.items()}, 3 if quick else 7)
        row = {"model": model, "batch": batch, "default_s": times["default"]}
        for p in names:
            with_p, without_p = ((times["default"], times[p]) if p in tnnspec.compile.DEFAULT
                                 else (times[p], times["default"]))
            row[p] = without_p / with_p
        rows.append(row)
        print(f"  {model:<20} b{batch}: " + ", ".join(f"{p} {row[p]:.2f}" for p in names), flush=True)
    return rows


_STATUS_MB = r"""
def status_mb(key):  # VmRSS now / VmHWM (peak); both start afresh at exec, unlike ru_maxrss
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":")) / 1024
"""

_MEMORY_PROBE = _STATUS_MB + r"""
import resource, sys, torch, tnnspec
torch.manual_seed(0)
T, ckpt = int(sys.argv[1]), {"0": False, "1": True}.get(sys.argv[2], sys.argv[2])
net = tnnspec.compile(tnnspec.load(sys.argv[3]), checkpoint=ckpt)
x = net.example_inputs(8)
net(x, steps=2).readouts["logits"].square().sum().backward()  # one-off allocations (thread pools, caches)
net.zero_grad(set_to_none=False)
with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
    f.write("5")
before = status_mb("VmRSS")
net(x, steps=T).readouts["logits"].square().sum().backward()
print(status_mb("VmHWM") - before)
"""


def _probe_mb(script: str, *args) -> float:
    """Run a memory probe in a fresh process (tensors over 64 KiB are mmapped and unmapped when
    freed, so RSS follows live memory); its last output line in MB, NaN if it failed."""
    import subprocess

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    out = subprocess.run([sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True,
                         cwd=ROOT, env=env)
    return float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else float("nan")


def bench_memory() -> list[dict]:
    """Peak extra memory of forward+backward at T=4 and T=32, with and without checkpointing
    (each in a fresh process: peak RSS (VmHWM) minus RSS before the forward pass)."""
    rows = []
    graph = str(ROOT / "graphs" / "ventral4.yaml")
    for ckpt in (False, True, "recursive"):
        for T in (4, 32):
            mb = _probe_mb(_MEMORY_PROBE, T, ckpt if isinstance(ckpt, str) else int(ckpt), graph)
            rows.append({"checkpoint": ckpt, "steps": T, "extra_mb": mb})
    for ckpt in (False, True, "recursive"):
        a, b = (next(r["extra_mb"] for r in rows if r["checkpoint"] == ckpt and r["steps"] == T) for T in (4, 32))
        print(f"  ventral4 b8 fwd+bwd, checkpoint={ckpt}: T=4 {a:.0f} MB, T=32 {b:.0f} MB "
              f"(ratio {b / a:.2f})")
    return rows


_PAIR_MEMORY_PROBE = _STATUS_MB + r"""
import sys, torch
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tools", sys.argv[1] + "/tests"]
import bench
name, size, batch, side, kind = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
ref, net, ref_fwd, same = bench._pair(name, None if size == "None" else int(size))
x = net.example_inputs(batch)
model, fn = (ref, lambda: ref_fwd(x)) if side == "ref" else (net, lambda: net(x, **same))
def call():
    if kind == "fwd":
        with torch.inference_mode():
            fn()
    else:
        bench._loss(fn()).backward()
call()  # one-off allocations (thread pools, packed weights, kept constants, gradient buffers)
model.zero_grad(set_to_none=False)
with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM to the current RSS
    f.write("5")
before = status_mb("VmRSS")
call()
print(status_mb("VmHWM") - before)
"""

def bench_pair_memory() -> list[dict]:
    """Peak extra memory of one call of each model pair (forward in inference mode, and
    forward+backward), the reference against tnnspec's default call that returns the same: each in
    a fresh process, after a warm-up call, peak RSS (VmHWM) minus RSS before the call; the
    largest batch of ``PAIRS``."""
    rows = []
    for name, (size, batches) in PAIRS.items():
        row = {"model": name, "batch": batches[-1]}
        for kind in ("fwd", "fwdbwd"):
            for side in ("ref", "tnn"):
                row[f"{side}_{kind}_mb"] = _probe_mb(_PAIR_MEMORY_PROBE, ROOT, name, size, batches[-1], side, kind)
        rows.append(row)
        print(f"  {name:<20} b{row['batch']}: forward {row['ref_fwd_mb']:.0f} MB (reference) vs {row['tnn_fwd_mb']:.0f} MB, "
              f"forward+backward {row['ref_fwdbwd_mb']:.0f} vs {row['tnn_fwdbwd_mb']:.0f} MB", flush=True)
    return rows


def bench_flops(pairs_net) -> dict:
    """Achieved GFLOP/s of compiled CORnet-RT inference at batch 8 against a float32 GEMM."""
    from torch.utils.flop_counter import FlopCounterMode

    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    gemm_s = median_time(lambda: a @ b, 5)
    gemm = 2 * n ** 3 / gemm_s / 1e9
    rows = {"gemm_gflops": gemm}
    for name, (net, same, seconds, opt_seconds) in pairs_net.items():
        x = net.example_inputs(8)
        # FLOPs of the work the timed calls do, counted on unpacked copies (FlopCounterMode does
        # not see oneDNN's packed convolutions, which the default uses too); the options' run
        # computes the input-independent updates at batch 1. FlopCounterMode's module hooks would
        # turn sharing and the zero-drive shortcut off, so the network is told there are none.
        from tnnspec.compile import torch_compat

        plain = tnnspec.compile(net.spec, optimize=_without("packed_weights")).eval()
        shared = tnnspec.compile(net.spec, optimize=(*_without("packed_weights"), "share_constants")).eval()
        counts = []
        hooks_check = torch_compat.forward_hooked
        torch_compat.forward_hooked = lambda module: False
        try:
            for copy in (plain, shared):
                copy.load_state_dict(net.state_dict())
                with torch.inference_mode():
                    copy(x, **same)
                    with FlopCounterMode(display=False) as counter:
                        copy(x, **same)
                counts.append(counter.get_total_flops())
        finally:
            torch_compat.forward_hooked = hooks_check
        flops, opt_flops = counts
        rows[name] = {"gflop": flops / 1e9, "gflops": flops / seconds / 1e9,
                      "fraction_of_gemm": flops / seconds / 1e9 / gemm, "opt_gflop": opt_flops / 1e9,
                      "opt_gflops": opt_flops / opt_seconds / 1e9,
                      "opt_fraction_of_gemm": opt_flops / opt_seconds / 1e9 / gemm}
        print(f"  {name} b8 inference ({same or 'every step'}): {flops / 1e9:.1f} GFLOP in {seconds * 1e3:.0f} ms = "
              f"{flops / seconds / 1e9:.0f} GFLOP/s, {100 * rows[name]['fraction_of_gemm']:.0f}% of the "
              f"{gemm:.0f} GFLOP/s float32 GEMM ({n}^3); options {opt_flops / 1e9:.1f} GFLOP in "
              f"{opt_seconds * 1e3:.0f} ms, {100 * rows[name]['opt_fraction_of_gemm']:.0f}%")
    return rows


def bench_torch_compile(names=tuple(PAIRS)) -> list[dict]:
    """Both sides through torch.compile (what a savvy user would do); compile time excluded.
    Outputs: the logits at every step (the same work on both sides), and for the CORnets the
    final logits only (what their references return; inductor then drops the reference's
    updates that cannot reach them, and tnnspec's plan prunes them with
    ``readout_steps="last"``). CORnet-S runs one step: final only. The largest batch of ``PAIRS``."""
    rows = []
    for name in names:
        size, batches = PAIRS[name]
        batch = batches[-1]
        ref, net, ref_fwd, same = _pair(name, size)
        x = net.example_inputs(batch)
        outputs = {"cornet_rt": ("every step", "final"), "cornet_s": ("final",)}.get(name, ("every step",))
        for output in outputs:
            row = {"model": name, "batch": batch, "output": output}
            torch._dynamo.reset()
            calls = {}
            for side, module in (("ref", ref), ("tnn", net)):
                compiled = torch.compile(module)
                if output == "every step" and name == "cornet_rt" and side == "ref":
                    call = lambda c=compiled: torch.stack(c(x, return_steps=True).step_logits)  # noqa: E731
                elif output == "every step":
                    call = (lambda c=compiled: c(x)) if side == "ref" else (lambda c=compiled: c(x).readouts)
                else:
                    call = (lambda c=compiled: c(x)) if side == "ref" else (lambda c=compiled: c(x, **same).readouts)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    call()
                row[f"{side}_compile_s"] = time.perf_counter() - t0
                calls[side] = call
            with torch.inference_mode():
                row.update({f"{k}_fwd_s": v for k, v in interleaved(calls, 10).items()})
            row["ratio"] = row["tnn_fwd_s"] / row["ref_fwd_s"]
            rows.append(row)
            print(f"  {name} b{batch} torch.compile ({output}): tnnspec {row['tnn_fwd_s'] * 1e3:.0f} ms vs "
                  f"reference {row['ref_fwd_s'] * 1e3:.0f} ms, ratio {row['ratio']:.2f} "
                  f"(compile {row['tnn_compile_s']:.0f} s vs {row['ref_compile_s']:.0f} s)", flush=True)
    return rows


def _generated_graph(n_edges: int) -> str:
    n_areas = max(4, n_edges // 4)
    lines = ['tnnspec: "1.1"', f"name: gen{n_edges}", "time: {steps: 4}",
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
    """Validate and compile times. The objects the benchmark already holds (models, references)
    are moved out of the garbage collector's view first (``gc.freeze``), so its full collections
    do not charge their traversal to tnnspec."""
    import gc

    gc.collect()
    gc.freeze()
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
    ap.add_argument("--torch-compile-only", nargs="*", metavar="MODEL",
                    help="only the torch.compile comparison, of these models (default: all four)")
    ap.add_argument("--passes", action="store_true", help="also measure what each pass gains on each pair")
    ap.add_argument("--passes-only", action="store_true", help="only measure what each pass gains")
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.passes_only:
        rows = bench_passes(args.quick)
        if args.json:
            Path(args.json).write_text(json.dumps({"passes": rows}, indent=2, default=str))
        return 0
    if args.torch_compile_only is not None:
        rows = bench_torch_compile(tuple(args.torch_compile_only) or tuple(PAIRS))
        if args.json:
            Path(args.json).write_text(json.dumps({"torch_compile": rows}, indent=2, default=str))
        return 0
    info = {"date": time.strftime("%Y-%m-%d"), "python": platform.python_version(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "machine": platform.machine(), "processor": platform.processor()}
    print(f"tnnspec benchmarks {info['date']}: torch {info['torch']}, {info['threads']} threads, {info['machine']}")
    print("compiled vs hand-written reference (same weights, eval):")
    pairs = bench_pairs(args.quick)
    print("time-invariant hoisting vs a dense unroll:")
    hoist = bench_hoisting(args.quick)
    pass_rows = None
    if args.passes:
        print("what each pass gains (time without / time with; forward, first batch):")
        pass_rows = bench_passes(args.quick)
    print("validate + compile:")
    compile_rows = bench_compile_times(args.quick)
    flops = memory = pair_memory = None
    if not args.quick:
        print("arithmetic rate:")
        flops = bench_flops(NETS_B8)
        print("memory with per-step activation checkpointing:")
        memory = bench_memory()
        print("peak extra memory of one call (fresh processes):")
        pair_memory = bench_pair_memory()
    compiled_rows = None
    if args.torch_compile:
        print("through torch.compile:")
        compiled_rows = bench_torch_compile()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak_mb:.0f} MB")
    worst = max(r[k] for r in pairs for k in ("tnn_fwd_ratio", "tnn_fwdbwd_ratio") if k in r)
    worst_opt = max(r["opt_fwd_ratio"] for r in pairs)
    if args.json:
        Path(args.json).write_text(json.dumps({"info": info, "pairs": pairs, "hoisting": hoist,
                                               "compile": compile_rows, "flops": flops, "memory": memory,
                                               "pair_memory": pair_memory, "passes": pass_rows,
                                               "torch_compile": compiled_rows,
                                               "peak_rss_mb": peak_mb}, indent=2, default=str))
    print(f"worst forward ratio with the rounding-equal passes: {worst_opt:.2f}")
    print(f"worst ratio compiled/reference: {worst:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
