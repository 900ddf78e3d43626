"""Running a comparison: the baseline on each seed's split, and every (method, seed) run as a point of the
comparison's grid (grid.py), on the sweep's workers; then the report. Ctrl-C keeps every finished run in the
report, and running the same command again continues the comparison where it stopped."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
from pathlib import Path

from ..errors import UsageError
from .grid import ComparisonGrid
from .plan import Plan
from .report import Result, summary, write

STUDY = "study.journal"  # the comparison's Optuna journal, in its report folder
THREADS = 1  # CPU threads each run of a comparison computes with


def run(
    plan: Plan, runs_dir: str | Path = "runs", cbs=(), log=print, workers: int = 1, storage: str | None = None
) -> tuple[list[Result], Path]:
    """The baseline for each seed, then every recipe on every seed; a run that fails is reported and the others
    still run. Ctrl-C (at any moment) ends the comparison: the run in progress is saved if it can be, marked
    `interrupted`, and the report is written for what finished; the same call again continues it.

    `cbs` (classes or factories: each run gets fresh ones) go to every run, e.g. the loggers; all runs and the
    baseline share one group, the report folder's name, so W&B shows them side by side. `workers` processes on
    this machine train the runs (forked: they inherit `cbs`); `storage` is an Optuna storage that several
    machines running the same comparison share."""
    from ..callbacks import instantiate, notify
    from ..trials import workers as sweep_workers
    from ..utils import signals
    from .grid import WeightsPicture

    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    report, study, store = _open(plan, Path(runs_dir), storage, log)
    grid = ComparisonGrid(plan, report)
    log(f"page: {report / 'report.html'} (written as runs end; it reloads itself until the comparison ends)")
    if hasattr(store, "engine"):  # forked workers open their own connections, never the parent's
        store.engine.dispose()
    run_cbs = [*cbs, functools.partial(WeightsPicture, report, plan.seeds[0])]
    baselines: dict[int, Result] = {}
    interrupted = False
    try:
        if workers == 1:  # here, before training; with workers forked, after them (no torch before a fork)
            _baselines(plan, report, cbs, baselines, log)
        job = ("sevenstep.compare.grid:load", str(plan.file), plan.seeds_option, str(report))
        args = (job, storage, str(report), "disabled", ".", run_cbs)
        # one CPU thread a run, however many workers: a convolution sums in another order on 2 threads than
        # on 1, so the table would depend on --workers (a CNN's seed moved by an image); small models are
        # bound by per-batch overhead, and N workers use N cores
        interrupted = sweep_workers.run_workers(args, workers, threads=THREADS)
        if workers > 1 and not interrupted:
            _baselines(plan, report, cbs, baselines, log)
    except KeyboardInterrupt:
        interrupted = True
    if interrupted and len(baselines) < len(plan.seeds):
        pending = next(s for s in plan.seeds if s not in baselines)
        baselines[pending] = Result.without_metrics(f"baseline ({plan.distance})", "baseline", "interrupted",
                                                    "interrupted", pending)  # fmt: skip
    results = _collect(
        plan, grid, study, baselines, "not run: the comparison was stopped first" if interrupted else MISSING
    )
    if interrupted:
        log("interrupted: the comparison stops here; the report covers the runs so far. Run the same command "
            "again to continue it")  # fmt: skip
    with signals.deferred():  # a report is small, and must not be half written
        rows = write(plan, results, report)
        notify(instantiate(cbs), "after_comparison", summary(plan, results, report, rows), report.name)
        if not interrupted and not any(t.state.name in ("WAITING", "RUNNING") for t in study.get_trials()):
            (report / UNFINISHED).unlink(missing_ok=True)
    return results, report


BASELINE_OUTCOMES = "baseline_outcomes.csv"  # the baseline's per-image outcomes, as runs' valid_outcomes.csv
UNFINISHED = "UNFINISHED"  # in a report folder until every run of its comparison has ended
MISSING = "not finished: its worker was killed, or another process still runs it"


def _open(plan: Plan, runs_dir: Path, storage: str | None, log):
    """The report folder and study to run in: the newest unfinished one of this comparison (the same methods,
    recipes and seeds), to continue it; else a new folder."""
    from ..loop import run_folder
    from ..trials import study as studies

    for folder in sorted(
        runs_dir.glob(f"compare-{plan.name}-*"), key=lambda p: p.stat().st_mtime, reverse=True
    ):
        if not (folder / UNFINISHED).exists() or not ((folder / STUDY).exists() or storage):
            continue
        store = studies.storage_for(storage or str(folder / STUDY), folder)
        try:
            study = studies.open_study(ComparisonGrid(plan, folder), store)
        except UsageError:  # another version of the comparison: it starts afresh below
            break
        if n := studies.recover_stale(study, store):
            log(f"{n} run(s) left unfinished by a stopped process will run again")
        log(f"continuing {folder}")
        return folder, study, store
    store = (
        studies.storage_for(storage, runs_dir) if storage else None
    )  # one that cannot open: no folder made
    if store is not None:
        _refuse_finished(plan, store, storage)
    report = run_folder.new_folder(runs_dir, f"compare-{plan.name}")
    try:  # a refusal (another comparison of this name in the storage) leaves no empty folder behind
        (report / UNFINISHED).write_text(
            "this comparison has not finished; run the same command again to continue\n"
        )
        store = store or studies.storage_for(str(report / STUDY), report)
        return report, studies.open_study(ComparisonGrid(plan, report), store), store
    except BaseException:
        shutil.rmtree(report, ignore_errors=True)
        raise


def _refuse_finished(plan: Plan, store, storage: str) -> None:
    """A shared storage that already holds every run of this comparison, finished: running it again would
    train nothing and write a report whose runs are another folder's."""
    import optuna

    from ..trials.study import READY, masked

    grid = ComparisonGrid(plan, Path())  # its name and signature: no folder is needed for them
    try:
        study = optuna.load_study(study_name=grid.name, storage=store)
    except KeyError:
        return
    trials = study.get_trials(deepcopy=False)
    same = study.user_attrs.get(READY) == grid.signature()
    if same and trials and all(t.state.is_finished() for t in trials):
        folders = sorted(
            {str(Path(t.user_attrs["run_dir"]).parent) for t in trials if t.user_attrs.get("run_dir")}
        )
        raise UsageError(
            f"--storage {masked(storage)}: comparison {plan.name!r} has finished there, every run of it; its "
            f"report is {' and '.join(folders) or 'on the machine that ran it'}. To run it again, give it another "
            "name (name = ... in its file) or another --storage"
        )


