"""Reports of ``tnnspec fit`` runs and side-by-side comparisons (``tnnspec compare``).

A fit run folder holds ``scores.json`` (required), and optionally ``predictions.npz`` (example
recorded vs predicted responses) and ``metrics.jsonl`` (training events, in dynamics mode).

* :func:`write_report` writes ``score_vs_time.png``, ``psth_examples.png`` (with predictions),
  ``training.png`` (with epoch events) and ``report.md`` into the run folder;
* :func:`compare` puts several runs side by side: ``compare.png``, ``compare.md``, ``compare.json``;
* :func:`summary_numbers` is the one place where a region's score curve is reduced to numbers
  (mean ceiled score over the bins that have one, the mean bootstrap interval, the peak bin).

Matplotlib is imported on first use and drawn through its Agg canvas directly (no pyplot, no
global backend switch, nothing shown on screen).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import NeuralDataError

__all__ = ["write_report", "compare", "summary_numbers", "load_run"]

DPI = 120
XLABEL = "time after stimulus onset (ms)"
YLABEL = "ceiled score"
MAX_NEURONS = 4
MAX_STIMULI = 3
MAX_COLUMNS = 4
YMIN, YMAX = -1.0, 2.0  # the y range of score plots never reaches past this

# How each score entry is labelled and coloured in plots and tables.
KEY_LABELS = {"mapping": "mapping (cross-validated)", "heldout_images": "held-out images",
              "heldout_neurons": "held-out neurons"}
KEY_COLOURS = {"mapping": "C0", "heldout_images": "C0", "heldout_neurons": "C1"}


# ----------------------------------------------------------------------------------------------
# reading a run folder
# ----------------------------------------------------------------------------------------------

def load_run(run_dir) -> dict:
    """``scores.json`` of a run folder, checked enough to draw it: a dict with ``regions``, each
    with ``bins`` ([B, 2] ms) and ``scores`` (one entry per score key, each with ``ceiled`` etc. of
    length B). Raises :class:`NeuralDataError` naming the file and what is wrong."""
    run_dir = Path(run_dir)
    path = run_dir / "scores.json"
    if not path.is_file():
        raise NeuralDataError(f"{run_dir}: no scores.json (not a tnnspec fit run folder)")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NeuralDataError(f"{path}: cannot be read as JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("regions"), dict) or not data["regions"]:
        raise NeuralDataError(f"{path}: 'regions' is missing or empty")
    for name, entry in data["regions"].items():
        where = f"{path}: region {name!r}"
        if not isinstance(entry, dict):
            raise NeuralDataError(f"{where} is not an object")
        bins = np.asarray(entry.get("bins", []), dtype=np.float64)
        if bins.ndim != 2 or bins.shape[1] != 2 or bins.shape[0] == 0:
            raise NeuralDataError(f"{where}: 'bins' must be a non-empty list of [start, end] pairs (ms)")
        scores = entry.get("scores")
        if not isinstance(scores, dict) or not scores:
            raise NeuralDataError(f"{where}: 'scores' is missing or empty")
        for key, s in scores.items():
            if not isinstance(s, dict) or "ceiled" not in s:
                raise NeuralDataError(f"{where}: scores[{key!r}] has no 'ceiled' list")
            for field in ("raw", "ceiling", "ceiled", "low", "high"):
                if field in s and s[field] is not None and len(s[field]) != bins.shape[0]:
                    raise NeuralDataError(f"{where}: scores[{key!r}][{field!r}] has {len(s[field])} values "
                                          f"for {bins.shape[0]} bins")
    return data


def _floats(values, n: int) -> np.ndarray:
    """A JSON list with nulls (or a missing one) as float64 with NaN."""
    if values is None:
        return np.full(n, np.nan)
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def _curve(region_entry: dict, key: str) -> dict:
    """One score entry as arrays: bins [B, 2], centre [B], raw/ceiling/ceiled/low/high [B], and
    ``valid`` [B]: bins with a finite ceiled score and a positive ceiling (where one is given)."""
    bins = np.asarray(region_entry["bins"], dtype=np.float64).reshape(-1, 2)
    n = bins.shape[0]
    try:
        s = region_entry["scores"][key]
    except KeyError:
        raise NeuralDataError(f"no score {key!r} (have: {', '.join(region_entry['scores'])})") from None
    out = {f: _floats(s.get(f), n) for f in ("raw", "ceiling", "ceiled", "low", "high")}
    valid = np.isfinite(out["ceiled"])
    if s.get("ceiling") is not None:
        with np.errstate(invalid="ignore"):
            valid &= out["ceiling"] > 0
    out.update(bins=bins, centre=bins.mean(axis=1), valid=valid, n_neurons=s.get("n_neurons"))
    return out


def _bin_key(b) -> tuple[float, float]:
    return (round(float(b[0]), 6), round(float(b[1]), 6))


def _default_key(region_entry: dict) -> str:
    scores = region_entry["scores"]
    for key in ("mapping", "heldout_images"):
        if key in scores:
            return key
    return next(iter(scores))


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def summary_numbers(region_entry: dict, key: str | None = None, *, bins=None) -> dict:
    """A region's score curve ``region_entry["scores"][key]`` reduced to numbers.

    Over the bins with a non-null ceiled score (and a positive ceiling where ``ceiling`` is given)
    — restricted further to ``bins`` (an iterable of ``[start, end]`` pairs) when given:

    * ``mean``: mean ceiled score; ``low`` / ``high``: mean of the bootstrap interval's bounds
      (bins without bounds ignored);
    * ``peak_bin`` ``[start, end]`` (ms) and ``peak``: the bin with the highest ceiled score;
    * ``n_bins``: how many bins were averaged; ``raw``: the mean raw (unceiled) score over them;
    * ``n_neurons`` as recorded.

    Numbers are ``float('nan')`` (and ``peak_bin`` None) when no bin qualifies. ``key`` defaults
    to ``"mapping"``, else ``"heldout_images"``, else the first entry.
    """
    key = _default_key(region_entry) if key is None else key
    c = _curve(region_entry, key)
    use = c["valid"].copy()
    if bins is not None:
        wanted = {_bin_key(b) for b in bins}
        use &= np.array([_bin_key(b) in wanted for b in c["bins"]], dtype=bool)
    out = {"mean": math.nan, "low": math.nan, "high": math.nan, "peak_bin": None, "peak": math.nan,
           "n_bins": int(use.sum()), "raw": math.nan, "n_neurons": c["n_neurons"]}
    if not use.any():
        return out
    idx = np.flatnonzero(use)
    ceiled = c["ceiled"][idx]
    out["mean"] = float(ceiled.mean())
    for f in ("low", "high", "raw"):
        vals = c[f][idx]
        if np.isfinite(vals).any():
            out[f] = float(np.nanmean(vals))
    best = idx[int(np.argmax(ceiled))]
    out["peak_bin"] = [float(v) for v in c["bins"][best]]
    out["peak"] = float(c["ceiled"][best])
    return out


# ----------------------------------------------------------------------------------------------
# plotting helpers
# ----------------------------------------------------------------------------------------------

def _figure(width: float, height: float):
    """A Figure on the Agg canvas (no pyplot, no backend switch)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    return path


