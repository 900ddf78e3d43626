"""The commands that look: the data sources, the step options, the W&B runs on this machine."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..utils import signals, tables
from .common import (
    WandbDir,
    app,
    data_app,
    free_port,
    friendly,
    output_folder,
    quiet_libraries,
)


@data_app.command("list")
@friendly
def data_list():
    """The data sources you can name in a recipe's data.source."""
    from ..data import sources

    kinds = sources.SOURCES.values()
    width = max(len(k.usage) for k in kinds)
    for kind in kinds:
        typer.echo(f"{kind.usage:<{width}}  {kind.help}")
    typer.echo(f"\nembedded data is cached in {sources.cache_dir()}")


@data_app.command("show")
@friendly
def data_show(
    source: Annotated[str, typer.Argument(help="A source name (see `sevenstep data list`), or folder:PATH")],
    out: Annotated[
        Path | None,
        typer.Option(help="PNG file for the grid of sample digits \\[default: runs/<source>-samples.png]"),
    ] = None,
    n: Annotated[int, typer.Option("--n", min=1, max=200, help="How many images to draw")] = 24,
    split: Annotated[
        str,
        typer.Option(help="Which images to draw: train, valid or test (a test/ folder, when there is one)"),
    ] = "valid",
    size: Annotated[
        int | None,
        typer.Option(min=1, max=4096, help="Resize every image to SIZE x SIZE first, as data.size does"),
    ] = None,
    channels: Annotated[
        int, typer.Option(min=1, max=3, help="1: greyscale, 3: colour, as data.channels")
    ] = 1,
):
    """Counts per split and class, and a PNG grid of sample images with their labels."""
    from .. import data
    from ..data import sources
    from ..tracking import plots

    splits = ("train", "valid", "test")
    if split not in splits:
        raise UsageError(f"--split {split!r}: expected one of {', '.join(splits)}")
    data.check_options(source=source, size=size, channels=channels)
    signals.sigterm_as_ctrl_c()  # a prepare cut short by `kill` cleans up after itself
    src = sources.resolve(source)
    counts = sources.counts(src)
    classes = src.classes
    typer.echo(f"{src.name}: {src.path}")
    typer.echo("split   " + " ".join(f"{c:>6}" for c in classes) + "   total")
    for name, per_class in counts.items():
        row = " ".join(f"{per_class[c]:>6}" for c in classes)
        typer.echo(f"{name:<7} {row}  {sum(per_class.values()):>6}")
    # by default beside the other outputs, under runs/ (which git ignores), not in the current folder
    out = (
        out
        or output_folder(Path("runs"), "runs") / f"{source.replace(':', '-').replace('/', '_')}-samples.png"
    )
    quiet_libraries()
    random = {"valid_pct": 0.2} if src.valid is None else {}  # a folder of class folders: a sample of it
    dls = data.dataloaders(src, bs=64, size=size, channels=channels, **random)
    if split == "test":
        if not dls.test_items:
            raise UsageError(
                f"{src.path} has no test/ folder beside train/ and valid/; use --split valid or train"
            )
        dl = dls.test_dl(dls.test_items, with_labels=True)
    else:
        # the training split without augmentation or shuffling: the images as they are
        dl = dls.valid if split == "valid" else dls.valid.new(dls.train.dataset)
    plots.save(plots.sample_grid(dl, n), out)
    typer.echo(f"{min(n, len(dl.dataset))} {split} image(s) drawn in {out}")


