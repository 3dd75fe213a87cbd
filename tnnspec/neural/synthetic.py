"""Recordings whose answer is known: a teacher network "recorded" through random sparse linear maps.

The teacher is any spec compiled with fixed random weights (default: ``graphs/teacher.yaml`` in
this package, a V1 -> V4 -> IT network with strong local recurrence and IT -> V4 feedback, the
stimulus shown for 100 ms). For each recorded region, neuron ``n`` is

    y_n(s, bin) = baseline_n + sum_{u in U_n} w_nu * a_u(s, bin)          (the signal)
    trial r:  y_n(s, bin) + eps,  eps ~ N(0, sigma_n^2) independent over trials, stimuli and bins

where ``a_u(s, bin)`` is unit ``u`` of the region's area binned with the region's latency
(:mod:`tnnspec.neural.timemap`), ``U_n`` is ``fan_in`` units drawn at random and ``w_nu ~ N(0,
1/fan_in)``. The noise is set per neuron and bin so that the reliability of the trial average over
``repetitions`` trials, ``var_s / (var_s + sigma^2 / R)``, equals ``reliability`` in every bin
after the latency, ``var_s`` being the signal's variance over stimuli in that bin — a known noise
ceiling. Where the teacher's signal has all but died out (``var_s`` below ``floor`` times the
neuron's mean over bins), the noise stays at that floor, so those bins are honestly unreliable.
Bins before the latency carry no stimulus signal (the teacher is at rest there) and get the
noise of the neuron's mean signal variance.

The teacher's weights are He-normal with zero biases; its lateral edges are rescaled to operator
norm ``recurrence`` (default 2.5) and feedback edges to ``feedback`` (0.5). Through the ReLUs the
effective gain is far lower than the operator norm: with the default teacher and seed, the
stimulus-driven variance of V4 and IT falls by about half per 10 ms step after the stimulus goes
off (measured: V4 0.063 -> 0.033 -> 0.010 -> 0.002 at 0, 10, 30 and 60 ms after offset), so the
bins after the stimulus are carried by recurrence alone, and the activity never explodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

TEACHER = "teacher.yaml"


def teacher_spec(stimulus_ms: float | None = 100.0):
    """The default teacher spec (a package file, validated like any graph). ``stimulus_ms``: how
    long the image is shown (``None``: for the whole window, a static input)."""
    from .. import loads

    text = resources.files("tnnspec.neural").joinpath("graphs", TEACHER).read_text(encoding="utf-8")
    old = "schedule: {type: on_off, start: 0, stop: 10, blank: 0.0}"
    assert old in text
    if stimulus_ms is None:
        text = text.replace(old, "schedule: {type: static}")
    elif stimulus_ms != 100.0:
        text = text.replace(old, f"schedule: {{type: on_off, start: 0, stop: {math.ceil(stimulus_ms / 10)}, blank: 0.0}}")
    return loads(text, file=f"tnnspec/neural/graphs/{TEACHER}")


def _operator_norm(module: torch.nn.Module, shape, iterations: int = 50, seed: int = 0) -> float:
    """Largest singular value of the linear part ``x -> module(x) - module(0)`` on inputs of
    ``shape`` [1, ...] (power iteration on J^T J)."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(shape, generator=g)
    zero = module(torch.zeros(shape)).detach()
    sigma = 0.0
    for _ in range(iterations):
        v = (v / v.norm()).requires_grad_(True)
        out = module(v) - zero
        (jtj,) = torch.autograd.grad(0.5 * out.pow(2).sum(), v)
        sigma = float(out.detach().norm())
        v = jtj.detach()
    return sigma


