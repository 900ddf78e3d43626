"""Checkpoints and exact resume: a run killed after epoch k continues from epoch k as if never stopped.

`Checkpointer` keeps the run's state at the end of every epoch in memory, and writes it as `checkpoint.pt` into
the run folder (run_folder.py), atomically, after the first epoch, then at most every `every` seconds
(SEVENSTEP_CHECKPOINT_EVERY, `--checkpoint-every`; 5 by default), and always when the fit ends, stops or is
interrupted: a file per epoch cost more than a small model's epoch (docs/performance.md). A run killed outright
loses at most those seconds, which a resume trains again. The state: the
weights, the optimizer's state, the epoch reached, every random number generator (torch, numpy, python, each data
loader's), and the state of every callback that has one (`state_dict()`, saved under its `state_key`: the run
log, the patience rule, the time budget, the W&B run's id). Only tensors and plain values are saved, and loaded with
`weights_only=True`.

`prepare(run_dir)` and `train.run(..., resume=...)` rebuild the run from its recipe, load that state, and
fit again over the same epochs: `Resume` silences every other callback for the epochs already done
(fastai's own `start_epoch`/SkipToEpoch still sends each skipped epoch's after_epoch to every callback: the
Recorder would log an empty row and the patience rule count it), then restores the generators before the
first new epoch. The one-cycle schedule follows: fastai sets its position from the epoch number.
"""

from __future__ import annotations

import io
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastai.callback.core import CancelEpochException
from fastcore.foundation import L

from ..callbacks import CHECKPOINT_ORDER, SparseCallback
from ..errors import UsageError
from ..utils import atomic
from .distributed import rank, world_size
from .run_folder import CHECKPOINT, RECIPE, RESULT, UNFINISHED, mark_unfinished


def _rng_state(learn) -> tuple:
    """Every generator's state as its library hands it out (each call returns a copy): cheap enough for every
    epoch's snapshot; `_plain_rng` turns it into what `weights_only` loading accepts, when it is written."""
    return (
        torch.get_rng_state(),
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        np.random.get_state(),
        random.getstate(),
        [_unwrapped(dl).rng.getstate() for dl in (learn.dls.train, learn.dls.valid)],
    )


def _plain_rng(raw: tuple) -> dict[str, Any]:
    torch_state, cuda, (_, keys, pos, has_gauss, gauss), python, loaders = raw
    return {
        "torch": torch_state,
        "cuda": cuda,
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "python": _py_rng(python),
        "loaders": [_py_rng(state) for state in loaders],
    }


def _py_rng(state) -> list:
    version, internal, gauss_next = state
    return [version, list(internal), gauss_next]


