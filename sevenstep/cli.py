"""The `sevenstep` command: a thin shell over the Python API (train.run, compare.run, loggers, sources).

Heavy libraries (fastai, torch) are imported inside commands, so --help is instant.
"""

from __future__ import annotations

import functools
import io
import json
import os
import sys
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated

import typer

from . import signals
from .errors import TrainingFailed, UsageError

app = typer.Typer(
    help="Run neural-network experiments the way the seven-step SGD recipe teaches them: "
    "init, predict, loss, gradient, step, repeat, stop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="List the data sources and look at one.", no_args_is_help=True)
app.add_typer(data_app, name="data")


JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (progress goes to stderr)")
]
WandbMode = Annotated[
    str | None,
    typer.Option(
        "--wandb",
        help="W&B logging: offline (default, no account needed), online, or disabled [env: WANDB_MODE]",
        metavar="MODE",
    ),
]
WandbDir = Annotated[
    Path | None,
    typer.Option(help="Folder whose wandb/ subfolder holds the runs [env: WANDB_DIR; default: .]"),
]


def _output_folder(path: Path, option: str) -> Path:
    """Created and written to (a probe file, removed) before training, so a run is never lost to a folder it
    cannot be saved in."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file; expected a folder (it is created if missing)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".sevenstep-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UsageError(
            f"{option} {path}: cannot write there ({e.strerror or e}); choose a folder you can write to"
        ) from None
    return path


def friendly(command):
    """A user's mistake becomes one clear line on stderr and exit code 2 (a failed run: 1), not a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (UsageError, TrainingFailed) as e:
            typer.secho(f"error: {e}", fg="red", err=True)
            raise typer.Exit(e.exit_code) from None
        except OSError as e:  # a path that cannot be read or written, a full disk
            typer.secho(f"error: {e.strerror or e}: {e.filename or ''}", fg="red", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _quiet_libraries():
    if not sys.stdout.isatty():  # fastprogress's own check is always true; bars would flood logs and pipes
        import fastprogress.fastprogress as fp

        fp.NO_BAR = True
        fp.ConsoleProgressBar.fill = ""  # its constructor prints one fill char to probe the encoding


@contextmanager
def _training(runs_dir: Path, wandb: str | None, wandb_dir: Path | None, as_json: bool):
    """What `run` and `compare` share: folders checked before anything trains, quiet libraries, SIGTERM as
    Ctrl-C, training output on stderr under --json. Yields the loggers for each run and the stream for the
    results (stdout, even under --json); says at the end where W&B wrote."""
    _output_folder(runs_dir, "--runs-dir")
    _quiet_libraries()

    session = _wandb_session(wandb, wandb_dir)
    signals.sigterm_as_ctrl_c()
    stdout = sys.stdout
    try:
        with redirect_stdout(sys.stderr) if as_json else nullcontext():
            yield _callbacks(session), stdout
    finally:
        for line in session.summary_lines():
            typer.echo(line, err=True)


def _wandb_session(mode: str | None, folder: Path | None):
    from . import loggers

    session = loggers.WandbSession.from_options(mode, folder)
    if session.mode != "disabled":  # disabled writes nothing, not even the folder
        _output_folder(session.dir, "--wandb-dir")
    return session


def _callbacks(session) -> list:
    """The callbacks every run gets, as factories: a comparison makes fresh ones for each of its runs."""
    from . import checkpoint, loggers

    return [functools.partial(loggers.WandbLogger, session), loggers.CsvLogger, checkpoint.Checkpointer]


@app.callback()
def main(
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where embedded data is written [env: SEVENSTEP_CACHE]")
    ] = None,
):
    if cache_dir:
        os.environ["SEVENSTEP_CACHE"] = str(cache_dir)
    import warnings  # libraries' deprecation notices are not the user's business

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="fastai")


@data_app.command("list")
@friendly
def data_list():
    """The data sources you can name in a recipe's data.source."""
    from . import sources

    kinds = sources.SOURCES.values()
    width = max(len(k.usage) for k in kinds)
    for kind in kinds:
        typer.echo(f"{kind.usage:<{width}}  {kind.help}")
    typer.echo(f"\nembedded data is cached in {sources.cache_dir()}")


@data_app.command("show")
@friendly
def data_show(
    source: Annotated[str, typer.Argument(help="A source name (see `sevenstep data list`), or folder:PATH")],
    out: Annotated[Path | None, typer.Option(help="PNG file for the grid of sample digits")] = None,
):
    """Counts per split and class, and a PNG grid of sample digits with their labels."""
    from . import data, plots, sources

    signals.sigterm_as_ctrl_c()  # a prepare cut short by `kill` cleans up after itself
    src = sources.resolve(source)
    counts = sources.counts(src)
    classes = src.classes
    typer.echo(f"{src.name}: {src.path}")
    typer.echo("split   " + " ".join(f"{c:>6}" for c in classes) + "   total")
    for split, per_class in counts.items():
        row = " ".join(f"{per_class[c]:>6}" for c in classes)
        typer.echo(f"{split:<7} {row}  {sum(per_class.values()):>6}")
    out = out or Path(f"{source.replace(':', '-').replace('/', '_')}-samples.png")
    _quiet_libraries()
    plots.save(plots.sample_grid(data.dataloaders(src, bs=64)), out)
    typer.echo(f"sample grid written to {out}")


