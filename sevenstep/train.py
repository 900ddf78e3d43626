"""Build a fastai Learner from a Recipe, fit it, and keep what the run produced under runs/<name>-<time>/.

The loop itself is fastai's `Learner.fit`; the seven steps are callbacks on it (see sevenstep/steps/).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from fastai.learner import Learner, Recorder
from fastai.torch_core import set_seed

from . import data
from .errors import UsageError
from .metrics import accuracy, per_class_accuracy, predicted_class
from .recipe import Recipe
from .steps.base import SparseCallback
from .steps.stop import DivergenceGuard


class RunLog(SparseCallback):
    """Per-epoch metrics with their wall time, and the stop reason a stop rule may overwrite."""

    order = Recorder.order + 1  # the Recorder has logged the epoch; stop rules (order 60+) have not yet run

    def before_fit(self):
        self.learn.stop_reason, self.epochs = "epochs_done", []

    def before_epoch(self):
        self.start = time.perf_counter()

    def after_epoch(self):
        names = self.learn.recorder.metric_names[1:-1]  # between 'epoch' and 'time'
        values = [float(v) for v in self.learn.recorder.values[-1]]
        seconds = round(time.perf_counter() - self.start, 3)
        self.epochs.append({"epoch": self.learn.epoch + 1, **dict(zip(names, values)), "seconds": seconds})


@dataclass
class Run:
    name: str
    recipe: dict[str, Any]
    epochs: list[dict[str, Any]]
    accuracy: float | None
    per_class: dict[str, float]
    n_params: int
    fit_seconds: float
    stop_reason: str
    message: str
    run_dir: str = ""
    learn: Any = field(default=None, repr=False)
    predictions: Any = field(default=None, repr=False)  # (predicted classes, targets) on the validation set

    @property
    def failed(self) -> bool:
        return self.stop_reason == "diverged"

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("learn", "predictions")}


def build_learner(recipe: Recipe, device=None) -> Learner:
    """Data, model, loss and optimizer from the recipe; every incompatibility is found here, before training."""
    set_seed(recipe.seed, reproducible=True)
    d = recipe.data
    dls = data.dataloaders(d["source"], d["bs"], recipe.seed, d["augment"], d["normalize"], device)
    steps = recipe.build_steps()
    n_classes, loss = len(dls.vocab), steps["loss"]
    if loss.binary and n_classes != 2:
        raise UsageError(
            f"steps.loss {recipe.steps['loss']['name']!r} is a two-class loss, but data.source "
            f"{recipe.data['source']!r} has {n_classes} classes; use loss 'cross_entropy' (or 'mse') with it, "
            "or a two-class source such as 'mnist5k-3v7'"
        )
    shape = tuple(dls.valid.one_batch()[0].shape[1:])
    model = steps["predict"].make(shape, loss.n_out(n_classes))
    for cb in steps.values():
        cb.check(model, n_classes)
    return Learner(
        dls,
        model,
        loss_func=loss.func,
        opt_func=steps["step"].opt_func,
        lr=steps["step"].lr,
        metrics=[accuracy],
        cbs=[*steps.values(), DivergenceGuard(), RunLog()],
    )


def fit(recipe: Recipe, learn: Learner | None = None) -> Run:
    """Train; a divergence or Ctrl-C ends training early but still yields a Run that says why."""
    learn = learn or build_learner(recipe)
    start = time.perf_counter()
    try:
        learn.step6_repeat.fit(learn)
    except KeyboardInterrupt:
        learn.stop_reason = "interrupted"
    fit_seconds = round(time.perf_counter() - start, 3)
    acc, per_class, predictions = None, {}, None
    if learn.stop_reason != "diverged":
        # inner=True: no fit/epoch events, which would reset the run's log and stop reason
        with learn.no_bar():
            preds, targs = learn.get_preds(dl=learn.dls.valid, inner=True)
        classes = predicted_class(preds)
        acc = (classes == targs).float().mean().item()
        per_class = per_class_accuracy(classes, targs, learn.dls.vocab)
        predictions = (classes, targs)
    return Run(
        name=recipe.name,
        recipe=recipe.to_dict(),
        epochs=learn.run_log.epochs,
        accuracy=acc,
        per_class=per_class,
        n_params=sum(p.numel() for p in learn.model.parameters()),
        fit_seconds=fit_seconds,
        stop_reason=learn.stop_reason,
        message=_message(recipe, learn),
        learn=learn,
        predictions=predictions,
    )


def _message(recipe: Recipe, learn: Learner) -> str:
    if learn.stop_reason == "diverged":
        epoch, batch, loss = learn.diverged_at
        lr = recipe.steps["step"]["lr"]
        return (
            f"training diverged at epoch {epoch + 1}, batch {batch + 1}: the loss became {loss}. "
            f"Try a lower learning rate than steps.step.lr = {lr:g}, e.g. --set steps.step.lr={lr / 10:g}"
        )
    n = len(learn.run_log.epochs)
    reasons = {
        "epochs_done": f"finished its {n} epoch(s)",
        "patience": f"stopped early after {n} epoch(s): {recipe.steps['stop'].get('metric')} stopped improving",
        "target": f"reached its target after {n} epoch(s)",
        "time_budget": f"spent its time budget after {n} epoch(s)",
        "interrupted": f"was interrupted after {n} complete epoch(s)",
    }
    return f"{recipe.name} {reasons[learn.stop_reason]}"


def save(run: Run, runs_dir: str | Path = "runs") -> Path:
    """Write recipe.toml, result.json and model.pth together: a temporary folder renamed into place."""
    import tomli_w

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    final = unique_path(runs_dir, run.name)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=runs_dir))
    run.run_dir = str(final)
    (tmp / "recipe.toml").write_text(tomli_w.dumps(run.recipe))
    (tmp / "result.json").write_text(json.dumps(run.to_json(), indent=2))
    if run.learn is not None and not run.failed:
        torch.save(run.learn.model.state_dict(), tmp / "model.pth")
    tmp.rename(final)
    return final


def unique_path(parent: Path, stem: str) -> Path:
    """parent/<stem>-<time>, with -2, -3 ... when several runs finish within one second."""
    stem = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, i = parent / stem, 1
    while path.exists():
        i += 1
        path = parent / f"{stem}-{i}"
    return path


def load_learner(run_dir: str | Path) -> Learner:
    """Rebuild a saved run's Learner from its recipe and load its weights (tensors only: weights_only=True)."""
    from .recipe import load

    run_dir = Path(run_dir)
    learn = build_learner(load(run_dir / "recipe.toml"))
    learn.model.load_state_dict(torch.load(run_dir / "model.pth", weights_only=True, map_location="cpu"))
    # these weights are the trained ones: a later fit or get_preds must not re-initialise them
    learn.step1_init.done = True
    return learn
