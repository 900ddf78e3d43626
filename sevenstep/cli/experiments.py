"""The commands that train: run, resume, compare, sweep. Each is a thin shell over its module's Python API."""

from __future__ import annotations

import functools
import io
import json
import os
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated

import typer

from ..errors import TrainingFailed, UsageError
from ..utils import tables
from ..utils.processes import python_m, safe_env
from .common import (
    CheckpointEvery,
    DeviceOption,
    JsonFlag,
    RecipeFile,
    SeedsOption,
    SetOption,
    StorageOption,
    WandbDir,
    WandbMode,
    app,
    before_training,
    check_names,
    checkpoint_every,
    free_port,
    friendly,
    quiet_libraries,
    training,
)


@app.command("run")
@friendly
def run_cmd(
    file: RecipeFile,
    set_: SetOption = None,
    as_json: JsonFlag = False,
    runs_dir: Annotated[Path, typer.Option(help="Where the run's folder is saved")] = Path("runs"),
    wandb: WandbMode = None,
    wandb_dir: WandbDir = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1, help="Train data-parallel on this many processes (torchrun; GPUs: one each; CPU: gloo)"
        ),
    ] = 1,
    device: DeviceOption = None,
    every: CheckpointEvery = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="The W&B group: runs of one group are charted and listed together (W&B's group by; "
            "`sevenstep runs --group G`, `report --group G`) \\[default: --seeds N: one for its seeds]"
        ),  # fmt: skip
    ] = None,
    tag: Annotated[
        list[str] | None,
        typer.Option("--tag", help="A W&B tag for the run (repeat for more); added to the recipe's `tags`"),
    ] = None,
    job_type: Annotated[str, typer.Option(hidden=True, help="The W&B job type")] = "sgd",
    seeds: SeedsOption = None,
):
    """Train one recipe: fastai's progress and per-epoch table, then the final metrics and why it stopped.

    With --seeds N, the recipe runs once for each of the seeds 1 to N (each its own run folder), then a summary:
    the mean accuracy, its 95% interval and every seed's value. The first seed draws the pictures (top losses,
    confusion matrix), as a comparison's do; every seed keeps its metrics and per-image outcomes."""
    from ..recipe import load, named_for_sets

    check_names(wandb, device)
    checkpoint_every(every)
    recipe = named_for_sets(load(file, set_), set_)  # every key checked before anything heavy is imported
    if tag:
        import dataclasses

        recipe = dataclasses.replace(recipe, tags=[*recipe.tags, *(t for t in tag if t not in recipe.tags)])
    if seeds is not None:
        if processes > 1:
            raise UsageError("--seeds runs one process a seed in turn; use it without --processes")
        _run_seeds(recipe, seeds, runs_dir, wandb, wandb_dir, as_json, device, group)
        return
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        launched = [
            "run",
            str(file),
            *[a for s in set_ or [] for a in ("--set", s)],
            "--runs-dir",
            str(runs_dir),
        ]
        launched += ["--json"] * as_json + (["--wandb", wandb] if wandb else [])
        launched += (["--wandb-dir", str(wandb_dir)] if wandb_dir else []) + (
            ["--group", group] if group else []
        )
        launched += [a for t in tag or [] for a in ("--tag", t)]
        raise typer.Exit(_launch(recipe, launched + ["--job-type", job_type], processes, device))
    if int(os.environ.get("RANK", 0)):  # the other processes of a data-parallel run: they train, rank 0 saves
        _train_as_another_rank(recipe)
        return
    with training(runs_dir, wandb, wandb_dir, as_json, device) as (cbs, out):
        from ..loop import distributed, train

        typer.echo(f"{recipe.name}: {recipe.short()}")
        world = distributed.world_size()
        if world > 1:
            bs = recipe.data["bs"]
            typer.echo(
                f"data-parallel on {world} processes: batch size {bs} each, {bs * world} in all", err=True
            )
        from ..tracking import LivePage

        run = train.run(recipe, [*cbs, LivePage], runs_dir=runs_dir, group=group, job_type=job_type)
        distributed.teardown()
        _report(run, out, as_json)
    _exit_for(run)


