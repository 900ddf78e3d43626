"""A sweep's report: its trials sorted by the metric (CSV, Markdown, JSON), the best trial's recipe as a file
`sevenstep run` reproduces, and Optuna's own plots with the pixel-similarity baseline as a reference line."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from ..trials import study as studies
from ..trials.space import decode, encode
from ..utils import atomic, tables


def trial_rows(study, sweep) -> list[dict[str, Any]]:
    """Every trial but the ones interrupted and queued again, best first; unfinished ones last."""
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        if studies.interrupted(t):
            continue
        state = {"COMPLETE": "complete", "FAIL": "failed"}.get(t.state.name, t.state.name.lower())
        rows.append(
            {
                "trial": t.number,
                "state": state,
                sweep.metric: t.value if t.state == TrialState.COMPLETE else None,
                "last_reported": t.intermediate_values[max(t.intermediate_values)]
                if t.intermediate_values
                else None,
                **{d.key: decode(t.params[d.key]) if d.key in t.params else None for d in sweep.space},
                "values": " ".join(f"{v:.4f}" for v in t.user_attrs.get("values", [])),  # one a seed
                "interval": t.user_attrs.get("interval"),
                "vs_best": "",
                "stop_reason": t.user_attrs.get("stop_reason", ""),
                "seconds": round(t.duration.total_seconds(), 2) if t.duration else None,
                "error": t.user_attrs.get("error", ""),
                "run_dir": t.user_attrs.get("run_dir", ""),
                "run_dirs": t.user_attrs.get("run_dirs", []),
                "host": t.user_attrs.get("host", ""),
            }
        )
    sign = -1 if sweep.direction == "maximize" else 1
    rows = sorted(rows, key=lambda r: (r[sweep.metric] is None, sign * (r[sweep.metric] or 0), r["trial"]))
    if sweep.metric == "accuracy":
        _within_noise(rows)
    return rows


def _within_noise(rows: list[dict[str, Any]]) -> None:
    """Each complete trial against the best one, paired by seed and by image (sevenstep/stats.py),
    Holm-corrected over the trials: `within noise` where this data cannot tell it from the best. Trials
    whose runs are on another machine (no valid_outcomes.csv here) are left without a verdict."""
    from .. import stats
    from ..loop import run_folder

    def outcomes(row) -> list[dict[str, int]] | None:
        """Each seed's per-image outcomes, in seed order."""
        runs = []
        for folder in row["run_dirs"] or [row["run_dir"]]:
            if not folder or not (Path(folder) / run_folder.OUTCOMES).is_file():
                return None
            runs.append({o["item"]: o["correct"] for o in run_folder.read_outcomes(folder)})
        return runs

    complete = [r for r in rows if r["state"] == "complete"]
    if len(complete) < 2 or (best_runs := outcomes(complete[0])) is None:
        return
    complete[0]["vs_best"] = "best"
    tested, tests = [], []
    for row in complete[1:]:
        runs = outcomes(row)
        if runs is None or len(runs) != len(best_runs):
            continue
        tested.append(row)
        tests.append(stats.paired(str(row["trial"]), "best", runs, best_runs))
    for row, t in zip(tested, stats.decide(tests)):
        row["vs_best"] = f"{'within noise' if t.verdict == 'not shown' else t.verdict} (p={t.p:.2g})"


def write(study, sweep, sweep_dir: Path, baseline_accuracy: float | None) -> dict[str, Any]:
    """Write the report into the sweep's folder; return its summary (what --json prints)."""
    rows = trial_rows(study, sweep)
    _tables(rows, sweep_dir)
    best = next((r for r in rows if r["state"] == "complete"), None)
    best_file = None
    if best is not None:
        from ..recipe import dumps

        params = {d.key: encode(best[d.key]) for d in sweep.space}
        recipe = sweep.recipe(params, f"{sweep.name}-best").to_dict()
        best_file = sweep_dir / "best.toml"
        how = reproduce(sweep, best_file)
        over = f", the mean over seeds 1 to {sweep.repeats}" if sweep.repeats > 1 else ""
        atomic.write_text(
            best_file,
            f"# The best trial of sweep {sweep.name!r} (trial {best['trial']}, {sweep.metric} "
            f"{best[sweep.metric]:.4f}{over}); reproduce it with: {how}\n" + dumps(recipe),
        )
    plots = _plots(study, sweep, sweep_dir, baseline_accuracy)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    summary = {
        "name": sweep.name,
        "metric": sweep.metric,
        "direction": sweep.direction,
        "sampler": sweep.sampler,
        "sweep_dir": str(sweep_dir),
        "counts": counts,
        "best": best,
        "best_recipe": str(best_file) if best_file else None,
        "baseline_accuracy": baseline_accuracy,
        "plots": [str(p) for p in plots],
        "trials": rows,
    }
    atomic.write_text(sweep_dir / "trials.json", json.dumps(summary, indent=2))
    from .page import sweep as sweep_page

    summary["page"] = str(sweep_page(sweep_dir, study))
    return summary