@app.command("steps")
@friendly
def steps_cmd(
    step: Annotated[str | None, typer.Argument(help="Show only this step: its name or number (1-7)")] = None,
    plugin: Annotated[
        list[str] | None,
        typer.Option(
            help="A .py file or module with your own options (@option), listed beside the built-ins"
        ),
    ] = None,
):
    """Every option of the seven steps, with its parameters and defaults."""
    from .. import plugins, registry

    if step and step.isdigit() and 1 <= int(step) <= len(registry.STEPS):
        step = registry.STEPS[int(step) - 1]  # as the listing numbers them
    chosen = [step] if step else registry.STEPS
    if step and step not in registry.STEPS:
        numbered = ", ".join(f"{i} {s}" for i, s in enumerate(registry.STEPS, 1))
        raise UsageError(f"unknown step {step!r}; the seven steps are: {numbered}")
    plugins.load([plugins.relative_to(p, Path.cwd()) for p in plugin or []], "--plugin")
    for s in chosen:
        typer.secho(f"{registry.STEPS.index(s) + 1}. {s}", bold=True)
        for name, opt in registry.REGISTRY[s].items():
            if opt.plugin:
                name = f"{name} *"
            params = ", ".join(_param(k, v) for k, v in opt.params.items())
            typer.echo(f"   {name:<18} {opt.doc}")
            if params:
                typer.echo(f"   {'':<18} params: {params}")
    if plugin:
        typer.echo("\n* from " + ", ".join(plugin))


def _param(name: str, field) -> str:
    """`lr=0.1`, `strides (optional)`, `activation='relu' (relu|sigmoid|tanh|gelu)` for a choice of names."""
    import typing

    shown = f"{name}={field.default!r}" if field.default is not None else f"{name} (optional)"
    from ..schema import resolved

    if typing.get_origin(resolved(field.type)) is typing.Literal:
        shown += f" ({'|'.join(map(str, typing.get_args(resolved(field.type))))})"
    return shown


RunsFolder = Annotated[
    Path | None,
    typer.Argument(help="A wandb folder (the runs' parent) \\[default: $WANDB_DIR/wandb or ./wandb]"),
]
GroupFilter = Annotated[
    str | None, typer.Option(help="Only runs whose group contains this (e.g. a comparison's or sweep's)")
]
NameFilter = Annotated[str | None, typer.Option(help="Only runs whose name contains this")]


def wandb_runs(wandb_dir: Path | None = None) -> Path:
    """The folder W&B logs this machine's runs to: WANDB_DIR/wandb (or --wandb-dir's), else ./wandb."""
    return (wandb_dir or Path(os.environ.get("WANDB_DIR") or ".")) / "wandb"


@app.command("runs")
@friendly
def runs_cmd(
    folder: RunsFolder = None,
    group: GroupFilter = None,
    name: NameFilter = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list with each run's config and summary")
    ] = False,
):
    """The W&B runs logged on this machine, the most recently started first: the seven choices, accuracy, why
    each stopped, and the run's own folder (for predict, resume and report)."""
    from ..tracking import local_runs

    if folder is not None and str(folder).lower() in ("true", "false") and not folder.exists():
        raise UsageError(
            f"--json is a flag and takes no value: use `sevenstep runs --json`, not --json {folder}"
        )
    folder = folder or wandb_runs()
    found = local_runs.list_runs(folder, group=group, name=name)
    if as_json:
        typer.echo(json.dumps(found))
        return
    if not found:
        which = " ".join(f"with {k} containing {v!r}" for k, v in (("group", group), ("name", name)) if v)
        typer.echo(f"no W&B runs {which + ' ' if which else ''}under {folder}")
        return
    rows = local_runs.table(found)
    typer.echo(tables.text(rows))
    typer.echo(f"\nbrowse them with: sevenstep leet {folder}")


