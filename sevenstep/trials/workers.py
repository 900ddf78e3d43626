"""Running a sweep's trials: one worker in this process, or N worker processes that split the cores.

Each worker takes trials from the study until none is left (study.next_trial); each trial is a full
sevenstep run (train.run) with the sweep's loggers and a pruning reporter. Ctrl-C or SIGTERM reaches the
main process, which passes SIGTERM on to the workers once: each ends its trial as interrupted (saved, its
W&B run finished), puts its point back in the queue, and stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

from fastai.callback.core import CancelFitException

from .. import metrics
from ..callbacks import ENDINGS, PRUNER_ORDER, SparseCallback
from ..utils import signals
from ..utils.processes import quiet_warnings
from . import load_job
from . import study as studies
from .space import encode, show_params


class TrialReporter(SparseCallback):
    """The trial's side of a run: the metric to Optuna after every epoch (the pruner may stop the run there),
    and how the run ended once it is saved. Telling the study in `after_run` puts it inside the part of a run
    that a Ctrl-C waits for, so a trial that was saved is never lost to the signal that stops its worker.

    With `repeats = K` a trial is K runs, one a seed, each with a reporter of its own sharing `runs`: the study
    is told once, after the last seed's run (or the first one that did not end well)."""

    order = PRUNER_ORDER

    def __init__(self, sweep, study, storage, trial, params, log, runs: list | None = None):
        self.sweep, self.study, self.storage, self.trial, self.params, self.log = (
            sweep,
            study,
            storage,
            trial,
            params,
            log,
        )
        self.runs = [] if runs is None else runs  # the results of this trial's runs so far, one a seed
        self.outcome, self.start = None, time.perf_counter()

    def after_epoch(self):
        if self.sweep.repeats > 1:  # the epochs of several seeds are not one trial's steps
            return
        row = self.learn.run_log.epochs[-1]
        self.trial.report(row[self.sweep.metric], step=row["epoch"])
        if self.trial.should_prune():
            self.learn.run_info.stop_reason = "pruned"
            raise CancelFitException()

    def after_run(self, result):
        self.runs.append(result.to_json())
        if len(self.runs) == self.sweep.repeats or result.stop_reason in ENDINGS:
            self.outcome = conclude(self.sweep, self.study, self.storage, self.trial, self.params, self.runs,
                                    time.perf_counter() - self.start, self.log)  # fmt: skip


def conclude(sweep, study, storage, trial, params, runs: list[dict], seconds: float, log) -> str:
    """Tell the study how a trial's runs (their result.json) ended: complete, pruned, failed or interrupted.
    With several seeds the trial's value is the mean of theirs; each seed's value and the interval are kept."""
    from optuna.trial import TrialState

    from .. import stats

    result = runs[-1]
    n, shown, stop = trial.number, show_params(params), result["stop_reason"]
    trial.set_user_attr("run_dir", runs[0]["run_dir"])
    trial.set_user_attr("run_dirs", [r["run_dir"] for r in runs])
    trial.set_user_attr("stop_reason", stop)
    values = [metrics.value(r, sweep.metric) for r in runs]
    if stop == "interrupted":
        studies.requeue(study, storage, trial)
        log(f"trial {n}: interrupted ({shown}); saved in {result['run_dir']}, it will run again")
        return "interrupted"
    if stop == "pruned":
        study.tell(trial, state=TrialState.PRUNED)
        log(f"trial {n}: pruned after {len(result['epochs'])} epoch(s)  {shown}  [{seconds:.1f} s]")
        return "pruned"
    if stop == "diverged" or None in values:
        trial.set_user_attr("error", result["message"])
        study.tell(trial, state=TrialState.FAIL)
        log(f"trial {n}: failed: {result['message']}  {shown}")
        return "failed"
    from ..data.sources import one_split

    proportion = metrics.get(sweep.metric).percent  # a share of images (accuracy), not a loss
    value, interval = stats.over_seeds(
        values, result["n_valid"], one_split(result["recipe"]["data"]), proportion
    )
    if len(values) > 1:
        trial.set_user_attr("seeds", [r["recipe"]["seed"] for r in runs])
        trial.set_user_attr("values", values)
        trial.set_user_attr("interval", list(interval) if interval else None)
    study.tell(trial, value)
    each = f" (seeds: {', '.join(f'{v:.4f}' for v in values)})" if len(values) > 1 else ""
    log(f"trial {n}: {sweep.metric} {value:.4f}{each}  {shown}  [{seconds:.1f} s]")
    return "complete"