@app.command("steps")
@friendly
def steps_cmd(step: Annotated[str | None, typer.Argument(help="Show only this step")] = None):
    """Every option of the seven steps, with its parameters and defaults."""
    from . import registry

    chosen = [step] if step else registry.STEPS
    if step and step not in registry.STEPS:
        raise UsageError(f"unknown step {step!r}; the seven steps are: {', '.join(registry.STEPS)}")
    for s in chosen:
        typer.secho(f"{registry.STEPS.index(s) + 1}. {s}", bold=True)
        for name, opt in registry.REGISTRY[s].items():
            params = ", ".join(
                f"{k}={v.default!r}" if v.default is not None else f"{k} (optional)"
                for k, v in opt.params.items()
            )
            typer.echo(f"   {name:<18} {opt.doc}")
            if params:
                typer.echo(f"   {'':<18} params: {params}")


@app.command("run")
@friendly
def run_cmd(
    file: Annotated[Path, typer.Argument(help="A recipe file (TOML), e.g. experiments/fastbook_linear.toml")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a key, as KEY=VALUE with a TOML value: steps.step.lr=0.1"),
    ] = None,
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
):
    """Train one recipe: fastai's progress and per-epoch table, then the final metrics and why it stopped."""
    from .recipe import load

    recipe = load(file, set_)  # every key checked before anything heavy is imported
    if processes > 1 and "WORLD_SIZE" not in os.environ:
        raise typer.Exit(_launch(file, set_, as_json, runs_dir, wandb, wandb_dir, processes))
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if rank:  # the other processes of a data-parallel run: they train, rank 0 writes and logs
        _quiet_libraries()
        from . import distributed, train

        with redirect_stdout(io.StringIO()):
            train.run(recipe)
        distributed.teardown()
        return
    with _training(runs_dir, wandb, wandb_dir, as_json) as (cbs, out):
        from . import distributed, train

        if world > 1:
            bs = recipe.data["bs"]
            typer.echo(
                f"data-parallel on {world} processes: batch size {bs} each, {bs * world} in all", err=True
            )
        run = train.run(recipe, cbs, runs_dir=runs_dir)
        distributed.teardown()
        if as_json:
            typer.echo(json.dumps(run.to_json()), file=out)
        else:
            _print_summary(run, out)
    if run.diverged:
        raise TrainingFailed(run.message)
    if run.stop_reason == "interrupted":
        raise typer.Exit(130)


def _launch(file, sets, as_json, runs_dir, wandb, wandb_dir, processes) -> int:
    """`sevenstep run` again, on `processes` processes started by torchrun; its exit code."""
    import subprocess

    from .distributed import launch_command

    args = ["run", str(file), *[a for s in sets or [] for a in ("--set", s)], "--runs-dir", str(runs_dir)]
    args += (
        ["--json"] * as_json
        + (["--wandb", wandb] if wandb else [])
        + (["--wandb-dir", str(wandb_dir)] if wandb_dir else [])
    )
    try:
        return subprocess.run(launch_command(args, processes)).returncode
    except KeyboardInterrupt:  # torchrun has passed it on to the processes, which stop cleanly
        return 130


@app.command("resume")
@friendly
def resume_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder under runs/ whose run did not finish")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Only steps.repeat.n=N, to give an `epochs` run more epochs"),
    ] = None,
    as_json: JsonFlag = False,
    wandb: WandbMode = None,
    wandb_dir: WandbDir = None,
):
    """Continue a stopped run (Ctrl-C, kill, a crash) from its last complete epoch to its planned end.

    On the CPU it ends exactly as the same run left alone would have: same metrics, same weights."""
    from . import checkpoint

    recipe, state = checkpoint.prepare(run_dir, set_)
    typer.echo(f"resuming {run_dir} after epoch {state['epoch']} of {recipe.steps['repeat']['n']}", err=True)
    with _training(run_dir.parent, wandb, wandb_dir, as_json) as (cbs, out):
        from . import train

        run = train.run(recipe, cbs, resume=(run_dir, state))
        if as_json:
            typer.echo(json.dumps(run.to_json()), file=out)
        else:
            _print_summary(run, out)
    if run.diverged:
        raise TrainingFailed(run.message)
    if run.stop_reason == "interrupted":
        raise typer.Exit(130)