def make_teacher(spec=None, *, seed: int = 0, recurrence: float = 2.5, feedback: float = 0.5):
    """The teacher network: ``spec`` (default :func:`teacher_spec`) compiled with weights drawn
    from ``seed`` (He-normal weights, zero biases), lateral edges scaled to operator norm ``recurrence`` and feedback edges to
    ``feedback`` (``None`` leaves them as drawn). Evaluation mode, no gradients needed."""
    import tnnspec

    spec = teacher_spec() if spec is None else spec
    torch.manual_seed(seed)
    net = tnnspec.compile(spec).eval()
    plan = net.plan_for(None)
    shapes = plan.shapes.output
    with torch.no_grad():
        for p in net.parameters():  # He-normal weights, zero biases: signals keep their scale
            if p.dim() > 1:
                p.normal_(0.0, (2.0 / (p[0].numel())) ** 0.5)
            else:
                p.zero_()
        for i, e in enumerate(spec.edges):
            target = {"lateral": recurrence, "feedback": feedback}.get(e.type)
            if target is None or e.source not in shapes:
                continue
            module = net.edges[plan.edge_names[i]]
            with torch.enable_grad():
                sigma = _operator_norm(module, (1, *shapes[e.source]), seed=seed)
            if sigma > 0:
                for p in module.parameters():
                    if p.dim() > 1:  # weights, not biases
                        p.mul_(target / sigma)
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@dataclass
class Synthetic:
    """What :func:`synthetic_recordings` made: the recordings, the stimuli and the truth."""

    recordings: object  # xarray.DataArray (presentation x neuroid x time_bin)
    images: torch.Tensor  # [S, 1, H, W]
    stimulus_id: list[str]
    labels: np.ndarray  # digit class of each stimulus (for a task loss)
    teacher: object  # the teacher Network
    truth: dict = field(default_factory=dict)  # per region: area, latency_ms, units, weights, sigma, reliability

    def save(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``recordings.nc``, ``stimuli.npz`` (images, stimulus_id, labels), and the teacher:
        ``teacher.yaml`` and its weights ``teacher.safetensors`` (``tnnspec fit teacher.yaml
        --checkpoint teacher.safetensors`` maps the teacher onto itself)."""
        from .. import dumps
        from ..train import checkpoint as ckpt
        from .recordings import save_recordings

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        spec = self.teacher.spec
        ckpt._atomic(out / "teacher.yaml", lambda tmp: Path(tmp).write_text(dumps(spec), encoding="utf-8"))
        ckpt._save_tensors(out / "teacher.safetensors",
                           {k: v.detach().contiguous() for k, v in self.teacher.state_dict().items()},
                           {"spec_hash": ckpt.spec_hash(spec)})
        rec = out / "recordings.nc"
        save_recordings(self.recordings, rec)
        stim = out / "stimuli.npz"
        tmp = out / ".stimuli.tmp.npz"
        np.savez(tmp, images=self.images.numpy(), stimulus_id=np.array(self.stimulus_id), labels=self.labels)
        tmp.replace(stim)
        return rec, stim


def synthetic_recordings(teacher=None, *, n_stimuli: int = 300, neurons: dict[str, int] | None = None,
                         repetitions: int = 6, reliability: float = 0.8, fan_in: int = 8,
                         bins: np.ndarray | None = None, latency_ms: dict[str, float] | None = None,
                         baseline: float = 1.0, floor: float = 0.01, seed: int = 0,
                         image_seed: int = 0) -> Synthetic:
    """Record ``teacher`` (default :func:`make_teacher`) on ``n_stimuli`` digit images (scikit-learn's
    digits at the input's size, in [0, 1]). ``neurons``: region -> count (default: 40 per region
    of the teacher spec's ``neural.regions``). ``bins`` [B, 2] ms and ``latency_ms`` default to the
    teacher spec's ``neural`` section."""
    from ..train.data import load_images
    from .activations import area_activity
    from .recordings import make_recordings
    from .timemap import TimeMap, bin_activity, equal_bins

    if not 0 < reliability < 1:
        raise ValueError(f"reliability must be in (0, 1), got {reliability}")
    if repetitions < 2:
        raise ValueError("repetitions must be at least 2 (the noise ceiling needs two halves)")
    teacher = make_teacher() if teacher is None else teacher
    spec = teacher.spec
    section = spec.neural
    if neurons is None:
        if section is None or not section.regions:
            raise ValueError("give neurons={region: count} (the teacher spec has no neural.regions)")
        neurons = {r: 40 for r in section.regions}
    areas = {r: (section.regions[r].area if section is not None and r in section.regions else r) for r in neurons}
    lat = {r: (latency_ms or {}).get(r, section.regions[r].latencies[0] if section is not None
                                      and r in section.regions else 0.0) for r in neurons}
    if bins is None:
        b = section.bins if section is not None else None
        bins = equal_bins(b.start_ms, b.stop_ms, b.width_ms) if b is not None else equal_bins(0, 250, 10)
    bins = np.asarray(bins, dtype=np.float64)

    shape = list(next(iter(spec.inputs.values())).shape)
    images, labels = load_images("digits", shape[-1])
    if n_stimuli > len(images):
        raise ValueError(f"n_stimuli: at most {len(images)} digit images are available")
    pick = np.random.default_rng(image_seed).permutation(len(images))[:n_stimuli]
    images = images[torch.from_numpy(pick)].float()
    labels = labels[torch.from_numpy(pick)].numpy()
    ids = [f"digit{int(i):04d}" for i in pick]

    maps = {r: TimeMap(spec.time.dt_ms, bins, lat[r]) for r in neurons}
    steps = max(m.steps_needed() for m in maps.values())
    activity = area_activity(teacher, images, set(areas.values()), steps=steps)
    rng = np.random.default_rng(seed)
    data, neuroid, region, truth = [], [], [], {}
    for r, n in neurons.items():
        feats = bin_activity(activity[areas[r]], maps[r].weights(steps)).astype(np.float64)  # [B, S, D]
        d = feats.shape[2]
        if fan_in > d:
            raise ValueError(f"fan_in {fan_in} exceeds the {d} units of area {areas[r]}")
        units = np.stack([rng.choice(d, fan_in, replace=False) for _ in range(n)])  # [N, k]
        w = rng.normal(0.0, 1.0 / np.sqrt(fan_in), size=(n, fan_in))
        signal = np.einsum("bsnk,nk->snb", feats[:, :, units], w) + baseline  # [S, N, B]
        after = maps[r].before_onset() < 1 - 1e-9
        var_b = signal.var(axis=0)  # [N, B] signal variance over stimuli
        mean_var = var_b[:, after].mean(axis=1, keepdims=True)  # [N, 1]
        mean_var = np.where(mean_var > 0, mean_var, 1e-6)
        var_b = np.where(after[None, :], np.maximum(var_b, floor * mean_var), mean_var)
        sigma = np.sqrt(repetitions * var_b * (1 - reliability) / reliability)  # [N, B]
        trials = signal[None] + rng.normal(size=(repetitions, *signal.shape)) * sigma[None]
        data.append(trials.reshape(repetitions * n_stimuli, n, len(bins)))
        neuroid += [f"{r}.{k:03d}" for k in range(n)]
        region += [r] * n
        truth[r] = {"area": areas[r], "latency_ms": lat[r], "units": units, "weights": w, "sigma": sigma,
                    "reliability_per_bin": var_b / (var_b + sigma ** 2 / repetitions) * after[None, :],
                    "signal": signal, "reliability": reliability}
    stim = [ids[s] for _ in range(repetitions) for s in range(n_stimuli)]
    rep = [k for k in range(repetitions) for _ in range(n_stimuli)]
    da = make_recordings(np.concatenate(data, axis=1), stimulus_id=stim, repetition=rep, neuroid_id=neuroid,
                         region=region, time_bin_start=bins[:, 0], time_bin_end=bins[:, 1],
                         attrs={"source": "tnnspec.neural.synthetic", "teacher": spec.name,
                                "reliability": reliability, "repetitions": repetitions, "seed": seed})
    return Synthetic(da, images, ids, labels, teacher, truth)


def main(argv: list[str] | None = None) -> int:
    """``python -m tnnspec.neural.synthetic OUT_DIR``: write a synthetic V4/IT data set."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m tnnspec.neural.synthetic", description=main.__doc__)
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("--stimuli", type=int, default=300)
    p.add_argument("--neurons", type=int, default=40, help="neurons per region")
    p.add_argument("--repetitions", type=int, default=6)
    p.add_argument("--reliability", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    teacher = make_teacher(seed=args.seed)
    regions = list(teacher.spec.neural.regions)
    syn = synthetic_recordings(teacher, n_stimuli=args.stimuli, neurons={r: args.neurons for r in regions},
                               repetitions=args.repetitions, reliability=args.reliability, seed=args.seed)
    rec, stim = syn.save(args.out)
    print(f"wrote {rec} and {stim}: {args.stimuli} stimuli x {args.repetitions} repetitions, "
          f"{args.neurons} neurons in each of {', '.join(regions)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
