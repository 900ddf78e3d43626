"""A run's folder: what it holds, and how it is written and read.

    recipe.toml      the resolved recipe (run it again as it is), written first
    UNFINISHED       a marker, from the first checkpoint until the run is wholly saved: `sevenstep resume`
                     continues the run (or finishes one killed after its last epoch)
    checkpoint.pt    the run's whole state after its last complete epoch (checkpoint.py)
    result.json      the final metrics and why the run stopped (train.Run)
    model.pth        the final weights, a state_dict (load it with torch.load(..., weights_only=True))
    epochs.csv       one row per epoch (sevenstep/tracking/csv_logger.py)
    valid_outcomes.csv   one row per validation image: label, predicted class, probability of the true
                     class, loss (train.per_image), for comparing runs image by image later; `item` is
                     relative to result.json's `items_root` (the same on every machine, the root not)
    test_outcomes.csv    the same for the held-out test images, when the data has a test set (data.test)
    top_losses.png, confusion_matrix.png   fastai's interpretation pictures (sevenstep/tracking/pictures.py)
    finished-at-epoch-N/  what a finished run held before `resume --set steps.repeat.n=M` extended it
    .owner.lock      held (an OS file lock) by the process training the run: a second `resume` is refused

Every file is written whole or not at all (sevenstep/utils/atomic.py): a reader sees the old one or the new one.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

from ..utils import atomic, tables

RECIPE = "recipe.toml"
UNFINISHED = "UNFINISHED"
CHECKPOINT = "checkpoint.pt"
RESULT = "result.json"
MODEL = "model.pth"
EPOCHS = "epochs.csv"
OUTCOMES = "valid_outcomes.csv"
TEST_OUTCOMES = "test_outcomes.csv"
PICTURES = ("top_losses.png", "confusion_matrix.png")  # fastai's interpretation (tracking/pictures.py)
LAYERS, LAYERS_PICTURE = "layers.csv", "layers.png"  # inside steps 4 and 5 (tracking/layer_stats.py)
LAYER_COLUMNS = ["epoch", "batch", "layer", "kind", "grad_norm", "weight_norm", "update_ratio", "act_mean",
                 "act_std", "dead_share"]  # fmt: skip
WEIGHTS = "weights.png"  # a linear model's weights, one image per output


def start(runs_dir: Path, recipe) -> Path:
    """The run's folder, claimed at the start, with its recipe (the first checkpoint marks it UNFINISHED)."""
    from ..recipe import dumps

    folder = new_folder(runs_dir, recipe.name)
    atomic.write_bytes(folder / RECIPE, dumps(recipe.to_dict()).encode())
    return folder


def save(result, run_dir: str | Path) -> Path:
    """recipe.toml, model.pth, the per-image outcomes, then result.json, each written whole (a temporary file
    renamed into place). The UNFINISHED marker stays until `finish`, once the loggers have written theirs."""
    from ..recipe import dumps

    run_dir = Path(run_dir)
    result.run_dir = str(run_dir)
    # a resumed run's recipe may have more epochs than the one written when it started
    atomic.write_bytes(run_dir / RECIPE, dumps(result.recipe).encode())
    if result.learn is not None and not result.diverged:
        import torch

        buf = io.BytesIO()
        torch.save(result.learn.model.state_dict(), buf)
        atomic.write_bytes(run_dir / MODEL, buf.getvalue())
    for name, rows in ((OUTCOMES, result.outcomes), (TEST_OUTCOMES, result.test_outcomes)):
        if rows:
            atomic.write_bytes(run_dir / name, tables.csv_text(rows).encode())
    atomic.write_bytes(run_dir / RESULT, json.dumps(result.to_json(), indent=2).encode())
    return run_dir


def restart(run_dir: Path, recipe) -> None:
    """A resumed run's folder: its recipe as it continues (more epochs, maybe), marked UNFINISHED again."""
    from ..recipe import dumps

    atomic.write_bytes(run_dir / RECIPE, dumps(recipe.to_dict()).encode())
    mark_unfinished(run_dir)