def _set_rng_state(learn, s: dict[str, Any]) -> None:
    torch.set_rng_state(s["torch"])
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])
    n = s["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    version, internal, gauss_next = s["python"]
    random.setstate((version, tuple(internal), gauss_next))
    for dl, (version, internal, gauss_next) in zip((learn.dls.train, learn.dls.valid), s["loaders"]):
        _unwrapped(dl).rng.setstate((version, tuple(internal), gauss_next))


def _unwrapped(dl):
    """A data-parallel run's DistributedDL keeps the DataLoader, and its generator, in `.dl`."""
    return dl.__dict__.get("dl", dl)


def _plain(obj):
    """Containers as lists, tuples and dicts, numbers as Python's: all `weights_only` loading accepts
    (fastai's optimizer keeps its hyper-parameters in a fastcore `L`, numpy may leave float64s)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, L)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def stateful(learn) -> dict[str, Any]:
    """The callbacks with state a resumed run needs, by their `state_key` (Lightning's convention: a callback
    defines `state_dict()` and `load_state_dict(state)`; its key is `state_key`, by default fastai's `name`).
    Looked up on the class: a fastai Callback hands unknown attributes on to the Learner, and so to the model."""
    found: dict[str, Any] = {}
    for cb in learn.cbs:
        if not hasattr(type(cb), "state_dict"):
            continue
        key = cb.state_key if hasattr(type(cb), "state_key") else cb.name
        if key in found:
            raise UsageError(
                f"two callbacks keep their checkpoint state under {key!r} ({type(found[key]).__name__} and "
                f"{type(cb).__name__}); give one of them a `state_key` of its own"
            )
        found[key] = cb
    return found


EVERY = 5.0  # seconds between checkpoint writes, by default


def every_default() -> float:
    """SEVENSTEP_CHECKPOINT_EVERY (seconds), which `--checkpoint-every` sets for every process of a command."""
    value = os.environ.get("SEVENSTEP_CHECKPOINT_EVERY")
    try:
        every = EVERY if value is None else float(value)
    except ValueError:
        every = -1.0
    if not every >= 0:  # NaN too
        raise UsageError(
            f"SEVENSTEP_CHECKPOINT_EVERY={value!r}: give seconds, 0 or more (0: after every epoch)"
        )
    return every


class Checkpointer(SparseCallback):
    """The run's state at the end of each epoch, in memory; written to `<run folder>/checkpoint.pt` after the
    first epoch, then at most every `every` seconds, and always at the end of the fit. Last, after the stop
    rule: a stop rule that ends the fit in its epoch has that epoch's state kept here, all the same."""

    order = CHECKPOINT_ORDER

    def __init__(self, every: float | None = None):
        self.every = every_default() if every is None else every
        self.before_fit()

    def before_fit(self):
        self.snapshot, self.kept, self.written_at = None, 0, -math.inf  # kept: the epoch of the last snapshot
        # what a fit does not change (the recipe, the callbacks with state): made at its first snapshot
        self.fixed, self.keepers = None, None

    def after_epoch(self):
        if self.learn.run_info.run_dir is None:  # a run that is not saved has nothing to resume
            return
        self.snapshot, self.kept = self.state(), self.learn.epoch + 1
        if time.monotonic() - self.written_at >= self.every or self.learn.epoch + 1 >= self.learn.n_epoch:
            self.write()

    def after_cancel_fit(self):
        """A stop rule ended the fit in after_epoch, before this callback's turn: that epoch is whole (the run
        log has it), so its state is kept. A fit cancelled mid-epoch (a divergence) keeps the last whole one."""
        learn = self.learn
        whole = len(learn.run_log.epochs) == learn.epoch + 1
        if learn.run_info.run_dir is not None and whole and self.kept < learn.epoch + 1:
            self.snapshot, self.kept = self.state(), learn.epoch + 1

    def after_fit(self):
        self.write()

    def state(self) -> dict[str, Any]:
        """Everything a resumed run needs, as it is now; tensors copied, since training changes them in place.
        Taken every epoch, so only what changes is taken: the rest is made once a fit."""
        from ..recipe import dumps

        learn = self.learn
        if self.fixed is None:
            # what it was trained with: `resume` refuses a recipe.toml edited since
            self.fixed = {"recipe_toml": dumps(learn.run_info.recipe.to_dict()), "processes": world_size()}
            self.keepers = stateful(learn)
        model = getattr(learn.model, "module", learn.model)  # unwrapped from DDP
        return {
            "epoch": learn.epoch + 1,
            "train_iter": learn.train_iter,
            "model": _copied(model.state_dict()),
            "opt": _copied(_plain(learn.opt.state_dict())),
            "rng": _rng_state(learn),
            # fastai's train_loss is a running average over every batch of the fit so far
            "smooth_loss": {"count": learn.recorder.smooth_loss.count, "val": learn.recorder.smooth_loss.val},
            # a callback's state_dict() is a snapshot: what later training does not change (see RunLog's)
            "callbacks": {key: cb.state_dict() for key, cb in self.keepers.items()},
            **self.fixed,
        }

    def write(self):
        """The last whole epoch's state, if not written yet: also when a run is interrupted (train.fit)."""
        run_dir, state = self.learn.run_info.run_dir, self.snapshot
        if run_dir is None or state is None:
            return
        buf = io.BytesIO()
        torch.save(state | {"rng": _plain_rng(state["rng"])}, buf)
        if not (Path(run_dir) / UNFINISHED).exists():  # from now on there is something to resume
            mark_unfinished(Path(run_dir))
        # whole or not at all: a crash mid-write keeps the previous checkpoint
        atomic.write_bytes(Path(run_dir) / CHECKPOINT, buf.getvalue())
        self.snapshot, self.written_at = None, time.monotonic()


def _copied(obj):
    """Dicts and lists rebuilt, tensors cloned: a snapshot of weights or an optimizer's state."""
    if isinstance(obj, dict):
        return {k: _copied(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_copied(v) for v in obj]
    return obj.detach().clone() if isinstance(obj, torch.Tensor) else obj


class Resume(SparseCallback):
    """Skips the epochs a checkpoint has done, with every other callback silent, then restores its state."""

    order = 1000  # after every other callback, at every event

    def __init__(self, state: dict[str, Any]):
        self.state, self.start = state, state["epoch"]

    def before_epoch(self):
        if self.epoch < self.start:
            for cb in self.learn.cbs:
                if cb is not self:
                    cb.run = False  # fastai's own switch: silent until we switch it back
            raise CancelEpochException()

    def after_epoch(self):
        if self.epoch == self.start - 1:  # the last epoch done: the next is where the run continues
            for cb in self.learn.cbs:
                cb.run = True
            self.learn.train_iter = self.state["train_iter"]
            smooth = self.learn.recorder.smooth_loss
            smooth.count, smooth.val = self.state["smooth_loss"]["count"], self.state["smooth_loss"]["val"]
            _set_rng_state(self.learn, self.state["rng"])


def load(run_dir: Path) -> dict[str, Any]:
    file = Path(run_dir) / CHECKPOINT
    if not file.is_file():
        raise UsageError(
            f"{run_dir} has no {CHECKPOINT}: it stopped before its first epoch ended, so there is nothing to resume"
        )
    try:
        state = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as e:
        raise UsageError(f"{file} cannot be read ({type(e).__name__}); it cannot be resumed") from None
    if not isinstance(state, dict) or not {"epoch", "model", "opt", "callbacks"} <= state.keys():
        raise UsageError(
            f"{file} is not a sevenstep checkpoint (a model.pth copied over it?); it cannot be resumed"
        )
    return state


def attach(learn, state: dict[str, Any], run_dir: Path | None) -> None:
    """Make a freshly built Learner continue the checkpointed run: weights, optimizer, callbacks' state.
    `run_dir` None: a data-parallel rank other than 0, which writes no checkpoint."""
    try:
        learn.model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise UsageError(
            f"{Path(run_dir or '.') / CHECKPOINT} does not fit the model its recipe.toml builds (was the recipe edited?): "
            f"{str(e).splitlines()[0][:200]}"
        ) from None
    learn.create_opt()
    learn.opt.load_state_dict({"state": state["opt"]["state"], "hypers": L(state["opt"]["hypers"])})
    learn.step1_init.done = True  # the weights are the trained ones
    for key, cb in stateful(learn).items():
        if key in state["callbacks"]:
            cb.load_state_dict(state["callbacks"][key])
    learn.add_cb(Resume(state))
    learn.run_info.run_dir = Path(run_dir) if run_dir is not None else None
    learn.run_info.resumed_from = state["epoch"]


def prepare(run_dir: str | Path, sets: list[str] | None = None, processes: int | None = None):
    """The recipe and checkpoint to continue `run_dir` with; refuses what cannot continue the same run.

    `--set steps.repeat.n=N` may extend a run that repeats `epochs` (an unfinished one, or a finished one
    that did all its epochs); any other change (another model, another data source, a recipe.toml edited by
    hand) starts a new run. A run killed after its last epoch, before it was wholly saved, is finished here:
    evaluated, saved, drawn and logged from its checkpoint."""
    import json
    import tomllib

    from .. import recipe as recipes

    run_dir = Path(run_dir)
    if not (run_dir / RECIPE).is_file():
        raise UsageError(f"{run_dir} is not a run folder (no recipe.toml); run folders are under runs/")
    from .run_folder import own

    first = rank() == 0  # a data-parallel resume's other ranks only read
    if first:
        own(
            run_dir
        ).release()  # refused at once while another process trains it (train.run holds it for real)
    saved = recipes.read(run_dir / RECIPE, saved_run=True)  # its plugins checked, then loaded
    state = load(run_dir)
    if state.get("recipe_toml"):  # checkpoints from before sevenstep recorded it have no recipe to compare
        _refuse_edits(run_dir, dict(recipes.flatten(tomllib.loads(state["recipe_toml"]))), saved)
    _refuse_other_processes(run_dir, state.get("processes", 1), processes or world_size())
    wanted = recipes.apply_sets(saved, recipes.parse_sets(sets or []))
    before, after = dict(recipes.flatten(saved)), dict(recipes.flatten(wanted))
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if bad := [k for k in changed if k != "steps.repeat.n"]:
        raise UsageError(
            f"{run_dir} cannot continue with {', '.join(bad)} changed: a resumed run is the same run. "
            "Only --set steps.repeat.n=N (more epochs) is allowed; for anything else start a new run"
        )
    recipe = recipes.from_dict(wanted, where=str(run_dir / RECIPE))
    done, n = state["epoch"], recipe.steps["repeat"]["n"]
    try:
        result = json.loads((run_dir / RESULT).read_text()) if (run_dir / RESULT).is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        result = None
    if not isinstance(result, dict):
        raise UsageError(
            f"{run_dir / RESULT} is damaged (not a JSON object); remove it to resume the run from its checkpoint"
        )
    stopped = result.get("stop_reason")
    # saved whole only once the marker is gone (the pictures and loggers are written after result.json)
    unfinished = (run_dir / UNFINISHED).exists() or not result
    extended = bool(changed) or (
        state.get("recipe_toml") and tomllib.loads(state["recipe_toml"])["steps"]["repeat"]["n"] != n
    )
    if extended and recipe.steps["repeat"]["name"] != "epochs":
        raise UsageError(
            f"steps.repeat {recipe.steps['repeat']['name']!r} cannot be extended: its schedule is "
            "laid out over its whole length. Only an `epochs` run can be given more epochs"
        )
    if not unfinished and stopped != "interrupted" and not (extended and stopped == "epochs_done"):
        raise UsageError(
            f"{run_dir} has finished ({stopped}, {len(result.get('epochs', []))} epoch(s)); nothing to resume. "
            "To train an `epochs` run further: sevenstep resume RUN_DIR --set steps.repeat.n=N"
        )
    if n < done or (n == done and not unfinished and stopped != "interrupted"):
        raise UsageError(
            f"{run_dir} has done {done} of steps.repeat.n = {n} epochs: nothing is left to run; "
            f"give it more with --set steps.repeat.n={done + 5}"
        )
    if stopped == "epochs_done" and not unfinished and first:  # a finished run, extended: what it was is kept
        state["kept"] = keep_finished(run_dir, done)
    return recipe, state


def _refuse_edits(run_dir: Path, trained: dict[str, Any], saved: dict[str, Any]) -> None:
    """recipe.toml changed by hand since the checkpoint (other than its number of epochs): name every change."""
    from ..recipe import flatten

    now = dict(flatten(saved))
    edits = sorted(
        k for k in trained.keys() | now.keys() if trained.get(k) != now.get(k) and k != "steps.repeat.n"
    )
    if edits:
        said = "; ".join(
            f"{k} = {now.get(k, '(none)')!r}, trained with {trained.get(k, '(none)')!r}" for k in edits
        )
        raise UsageError(
            f"{run_dir / RECIPE} was edited after its checkpoint was written ({said}): a resumed run is the same "
            "run. Put those values back to resume it, or start a new run with the edited recipe: "
            f"sevenstep run {run_dir / RECIPE}"
        )


def _refuse_other_processes(run_dir: Path, trained: int, now: int) -> None:
    """A data-parallel run's batches are split over its processes: on another number its batch size changes."""
    if trained != now:
        raise UsageError(
            f"{run_dir} was trained on {trained} data-parallel process(es), and this resume has {now}: its "
            f"effective batch size would change. Resume it as it was trained: sevenstep resume {run_dir} "
            f"--processes {trained}"
        )


def finished_folder(run_dir: Path, epochs: int) -> Path:
    return run_dir / f"finished-at-epoch-{epochs}"


def keep_finished(run_dir: Path, epochs: int) -> Path:
    """A copy of a finished run's outputs (result, weights, epochs, outcomes, pictures) in
    RUN/finished-at-epoch-N/, made whole before the extension writes over them (a copy, then one rename)."""
    import shutil
    import tempfile

    from .run_folder import EPOCHS, MODEL, OUTCOMES, PICTURES, TEST_OUTCOMES, WEIGHTS

    dest = finished_folder(run_dir, epochs)
    if dest.is_dir():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=".finished-", dir=run_dir))
    for name in (RESULT, RECIPE, MODEL, EPOCHS, OUTCOMES, TEST_OUTCOMES, *PICTURES, WEIGHTS):
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, tmp / name)
    tmp.rename(dest)
    return dest