def _run_seeds(
    recipe, n: int, runs_dir, wandb, wandb_dir, as_json: bool, device, group: str | None = None
) -> None:
    """One recipe over seeds 1 to n, one run folder each, in one W&B group; then the mean, its interval and
    every seed (in W&B too, as a run of the group)."""
    import dataclasses
    import time

    from .. import stats
    from ..callbacks import instantiate, notify
    from ..compare import plan as plans
    from ..data import sources

    seeds = plans.seed_list(n, "--seeds")
    group = group or f"{recipe.name}-seeds-{time.strftime('%Y%m%d-%H%M%S')}"  # one W&B group for the seeds
    runs = []
    with training(runs_dir, wandb, wandb_dir, as_json, device) as (cbs, out):
        from ..loop import train

        typer.echo(f"{recipe.name}: {recipe.short()}; seeds {', '.join(map(str, seeds))}")
        for seed in seeds:
            typer.echo(f"\nseed {seed}")
            r = dataclasses.replace(recipe, seed=seed, name=f"{recipe.name}-seed{seed}")
            if kept := _finished_seed(Path(runs_dir), r):  # the same command again continues where it stopped
                typer.echo(
                    f"finished before, kept: {kept.run_dir} (remove that folder to train this seed again)"
                )
                runs.append(kept)
                continue
            # drawing takes longer than training a small model: 1.8 s of a 2.4 s seed of fastbook's linear model
            first = seed == seeds[0]
            try:
                runs.append(
                    train.run(
                        r,
                        cbs,
                        runs_dir=runs_dir,
                        config={"seeds.of": recipe.name},
                        pictures=first,
                        group=group,
                    )  # fmt: skip
                )
            except KeyboardInterrupt:
                typer.echo(
                    "interrupted: run the same command again to continue; finished seeds are kept", err=True
                )
                raise typer.Exit(130) from None
            if runs[-1].stop_reason == "interrupted":
                typer.echo(
                    "interrupted: run the same command again to continue; finished seeds are kept", err=True
                )
                break
        done = [r for r in runs if r.accuracy is not None and r.stop_reason != "interrupted"]
        accs = [r.accuracy for r in done]
        n_valid = done[0].n_valid if done else 0
        one = sources.one_split(recipe.data)
        mean, interval = stats.over_seeds(accs, n_valid, one)
        summary = {
            "name": recipe.name,
            "seeds": [r.recipe["seed"] for r in done],
            "accuracies": accs,
            "mean": mean,
            "interval": list(interval) if interval else None,
            "runs": [r.to_json() for r in runs],
        }
        summary["group"] = group
        if accs:
            notify(instantiate(cbs), "after_seeds", summary, group)
        if as_json:
            typer.echo(json.dumps(summary), file=out)
        elif accs:
            each = ", ".join(f"seed {s}: {100 * a:.1f}" for s, a in zip(summary["seeds"], accs))
            typer.secho(
                f"\naccuracy {100 * summary['mean']:.1f}% over {len(accs)} seed(s), 95% interval "
                f"[{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]  ({each})",
                bold=True,
                file=out,
            )
            for r in runs:
                typer.echo(f"  {r.run_dir}  {r.message}", file=out)
    if any(r.stop_reason == "interrupted" for r in runs):
        raise typer.Exit(130)
    if failed := [r for r in runs if r.diverged]:
        raise TrainingFailed(
            f"{len(failed)} of {len(runs)} seeds diverged: " + "; ".join(r.message for r in failed)
        )