def _panels(n: int, margin: tuple[float, float], panel: tuple[float, float]):
    """A figure with ``n`` panels sharing the y axis, at most MAX_COLUMNS to a row, sized
    ``margin + panel * (columns, rows)`` inches. Returns (figure, the n axes, columns)."""
    cols = min(n, MAX_COLUMNS)
    rows = math.ceil(n / cols)
    fig = _figure(margin[0] + panel[0] * cols, margin[1] + panel[1] * rows)
    flat = list(fig.subplots(rows, cols, squeeze=False, sharey=True).ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n], cols


def _draw_curve(ax, c: dict, *, colour, label: str, band_alpha: float = 0.2):
    """Ceiled score at the bin centres (NaN → gap), the bootstrap interval as a band."""
    y = np.where(c["valid"], c["ceiled"], np.nan)
    lo = np.where(c["valid"], c["low"], np.nan)
    hi = np.where(c["valid"], c["high"], np.nan)
    band = np.isfinite(lo) & np.isfinite(hi)
    if band.any():
        ax.fill_between(c["centre"], np.nan_to_num(lo), np.nan_to_num(hi), where=band, color=colour,
                        alpha=band_alpha, linewidth=0, interpolate=False)
    ax.plot(c["centre"], y, color=colour, marker="o", markersize=3, linewidth=1.6, label=label)


