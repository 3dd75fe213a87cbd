"""Mapping per time bin: how well a linear map of an area's activity predicts each recorded neuron.

For each recorded region, its area's activity is binned with the region's latency
(:mod:`tnnspec.neural.timemap`); in each bin, a cross-validated linear mapping (ridge or PLS,
:mod:`tnnspec.neural.regression`) predicts every neuron's trial-averaged response on held-out
images; Pearson r per neuron is divided by the noise ceiling (:mod:`tnnspec.neural.stats`).
With several candidate latencies, the one with the highest mean raw score over bins is kept
(chosen with the same folds, so the reported score of the chosen latency is optimistic by the
choice among the candidates; the candidates are few and the choice is reported).
"""

from __future__ import annotations

import numpy as np

from .errors import NeuralDataError


def region_trials(rec, ids: list[str]) -> list[np.ndarray]:
    """Trials of one region per stimulus, in the order of ``ids``: a list of [R_s, N, B]."""
    values = np.asarray(rec.values, dtype=np.float64)
    stim = np.asarray(rec["stimulus_id"].values).astype(str)
    order = np.argsort(stim, kind="stable")
    sorted_ids = stim[order]
    out = []
    for s in ids:
        lo, hi = np.searchsorted(sorted_ids, s, "left"), np.searchsorted(sorted_ids, s, "right")
        out.append(values[order[lo:hi]])
    return out


def resolve_regions(spec, recordings, mapping: dict[str, str] | None = None,
                    latency_ms: dict[str, list[float]] | None = None) -> dict[str, dict]:
    """Which area models each recorded region, and its candidate latencies: ``mapping``
    (region -> area, e.g. from ``--map``), else the spec's ``neural.regions``; latencies from
    ``latency_ms``, else the spec, else 0. Regions that are mapped but not recorded, or areas
    the graph lacks, are errors naming them."""
    from .recordings import regions as recorded_regions

    section = spec.neural
    given = {r: v.area for r, v in section.regions.items()} if section is not None else {}
    chosen = dict(mapping) if mapping else given
    if not chosen:
        raise NeuralDataError("no regions to compare: give --map REGION=AREA,... or a neural.regions section "
                              "in the graph file")
    have = recorded_regions(recordings)
    problems = [f"region '{r}' is not in the recordings (they hold {', '.join(have)})" for r in chosen if r not in have]
    problems += [f"region '{r}': the graph has no area '{a}' (areas: {', '.join(spec.areas)})"
                 for r, a in chosen.items() if a not in spec.areas]
    if problems:
        raise NeuralDataError("; ".join(problems))
    out = {}
    for r, a in chosen.items():
        if latency_ms and r in latency_ms:
            lats = list(latency_ms[r])
        elif section is not None and r in section.regions:
            lats = section.regions[r].latencies
        else:
            lats = [0.0]
        out[r] = {"area": a, "latencies": [float(x) for x in lats]}
    return out


def check_covered(maps, steps: int) -> None:
    """Raise (naming the most demanding region's needs) when ``steps`` do not cover every bin."""
    for m in sorted(maps, key=lambda m: -m.steps_needed()):
        m.weights(steps)


def map_regions(net, images, recordings, regions: dict[str, dict], *, method: str = "ridge", pca: int | None = None,
                folds: int = 5, pls_components: int = 25, n_boot: int = 1000, seed: int = 0, steps: int | None = None,
                device="cpu", backend: str = "numpy", shuffle: bool = False, perturb=None,
                progress: bool = False, keep_examples: int = 4) -> dict:
    """Score ``net`` against ``recordings`` by per-bin linear mapping. ``images``: [S, C, H, W]
    in the order of the recordings' stimulus ids (:func:`tnnspec.neural.recordings.stimulus_ids`).
    ``regions`` from :func:`resolve_regions`. ``shuffle=True`` pairs the images with the
    recordings in a random order (a control that should score about 0). Returns
    ``{"regions": {region: {...}}, "steps": T, "examples": {...}}``."""
    from . import regression, stats
    from .activations import area_activity
    from .recordings import bins as rec_bins, select_region, stimulus_ids
    from .timemap import TimeMap, bin_activity

    ids = stimulus_ids(recordings)
    if len(images) != len(ids):
        raise NeuralDataError(f"{len(images)} images for {len(ids)} recorded stimuli")
    if shuffle:
        images = images[np.random.default_rng(seed + 1).permutation(len(images))]
    dt = net.spec.time.dt_ms
    b = rec_bins(recordings)
    maps = {(r, lat): TimeMap(dt, b, lat) for r, v in regions.items() for lat in v["latencies"]}
    need = max(m.steps_needed() for m in maps.values())
    if steps is None:
        steps = need
    check_covered(maps.values(), steps)
    activity = area_activity(net, images, {v["area"] for v in regions.values()}, steps=steps, device=device,
                             perturb=perturb, progress=progress)
    fit_kwargs = dict(method=method, pca=pca, n_components_pls=pls_components, backend=backend)
    out: dict = {"regions": {}, "steps": steps, "examples": {}}
    for r, v in regions.items():
        rec = select_region(recordings, r)
        trials = region_trials(rec, ids)
        mean = np.stack([t.mean(axis=0) for t in trials])  # [S, N, B]
        reliability = stats.split_half_reliability(trials, seed=seed)  # [N, B]
        search, best = {}, None
        for lat in v["latencies"]:
            feats = bin_activity(activity[v["area"]], maps[(r, lat)].weights(steps)).astype(np.float64)
            r_nb, pred = regression.map_bins(feats, mean, k=folds, seed=seed, predictions=True,
                                             **fit_kwargs)  # [B, N], [B, S, N]
            search[lat] = float(np.nanmean(np.nan_to_num(r_nb, nan=0.0)))
            if best is None or search[lat] > search[best[0]]:
                best = (lat, r_nb, pred)
        lat, r_nb, pred = best
        per_bin = [stats.ceiled_score(r_nb[k], reliability[:, k], n_boot=n_boot, seed=seed) for k in range(len(b))]
        scores = {key: [_num(p.get(key)) for p in per_bin] for key in ("raw", "ceiling", "ceiled", "low", "high")}
        scores["n_neurons"] = int(mean.shape[1])
        out["regions"][r] = {"area": v["area"], "latency_ms": lat,
                             "latency_search": {f"{k:g}": s for k, s in search.items()} if len(search) > 1 else None,
                             "bins": b.tolist(), "scores": {"mapping": scores}}
        if keep_examples:
            out["examples"][r] = _examples(pred, mean, rec, ids, folds, seed, keep_examples)
    return out


def _num(x):
    return None if x is None or not np.isfinite(x) else float(x)


def _examples(pred, mean, rec, ids, folds, seed, k):
    """The cross-validated predictions ``pred`` [B, S, N] on the first fold's held-out images for
    ``k`` example neurons (the first ``k``; the most reliable ones are not singled out), for the
    report's PSTH plot."""
    from . import regression

    _, test = regression.folds(len(ids), folds, seed)[0]
    neurons = np.arange(min(k, mean.shape[1]))
    return {"recorded": mean[test][:, neurons], "predicted": pred[:, test][:, :, neurons].transpose(1, 2, 0),
            "neuroid_id": np.asarray(rec["neuroid_id"].values).astype(str)[neurons],
            "stimulus_id": np.asarray(ids)[test]}