def _finished_seed(runs_dir: Path, recipe):
    """The newest finished run folder of exactly this recipe and seed under `runs_dir`, as a Run; or None."""
    import dataclasses
    import re

    from ..loop import run_folder, train

    own = re.compile(rf"{re.escape(recipe.name)}-\d{{8}}-\d{{6}}(-\d+)?")  # seed1-..., never seed10-...
    folders = (
        [p for p in runs_dir.glob(f"{recipe.name}-*") if own.fullmatch(p.name)] if runs_dir.is_dir() else []
    )
    for folder in sorted(folders, key=lambda p: p.name, reverse=True):
        if (folder / run_folder.UNFINISHED).exists() or not (folder / run_folder.RESULT).is_file():
            continue
        try:
            saved = json.loads((folder / run_folder.RESULT).read_text())
        except (OSError, ValueError):
            continue
        if saved.get("recipe") == recipe.to_dict() and saved.get("stop_reason") not in (
            "interrupted",
            "diverged",
        ):
            known = {f.name for f in dataclasses.fields(train.Run)}
            return train.Run(**{k: v for k, v in saved.items() if k in known})
    return None


def _train_as_another_rank(recipe, resume=None) -> None:
    """A data-parallel rank other than 0: it trains its share, quietly; rank 0 writes the folder and logs."""
    quiet_libraries()
    from ..loop import distributed, train

    with redirect_stdout(io.StringIO()):
        train.run(recipe, resume=resume)
    distributed.teardown()


def _launch(recipe, args: list[str], processes: int, device: str | None) -> int:
    """`sevenstep ARGS` again, on `processes` processes started by torchrun; its exit code."""
    from ..data import device as devices
    from ..loop.distributed import launch

    devices.choose(device, processes)  # the processes torchrun starts inherit it
    if recipe.steps["stop"]["name"] == "time_budget":
        from ..steps.stop import PARALLEL_TIME_BUDGET

        raise UsageError(PARALLEL_TIME_BUDGET)
    return launch(args, processes)


@app.command("resume")
@friendly
def resume_cmd(
    run_dir: Annotated[
        Path,
        typer.Argument(
            help="A run folder under runs/: a stopped run continues; a finished one trains on to more "
            "epochs with --set steps.repeat.n=N"
        ),  # fmt: skip
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Only steps.repeat.n=N, to give an `epochs` run more epochs"),
    ] = None,
    as_json: JsonFlag = False,
    wandb: WandbMode = None,
    wandb_dir: WandbDir = None,
    device: DeviceOption = None,
    every: CheckpointEvery = None,
    processes: Annotated[
        int, typer.Option(min=1, help="As many data-parallel processes as the run was trained on")
    ] = 1,
):
    """Continue a stopped run (Ctrl-C, kill, a crash) from its last complete epoch to its planned end, finish
    one stopped after its last epoch before it was wholly saved, or train a finished one on to more epochs
    (--set steps.repeat.n=N).

    On the CPU it ends exactly as the same run left alone would have: same metrics, same weights."""
    check_names(wandb, device)
    checkpoint_every(every)
    from ..loop import checkpoint

    if processes > 1 and "WORLD_SIZE" not in os.environ:
        recipe, _ = checkpoint.prepare(run_dir, set_, processes=processes)  # refused here, not in N processes
        launched = ["resume", str(run_dir), *[a for s in set_ or [] for a in ("--set", s)]]
        launched += ["--json"] * as_json + (["--wandb", wandb] if wandb else [])
        launched += ["--wandb-dir", str(wandb_dir)] if wandb_dir else []
        raise typer.Exit(_launch(recipe, launched, processes, device))
    recipe, state = checkpoint.prepare(run_dir, set_)
    if int(os.environ.get("RANK", 0)):  # another process of a data-parallel run: it trains, rank 0 saves
        _train_as_another_rank(recipe, resume=(run_dir, state))
        return
    done, n = state["epoch"], recipe.steps["repeat"]["n"]
    if done < n:
        typer.echo(f"resuming {run_dir} after epoch {done} of {n}", err=True)
    else:
        typer.echo(
            f"finishing {run_dir}: its {n} epoch(s) were trained, it was stopped before it was saved",
            err=True,
        )
    if state.get("kept"):
        typer.echo(f"its finished {state['epoch']}-epoch result is kept in {state.pop('kept')}", err=True)
    with training(run_dir.parent, wandb, wandb_dir, as_json, device) as (cbs, out):
        from ..loop import train

        run = train.run(recipe, cbs, resume=(run_dir, state))
        _report(run, out, as_json)
    _exit_for(run)


