"""Running a comparison: the baseline, then each recipe, into one report folder; Ctrl-C keeps what finished."""

from __future__ import annotations

import traceback
from pathlib import Path

from .. import recipe as recipes
from .plan import Plan, slug
from .report import Result, write


def run(plan: Plan, runs_dir: str | Path = "runs", cbs=(), log=print) -> tuple[list[Result], Path]:
    """Baseline first, then each recipe; a recipe that fails is reported and the others still run.
    Ctrl-C (at any moment) ends the comparison: the run in progress is saved if it can be, marked
    `interrupted`, and the report is written for what finished.

    `cbs` (classes or factories: each run gets fresh ones) go to every run, e.g. the loggers; all runs and
    the baseline share one group, the report folder's name, so W&B shows them side by side."""
    from ..loop import run_folder
    from ..utils import signals

    report = run_folder.new_folder(Path(runs_dir), f"compare-{plan.name}")
    results: list[Result] = []
    base_accuracy, current = None, (f"baseline ({plan.distance})", "baseline")
    try:
        base_accuracy = _baseline(plan, report, cbs, results, log)
        for label, r in plan.runs:
            log(f"\n{label}: {r.short()}")
            current = (label, "sgd")
            if _sgd(label, r, report, cbs, results) == "interrupted":
                break
    except KeyboardInterrupt:
        if not results or results[-1].method != current[0]:  # not already recorded by the step itself
            results.append(Result.without_metrics(*current, "interrupted", "interrupted"))
    if any(r.status == "interrupted" for r in results):
        log("interrupted: the comparison stops here; the report covers the runs so far")
    with signals.deferred():  # a report is small, and must not be half written
        write(plan, results, report, base_accuracy)
    return results, report


def _baseline(plan: Plan, report: Path, cbs, results: list[Result], log) -> float:
    from .. import data
    from ..data import sources
    from ..loop.callbacks import instantiate, notify
    from ..tracking import plots
    from . import baseline

    dls = data.dataloaders(plan.source, bs=256, seed=plan.seed)
    base = baseline.run(dls, plan.distance)
    config = {"data.source": plan.source, "seed": plan.seed, "data.split_seed": sources.SPLIT_SEED}
    notify(
        instantiate(cbs), "after_baseline", base, config | {"baseline.distance": base.distance}, report.name
    )
    method = f"baseline ({plan.distance})"
    results.append(Result(method, "baseline", base.accuracy, base.per_class, 0, base.fit_seconds, "ok"))
    log(f"baseline: accuracy {base.accuracy:.4f}")
    plots.save(plots.ideal_digits(base.ideals, base.vocab), report / "ideal_digits.png")
    return base.accuracy


def _sgd(label: str, r: recipes.Recipe, report: Path, cbs, results: list[Result]) -> str:
    """One recipe of the comparison, saved in the report folder; its status."""
    from ..loop import train
    from ..tracking import plots

    try:
        fitted = train.run(r, cbs, runs_dir=report, group=report.name)
    except KeyboardInterrupt:
        results.append(Result.without_metrics(label, "sgd", "interrupted", "interrupted before it was saved"))
        raise
    except Exception as e:  # one broken run must not cost the others
        results.append(Result.without_metrics(label, "sgd", "failed", f"{type(e).__name__}: {e}"))
        (report / f"error-{slug(label)}.txt").write_text(traceback.format_exc())
        return "failed"
    status = {"diverged": "failed", "interrupted": "interrupted"}.get(fitted.stop_reason, "ok")
    error = None if status == "ok" else fitted.message
    results.append(
        Result(
            label,
            "sgd",
            fitted.accuracy,
            fitted.per_class,
            fitted.n_params,
            fitted.fit_seconds,
            status,
            error,
            fitted.run_dir,
            fitted.epochs,
        )
    )
    if fitted.learn.step2_predict.pixels_to_weights and not fitted.diverged:
        dls = fitted.learn.dls
        fig = plots.linear_weights(fitted.learn.model, dls.vocab, tuple(dls.valid.images.shape[1:]))
        plots.save(fig, report / f"weights-{slug(label)}.png")
    return status
