"""What the commands share: the app, the options that recur, and the setup every training command does."""

from __future__ import annotations

import errno
import functools
import os
import sys
from contextlib import contextmanager, nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated

import typer

from ..errors import TrainingFailed, UsageError
from ..utils import signals

# typer 0.29 labels every flag "<bool>" in --help, as if it took a value (`--json true`); a flag takes none
_display_type = typer.core.TyperOption.display_type_rich
typer.core.TyperOption.display_type_rich = lambda self, ctx: (
    None if self.is_flag else _display_type(self, ctx)
)

app = typer.Typer(
    help="Run neural-network experiments the way the seven-step SGD recipe teaches them: "
    "init, predict, loss, gradient, step, repeat, stop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="List the data sources and look at one.", no_args_is_help=True)
app.add_typer(data_app, name="data")


RecipeFile = Annotated[
    Path, typer.Argument(help="A recipe file (TOML), e.g. experiments/fastbook_linear.toml")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a key, as KEY=VALUE with a TOML value: steps.step.lr=0.1"),
]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout (progress goes to stderr)")
]
WandbMode = Annotated[
    str | None,
    typer.Option(
        "--wandb",
        help="W&B logging: offline (default, no account needed), online, or disabled \\[env: WANDB_MODE]",
        metavar="MODE",
    ),
]
DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="cpu, cuda, cuda:N or mps \\[env: SEVENSTEP_DEVICE; default: the GPU when there is one, else cpu]",
        metavar="DEVICE",
    ),
]
SeedsOption = Annotated[
    int | None,
    typer.Option(
        "--seeds",
        metavar="N",
        help="Run over seeds 1 to N, and say how sure the result is (mean, 95% interval, verdicts)",
    ),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        help="Where the study lives: an Optuna URL (postgresql+psycopg://, mysql://, sqlite:///) or a journal "
        "file; machines that share it share the work \\[default: a journal file in the sweep's or report's folder]",
        metavar="URL",
    ),
]
CheckpointEvery = Annotated[
    float | None,
    typer.Option(
        "--checkpoint-every",
        min=0,
        metavar="SECONDS",
        help="Write a run's checkpoint at most this often (also after its first epoch, at its end and on Ctrl-C; "
        "0: after every epoch) \\[env: SEVENSTEP_CHECKPOINT_EVERY; default: 5]",
    ),
]


def checkpoint_every(seconds: float | None) -> None:
    """--checkpoint-every, for every process this command starts (workers, data-parallel ranks) as for this one."""
    if seconds is not None:
        os.environ["SEVENSTEP_CHECKPOINT_EVERY"] = repr(float(seconds))


WandbDir = Annotated[
    Path | None,
    typer.Option(help="Folder whose wandb/ subfolder holds the runs \\[env: WANDB_DIR; default: .]"),
]


def output_folder(path: Path, option: str) -> Path:
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


def free_port() -> int:
    """A loopback port nothing listens on now (the OS's choice)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            typer.secho(f"error: {e.strerror or e}: {e.filename or ''}{_hint(e)}", fg="red", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _hint(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            "; free some space there, then run the command again (a run stopped while it was saving keeps "
            "its last checkpoint: `sevenstep resume RUN_FOLDER` finishes it)"
        )
    return ""


def quiet_libraries():
    if not sys.stdout.isatty():  # fastprogress's own check is always true; bars would flood logs and pipes
        import fastprogress.fastprogress as fp

        fp.NO_BAR = True
        fp.ConsoleProgressBar.fill = ""  # its constructor prints one fill char to probe the encoding


@contextmanager
def training(
    runs_dir: Path, wandb: str | None, wandb_dir: Path | None, as_json: bool, device: str | None = None
):
    """What `run` and `compare` share: folders checked before anything trains, quiet libraries, SIGTERM as
    Ctrl-C, training output on stderr under --json. Yields the loggers for each run and the stream for the
    results (stdout, even under --json); says at the end where W&B wrote."""
    session = before_training(runs_dir, wandb, wandb_dir, device)
    stdout = sys.stdout
    try:
        with redirect_stdout(sys.stderr) if as_json else nullcontext():
            from ..data.device import default, describe

            typer.echo(f"device: {describe(default())}")
            yield callbacks(session), stdout
    finally:
        for line in session.summary_lines():
            typer.echo(line, err=True)


def check_names(wandb: str | None = None, device: str | None = None) -> None:
    """--wandb and --device spelled right, checked first: before a recipe is built and torch is imported."""
    from ..data.device import check_name
    from ..tracking.wandb_session import WandbSession

    WandbSession.from_options(wandb)
    check_name(device)


def before_training(runs_dir: Path, wandb: str | None, wandb_dir: Path | None, device: str | None = None):
    """Every training command's setup: the device and output folders checked (the folders written to), quiet
    libraries, SIGTERM as Ctrl-C. Returns the W&B session."""
    from ..data import device as devices

    session = wandb_session(wandb, wandb_dir)  # a mistyped mode is refused before torch is imported
    devices.choose(device)
    output_folder(runs_dir, "--runs-dir")
    quiet_libraries()
    signals.sigterm_as_ctrl_c()
    return session


def wandb_session(mode: str | None, folder: Path | None):
    from ..tracking import wandb_logger

    session = wandb_logger.WandbSession.from_options(mode, folder)
    for note in session.notes:  # said before training, and again at the end
        typer.echo(note, err=True)
    if session.mode != "disabled":  # disabled writes nothing, not even the folder
        output_folder(session.dir, "--wandb-dir")
    return session


def callbacks(session) -> list:
    """The callbacks every run gets, as factories: a comparison makes fresh ones for each of its runs."""
    from ..loop.checkpoint import Checkpointer
    from ..tracking import CsvLogger, InterpretationPictures, LayerStats, WandbLogger

    return [
        functools.partial(WandbLogger, session),
        CsvLogger,
        Checkpointer,
        InterpretationPictures,
        LayerStats,
    ]
