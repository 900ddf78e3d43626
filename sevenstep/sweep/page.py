"""A sweep's report.html: its trials table and Optuna's own plotly figures, with the baseline as a line."""

from __future__ import annotations

import functools
from pathlib import Path

from ..tracking.page import BASELINE_COLOUR, PAGE, Page, configs, inside, read_json


def sweep(
    sweep_dir: Path,
    study=None,
    storage: str | None = None,
    out: Path | None = None,
    summary: dict | None = None,
    live: str | None = None,
) -> Path:
    """The page of a sweep's folder: its trials table and Optuna's own plotly figures (the study read from
    `storage`, by default the folder's journal, when none is given); `summary` and `live` as for a comparison."""
    import warnings

    import optuna
    import optuna.visualization as ov

    summary = summary if summary is not None else read_json(sweep_dir / "trials.json")
    page = Page(f"Sweep: {summary['name']}", f"{summary['direction']} {summary['metric']}, sampler "
                f"{summary['sampler']}; folder {sweep_dir}", live)  # fmt: skip
    page.heading("Trials")
    trials = summary["trials"]
    if trials:
        from .report import format_rows

        page.table(format_rows(trials), id="trials")
    best = summary.get("best")
    if best:
        header, row = format_rows([best])
        page.note(
            f"best: trial {best.get('trial')}, {summary['metric']} {row[header.index(summary['metric'])]}"
        )
    if study is None and (storage or (sweep_dir / "study.journal").is_file()):
        from ..trials.study import storage_for

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=summary["name"], storage=storage_for(storage, sweep_dir))
    if study is not None:
        from optuna.trial import TrialState

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        # an axis or a panel for a key that took one value shows nothing
        varied = sorted({k for t in done for k in t.params if len({repr(u.params.get(k)) for u in done}) > 1})
        baseline = summary.get("baseline_accuracy") if summary["metric"] == "accuracy" else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for title, draw in (("Optimisation history", ov.plot_optimization_history),
                                ("Parallel coordinates", functools.partial(ov.plot_parallel_coordinate, params=varied)),
                                ("The metric per value of each key", functools.partial(ov.plot_slice, params=varied)),
                                ("Which keys mattered (fANOVA importance)", ov.plot_param_importances)):  # fmt: skip
                if draw is not ov.plot_optimization_history and not varied:
                    page.heading(title)
                    page.note("not drawn: every swept key took one value")
                    continue
                try:
                    fig = draw(study, target_name=summary["metric"])
                except (ValueError, RuntimeError) as e:  # too few trials, or one value per key
                    page.heading(title)
                    page.note(f"not drawn: {e}")
                    continue
                page.heading(title)
                page.figure(_readable(fig, baseline, title.startswith(("Optimisation", "The metric"))))
    page.heading("What each trial was")
    folders = [(f"trial {t['trial']}", inside(sweep_dir, t.get("run_dir"))) for t in trials]
    configs(page, [(label, folder) for label, folder in folders if folder])
    return page.write(out or sweep_dir / PAGE)


def _readable(fig, baseline: float | None, with_baseline: bool):
    """Optuna's figure, its trials coloured on a scale whose first trial is not white on white, and the
    pixel-similarity baseline as a line where the metric is on the y axis."""
    fig.update_traces(selector=dict(type="scatter"), marker_colorscale="Viridis")
    if baseline is not None and with_baseline:
        fig.add_hline(y=baseline, line_dash="dash", line_color=BASELINE_COLOUR, annotation_text="baseline",
                      annotation_position="bottom right")  # fmt: skip
    return fig