def mark_unfinished(folder: Path) -> None:
    """Written with the first checkpoint: before it, a killed run has nothing to resume."""
    atomic.write_bytes(
        folder / UNFINISHED, b"this run has not finished; continue it with: sevenstep resume <this folder>\n"
    )


def finish(result, run_dir: Path) -> None:
    """The run has ended and everything is written (result, weights, pictures, loggers): the marker goes, last,
    so that a kill before this leaves a run `resume` finishes. An interrupted run keeps it."""
    if result.stop_reason != "interrupted":
        (Path(run_dir) / UNFINISHED).unlink(missing_ok=True)


OWNER = ".owner.lock"


def own(run_dir: Path):
    """The run folder's lock, held while a process trains into it; the OS releases it when that process dies
    (a SIGKILL too), so a stale lock never strands a run. Refuses a folder another process is training."""
    from filelock import FileLock, Timeout

    from ..errors import UsageError

    lock = FileLock(Path(run_dir) / OWNER)
    try:  # a short wait: `sevenstep runs` may be asking the lock (being_trained) at this very moment
        lock.acquire(timeout=0.1)
    except Timeout:
        raise UsageError(
            f"{run_dir} is being trained by another process right now (a run, or a resume in another terminal); "
            "wait for it to end, or stop it, before resuming"
        ) from None
    return lock


def being_trained(run_dir: Path) -> bool:
    """Whether a live process holds the folder's owner lock now (`sevenstep runs` tells a killed run from a
    running one by it). Asked with a shared lock, taken and let go at once: the owner's is exclusive."""
    import fcntl
    import stat

    try:  # never blocks: a FIFO planted as the lock file would hang a plain open for ever
        fd = os.open(Path(run_dir) / OWNER, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False  # no lock file: nothing has trained here since sevenstep began writing one
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False  # not a lock sevenstep wrote
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing lets go of the shared lock
    return False


def remove_temporaries(run_dir: Path) -> None:
    """Half-written files a killed process left (utils/atomic.py's `.NAME-*.tmp`); called by the folder's owner."""
    for tmp in Path(run_dir).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def new_folder(parent: Path, stem: str) -> Path:
    """A new, empty parent/<stem>-<time>, with -2, -3 ... when others exist: claimed with mkdir, which only
    one process can win, so runs finishing in the same second never share a folder."""
    stem = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    for i in range(1, 10_000):
        path = parent / (stem if i == 1 else f"{stem}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{parent / stem}: too many runs with this name in one second")


def item_name(path, root) -> str:
    """An image as valid_outcomes.csv names it: its path from the source's folder (the same on every machine)."""
    return Path(path).relative_to(root).as_posix() if Path(path).is_relative_to(root) else str(path)


def read_outcomes(run_dir: str | Path, name: str = OUTCOMES) -> list[dict[str, Any]]:
    """A saved run's per-image outcomes (valid_outcomes.csv, or test_outcomes.csv), with numbers as numbers."""
    rows = tables.read_csv(Path(run_dir) / name)
    for r in rows:
        r["correct"], r["p_true"], r["loss"] = int(r["correct"]), float(r["p_true"]), float(r["loss"])
    return rows


def read_layers(run_dir: str | Path) -> list[dict[str, Any]]:
    """A run folder's layers.csv, numbers as numbers (empty cells left out); [] when it has none. Here, not
    beside LayerStats: a page reads it without importing torch or fastai (seconds of `sevenstep report`)."""
    file = Path(run_dir) / LAYERS
    if not file.is_file():
        return []
    out = []
    for r in tables.read_csv(file):
        row = {k: v for k, v in r.items() if v != ""}
        for k in LAYER_COLUMNS[4:]:
            if k in row:
                row[k] = float(row[k])
        row["epoch"], row["batch"] = int(row["epoch"]), int(row["batch"])
        out.append(row)
    return out