def _reference_lines(ax):
    ax.axhline(1.0, color="0.35", linestyle="--", linewidth=0.9, zorder=0)
    ax.axhline(0.0, color="0.35", linestyle="--", linewidth=0.9, zorder=0)
    ax.annotate("noise ceiling", xy=(1.0, 1.0), xycoords=("axes fraction", "data"), xytext=(-3, 2),
                textcoords="offset points", ha="right", va="bottom", fontsize=7, color="0.35")


def _shade_unscored(ax, c: dict, *, label: str | None):
    """Light grey behind bins whose ceiling is not positive (no ceiled score there)."""
    first = True
    for b, ok in zip(c["bins"], c["valid"]):
        if not ok:
            ax.axvspan(b[0], b[1], color="0.92", zorder=-1, linewidth=0, label=label if first else None)
            first = False


def _finite_values(curves: Sequence[dict]) -> np.ndarray:
    vals = [np.where(c["valid"], c[f], np.nan) for c in curves for f in ("ceiled", "low", "high")]
    vals = np.concatenate(vals) if vals else np.array([])
    return vals[np.isfinite(vals)]


def _label_panel(ax, i: int, cols: int) -> None:
    """Axis labels (y only on the first column), grid and legend of a score-vs-time panel."""
    ax.set_xlabel(XLABEL)
    if i % cols == 0:
        ax.set_ylabel(YLABEL)
    ax.grid(alpha=0.25)
    ax.legend(fontsize=7.5, loc="upper left", framealpha=0.85)


def _finish_figure(fig, axes, curves, panel_curves, title: str) -> None:
    """One y range for every panel, a note where values fall off it, the title, tight layout."""
    _ylim(axes[0], curves)
    for ax, cs in zip(axes, panel_curves):
        _note_clipped(ax, cs)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()


def _ylim(ax, curves: Sequence[dict]):
    """y from a little below 0 to a little above the ceiling, widened to the data but never past
    [YMIN, YMAX]: a bin with a tiny ceiling can have a huge ceiled score that would flatten the rest
    (such panels say so, see :func:`_note_clipped`)."""
    vals = _finite_values(curves)
    lo = max(YMIN, min(-0.1, float(vals.min()) - 0.05)) if vals.size else -0.1
    hi = min(YMAX, max(1.15, float(vals.max()) + 0.05)) if vals.size else 1.15
    ax.set_ylim(lo, hi)


def _note_clipped(ax, curves: Sequence[dict]):
    vals = _finite_values(curves)
    lo, hi = ax.get_ylim()
    out = vals[(vals < lo) | (vals > hi)]
    if out.size:
        ext = out[np.argmax(np.abs(out))]
        ax.text(0.98, 0.97, f"values off the axis (up to {ext:.3g})", transform=ax.transAxes, ha="right",
                va="top", fontsize=7, color="0.3", bbox={"boxstyle": "round", "fc": "white", "ec": "0.7"})


