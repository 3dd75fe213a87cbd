"""``tnnspec search --report DIR``: the study of a search folder as ``DIR/report/``.

* ``report.md`` — the study (storage, objectives, trials by state), the best trial (one
  objective) or the Pareto front (several), a table of every trial (state, values,
  parameters, metrics), and the plots;
* ``trials.csv`` — one row per trial: number, state, values, parameters, metrics, graph file;
* ``best/`` — the graph files of the best trial or of the Pareto front (re-made from the
  trial's values with the space when the file is not on this machine);
* ``history.png`` — each objective over the trials with the best so far;
* ``pareto.png`` — with two objectives: every complete trial and the Pareto front;
* ``importances.png`` — parameter importances (``optuna.importance.get_param_importances``,
  fANOVA) for each objective, with at least two complete trials; a failure is noted in the
  report instead.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

from .engine import SearchError, format_values, read_search_json, require_optuna


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def dominates(a, b, directions) -> bool:
    """Whether values ``a`` Pareto-dominate ``b`` (no worse in all, better in one)."""
    sign = [1 if d == "maximize" else -1 for d in directions]
    better = False
    for x, y, s in zip(a, b, sign):
        if s * x < s * y:
            return False
        if s * x > s * y:
            better = True
    return better


def load_report_study(out: str | Path, storage: str | None = None):
    """(search.json contents, the study, the space or None) of a search folder."""
    optuna = require_optuna()
    from .engine import absolute_storage_url, check_storage_url, make_storage

    info = read_search_json(out)
    url = storage or info.get("storage")
    if not url:
        raise SearchError(f"{out}/search.json names no storage; pass --storage URL")
    if "***" in url and storage is None:
        raise SearchError(f"{out}/search.json holds the storage URL without its password ({url}); "
                          "pass --storage URL (or use ~/.pgpass / PGPASSWORD)")
    url = absolute_storage_url(check_storage_url(url))
    store = make_storage(url)
    try:
        study = optuna.load_study(study_name=info["study"], storage=store)
    except KeyError:
        raise SearchError(f"no study named {info['study']!r} in {url}") from None
    space = None
    try:
        from .space import load_space

        if info.get("space") and Path(info["space"]).is_file():
            space = load_space(info["space"])
    except Exception:  # the report works without the space (it only re-makes missing graph files)
        space = None
    return info, study, space


def write_report(out: str | Path, storage: str | None = None) -> Path:
    """Write ``out/report/`` for the search in ``out``; returns the report folder."""
    from optuna.trial import TrialState

    out = Path(out)
    info, study, space = load_report_study(out, storage)
    rep = out / "report"
    rep.mkdir(parents=True, exist_ok=True)
    directions = [d.name.lower() for d in study.directions]
    names = list(study.user_attrs.get("objectives") or info.get("objectives") or
                 [f"objective {i}" for i in range(len(directions))])
    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    multi = len(directions) > 1
    if complete:
        best = list(study.best_trials) if multi else [study.best_trial]
    else:
        best = []
    best_numbers = {t.number for t in best}
    params = sorted({k for t in trials for k in t.params})
    metrics = sorted({k[7:] for t in trials for k in t.user_attrs if k.startswith("metric.")})

    # trials.csv
    with open(rep / "trials.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["number", "state", *names, "best", *params, *(f"metric.{m}" for m in metrics), "duration_s",
                    "pruned_reason", "error", "retry_of", "graph_file"])
        for t in trials:
            values = list(t.values) if t.values is not None else [None] * len(names)
            dur = t.duration.total_seconds() if t.duration is not None else None
            w.writerow([t.number, t.state.name, *(_fmt(v) for v in values), t.number in best_numbers,
                        *(_fmt(t.params.get(p)) for p in params),
                        *(_fmt(t.user_attrs.get(f"metric.{m}")) for m in metrics), _fmt(dur),
                        t.user_attrs.get("pruned_reason", ""), t.user_attrs.get("error", ""),
                        _fmt(t.system_attrs.get("failed_trial")), t.user_attrs.get("graph_file", "")])

    # best graph files
    best_dir = rep / "best"
    if best_dir.exists():
        shutil.rmtree(best_dir)
    best_dir.mkdir()
    best_files = {}
    for t in best:
        src = t.user_attrs.get("graph_file")
        name = Path(src).name if src else f"trial-{t.number}.yaml"
        dest = best_dir / name
        if src and Path(src).is_file():
            shutil.copyfile(src, dest)
            best_files[t.number] = dest
        elif space is not None:
            try:
                tg = space.materialise(dict(t.params))
                dest = best_dir / tg.filename
                dest.write_text(tg.text, encoding="utf-8")
                best_files[t.number] = dest
            except Exception:
                pass

    notes: list[str] = []
    plots = []
    try:
        plots += _plots(rep, study, complete, names, directions, best, notes)
    except Exception as exc:  # matplotlib trouble must not lose the tables
        notes.append(f"plots could not be drawn: {type(exc).__name__}: {exc}")

    # report.md
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    lines = [f"# Search report: {info['study']}", "",
             f"* space: `{info.get('space')}`", f"* storage: `{info.get('storage')}`",
             f"* study: `{info['study']}`, budget {info.get('trials', '?')} finished trials",
             "* objectives: " + ", ".join(f"`{n}` ({d})" for n, d in zip(names, directions)),
             "* trials: " + ", ".join(f"{n} {s.lower()}" for s, n in counts.items() if n), ""]
    if not best:
        lines += ["No trial is complete yet.", ""]
    elif multi:
        lines += [f"## Pareto front ({len(best)} trials)", "",
                  "Trials no other complete trial beats in every objective at once.", "",
                  "| trial | " + " | ".join(names) + " | graph |", "|---" * (len(names) + 2) + "|"]
        for t in sorted(best, key=lambda t: t.values[0]):
            g = best_files.get(t.number)
            lines.append(f"| {t.number} | " + " | ".join(_fmt(v) for v in t.values)
                         + f" | {f'[{g.name}](best/{g.name})' if g else '-'} |")
        lines.append("")
    else:
        t = best[0]
        g = best_files.get(t.number)
        lines += ["## Best trial", "",
                  f"Trial {t.number}: {names[0]} = {format_values(t.values)}"
                  + (f"; graph [{g.name}](best/{g.name})" if g else ""), "",
                  "| parameter | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in t.params.items()]
        lines.append("")
    for p in plots:
        lines += [f"![{p}]({p})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"* {n}" for n in notes] + [""]
    lines += ["## Trials", "", "| trial | state | " + " | ".join(names) + " | " + " | ".join(f"`{p}`" for p in params)
              + " | params | flops | note |",
              "|---" * (len(names) + len(params) + 5) + "|"]
    for t in trials:
        values = list(t.values) if t.values is not None else [None] * len(names)
        note = t.user_attrs.get("pruned_reason") or t.user_attrs.get("error") or ""
        if t.user_attrs.get("surplus"):
            note = "not needed (budget reached)"
        if t.user_attrs.get("same_as_trial") is not None:
            note = f"same graph as trial {t.user_attrs['same_as_trial']} (not trained again)"
        if "failed_trial" in t.system_attrs:
            note = (note + "; " if note else "") + f"retry of trial {t.system_attrs['failed_trial']}"
        if t.state == TrialState.FAIL and not note:
            note = "worker lost"
        star = " **best**" if t.number in best_numbers else ""
        lines.append(f"| {t.number}{star} | {t.state.name} | " + " | ".join(_fmt(v) for v in values) + " | "
                     + " | ".join(_fmt(t.params.get(p)) for p in params)
                     + f" | {_fmt(t.user_attrs.get('metric.params'))} | {_fmt(t.user_attrs.get('metric.flops'))} | "
                     + note.replace("|", "\\|").replace("\n", " ")[:200] + " |")
    lines.append("")
    (rep / "report.md").write_text("\n".join(lines), encoding="utf-8")
    return rep


def _plots(rep: Path, study, complete, names, directions, best, notes) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    if not complete:
        return drawn
    # objective history with best so far
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(7, 2.8 * n), squeeze=False)
    for i, (ax, name, d) in enumerate(zip(axes[:, 0], names, directions)):
        xs = [t.number for t in complete]
        ys = [t.values[i] for t in complete]
        ax.plot(xs, ys, "o", color="tab:blue", alpha=0.7, label="trial")
        run, best_y = [], None
        for y in ys:
            best_y = y if best_y is None else (max(best_y, y) if d == "maximize" else min(best_y, y))
            run.append(best_y)
        ax.step(xs, run, where="post", color="tab:red", label="best so far")
        ax.set_ylabel(name)
        ax.set_title(f"{name} ({d})", fontsize=9)
        ax.legend(fontsize=8)
    axes[-1, 0].set_xlabel("trial")
    fig.tight_layout()
    fig.savefig(rep / "history.png", dpi=100)
    plt.close(fig)
    drawn.append("history.png")
    # Pareto front
    if n == 2:
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.scatter([t.values[0] for t in complete], [t.values[1] for t in complete], color="tab:gray",
                   alpha=0.6, label="trial")
        front = sorted(best, key=lambda t: t.values[0])
        ax.plot([t.values[0] for t in front], [t.values[1] for t in front], "o-", color="tab:red",
                label="Pareto front")
        for t in front:
            ax.annotate(str(t.number), (t.values[0], t.values[1]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xlabel(f"{names[0]} ({directions[0]})")
        ax.set_ylabel(f"{names[1]} ({directions[1]})")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(rep / "pareto.png", dpi=100)
        plt.close(fig)
        drawn.append("pareto.png")
    # parameter importances
    if len(complete) < 2:
        notes.append("parameter importances need at least 2 complete trials")
        return drawn
    from optuna.importance import get_param_importances

    results = {}
    for i, name in enumerate(names):
        try:
            imp = get_param_importances(study, target=(lambda t, i=i: t.values[i]) if n > 1 else None)
            if imp and all(math.isfinite(v) for v in imp.values()):
                results[name] = imp
            else:
                notes.append(f"parameter importances for {name}: none (no parameter varied?)")
        except Exception as exc:
            notes.append(f"parameter importances for {name} could not be computed: {type(exc).__name__}: {exc}")
    if results:
        fig, axes = plt.subplots(len(results), 1, figsize=(7, 0.5 + 0.4 * max(len(v) for v in results.values())
                                                           * len(results) + 0.6 * len(results)), squeeze=False)
        for ax, (name, imp) in zip(axes[:, 0], results.items()):
            keys = list(imp)[::-1]
            ax.barh(keys, [imp[k] for k in keys], color="tab:blue")
            ax.set_title(f"parameter importance for {name} (fANOVA)", fontsize=9)
            ax.set_xlim(0, 1)
        fig.tight_layout()
        fig.savefig(rep / "importances.png", dpi=100)
        plt.close(fig)
        drawn.append("importances.png")
    return drawn