def run_trial(sweep, study, storage, trial, session, trials_dir: Path, log, cbs=None) -> str:
    """Run one trial; the study is told how it ended: complete, pruned, failed or interrupted. `sweep` is a
    sweep, or a comparison's grid (sevenstep/compare/grid.py): both say how their runs are named, logged and
    saved. `cbs` (factories) replace its own callbacks: a comparison's caller may hand in its own."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    from ..loop import train

    params = {d.key: encode(d.suggest(trial)) for d in sweep.space}
    name = sweep.run_name(trial.number, params)
    config = sweep.run_config(trial.number, params)
    if sweep.processes > 1:
        return _run_trial_in_processes(sweep, study, storage, trial, params, name, session, trials_dir, log)
    runs: list[dict] = []
    reporters = [TrialReporter(sweep, study, storage, trial, params, log, runs) for _ in range(sweep.repeats)]
    recipe = sweep.recipe(params, name)
    try:
        for k, reporter in enumerate(reporters, 1):
            callbacks = [*(sweep.callbacks(session) if cbs is None else cbs), reporter]
            if sweep.repeats > 1:  # seeds 1 to K, each its own run
                recipe_k = dataclasses.replace(recipe, seed=k, name=f"{name}-seed{k}")
            else:
                recipe_k = recipe
            # fastai's epoch tables from N workers at once would interleave: one line a trial instead
            with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
                train.run(recipe_k, callbacks, trials_dir, group=sweep.group, job_type=sweep.job_type,
                          config=config, pictures=sweep.pictures(params))  # fmt: skip
            if reporter.outcome is not None:
                return reporter.outcome
    except KeyboardInterrupt:
        reporter = next((r for r in reporters if r.outcome is not None), reporters[0])
        if reporter.outcome is None:  # stopped before its run was saved
            studies.requeue(study, storage, trial)
            log(f"trial {trial.number}: interrupted before it was saved; it will run again")
        return "interrupted"
    except UpdateFinishedTrialError:  # another process judged this one gone and put the trial back
        log(f"trial {trial.number}: taken back by another process (it will run again); going on")
        return "taken back"
    except Exception as e:  # one broken trial must not stop the sweep
        trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
        study.tell(trial, state=TrialState.FAIL)
        log(f"trial {trial.number}: failed: {type(e).__name__}: {e}")
        return "failed"
    return reporters[-1].outcome


def _run_trial_in_processes(sweep, study, storage, trial, params, name, session, trials_dir, log) -> str:
    """A data-parallel trial: `sevenstep run --processes N` on the trial's recipe, in the sweep's W&B group;
    its JSON result is told to the study. (No pruner: it would have to stop every process at once.)"""
    import json
    import subprocess
    import tempfile

    from optuna.trial import TrialState

    from ..loop.distributed import launch_command, launch_env
    from ..recipe import dumps

    start = time.perf_counter()
    trials_dir.mkdir(parents=True, exist_ok=True)
    fd, file = tempfile.mkstemp(dir=trials_dir, prefix=f".{name}-", suffix=".toml")
    with os.fdopen(fd, "w") as f:
        f.write(dumps(sweep.recipe(params, name).to_dict()))
    args = ["run", file, "--json", "--runs-dir", str(trials_dir), "--wandb", session.mode, "--wandb-dir",
            str(session.dir), "--group", sweep.group, "--job-type", "trial"]  # fmt: skip
    proc = subprocess.Popen(launch_command(args, sweep.processes), env=launch_env(sweep.processes),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        out, err = proc.communicate()
    except KeyboardInterrupt:
        proc.terminate()  # torchrun passes it on; each process stops as with Ctrl-C
        out, err = proc.communicate()
        if proc.returncode != 130 or not out.strip():
            studies.requeue(study, storage, trial)
            log(f"trial {trial.number}: interrupted before it was saved; it will run again")
            return "interrupted"
    finally:
        os.unlink(file)
    try:
        result = json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        error = (err.strip().splitlines() or ["no output"])[-1][:400]
        trial.set_user_attr("error", f"exit code {proc.returncode}: {error}")
        study.tell(trial, state=TrialState.FAIL)
        log(f"trial {trial.number}: failed (exit code {proc.returncode}): {error}")
        return "failed"
    return conclude(sweep, study, storage, trial, params, [result], time.perf_counter() - start, log)


def work(
    job: tuple, storage_url: str | None, sweep_dir: str, wandb_mode: str, wandb_dir: str, cbs, worker: int
) -> bool:
    """One worker: take trials until none is left (False) or it is interrupted (True). `job` says what to
    load (trials.load_job); `cbs`, if not None, are the callbacks (factories) its runs get."""
    from ..tracking import page, wandb_logger

    _quiet_libraries()
    sweep = load_job(job)
    storage = studies.storage_for(storage_url, Path(sweep_dir))
    study = studies.open_study(sweep, storage)
    session = wandb_logger.WandbSession.from_options(wandb_mode, Path(wandb_dir))
    tag = f"[worker {worker}] " if worker else ""

    def log(line):
        print(f"{tag}{line}", file=sys.stderr, flush=True)

    try:
        while True:
            # a trial is claimed and marked as this process's in one piece, or a stopped worker could leave
            # a claimed point that no one would run again
            with signals.deferred() as held:
                trial = studies.next_trial(study, storage, sweep)
            if held or signals.stop_requested:
                if trial is not None:
                    studies.requeue(study, storage, trial)
                return True
            if trial is None:
                return False
            folder = sweep.runs_folder(Path(sweep_dir))
            if run_trial(sweep, study, storage, trial, session, folder, log, cbs) == "interrupted":
                return True
            # the folder's page, for a look while the work goes on (the command writes the whole one at its end)
            page.refresh(Path(sweep_dir), lambda: sweep.live_page(study, Path(sweep_dir)))
    finally:
        for note in session.notes:
            log(note)


def _quiet_libraries() -> None:
    """No progress bars, no libraries' notices: N workers share one terminal, one line a trial."""
    import fastprogress.fastprogress as fp
    import optuna

    fp.NO_BAR = True
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    quiet_warnings()