def _fmt(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"


def _fmt_ms(x) -> str:
    return "—" if x is None else f"{float(x):g}"


# ----------------------------------------------------------------------------------------------
# the report of one run
# ----------------------------------------------------------------------------------------------

def _plot_score_vs_time(data: dict, path: Path, title: str) -> Path:
    regions = list(data["regions"].items())
    fig, axes, cols = _panels(len(regions), (0.8, 0.9), (4.2, 3.3))
    all_curves, panel_curves = [], []
    for i, (ax, (name, entry)) in enumerate(zip(axes, regions)):
        curves = [(key, _curve(entry, key)) for key in entry["scores"]]
        all_curves += [c for _, c in curves]
        panel_curves.append([c for _, c in curves])
        _shade_unscored(ax, curves[0][1], label="not ceiled (data too noisy)")
        for j, (key, c) in enumerate(curves):
            _draw_curve(ax, c, colour=KEY_COLOURS.get(key, f"C{j}"), label=KEY_LABELS.get(key, key))
        _reference_lines(ax)
        latency = entry.get("latency_ms")
        if latency is not None:
            ax.axvline(float(latency), color="0.5", linestyle=":", linewidth=1.1,
                       label=f"model latency {float(latency):g} ms")
        area = entry.get("area")
        head = name if not area or area == name else f"{name} (area {area})"
        if latency is not None:
            head += f" — latency {float(latency):g} ms"
        ax.set_title(head, fontsize=10)
        bins = curves[0][1]["bins"]
        ax.set_xlim(float(bins[:, 0].min()), float(bins[:, 1].max()))
        _label_panel(ax, i, cols)
    _finish_figure(fig, axes, all_curves, panel_curves, title)
    return _save(fig, path)


def _load_predictions(path: Path, order: Sequence[str]) -> dict:
    """``predictions.npz`` as {region: {recorded, predicted, neuroid_id, stimulus_id, bins}}."""
    arrays = {}
    try:
        with np.load(path, allow_pickle=False) as npz:
            for k in npz.files:
                try:
                    arrays[k] = npz[k]
                except ValueError:  # an object array (pickled): never unpickled; ids fall back to numbers
                    if not k.endswith(("/neuroid_id", "/stimulus_id")):
                        raise
    except (OSError, ValueError) as exc:
        raise NeuralDataError(f"{path}: cannot be read ({exc})") from None
    regions: dict[str, dict] = {}
    for k, v in arrays.items():
        if "/" not in k:
            continue
        region, field = k.rsplit("/", 1)
        regions.setdefault(region, {})[field] = v
    out = {}
    for region in [r for r in order if r in regions] + [r for r in regions if r not in order]:
        d = regions[region]
        if "recorded" not in d or "predicted" not in d:
            raise NeuralDataError(f"{path}: region {region!r} needs both '{region}/recorded' and '{region}/predicted'")
        rec, pred = np.asarray(d["recorded"], float), np.asarray(d["predicted"], float)
        if rec.ndim != 3 or rec.shape != pred.shape:
            raise NeuralDataError(f"{path}: '{region}/recorded' {rec.shape} and '{region}/predicted' {pred.shape} "
                                  "must both be [stimuli, neurons, bins]")
        if 0 in rec.shape:
            continue  # nothing to draw for this region
        out[region] = {"recorded": rec, "predicted": pred, "neuroid_id": d.get("neuroid_id"),
                       "stimulus_id": d.get("stimulus_id"), "bins": d.get("bins")}
    return out


def _plot_psth(preds: dict, data: dict, path: Path, title: str) -> Path:
    regions = list(preds)
    cols = max(min(MAX_NEURONS, p["recorded"].shape[1]) for p in preds.values())
    rows = len(regions)
    fig = _figure(0.6 + 3.3 * cols, 1.0 + 2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, region in enumerate(regions):
        p = preds[region]
        rec, pred = p["recorded"], p["predicted"]
        S, K, B = rec.shape
        bins = p["bins"]
        if bins is None and region in data["regions"]:
            bins = data["regions"][region]["bins"]
        bins = np.asarray(bins, float).reshape(-1, 2) if bins is not None else None
        if bins is not None and bins.shape[0] == B:
            t = bins.mean(axis=1)
        else:
            t = np.arange(B, dtype=float)
        nid = p["neuroid_id"] if p["neuroid_id"] is not None else np.arange(K)
        sid = p["stimulus_id"] if p["stimulus_id"] is not None else np.arange(S)
        for k in range(cols):
            ax = axes[r, k]
            if k >= K:
                ax.set_visible(False)
                continue
            for s in range(min(S, MAX_STIMULI)):
                colour = f"C{s}"
                ax.plot(t, rec[s, k], color=colour, linewidth=1.5, label=f"stimulus {sid[s]}")
                ax.plot(t, pred[s, k], color=colour, linewidth=1.5, linestyle="--")
            ax.set_title(f"{region} · neuron {nid[k]}", fontsize=9)
            ax.grid(alpha=0.25)
            if r == rows - 1 or (r < rows - 1 and k >= preds[regions[r + 1]]["recorded"].shape[1]):
                ax.set_xlabel(XLABEL if bins is not None and bins.shape[0] == B else "bin")
            if k == 0:
                ax.set_ylabel(f"{region}\nresponse (trial mean)")
                ax.legend(fontsize=7, loc="best", framealpha=0.85)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="0.2", linewidth=1.5, label="recorded"),
               Line2D([], [], color="0.2", linewidth=1.5, linestyle="--", label="model prediction")]
    fig.legend(handles=handles, loc="upper right", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=11, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, path)


