"""The tools a learner reaches for next: predict with a saved run, find a learning rate."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Annotated

import typer

from .common import (
    DeviceOption,
    JsonFlag,
    RecipeFile,
    SetOption,
    app,
    before_training,
    friendly,
    output_folder,
    quiet_libraries,
)


@app.command("lr-find")
@friendly
def lr_find_cmd(
    file: RecipeFile,
    set_: SetOption = None,
    out: Annotated[
        Path | None, typer.Option(help="The plot's PNG file \\[default: runs/lr-find-<name>.png]")
    ] = None,
    as_json: JsonFlag = False,
    device: DeviceOption = None,
):
    """fastai's learning-rate finder on the recipe's Learner: loss against learning rate, and a suggestion.

    The plot marks fastai's suggestions; the suggested value is printed with the --set that uses it."""
    from ..recipe import load

    recipe = load(file, set_)
    out = output_folder(out.parent if out else Path("runs"), "--out") / (
        out.name if out else f"lr-find-{recipe.name}.png"
    )
    before_training(Path("."), "disabled", None, device)
    from ..tools import lr_find

    with redirect_stdout(sys.stderr) if as_json else nullcontext():
        found = lr_find.run(recipe, out)
    if as_json:
        typer.echo(json.dumps({"suggestions": found, "plot": str(out)}))
        return
    for name, lr in found.items():
        shown = (
            "minimum/10" if name == "minimum" else name
        )  # fastai's `minimum` is a tenth of the lowest loss's lr
        typer.echo(f"{shown:<10} {lr:.3g}" + ("   (fastai's default suggestion)" if name == "valley" else ""))
    typer.echo(f"plot: {out}")
    kept = "".join(f" --set {s}" for s in set_ or [] if not s.startswith("steps.step.lr="))
    typer.secho(f"try it: sevenstep run {file}{kept} --set steps.step.lr={found['valley']:.3g}", bold=True)


@app.command("predict")
@friendly
def predict_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A saved run's folder, under runs/")],
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders of images")],
    as_json: JsonFlag = False,
    device: DeviceOption = None,
):
    """Each image's predicted class and probability, through the run's own preprocessing."""
    from ..data import device as devices
    from ..tools import predict

    devices.choose(device)
    quiet_libraries()
    with redirect_stdout(sys.stderr):
        found, skipped = predict.predict(run_dir, images)
    for problem in skipped:  # the others are predicted; these are said, and the exit code is 1
        typer.secho(f"skipped: {problem}", fg="yellow", err=True)
    if as_json:
        typer.echo(json.dumps(found))
    else:
        _print_predictions(found)
    if skipped:
        raise typer.Exit(1)


def _print_predictions(found) -> None:
    from ..utils import tables

    rows = [["image", "class", "probability"]] + [
        [p["file"], p["class"], f"{p['probability']:.3f}"] for p in found
    ]
    typer.echo(tables.text(rows))