def _worker_process(args, threads: int):
    """A worker process: its share of the cores; Ctrl-C is the main process's to pass on, as one SIGTERM."""
    import torch

    quiet_warnings()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signals.stop_on_sigterm()
    torch.set_num_threads(threads)
    try:
        work(*args)
    except KeyboardInterrupt:
        pass


def run_workers(args: tuple, workers: int, threads: int | None = None) -> bool:
    """Run `workers` worker processes (or one worker here); True if they were interrupted. Each uses `threads`
    CPU threads (default: its share of the cores; one worker here keeps this process's)."""
    if workers == 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            return work(*args, 0)
        except KeyboardInterrupt:
            return True
        finally:
            torch.set_num_threads(before)
    import multiprocessing

    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    # fork, not spawn: a spawned worker spends ~3 s importing torch and fastai again, longer than a small
    # trial. Safe here because this process has not computed with torch yet (no thread pool to inherit)
    # and has no W&B run or database connection open; each worker opens its own.
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    procs = [ctx.Process(target=_worker_process, args=((*args, i + 1), threads)) for i in range(workers)]
    for p in procs:
        p.start()
    interrupted = False
    while any(p.is_alive() for p in procs):
        try:
            for p in procs:
                p.join(timeout=0.2)
        except KeyboardInterrupt:
            if not interrupted:
                interrupted = True
                print("interrupted: each worker ends its trial and stops", file=sys.stderr, flush=True)
                for p in procs:
                    if p.is_alive():
                        os.kill(p.pid, signal.SIGTERM)
    return interrupted