@app.command("leet")
@friendly
def leet_cmd(folder: RunsFolder = None, group: GroupFilter = None, name: NameFilter = None):
    """W&B's terminal dashboard (`wandb leet`) on the local runs, each listed by what tells it apart: its
    comparison label or sweep trial, its seed, the time it started. (`wandb leet wandb/` lists wandb's own
    folder names, `offline-run-<date>_<time>-...`, cut off before anything that differs.)"""
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile

    from ..tracking import local_runs

    folder = folder or wandb_runs()
    found = local_runs.list_runs(folder, group=group, name=name)
    if not found:
        raise UsageError(f"no W&B runs to show under {folder} (`sevenstep runs {folder}` lists them)")
    wandb = shutil.which("wandb", path=str(Path(sys.executable).parent)) or shutil.which("wandb")
    if wandb is None:
        raise UsageError("the `wandb` command is not installed here (pip install wandb); leet is part of it")

    def closed(signum, frame):  # a closed terminal: the links are removed all the same, and once: a second
        for stop in (
            signal.SIGHUP,
            signal.SIGTERM,
        ):  # signal (a terminal sends SIGHUP, then SIGTERM) must not
            signal.signal(stop, signal.SIG_IGN)  # cut their removal short
        sys.exit(128 + signum)

    for stop in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(stop, closed)
    with tempfile.TemporaryDirectory(prefix="sevenstep-leet-") as view:  # one a command: two never collide
        names = local_runs.leet_view(found, Path(view))
        typer.echo(f"wandb leet: {len(names)} run(s) from {folder}, e.g. {names[0]}", err=True)
        raise typer.Exit(subprocess.call([wandb, "leet", view]))


@app.command("report")
@friendly
def report_cmd(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="A comparison's report folder, a sweep's folder, or run folders (runs/<name>-<time>)",
            show_default=False,
        ),
    ] = None,
    group: Annotated[
        str | None,
        typer.Option(
            help="Instead of PATHS: the run folders of the W&B runs whose group contains this, as "
            "`sevenstep runs --group` lists them"
        ),  # fmt: skip
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Instead of PATHS: those whose name contains this (with --group: both)")
    ] = None,
    wandb_dir: WandbDir = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="The HTML file \\[default: report.html in the comparison's or sweep's folder; for run "
            "folders runs/runs-<time>.html]"
        ),  # fmt: skip
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            help="The Optuna storage URL a sweep or comparison ran with (--storage), when its study is not in "
            "its folder's own study.journal; it is read, never written",
            metavar="URL",
        ),
    ] = None,
):
    """One self-contained HTML page: tables, interactive charts and pictures, opened with a double click (no
    server, no network). `compare` and `sweep` write theirs on their own; this makes one for any folder."""
    import time

    from ..tracking import page

    if (group or name) and paths:
        raise UsageError("give PATHS or --group/--name (a selection of `sevenstep runs`), not both")
    paths = _selected(group, name, wandb_dir) if group or name else list(paths or [])
    if not paths:
        raise UsageError(
            "give a comparison's or sweep's folder, run folders, or --group/--name to pick W&B runs"
        )
    for p in paths:
        if not p.is_dir():
            raise UsageError(
                f"{p}: no such folder; give a comparison's report folder, a sweep's folder or run folders"
            )
    kinds = {p: page.kind_of(p) for p in paths}
    if unknown := [str(p) for p, k in kinds.items() if k == "unknown"]:
        raise UsageError(
            f"{', '.join(unknown)}: not a comparison (results.json), a sweep (trials.json) or a run (result.json)"
        )
    if out is not None:
        output_folder(out.parent if str(out.parent) else Path("."), "--out's folder")
    if len(paths) > 1 and len(set(kinds.values())) == 1 and kinds[paths[0]] in ("comparison", "sweep"):
        # a glob that matches this comparison's earlier folders too (README's runs/compare-...-*): the newest
        newest = max(paths, key=lambda p: ((p / "report.html").stat().st_mtime if (p / "report.html").exists()
                                           else p.stat().st_mtime, p.name))  # fmt: skip
        typer.echo(f"{len(paths)} {kinds[newest]} folders given: the page is the newest's, {newest} (give one "
                   "folder to choose another)", err=True)  # fmt: skip
        paths = [newest]
    single = len(paths) == 1 and kinds[paths[0]] in ("comparison", "sweep")
    if single and kinds[paths[0]] == "comparison":
        from ..compare.page import comparison

        written = comparison(paths[0], out=out)
    elif single:
        from ..sweep.page import sweep

        written = sweep(paths[0], storage=storage, out=out)
    else:
        if others := [str(p) for p, k in kinds.items() if k != "run"]:
            raise UsageError(f"{', '.join(others)}: give one comparison or sweep folder, or only run folders")
        out = out or output_folder(Path("runs"), "runs") / f"runs-{time.strftime('%Y%m%d-%H%M%S')}.html"
        written = page.runs(paths, out)
    typer.echo(
        f"page: {written} ({written.stat().st_size / 1e6:.1f} MB; opens in a browser, no server needed)"
    )


