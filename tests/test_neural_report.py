"""Reports of fit run folders (tnnspec.neural.report): fake runs in tmp_path, every file written,
PNGs readable, numbers in report.md computed independently, compare ranks and marks the best."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from tnnspec.neural.errors import NeuralDataError
from tnnspec.neural.report import compare, summary_numbers, write_report

BINS = [[b, b + 10] for b in range(0, 200, 10)]  # 20 bins of 10 ms
N_NULL = 5  # bins before the response: ceiling <= 0, no ceiled score


def _entry(level: float, *, seed: int, n_neurons: int = 40, bins=BINS, n_null: int = N_NULL) -> dict:
    """One score entry: a curve rising to ``level`` after the first ``n_null`` bins."""
    rng = np.random.default_rng(seed)
    B = len(bins)
    t = np.arange(B)
    ceiled = level * (1 - np.exp(-(t - n_null + 1) / 3.0)) + 0.02 * rng.standard_normal(B)
    ceiling = np.where(t < n_null, -0.05, 0.6)
    raw = ceiled * np.abs(ceiling)
    null = t < n_null
    def lst(a):
        return [None if n else float(v) for v, n in zip(a, null)]
    return {"raw": [float(v) for v in raw], "ceiling": [float(v) for v in ceiling], "ceiled": lst(ceiled),
            "low": lst(ceiled - 0.08), "high": lst(ceiled + 0.07), "n_neurons": n_neurons}


def _region(area: str, scores: dict, latency=60.0, search=None, bins=BINS) -> dict:
    return {"area": area, "latency_ms": latency, "latency_search": search, "bins": bins, "scores": scores}


def _write_run(path, *, spec="ventral4", mode="mapping", level=0.6, regions=("V4", "IT"), shuffled=False,
               predictions=False, metrics=False, convention=None, seed=0):
    path.mkdir(parents=True)
    regs = {}
    for i, r in enumerate(regions):
        if mode == "mapping":
            scores = {"mapping": _entry(level, seed=seed + i)}
        else:
            scores = {"heldout_images": _entry(level, seed=seed + i),
                      "heldout_neurons": _entry(level * 0.7, seed=seed + 10 + i, n_neurons=12)}
        regs[r] = _region(r, scores, latency=50.0 + 10 * i,
                          search={"40": 0.41, "50": 0.52, "60": 0.55} if i == 1 else None)
    data = {"spec": spec, "mode": mode, "recordings": "data.nc", "stimuli": "stim.npz", "n_stimuli": 300,
            "time_steps": 21, "dt_ms": 10, "shuffled": shuffled, "regions": regs}
    if convention:
        data["ceiling_convention"] = convention
    (path / "scores.json").write_text(json.dumps(data))
    if predictions:
        rng = np.random.default_rng(seed)
        arrays = {}
        t = np.array(BINS, float).mean(axis=1)
        for r in regions:
            S, K = 5, 6
            base = np.exp(-((t - 100) / 40) ** 2)
            rec = rng.uniform(0.5, 2, (S, K, 1)) * base + 0.05 * rng.standard_normal((S, K, len(t)))
            arrays[f"{r}/recorded"] = rec
            arrays[f"{r}/predicted"] = rec + 0.1 * rng.standard_normal(rec.shape)
            arrays[f"{r}/neuroid_id"] = np.array([f"{r}_n{k}" for k in range(K)])
            arrays[f"{r}/stimulus_id"] = np.array([f"img{s:03d}" for s in range(S)])
            arrays[f"{r}/bins"] = np.array(BINS, float)
        np.savez(path / "predictions.npz", **arrays)
    if metrics:
        lines = [{"event": "start", "spec": spec}]
        lines += [{"event": "epoch", "epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1),
                   "val_r": 0.1 * e} for e in range(6)]
        (path / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{\"event\": \"ep")
    return data


def _png_ok(path, min_w=400, min_h=250):
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] >= min_h and img.shape[1] >= min_w, img.shape
    assert img.shape[0] < 5000 and img.shape[1] < 5000
    assert float(img[..., :3].std()) > 0.01  # something is drawn
    return img


def _expected_mean(entry: dict) -> float:
    vals = [v for v, c in zip(entry["ceiled"], entry["ceiling"]) if v is not None and c > 0]
    return sum(vals) / len(vals)


def test_mapping_report_with_predictions_and_numbers(tmp_path):
    run = tmp_path / "run"
    data = _write_run(run, predictions=True, convention="Brain-Score: median r / median split-half reliability")
    paths = write_report(run)
    names = [p.name for p in paths]
    assert names == ["score_vs_time.png", "psth_examples.png", "report.md"]
    assert all(p.is_file() and p.parent == run for p in paths)
    img = _png_ok(run / "score_vs_time.png")
    assert img.shape[1] > img.shape[0]  # two panels side by side
    _png_ok(run / "psth_examples.png")
    md = (run / "report.md").read_text()
    for region in ("V4", "IT"):
        entry = data["regions"][region]["scores"]["mapping"]
        assert f"{_expected_mean(entry):.3f}" in md
        s = summary_numbers(data["regions"][region], "mapping")
        assert s["n_bins"] == len(BINS) - N_NULL
        assert math.isclose(s["mean"], _expected_mean(entry))
        assert f"[{s['low']:.3f}, {s['high']:.3f}]" in md
        assert f"{s['peak']:.3f}" in md
    assert "![Ceiled score over time](score_vs_time.png)" in md
    assert "](psth_examples.png)" in md
    assert "Brain-Score: median r / median split-half reliability" in md
    assert "noise ceiling" in md
    assert "shuffled" not in md.lower()
    assert "**60 ms: 0.550**" in md  # the chosen latency in the search
    assert "| 40 |" in md  # n neurons


def test_summary_numbers_peak_and_restriction():
    entry = _region("IT", {"mapping": _entry(0.5, seed=3)})
    s = summary_numbers(entry, "mapping")
    ceiled = entry["scores"]["mapping"]["ceiled"]
    best = max(range(len(ceiled)), key=lambda i: -math.inf if ceiled[i] is None else ceiled[i])
    assert s["peak_bin"] == [float(x) for x in BINS[best]] and math.isclose(s["peak"], ceiled[best])
    lows = [v for v in entry["scores"]["mapping"]["low"] if v is not None]
    assert math.isclose(s["low"], sum(lows) / len(lows))
    r = summary_numbers(entry, "mapping", bins=[[100, 110], [110, 120], [0, 10]])  # [0,10] has no ceiling
    assert r["n_bins"] == 2 and math.isclose(r["mean"], (ceiled[10] + ceiled[11]) / 2)
    assert summary_numbers(entry)["mean"] == s["mean"]  # key defaults to "mapping"
    empty = summary_numbers(entry, "mapping", bins=[[0, 10]])
    assert empty["n_bins"] == 0 and math.isnan(empty["mean"]) and empty["peak_bin"] is None


def test_dynamics_report_with_training_and_shuffled_warning(tmp_path):
    run = tmp_path / "dyn"
    data = _write_run(run, mode="dynamics", regions=("V1", "V4", "IT"), metrics=True, shuffled=True, level=0.05)
    paths = write_report(run, title="my dynamics run")
    assert [p.name for p in paths] == ["score_vs_time.png", "training.png", "report.md"]
    assert not (run / "psth_examples.png").exists()
    img = _png_ok(run / "score_vs_time.png")
    assert img.shape[1] > 2 * img.shape[0]  # three panels side by side
    _png_ok(run / "training.png")
    md = (run / "report.md").read_text()
    assert md.startswith("# my dynamics run")
    assert "Warning: shuffled-stimulus control" in md and "about 0" in md
    assert "held-out images" in md and "held-out neurons" in md
    for region in ("V1", "V4", "IT"):
        for key in ("heldout_images", "heldout_neurons"):
            assert f"{_expected_mean(data['regions'][region]['scores'][key]):.3f}" in md
    assert "| 12 |" in md  # held-out neurons count
    assert "6 epoch(s)" in md  # the partial last line of metrics.jsonl is skipped
    assert "not recorded in scores.json" in md


def test_metrics_without_epochs_and_all_null_region(tmp_path):
    run = tmp_path / "run"
    _write_run(run)
    (run / "metrics.jsonl").write_text(json.dumps({"event": "start"}) + "\n")
    data = json.loads((run / "scores.json").read_text())
    e = data["regions"]["V4"]["scores"]["mapping"]
    for f in ("ceiled", "low", "high"):
        e[f] = [None] * len(BINS)
    e["ceiling"] = [0.0] * len(BINS)
    (run / "scores.json").write_text(json.dumps(data))
    paths = write_report(run)
    assert [p.name for p in paths] == ["score_vs_time.png", "report.md"]
    md = (run / "report.md").read_text()
    assert f"| 0/{len(BINS)} |" in md
    _png_ok(run / "score_vs_time.png")


def test_compare_ranks_bolds_and_shows_missing_regions(tmp_path):
    ff = tmp_path / "ff"
    rec = tmp_path / "rec"
    fb = tmp_path / "fb"
    _write_run(ff, spec="ventral4", level=0.3, regions=("V4", "IT"), seed=1)
    _write_run(rec, spec="ventral4", level=0.5, regions=("V4", "IT"), seed=2)
    _write_run(fb, spec="ventral4_fb", mode="dynamics", level=0.7, regions=("IT", "PFC"), seed=3)
    # the feedforward run has a ceiling in one bin where the others do not: not compared
    d = json.loads((ff / "scores.json").read_text())
    e = d["regions"]["IT"]["scores"]["mapping"]
    e["ceiled"][N_NULL - 1], e["ceiling"][N_NULL - 1] = 5.0, 0.5
    e["low"][N_NULL - 1], e["high"][N_NULL - 1] = 4.0, 6.0
    (ff / "scores.json").write_text(json.dumps(d))

    out = tmp_path / "cmp"
    paths = compare([ff, rec, fb], out)
    assert [p.name for p in paths] == ["compare.png", "compare.md", "compare.json"]
    img = _png_ok(out / "compare.png")
    assert img.shape[1] > 2 * img.shape[0]  # V4, IT, PFC panels

    res = json.loads((out / "compare.json").read_text())
    labels = [r["label"] for r in res["runs"]]
    assert labels == ["ventral4 (ff)", "ventral4 (rec)", "ventral4_fb"]
    assert res["regions"] == ["V4", "IT", "PFC"]
    assert res["ranking"]["IT"] == ["ventral4_fb", "ventral4 (rec)", "ventral4 (ff)"]
    assert res["ranking"]["V4"] == ["ventral4 (rec)", "ventral4 (ff)"]
    assert res["scores"]["ventral4_fb"]["V4"] is None and res["scores"]["ventral4 (ff)"]["PFC"] is None
    assert res["scores"]["ventral4_fb"]["IT"]["key"] == "heldout_images"
    assert len(res["bins_used"]["IT"]) == len(BINS) - N_NULL
    # the ff number excludes the bin only it has a ceiling in
    ff_it = json.loads((ff / "scores.json").read_text())["regions"]["IT"]["scores"]["mapping"]
    expected = sum(ff_it["ceiled"][N_NULL:]) / (len(BINS) - N_NULL)
    assert math.isclose(res["scores"]["ventral4 (ff)"]["IT"]["mean"], expected)

    md = (out / "compare.md").read_text()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in md.splitlines() if line.startswith("| ventral4")}
    assert rows["ventral4_fb"][0] == "—" and rows["ventral4 (ff)"][2] == "—"
    assert rows["ventral4_fb"][1].startswith("**") and not rows["ventral4 (rec)"][1].startswith("**")
    assert rows["ventral4 (rec)"][0].startswith("**") and not rows["ventral4 (ff)"][0].startswith("**")
    s = res["scores"]["ventral4 (rec)"]["V4"]
    assert f"**{s['mean']:.3f} [{s['low']:.3f}, {s['high']:.3f}]**" in md
    assert f"{expected:.3f}" in md
    assert "![comparison](compare.png)" in md


def test_compare_with_labels(tmp_path):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    _write_run(a, level=0.2, regions=("IT",))
    _write_run(b, level=0.4, regions=("IT",))
    res = json.loads(compare([a, b], tmp_path / "o1")[2].read_text())
    assert [r["label"] for r in res["runs"]] == ["ventral4 (a/run)", "ventral4 (b/run)"]
    res = json.loads(compare([a, b], tmp_path / "o2", labels=["feedforward", "+ recurrence"])[2].read_text())
    assert res["ranking"]["IT"] == ["+ recurrence", "feedforward"]
    with pytest.raises(NeuralDataError, match="label"):
        compare([a, b], tmp_path / "o3", labels=["one"])


def test_folder_without_scores_is_a_clear_error(tmp_path):
    with pytest.raises(NeuralDataError, match="no scores.json \\(not a tnnspec fit run folder\\)"):
        write_report(tmp_path)
    good = tmp_path / "good"
    _write_run(good)
    with pytest.raises(NeuralDataError, match="no scores.json"):
        compare([good, tmp_path / "missing"], tmp_path / "out")
    bad = tmp_path / "bad"
    bad.mkdir()
    region = {"bins": [[0, 10]], "scores": {"mapping": {"ceiled": [0.1, 0.2]}}}
    (bad / "scores.json").write_text(json.dumps({"spec": "x", "regions": {"IT": region}}))
    with pytest.raises(NeuralDataError, match="2 values for 1 bins"):
        write_report(bad)


def test_predictions_with_object_ids_and_no_bins(tmp_path):
    """Pickled (object) id arrays are never unpickled: the panels fall back to numbers; bins come
    from scores.json when predictions.npz has none."""
    run = tmp_path / "run"
    _write_run(run, regions=("IT",))
    rec = np.random.default_rng(0).standard_normal((2, 3, len(BINS)))
    np.savez(run / "predictions.npz", **{"IT/recorded": rec, "IT/predicted": rec * 0.9,
                                         "IT/neuroid_id": np.array(["a", 1], dtype=object)})
    paths = write_report(run)
    assert [p.name for p in paths] == ["score_vs_time.png", "psth_examples.png", "report.md"]
    _png_ok(run / "psth_examples.png", min_w=300, min_h=200)
    np.savez(run / "predictions.npz", **{"IT/recorded": rec, "IT/predicted": rec[:, :2]})
    with pytest.raises(NeuralDataError, match="predictions.npz"):
        write_report(run)