def _tables(rows: list[dict[str, Any]], sweep_dir: Path) -> None:
    if not rows:
        return
    tables.write_csv(sweep_dir / "trials.csv", rows)
    atomic.write_text(sweep_dir / "trials.md", tables.markdown(format_rows(rows)))


def format_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    """The table people read: the trial, its state, the metric and the swept values; an accuracy in percent
    with one decimal, as a comparison's table gives it; no column that is empty in every row."""
    hidden = ("last_reported", "seconds", "error", "run_dir", "run_dirs", "host")
    keys = [k for k in rows[0] if k not in hidden]
    metric = keys[2]  # trial_rows puts it third
    percent = metric == "accuracy"

    def number(v: float) -> str:
        return tables.percent(v) if percent else f"{v:.4g}"

    def cell(r, k):
        v = r[k]
        if v is None and k == metric and r["last_reported"] is not None:  # a pruned trial: where it stopped
            return f"({number(r['last_reported'])})"
        if k == metric and isinstance(v, (int, float)):
            return number(v)
        if k == "interval" and v:
            return f"[{number(v[0])}, {number(v[1])}]"
        if k == "values" and v:
            return " ".join(number(float(x)) for x in v.split())
        return "-" if v is None or v == "" else f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[cell(r, k) for k in keys] for r in rows]
    kept = [i for i, k in enumerate(keys) if i < 3 or any(row[i] != "-" for row in cells)]
    return [[keys[i] for i in kept]] + [[row[i] for i in kept] for row in cells]


def _plots(study, sweep, sweep_dir: Path, baseline_accuracy: float | None) -> list[Path]:
    """Optuna's optimisation history and slice plots (the metric per value of each key), with the baseline."""
    import matplotlib.pyplot as plt
    import numpy as np
    import optuna.visualization.matplotlib as ovm
    from optuna.trial import TrialState

    from ..tracking import plots

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    out = []
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    # a key with one value has nothing to show across its values: no panel for it
    varied = [d.key for d in sweep.space if len({repr(t.params.get(d.key)) for t in done}) > 1]
    with warnings.catch_warnings(), plt.rc_context({"figure.max_open_warning": 0}):
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        history = ovm.plot_optimization_history(study, target_name=sweep.metric)
        per_key = (
            np.atleast_1d(ovm.plot_slice(study, params=varied, target_name=sweep.metric)) if varied else []
        )
    baseline = baseline_accuracy is not None and sweep.metric == "accuracy"
    for ax in [history, *per_key]:
        line = baseline and ax.axhline(
            baseline_accuracy, color="grey", linestyle=":", label="pixel-similarity baseline"
        )
    if baseline:
        history.legend(fontsize="small", loc="best")
    history.set_title(f"{sweep.name}: {sweep.metric} per trial")
    out.append(plots.save(history.figure, sweep_dir / "history.png"))
    if len(per_key):
        for ax in per_key:
            for points in ax.collections:  # Optuna colours by trial number from white: outline trial 0 too
                points.set_edgecolor("black")
                points.set_linewidth(0.5)
            ax.tick_params(axis="x", labelrotation=30, labelsize="small")  # long values no longer collide
        fig = per_key[0].figure
        fig.set_size_inches(2 + 3.5 * len(per_key), 4.8)
        fig.suptitle(f"{sweep.name}: {sweep.metric} per value of each swept key")
        if baseline:  # once, above the panels, where it covers no point
            fig.legend(handles=[line], fontsize="small", loc="upper right")
        out.append(plots.save(fig, sweep_dir / "per_key.png"))
    return out


def reproduce(sweep, best_file) -> str:
    """The command that gives the best trial's value again: a trial of `repeats` K is the mean of seeds 1 to K
    (run with --seeds K), not the file's own seed."""
    return f"sevenstep run {best_file}" + (f" --seeds {sweep.repeats}" if sweep.repeats > 1 else "")