def _baselines(plan: Plan, report: Path, cbs, done: dict[int, Result], log) -> None:
    """The baseline on each seed's split: computed once when every seed shares the split."""
    from .. import data
    from ..callbacks import instantiate, notify
    from ..data import sources
    from ..loop import run_folder
    from ..tracking import plots
    from ..utils import tables
    from . import baseline

    method = f"baseline ({plan.distance})"
    rows = []  # baseline_outcomes.csv: every verdict against the baseline can be checked by hand
    for seed in plan.seeds:
        if done and plan.one_split:
            done[seed] = dataclasses.replace(next(iter(done.values())), seed=seed)
            continue
        dls = data.dataloaders(plan.source, bs=256, seed=seed, **plan.split_options(seed))
        base = baseline.run(dls, plan.distance)
        options = plan.split_options(seed)
        split_seed = (
            options.get("split_seed", seed)
            if options.get("valid_pct") or "folds" in options
            else sources.SPLIT_SEED
        )
        config = {
            "data.source": plan.source,
            "seed": seed,
            "data.split_seed": split_seed,
            "compare.label": method,
        }
        loggers = instantiate(cbs)
        notify(loggers, "after_baseline", base, config | {"baseline.distance": base.distance}, report.name)
        items = [run_folder.item_name(f, dls.source.path) for f in dls.valid.items]
        done[seed] = Result(
            method, "baseline", base.accuracy, base.per_class, 0, base.fit_seconds, "ok", seed=seed,
            n_valid=len(items), majority=_majority(base.labels), outcomes=dict(zip(items, base.correct)),
            test=base.test,
        )  # fmt: skip
        split = "shared" if plan.one_split else seed
        rows += [
            {"split": split, "item": i, "label": y, "predicted": p, "correct": c}
            for i, y, p, c in zip(items, base.labels, base.predicted, base.correct)
        ]
        log(f"baseline{'' if plan.one_split else f' (seed {seed})'}: accuracy {base.accuracy:.4f}")
        if seed == plan.seeds[0]:
            plots.save(plots.ideal_digits(base.ideals, base.vocab), report / "ideal_digits.png")
    if rows:
        tables.write_csv(report / BASELINE_OUTCOMES, rows)


def _collect(
    plan: Plan, grid: ComparisonGrid, study, baselines: dict[int, Result], missing: str = MISSING
) -> list[Result]:
    """Every ended run of the study as a Result, in the plan's order: seed by seed, the baseline, then each
    method. A point that ran twice (stopped, then run again) keeps its finished run."""
    from ..trials import study as studies
    from ..trials.space import decode

    found: dict[tuple[str, int], Result] = {}
    for t in study.get_trials(deepcopy=False):
        if not t.params or t.state.name in ("WAITING", "RUNNING"):
            continue
        key = (decode(t.params["label"]), int(t.params["seed"]))
        result = _result(key, t, studies.interrupted(t))
        if key not in found or found[key].status != "ok":
            found[key] = result
    ordered = []
    for seed in plan.seeds:
        if seed in baselines:
            ordered.append(baselines[seed])
        for (
            label
        ) in grid.labels:  # a run no process finished: its worker was killed, or another still runs it
            ordered.append(
                found.get((label, seed)) or Result.without_metrics(label, "sgd", "missing", missing, seed)
            )
    return ordered


def _result(key: tuple[str, int], trial, interrupted: bool) -> Result:
    """A trial's run, read back from its folder (result.json, valid_outcomes.csv)."""
    from ..loop import run_folder

    label, seed = key
    folder = trial.user_attrs.get("run_dir")
    if not folder or not (Path(folder) / run_folder.RESULT).is_file():
        if interrupted:
            return Result.without_metrics(
                label, "sgd", "interrupted", "interrupted before it was saved", seed
            )
        return Result.without_metrics(label, "sgd", "failed", trial.user_attrs.get("error", "failed"), seed)
    saved = json.loads((Path(folder) / run_folder.RESULT).read_text())
    stop = saved["stop_reason"]
    status = {"diverged": "failed", "interrupted": "interrupted"}.get(stop, "ok")
    outcomes = run_folder.read_outcomes(folder) if (Path(folder) / run_folder.OUTCOMES).is_file() else []
    return Result(
        label, "sgd", saved["accuracy"], saved["per_class"], saved["n_params"], saved["fit_seconds"], status,
        None if status == "ok" else saved["message"], folder, saved["epochs"], seed=seed, n_valid=saved["n_valid"],
        majority=_majority([o["label"] for o in outcomes]), outcomes={o["item"]: o["correct"] for o in outcomes},
        test=saved.get("test"),
    )  # fmt: skip


def _majority(labels: list) -> float:
    return max(labels.count(c) for c in set(labels)) / len(labels) if labels else 0.5