def _selected(group: str | None, name: str | None, wandb_dir: Path | None) -> list[Path]:
    """The run folders of the W&B runs `sevenstep runs --group G --name N` lists (a run's W&B record says
    where its folder is); the oldest first, as a page lists runs in the order given."""
    from ..tracking import local_runs

    folder = wandb_runs(wandb_dir)
    found = local_runs.list_runs(folder, group=group, name=name)
    which = " and ".join(f"{k} containing {v!r}" for k, v in (("group", group), ("name", name)) if v)
    if not found:
        raise UsageError(f"no W&B runs with {which} under {folder}; `sevenstep runs {folder}` lists them")
    runs = [Path(r["path"]) for r in reversed(found) if (Path(r["path"]) / "result.json").exists()]
    if missing := len(found) - len(runs):
        typer.echo(f"{missing} of the {len(found)} runs with {which} have no run folder with a result here "
                   "(moved, deleted, or still running): left out", err=True)  # fmt: skip
    if not runs:
        raise UsageError(f"none of the {len(found)} W&B runs with {which} has its run folder here")
    return runs


@app.command("dashboard")
@friendly
def dashboard_cmd(
    where: Annotated[
        str,
        typer.Argument(help="A sweep's folder (its study.journal), a journal file, or an Optuna storage URL"),
    ],
    port: Annotated[int, typer.Option(min=0, max=65535, help="Loopback port; 0 picks a free one")] = 0,
):
    """Optuna Dashboard (optuna-dashboard) on this machine's loopback address, live while a sweep runs: every
    trial, its values and Optuna's plots. Read-only, and only with the token in the URL it prints (every user
    of this machine can reach a loopback port). Ctrl-C stops it."""
    from ..trials.study import storage_for

    path = Path(where)
    if "://" not in where:
        if path.is_dir():
            path = path / "study.journal"
        if not path.is_file():
            raise UsageError(
                f"{where}: no study here; give a sweep's folder, its study.journal, or a storage URL"
            )
    storage = storage_for(where if "://" in where else str(path), path.parent)
    if "://" not in where and path.stat().st_size and not storage.get_all_studies():
        raise UsageError(
            f"{where}: holds no Optuna study; give a sweep's folder, its study.journal, or a storage URL"
        )
    port = port or free_port()
    from ..sweep import dashboard

    secret = dashboard.token()
    typer.echo(
        f"Optuna Dashboard: http://127.0.0.1:{port}/dashboard?token={secret} (read-only; Ctrl-C stops it)",
        err=True,
    )
    failed: list[OSError] = []

    def serve():
        try:
            dashboard.serve(storage, port, secret)
        except OSError as e:
            failed.append(e)

    # served from a thread of its own, so that Ctrl-C reaches this one: in the server's thread, a Ctrl-C that
    # came while it answered a request (a browser asks every few seconds) was caught by wsgiref's error handler,
    # printed as a traceback, and the dashboard served on
    server = threading.Thread(target=serve, name="optuna-dashboard", daemon=True)
    server.start()
    try:
        while server.is_alive():
            server.join(0.2)
    except KeyboardInterrupt:
        return
    if failed:
        e = failed[0]
        raise UsageError(f"--port {port}: cannot listen there ({e.strerror or e}); try --port 0") from None