@app.command("compare")
@friendly
def compare_cmd(
    file: Annotated[Path, typer.Argument(help="A comparison file, e.g. experiments/baseline_vs_sgd.toml")],
    as_json: JsonFlag = False,
    runs_dir: Annotated[Path, typer.Option(help="Where the report folder is written")] = Path("runs"),
    wandb: WandbMode = None,
    wandb_dir: WandbDir = None,
):
    """The pixel-similarity baseline against SGD recipes on the same data, split and seed: one table, one report."""
    from . import compare

    plan = compare.load(file)  # the whole file and every recipe in it are checked first
    with _training(runs_dir, wandb, wandb_dir, as_json) as (cbs, out):
        results, report = compare.run(plan, runs_dir, cbs)
        if as_json:
            typer.echo(json.dumps(compare.summary(plan, results, report)), file=out)
        else:
            typer.echo(f"\n{plan.name} on {plan.source} (seed {plan.seed})\n", file=out)
            typer.echo(compare.format_table(compare.table(results)), file=out)
            typer.echo(f"\nreport: {report}", file=out)
    failed = [r.method for r in results if r.status == "failed"]
    if any(r.status == "interrupted" for r in results):
        raise typer.Exit(130)
    if failed:
        raise TrainingFailed(
            f"{len(failed)} of {len(results)} methods failed: {', '.join(failed)} (see the table)"
        )


@app.command("sweep")
@friendly
def sweep_cmd(
    file: Annotated[
        Path, typer.Argument(help="A sweep file (TOML), e.g. experiments/sweep_init_x_loss_3v7.toml")
    ],
    workers: Annotated[
        int, typer.Option(min=1, help="Trial processes on this machine; they split its cores")
    ] = 1,
    storage: Annotated[
        str | None,
        typer.Option(
            help="Where the study lives: an Optuna URL (postgresql+psycopg://, mysql://, sqlite:///) or a journal "
            "file; machines that share it share the sweep [default: a journal file in the sweep's folder]",
            metavar="URL",
        ),
    ] = None,
    as_json: JsonFlag = False,
    runs_dir: Annotated[Path, typer.Option(help="Where the sweep's folder (sweep-<name>/) is kept")] = Path(
        "runs"
    ),
    wandb: WandbMode = None,
    wandb_dir: WandbDir = None,
):
    """Run a recipe over a space of values with Optuna: every trial a full run, one table, the best recipe.

    Run the same command again to continue a sweep; run it on several machines with one --storage to share it."""
    from . import sweep as sweeps

    sweep = sweeps.load(file)  # every grid point, and both ends of every range, checked first
    _output_folder(runs_dir, "--runs-dir")
    _quiet_libraries()

    session = _wandb_session(wandb, wandb_dir)
    signals.sigterm_as_ctrl_c()
    progress = functools.partial(typer.echo, err=True)
    summary = sweeps.run(sweep, runs_dir, workers, storage, session.mode, session.dir, log=progress)
    from .sweep_report import format_rows

    if as_json:
        typer.echo(json.dumps(summary))
    else:
        if summary["trials"]:
            from .compare import format_table

            typer.echo("\n" + format_table(format_rows(summary["trials"])))
        best = summary["best"]
        if best:
            typer.echo(f"\nbest: trial {best['trial']}, {sweep.metric} {best[sweep.metric]:.4f}")
            typer.echo(f"reproduce it: sevenstep run {summary['best_recipe']}")
        typer.echo(f"report: {summary['sweep_dir']}")
    if session.mode != "disabled":
        folder = Path(session.dir) / "wandb"
        typer.echo(
            f"W&B: the trials are in group {sweep.group} under {folder}/ (browse: wandb leet {folder})",
            err=True,
        )
    if summary["interrupted"]:
        typer.echo("interrupted: run the same command again to continue the sweep", err=True)
        raise typer.Exit(130)


@app.command("runs")
@friendly
def runs_cmd(
    folder: Annotated[
        Path | None,
        typer.Argument(help="A wandb folder (the runs' parent) [default: $WANDB_DIR/wandb or ./wandb]"),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list with each run's config and summary")
    ] = False,
):
    """The W&B runs logged on this machine, newest first: name, group, the seven choices, accuracy, why it
    stopped, path. (Each run's saved folder is under runs/, see result.json.)"""
    from . import wandb_runs

    folder = folder or Path(os.environ.get("WANDB_DIR") or ".") / "wandb"
    found = wandb_runs.list_runs(folder)
    if as_json:
        typer.echo(json.dumps(found))
        return
    if not found:
        typer.echo(f"no W&B runs under {folder}")
        return
    rows = wandb_runs.table(found)
    from .compare import format_table

    typer.echo(format_table(rows))
    typer.echo(f"\nbrowse them with: wandb leet {folder}")


def _print_summary(run, out) -> None:
    if run.accuracy is not None:
        per_class = ", ".join(f"{k}: {v:.3f}" for k, v in run.per_class.items())
        typer.secho(f"accuracy {run.accuracy:.4f}  (per class {per_class})", bold=True, file=out)
    if not run.diverged:  # a divergence's message is the error line
        typer.echo(f"{run.message}; {run.fit_seconds:.1f} s, {run.n_params:,} parameters", file=out)
    resumed = f" (resumed after epoch {run.resumed_from})" if run.resumed_from else ""
    typer.echo(f"saved to {run.run_dir}{resumed}", file=out)
