"""Running a comparison: the baseline, then each recipe, into one report folder; Ctrl-C keeps what finished."""

from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path

from .. import recipe as recipes
from .plan import Plan, slug
from .report import Result, summary, write


def run(plan: Plan, runs_dir: str | Path = "runs", cbs=(), log=print) -> tuple[list[Result], Path]:
    """For each seed, the baseline, then each recipe; a recipe that fails is reported and the others still
    run. Ctrl-C (at any moment) ends the comparison: the run in progress is saved if it can be, marked
    `interrupted`, and the report is written for what finished.

    `cbs` (classes or factories: each run gets fresh ones) go to every run, e.g. the loggers; all runs and
    the baseline share one group, the report folder's name, so W&B shows them side by side."""
    from ..loop import run_folder
    from ..loop.callbacks import instantiate, notify
    from ..utils import signals

    report = run_folder.new_folder(Path(runs_dir), f"compare-{plan.name}")
    results: list[Result] = []
    base = None
    current = (f"baseline ({plan.distance})", "baseline", plan.seed)
    try:
        for seed in plan.seeds:
            if len(plan.seeds) > 1:
                log(f"\nseed {seed}")
            current = (f"baseline ({plan.distance})", "baseline", seed)
            base = _baseline(plan, seed, report, cbs, results, log, base)
            for label, _ in plan.runs:
                r = plan.recipe(label, seed)
                log(f"\n{label}: {r.short()}")
                current = (label, "sgd", seed)
                if _sgd(plan, label, seed, r, report, cbs, results) == "interrupted":
                    raise KeyboardInterrupt
    except KeyboardInterrupt:
        method, kind, seed = current
        if not any(r.method == method and r.seed == seed for r in results):  # not recorded by the step itself
            results.append(Result.without_metrics(method, kind, "interrupted", "interrupted", seed))
    if any(r.status == "interrupted" for r in results):
        log("interrupted: the comparison stops here; the report covers the runs so far")
    with signals.deferred():  # a report is small, and must not be half written
        rows = write(plan, results, report)
        notify(instantiate(cbs), "after_comparison", summary(plan, results, report, rows), report.name)
    return results, report


def _baseline(plan: Plan, seed: int, report: Path, cbs, results: list[Result], log, previous):
    """The baseline on this seed's split: computed once when every seed shares the split."""
    from .. import data
    from ..data import sources
    from ..loop.callbacks import instantiate, notify
    from ..tracking import plots
    from . import baseline

    method = f"baseline ({plan.distance})"
    if previous is not None and plan.split == "fixed":
        results.append(dataclasses.replace(previous, seed=seed))
        return previous
    dls = data.dataloaders(plan.source, bs=256, seed=seed, **plan.split_options(seed))
    base = baseline.run(dls, plan.distance)
    split_seed = seed if plan.split == "per_seed" else sources.SPLIT_SEED
    config = {
        "data.source": plan.source,
        "seed": seed,
        "data.split_seed": split_seed,
        "compare.label": method,
    }
    notify(
        instantiate(cbs), "after_baseline", base, config | {"baseline.distance": base.distance}, report.name
    )
    items = [_item(f, dls.source.path) for f in dls.valid.items]
    result = Result(
        method, "baseline", base.accuracy, base.per_class, 0, base.fit_seconds, "ok", seed=seed,
        n_valid=len(items), majority=_majority(base.labels), outcomes=dict(zip(items, base.correct)),
    )  # fmt: skip
    results.append(result)
    log(f"baseline: accuracy {base.accuracy:.4f}")
    if previous is None:
        plots.save(plots.ideal_digits(base.ideals, base.vocab), report / "ideal_digits.png")
    return result


def _item(path, root) -> str:
    """An image as the runs' valid_outcomes.csv name it: its path from the source's folder."""
    return Path(path).relative_to(root).as_posix() if Path(path).is_relative_to(root) else str(path)


def _majority(labels: list) -> float:
    return max(labels.count(c) for c in set(labels)) / len(labels) if labels else 0.5


def _sgd(
    plan: Plan, label: str, seed: int, r: recipes.Recipe, report: Path, cbs, results: list[Result]
) -> str:
    """One recipe of the comparison on one seed, saved in the report folder; its status."""
    from ..loop import train
    from ..tracking import plots

    config = {"compare.name": plan.name, "compare.label": label}
    try:
        fitted = train.run(r, cbs, runs_dir=report, group=report.name, config=config)
    except KeyboardInterrupt:
        results.append(
            Result.without_metrics(label, "sgd", "interrupted", "interrupted before it was saved", seed)
        )
        raise
    except Exception as e:  # one broken run must not cost the others
        results.append(Result.without_metrics(label, "sgd", "failed", f"{type(e).__name__}: {e}", seed))
        (report / f"error-{slug(label)}-seed{seed}.txt").write_text(traceback.format_exc())
        return "failed"
    status = {"diverged": "failed", "interrupted": "interrupted"}.get(fitted.stop_reason, "ok")
    error = None if status == "ok" else fitted.message
    labels = [o["label"] for o in fitted.outcomes]
    results.append(
        Result(
            label, "sgd", fitted.accuracy, fitted.per_class, fitted.n_params, fitted.fit_seconds, status,
            error, fitted.run_dir, fitted.epochs, seed=seed, n_valid=fitted.n_valid, majority=_majority(labels),
            outcomes={o["item"]: o["correct"] for o in fitted.outcomes},
        )
    )  # fmt: skip
    if fitted.learn.step2_predict.pixels_to_weights and not fitted.diverged and seed == plan.seeds[0]:
        dls = fitted.learn.dls
        fig = plots.linear_weights(fitted.learn.model, dls.vocab, tuple(dls.valid.images.shape[1:]))
        plots.save(fig, report / f"weights-{slug(label)}.png")
    return status