def _read_epochs(path: Path) -> list[dict]:
    epochs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            event = json.loads(line)
        except ValueError:  # an interrupted run's partial last line
            continue
        if isinstance(event, dict) and event.get("event") == "epoch" and "epoch" in event:
            epochs.append(event)
    return sorted(epochs, key=lambda e: e["epoch"])


def _series(epochs: list[dict], field: str):
    pts = [(e["epoch"], e[field]) for e in epochs if isinstance(e.get(field), (int, float))
           and math.isfinite(e[field])]
    return ([p[0] for p in pts], [p[1] for p in pts]) if pts else None


def _plot_training(epochs: list[dict], path: Path, title: str) -> Path:
    has_r = _series(epochs, "val_r") is not None
    fig = _figure(4.6 * (2 if has_r else 1) + 0.6, 3.6)
    axes = fig.subplots(1, 2 if has_r else 1, squeeze=False)[0]
    ax = axes[0]
    for field, label, colour in (("train_loss", "train loss", "C0"), ("val_loss", "validation loss", "C1")):
        s = _series(epochs, field)
        if s:
            ax.plot(*s, marker="o", markersize=3, color=colour, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss", fontsize=10)
    ax.grid(alpha=0.25)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    if has_r:
        ax = axes[1]
        ax.plot(*_series(epochs, "val_r"), marker="o", markersize=3, color="C2", label="validation r")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation r")
        ax.set_title("validation correlation", fontsize=10)
        ax.grid(alpha=0.25)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


CEILED_SENTENCE = ("*Ceiled* score = raw score (median over neurons of the Pearson r between the model's "
                   "cross-validated prediction and the trial-averaged recording, per time bin) divided by the "
                   "noise ceiling (how well the recording predicts itself), so 1.0 means as good as the data's "
                   "own reliability allows and 0 means no prediction. Bins whose ceiling is not positive "
                   "(e.g. before the response latency) have no ceiled score and are left out of the means and "
                   "shown as gaps. Intervals are bootstrap intervals over neurons.")


def write_report(run_dir, *, title: str | None = None) -> list[Path]:
    """Write the report of a ``tnnspec fit`` run folder into that folder and return the paths.

    Always ``score_vs_time.png`` and ``report.md``; ``psth_examples.png`` when ``predictions.npz``
    exists; ``training.png`` when ``metrics.jsonl`` has ``{"event": "epoch", ...}`` lines. Raises
    :class:`NeuralDataError` when the folder has no ``scores.json`` or it is malformed.
    """
    run_dir = Path(run_dir)
    data = load_run(run_dir)
    spec, mode = data.get("spec", "?"), data.get("mode", "?")
    title = title or f"{spec} — {mode}" + (" (shuffled-stimulus control)" if data.get("shuffled") else "")
    written: list[Path] = []
    pictures: list[tuple[str, str]] = []

    written.append(_plot_score_vs_time(data, run_dir / "score_vs_time.png", title))
    pictures.append(("Ceiled score over time", "score_vs_time.png"))

    pred_path = run_dir / "predictions.npz"
    if pred_path.is_file():
        preds = _load_predictions(pred_path, list(data["regions"]))
        if preds:
            written.append(_plot_psth(preds, data, run_dir / "psth_examples.png",
                                      f"{title}: recorded (solid) vs predicted (dashed), held-out stimuli"))
            pictures.append(("Example neurons: recorded vs predicted", "psth_examples.png"))

    metrics_path = run_dir / "metrics.jsonl"
    epochs = _read_epochs(metrics_path) if metrics_path.is_file() else []
    if epochs:
        written.append(_plot_training(epochs, run_dir / "training.png", f"{title}: training"))
        pictures.append(("Training", "training.png"))

    md = run_dir / "report.md"
    md.write_text(_report_markdown(data, title, pictures, epochs))
    written.append(md)
    return written


def _report_markdown(data: dict, title: str, pictures, epochs) -> str:
    lines = [f"# {title}", ""]
    if data.get("shuffled"):
        lines += ["> **Warning: shuffled-stimulus control.** The stimuli were shuffled relative to the "
                  "recordings, so every score here should be about 0; a clearly positive score points to "
                  "a leak or a bug.", ""]
    facts = [("spec", data.get("spec")), ("mode", data.get("mode")), ("recordings", data.get("recordings")),
             ("stimuli", data.get("stimuli")), ("stimuli used", data.get("n_stimuli")),
             ("model time steps", data.get("time_steps")), ("dt (ms)", data.get("dt_ms"))]
    lines += [f"- {k}: `{v}`" for k, v in facts if v is not None]
    lines.append("")

    lines += ["## Scores per region", "",
              "| region | area | latency (ms) | score | mean ceiled | mean interval | peak bin (ms) | peak "
              "| mean raw r | bins scored | neurons |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, entry in data["regions"].items():
        n_bins = len(entry["bins"])
        for key in entry["scores"]:
            s = summary_numbers(entry, key)
            peak_bin = "—" if s["peak_bin"] is None else f"{s['peak_bin'][0]:g}–{s['peak_bin'][1]:g}"
            interval = "—" if not math.isfinite(s["low"]) else f"[{_fmt(s['low'])}, {_fmt(s['high'])}]"
            lines.append(f"| {name} | {entry.get('area', name)} | {_fmt_ms(entry.get('latency_ms'))} | "
                         f"{KEY_LABELS.get(key, key)} | {_fmt(s['mean'])} | {interval} | {peak_bin} | "
                         f"{_fmt(s['peak'])} | {_fmt(s['raw'])} | {s['n_bins']}/{n_bins} | "
                         f"{s['n_neurons'] if s['n_neurons'] is not None else '—'} |")
    lines.append("")

    searched = [(name, entry) for name, entry in data["regions"].items() if entry.get("latency_search")]
    if searched:
        lines += ["## Latency search", "",
                  "Mean raw r over bins for each candidate latency; the chosen one is in bold.", ""]
        for name, entry in searched:
            cand = sorted(entry["latency_search"].items(), key=lambda kv: float(kv[0]))
            chosen = entry.get("latency_ms")
            cells = []
            for lat, r in cand:
                cell = f"{float(lat):g} ms: {_fmt(None if r is None else float(r))}"
                if chosen is not None and abs(float(lat) - float(chosen)) < 1e-9:
                    cell = f"**{cell}**"
                cells.append(cell)
            lines.append(f"- {name}: " + ", ".join(cells))
        lines.append("")

    lines += ["## What the numbers mean", "", CEILED_SENTENCE, ""]
    convention = data.get("ceiling_convention")
    if convention:
        lines += [f"Ceiling convention: {convention}", ""]
    else:
        lines += ["Ceiling convention: not recorded in scores.json.", ""]
    if data.get("mode") == "dynamics":
        lines += ["*Held-out images*: the model's responses to images not used for training, for the trained "
                  "neurons; *held-out neurons*: responses of neurons not used for training.", ""]
    lines += ["Mean ceiled and mean interval are averaged over the ceiled bins (median reliability ≥ 0.1); the peak is "
              "the bin with the highest ceiled score.", ""]
    if epochs:
        last = epochs[-1]
        bits = [f"{f} {_fmt(last.get(f))}" for f in ("train_loss", "val_loss", "val_r")
                if isinstance(last.get(f), (int, float))]
        lines += [f"Training: {len(epochs)} epoch(s); last epoch {last['epoch']}: " + ", ".join(bits) + ".", ""]

    for caption, name in pictures:
        lines += [f"## {caption}", "", f"![{caption}]({name})", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# comparing runs
# ----------------------------------------------------------------------------------------------

def _compare_key(entry: dict) -> str:
    return "heldout_images" if "heldout_images" in entry["scores"] else _default_key(entry)


def _labels(run_dirs: list[Path], datas: list[dict], labels) -> list[str]:
    if labels is not None:
        labels = [str(x) for x in labels]
        if len(labels) != len(run_dirs):
            raise NeuralDataError(f"{len(labels)} label(s) for {len(run_dirs)} run folder(s)")
    else:
        labels = [str(d.get("spec") or p.name) for p, d in zip(run_dirs, datas)]
    out = list(labels)
    for i, lab in enumerate(labels):
        if labels.count(lab) > 1:
            out[i] = f"{lab} ({run_dirs[i].name})"
    clash = [out.count(lab) > 1 for lab in out]
    for i, lab in enumerate(labels):  # folder names alike too (a/run, b/run): add the parent
        if clash[i]:
            out[i] = f"{lab} ({run_dirs[i].parent.name}/{run_dirs[i].name})"
    clash = [out.count(lab) > 1 for lab in out]
    out = [f"{lab} #{i + 1}" if clash[i] else lab for i, lab in enumerate(out)]
    return out


def compare(run_dirs, out_dir, *, labels: Sequence[str] | None = None) -> list[Path]:
    """Put several fit runs' scores side by side; write ``compare.png``, ``compare.md`` and
    ``compare.json`` into ``out_dir`` (created if needed) and return their paths.

    One panel per region present in any run, one line per run (dynamics runs: the held-out-images
    score). Runs are labelled by ``labels`` or their spec name (duplicates get the folder name).
    The table's numbers are :func:`summary_numbers` over the bins where every run that has the
    region has a positive ceiling (matched by bin edges); if the runs share no such bin, each run's
    own scored bins are used and the table says so. The best mean per region is in bold.
    """
    run_dirs = [Path(p) for p in run_dirs]
    if not run_dirs:
        raise NeuralDataError("compare needs at least one run folder")
    datas = [load_run(p) for p in run_dirs]
    names = _labels(run_dirs, datas, labels)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    regions: list[str] = []
    for d in datas:
        regions += [r for r in d["regions"] if r not in regions]

    table: dict[str, dict[str, dict | None]] = {n: {} for n in names}
    bins_used: dict[str, list | None] = {}
    ranking: dict[str, list[str]] = {}
    for region in regions:
        having = [(n, d["regions"][region]) for n, d in zip(names, datas) if region in d["regions"]]
        common = None
        for _, entry in having:
            c = _curve(entry, _compare_key(entry))
            mine = {_bin_key(b) for b, ok in zip(c["bins"], c["valid"]) if ok}
            common = mine if common is None else common & mine
        shared = bool(common)
        bins_used[region] = sorted([list(b) for b in common]) if shared else None
        for n, d in zip(names, datas):
            entry = d["regions"].get(region)
            if entry is None:
                table[n][region] = None
                continue
            key = _compare_key(entry)
            s = summary_numbers(entry, key, bins=common if shared else None)
            s["key"] = key
            s["shared_bins"] = shared
            table[n][region] = s
        scored = [(n, table[n][region]["mean"]) for n in names
                  if table[n][region] is not None and math.isfinite(table[n][region]["mean"])]
        ranking[region] = [n for n, _ in sorted(scored, key=lambda x: -x[1])]

    written = [_plot_compare(run_dirs, datas, names, regions, out_dir / "compare.png")]

    runs_json = [{"label": n, "run_dir": str(p), "spec": d.get("spec"), "mode": d.get("mode"),
                  "shuffled": bool(d.get("shuffled", False))} for n, p, d in zip(names, run_dirs, datas)]
    scores_json = {n: {r: (None if s is None else {k: _nan_to_none(v) for k, v in s.items()})
                       for r, s in row.items()} for n, row in table.items()}
    payload = {"runs": runs_json, "regions": regions, "scores": scores_json, "ranking": ranking,
               "bins_used": bins_used}
    jpath = out_dir / "compare.json"
    jpath.write_text(json.dumps(payload, indent=2) + "\n")

    mpath = out_dir / "compare.md"
    mpath.write_text(_compare_markdown(runs_json, names, regions, table, ranking, bins_used))
    written += [mpath, jpath]
    return written


def _plot_compare(run_dirs, datas, names, regions, path: Path) -> Path:
    fig, axes, cols = _panels(len(regions), (0.8, 1.0), (4.4, 3.4))
    curves, panel_curves = [], []
    for i, (ax, region) in enumerate(zip(axes, regions)):
        panel_curves.append([])
        xmin, xmax = math.inf, -math.inf
        for j, (name, d) in enumerate(zip(names, datas)):
            entry = d["regions"].get(region)
            if entry is None:
                ax.plot([], [], color=f"C{j}", label=f"{name} — (no {region})")
                continue
            c = _curve(entry, _compare_key(entry))
            curves.append(c)
            panel_curves[-1].append(c)
            _draw_curve(ax, c, colour=f"C{j}", label=name, band_alpha=0.15)
            xmin, xmax = min(xmin, float(c["bins"][:, 0].min())), max(xmax, float(c["bins"][:, 1].max()))
        _reference_lines(ax)
        if math.isfinite(xmin):
            ax.set_xlim(xmin, xmax)
        ax.set_title(region, fontsize=10)
        _label_panel(ax, i, cols)
    _finish_figure(fig, axes, curves, panel_curves, "comparison: ceiled score over time (bands: bootstrap intervals)")
    return _save(fig, path)


def _compare_markdown(runs_json, names, regions, table, ranking, bins_used) -> str:
    lines = ["# Comparison of fit runs", "",
             "Cells: mean ceiled score [mean bootstrap interval] over the bins where every run that has the "
             "region can ceil; best per region in bold; — where a run lacks the region. "
             "Dynamics runs are scored on held-out images.", ""]
    lines += ["| run | " + " | ".join(regions) + " |", "|---|" + "---|" * len(regions)]
    for n in names:
        cells = []
        for r in regions:
            s = table[n][r]
            if s is None or not math.isfinite(s["mean"]):
                cells.append("—")
                continue
            cell = f"{_fmt(s['mean'])} [{_fmt(s['low'])}, {_fmt(s['high'])}]"
            if not s["shared_bins"]:
                cell += "\\*"
            if ranking[r] and ranking[r][0] == n and len(ranking[r]) > 1:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    lines.append("")
    notes = []
    for r in regions:
        used = bins_used[r]
        if used:
            notes.append(f"- {r}: {len(used)} bin(s) compared, {used[0][0]:g}–{used[-1][1]:g} ms")
        else:
            notes.append(f"- {r}: the runs share no ceiled bin; \\* each run's own scored bins")
    lines += ["Bins:", *notes, ""]
    lines += ["Ranking (best first):", *[f"- {r}: " + (", ".join(ranking[r]) or "—") for r in regions], ""]
    lines += ["Runs:"]
    for run in runs_json:
        extra = " — **shuffled-stimulus control (should score about 0)**" if run["shuffled"] else ""
        lines.append(f"- {run['label']}: `{run['run_dir']}` (spec `{run['spec']}`, mode `{run['mode']}`){extra}")
    lines += ["", "![comparison](compare.png)", ""]
    return "\n".join(lines)