@app.command("compare")
@friendly
def compare_cmd(
    file: Annotated[Path, typer.Argument(help="A comparison file, e.g. experiments/baseline_vs_sgd.toml")],
    as_json: JsonFlag = False,
    runs_dir: Annotated[Path, typer.Option(help="Where the report folder is written")] = Path("runs"),
    wandb: WandbMode = None,
    wandb_dir: WandbDir = None,
    device: DeviceOption = None,
    every: CheckpointEvery = None,
    seeds: SeedsOption = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes on this machine that train the runs; they split its cores")
    ] = 1,
    storage: StorageOption = None,
):
    """The pixel-similarity baseline against SGD recipes on the same data and split, over one seed or several:
    a table with intervals and paired verdicts (better, worse, not shown), and a report folder.

    Ctrl-C keeps every finished run in the report; run the same command again to continue the comparison."""
    from .. import compare
    from ..compare import report as reports

    check_names(wandb, device)
    checkpoint_every(every)
    plan = compare.load(file, seeds)  # the whole file and every recipe in it are checked first
    with training(runs_dir, wandb, wandb_dir, as_json, device) as (cbs, out):
        results, report = compare.run(plan, runs_dir, cbs, workers=workers, storage=storage,
                                      log=lambda line: typer.echo(line, err=True))  # fmt: skip
        if as_json:
            typer.echo(json.dumps(compare.summary(plan, results, report)), file=out)
        else:
            rows = reports.methods(plan, results)
            seeds_said = (
                f"seed {plan.seed}" if len(plan.seeds) == 1 else f"seeds {', '.join(map(str, plan.seeds))}"
            )
            typer.echo(f"\n{plan.name} on {plan.source} ({seeds_said})\n", file=out)
            typer.echo(tables.text(compare.table(rows)), file=out)
            typer.echo("\n" + tables.paragraphs(reports.legend(plan, rows, results)), file=out)
            typer.echo(f"\nreport: {report}", file=out)
            typer.echo(f"page:   {report / 'report.html'} (opens in a browser, no server needed)", file=out)
    failed = [r.method for r in results if r.status == "failed"]
    if any(r.status == "interrupted" for r in results):
        raise typer.Exit(130)
    if missing := [f"{r.method} seed {r.seed}" for r in results if r.status == "missing"]:
        raise TrainingFailed(
            f"{len(missing)} run(s) did not finish: {', '.join(missing)} (a worker was killed, or another process "
            f"still runs them); the table is partial. Run the same command again to finish the comparison"
        )
    if failed:
        raise TrainingFailed(
            f"{len(failed)} of {len(results)} methods failed: {', '.join(failed)} (see the table)"
        )


def dashboard_command(where: str, port: int) -> list[str]:
    return python_m("sevenstep", "dashboard", where, "--port", str(port))


@contextmanager
def _dashboard(sweep_dir: Path, storage: str | None):
    """`sevenstep dashboard` in a process of its own for as long as the sweep runs."""
    import subprocess

    if not storage:  # served from the start, before the sweep's first trial writes to it
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / "study.journal").touch()
    where, port = storage or str(sweep_dir / "study.journal"), free_port()
    from ..sweep import dashboard

    secret = (
        dashboard.token()
    )  # handed over in the environment, which other users cannot read (argv they can)
    server = subprocess.Popen(dashboard_command(where, port), env=safe_env() | {dashboard.TOKEN: secret},
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    typer.echo(f"Optuna Dashboard: http://127.0.0.1:{port}/dashboard?token={secret} (read-only; live while the "
               "sweep runs)", err=True)  # fmt: skip
    try:
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


@app.command("sweep")
@friendly
def sweep_cmd(
    file: Annotated[
        Path, typer.Argument(help="A sweep file (TOML), e.g. experiments/sweep_init_x_loss_3v7.toml")
    ],
    workers: Annotated[
        int, typer.Option(min=1, help="Trial processes on this machine; they split its cores")
    ] = 1,
    storage: StorageOption = None,
    as_json: JsonFlag = False,
    runs_dir: Annotated[Path, typer.Option(help="Where the sweep's folder (sweep-<name>/) is kept")] = Path(
        "runs"
    ),
    wandb: WandbMode = None,
    wandb_dir: WandbDir = None,
    device: DeviceOption = None,
    every: CheckpointEvery = None,
    dashboard: Annotated[
        bool, typer.Option("--dashboard", help="Serve Optuna Dashboard on loopback while the sweep runs")
    ] = False,
):
    """Run a recipe over a space of values with Optuna: every trial a full run, one table, the best recipe.

    Run the same command again to continue a sweep; run it on several machines with one --storage to share it."""
    from .. import sweep as sweeps

    check_names(wandb, device)
    checkpoint_every(every)
    sweep = sweeps.load(file)  # every grid point, and both ends of every range, checked first
    session = before_training(runs_dir, wandb, wandb_dir, device)
    progress = functools.partial(typer.echo, err=True)
    with _dashboard(runs_dir / f"sweep-{sweep.name}", storage) if dashboard else nullcontext():
        summary = sweeps.run(sweep, runs_dir, workers, storage, session.mode, session.dir, log=progress)
    from ..sweep.report import format_rows, reproduce

    if as_json:
        typer.echo(json.dumps(summary))
    else:
        if summary["trials"]:
            typer.echo("\n" + tables.text(format_rows(summary["trials"])))
        best = summary["best"]
        if best:
            typer.echo(f"\nbest: trial {best['trial']}, {sweep.metric} {best[sweep.metric]:.4f}")
            typer.echo(f"reproduce it: {reproduce(sweep, summary['best_recipe'])}")
        typer.echo(f"report: {summary['sweep_dir']}")
        if summary.get("page"):
            typer.echo(f"page:   {summary['page']} (opens in a browser, no server needed)")
    if session.mode != "disabled":
        folder = Path(session.dir) / "wandb"
        typer.echo(
            f"W&B: the trials are in group {sweep.group} under {folder}/ (browse: sevenstep leet {folder})",
            err=True,
        )
    if summary["interrupted"]:
        typer.echo("interrupted: run the same command again to continue the sweep", err=True)
        raise typer.Exit(130)
    running = summary["counts"].get("running", 0)
    if running:  # every worker here has ended: these are another machine's, or a worker's that was killed
        again = "run the same command again: a dead worker's trials run again, the finished ones are kept"
        if storage:  # shared: another machine's may still be at work
            typer.echo(f"{running} trial(s) still running, on another machine or left by a killed worker; {again}",
                       err=True)  # fmt: skip
        else:
            raise TrainingFailed(
                f"{running} trial(s) were left running by a worker process that was killed; {again}"
            )


def _report(run, out, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(run.to_json()), file=out)
    else:
        _print_summary(run, out)


def _exit_for(run) -> None:
    """A diverged run exits 1 with its message; an interrupted one 130."""
    if run.diverged:
        raise TrainingFailed(run.message)
    if run.stop_reason == "interrupted":
        raise typer.Exit(130)


def _print_summary(run, out) -> None:
    if run.accuracy is not None:
        per_class = ", ".join(f"{k}: {v:.3f}" for k, v in run.per_class.items())
        typer.secho(f"accuracy {run.accuracy:.4f}  (per class {per_class})", bold=True, file=out)
    if run.test:
        t = run.test
        typer.secho(
            f"test accuracy {t['accuracy']:.4f} on {t['n']} held-out image(s), with the final weights "
            "(never used for stopping or choosing)",
            bold=True,
            file=out,
        )
    if not run.diverged:  # a divergence's message is the error line
        typer.echo(f"{run.message}; {run.fit_seconds:.1f} s, {run.n_params:,} parameters", file=out)
    resumed = f" (resumed after epoch {run.resumed_from})" if run.resumed_from else ""
    typer.echo(f"saved to {run.run_dir}{resumed}", file=out)
