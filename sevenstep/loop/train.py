"""One path for every run: recipe -> Learner with its callbacks -> fit -> evaluate -> save -> after_run.

The loop itself is fastai's `Learner.fit`; the seven steps are callbacks on it (sevenstep/steps/), beside the
loop's own callbacks (callbacks.py) and whatever the caller hands in: loggers, the checkpointer, a sweep's
trial reporter. The run is kept under runs/<name>-<time>/ (run_folder.py says what that folder holds).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fastai.torch_core import set_seed

from .. import data, metrics
from ..callbacks import DivergenceGuard, ReadableRows, RunInfo, RunLog, instantiate, notify
from ..metrics import per_class_accuracy
from ..recipe import Recipe
from ..utils import signals
from . import run_folder
from .learner import Learner


@dataclass
class Run:
    """What a run produced. `run_dir` is its saved folder; `learn` and `predictions` stay in memory."""

    name: str
    recipe: dict[str, Any]
    epochs: list[dict[str, Any]]
    accuracy: float | None  # the comparisons' metric: its paired tests count each image right or wrong
    per_class: dict[str, float]
    n_params: int
    fit_seconds: float
    stop_reason: str  # epochs_done, a stop rule's reason, or one of callbacks.ENDINGS
    message: str
    run_dir: str = ""
    resumed_from: int | None = None  # the epoch a resumed run continued from
    weights_epoch: int | None = None  # the epoch whose weights the result holds (the best, or the last)
    n_valid: int = 0  # validation images the final metrics counted
    items_root: str = (
        ""  # the folder valid_outcomes.csv's `item`s are relative to (the source's, on this machine)
    )
    # the held-out test set (data.test), evaluated once with the final weights: accuracy, loss, n, per_class
    test: dict[str, Any] | None = None
    processes: int = 1
    # every declared final metric on the validation images (sevenstep/metrics.py), accuracy included
    metrics: dict[str, float] = field(default_factory=dict)
    learn: Any = field(default=None, repr=False)
    predictions: Any = field(default=None, repr=False)  # (predicted classes, targets) on the validation set
    outcomes: list[dict[str, Any]] = field(default_factory=list, repr=False)  # one per validation image
    test_outcomes: list[dict[str, Any]] = field(default_factory=list, repr=False)  # one per test image

    @property
    def diverged(self) -> bool:
        return self.stop_reason == "diverged"

    def to_json(self) -> dict[str, Any]:
        memory_only = ("learn", "predictions", "outcomes", "test_outcomes")
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in memory_only}


def build_learner(recipe: Recipe, cbs=(), device=None, fast: bool = True) -> Learner:
    """Data, model, loss and optimizer from the recipe; every incompatibility is found here, before training.

    `cbs` are added beside the steps and the loop's own callbacks (instances, or classes/factories).
    `fast=False`: fastbook's per-item data path instead of the decoded one (sevenstep/data/decoded.py)."""
    set_seed(recipe.seed, reproducible=True)
    dls = data.dataloaders(**recipe.data, seed=recipe.seed, device=device, fast=fast)
    steps = recipe.build_steps()
    shape, n_out = tuple(dls.valid.one_batch()[0].shape[1:]), steps["loss"].n_out(len(dls.vocab))
    steps["predict"].check_size(shape, n_out)
    model = steps["predict"].make(shape, n_out)
    for cb in steps.values():
        cb.check(model, dls)
    learn = Learner(
        dls,
        model,
        loss_func=steps["loss"].func,
        opt_func=steps["step"].opt_func,
        lr=steps["step"].lr,
        metrics=metrics.fastai_metrics(),  # every declared per-epoch metric (sevenstep/metrics.py)
        cbs=[*steps.values(), DivergenceGuard(), RunLog(), ReadableRows(), *instantiate(cbs)],
    )
    learn.run_info = RunInfo(recipe)
    return learn


def run(
    recipe: Recipe,
    cbs=(),
    runs_dir: str | Path | None = None,
    group: str | None = None,
    job_type: str = "sgd",
    resume: tuple[Path, dict] | None = None,
    config: dict[str, Any] | None = None,
    pictures: bool = True,
) -> Run:
    """Train, evaluate and (with `runs_dir`) save one recipe. A divergence or Ctrl-C during training ends it
    early but still yields a Run that says why; `group` and `job_type` tell loggers where it belongs, and
    `config` what else they record (a comparison's label); `pictures=False` leaves out the pictures (top
    losses, confusion matrix, W&B's images), which take longer than training a small model.

    The run's folder exists from the start (recipe.toml, and a checkpoint after every epoch with the
    Checkpointer), marked UNFINISHED until the run ends. `resume` is (a run folder, its checkpoint): the
    run continues there (checkpoint.py)."""
    from . import checkpoint, distributed

    distributed.setup()
    learn = build_learner(recipe, cbs)
    checkpoint.stateful(learn)  # two callbacks whose states would collide are refused before training
    info = learn.run_info
    info.group, info.job_type, info.config, info.pictures = group, job_type, dict(config or {}), pictures
    owner = None
    if (
        resume is not None and distributed.rank()
    ):  # another rank of a resumed data-parallel run: it writes nothing
        checkpoint.attach(learn, resume[1], None)
    elif resume is not None:
        owner = run_folder.own(resume[0])  # before anything is loaded: one process trains a folder at a time
        run_folder.remove_temporaries(resume[0])
        run_folder.restart(resume[0], recipe)
        checkpoint.attach(learn, resume[1], resume[0])
    elif runs_dir is not None:
        info.run_dir = run_folder.start(Path(runs_dir), recipe)
        owner = run_folder.own(info.run_dir)
    try:
        fit_seconds = fit(learn)
        # Evaluating, saving and finishing the loggers are not to be cut short: a Ctrl-C (a second one, say)
        # waits until the run is saved, then stops the program if the run itself had not been stopped.
        with signals.deferred() as held:
            result = evaluate(recipe, learn, fit_seconds)
            if info.run_dir is not None:
                run_folder.save(result, info.run_dir)
            notify(learn.cbs, "after_run", result)
            if info.run_dir is not None:
                run_folder.finish(result, info.run_dir)
    except BaseException as e:
        notify(learn.cbs, "after_error", e)
        if (
            info.run_dir is not None
            and resume is None
            and not (info.run_dir / run_folder.CHECKPOINT).exists()
        ):
            shutil.rmtree(info.run_dir, ignore_errors=True)  # no epoch ended: nothing to keep or resume
        raise
    finally:
        if owner is not None:
            owner.release()
    if held and result.stop_reason != "interrupted":
        raise KeyboardInterrupt
    return result


def fit(learn: Learner) -> float:
    """The training itself, through the repeat step (on several processes when launched so: see
    distributed.py); Ctrl-C ends it as `interrupted`. Returns its seconds."""
    from . import distributed

    start = time.perf_counter()
    try:
        with distributed.context(learn):
            learn.step6_repeat.loop(learn)
    except KeyboardInterrupt:
        learn.run_info.stop_reason = "interrupted"
        if checkpointer := getattr(learn, "checkpointer", None):
            checkpointer.write()  # the last whole epoch's state, which the result below reports
        # the epoch in progress is half-trained: the result is the last complete epoch's, as its checkpoint is
        kept = learn.run_log.last_complete
        if kept is not None:
            getattr(learn.model, "module", learn.model).load_state_dict(kept)
            learn.run_info.weights_epoch = len(learn.run_log.epochs)
    return round(time.perf_counter() - start, 3)


def evaluate(recipe: Recipe, learn: Learner, fit_seconds: float) -> Run:
    """The final validation metrics (unless it diverged), as a Run."""
    from . import distributed

    acc, per_class, predictions, outcomes, test, test_outcomes, finals = None, {}, None, [], None, [], {}
    if learn.run_info.stop_reason != "diverged":
        valid = _scored(learn, learn.dls.valid, learn.dls.valid.items)
        acc, per_class, outcomes = valid["accuracy"], valid["per_class"], valid["outcomes"]
        predictions, finals = valid["predictions"], valid["metrics"]
        test_items = getattr(learn.dls, "test_items", None)
        if test_items:  # once, at the end: nothing chose or stopped on these images
            scored = _scored(learn, learn.dls.test_dl(test_items, with_labels=True), test_items)
            test_outcomes = scored.pop("outcomes")
            test = {k: scored[k] for k in ("accuracy", "loss", "n", "per_class", "metrics")}
    n_valid = len(predictions[1]) if predictions else 0
    return Run(
        name=recipe.name,
        recipe=recipe.to_dict(),
        epochs=learn.run_log.epochs,
        accuracy=acc,
        per_class=per_class,
        n_params=sum(p.numel() for p in learn.model.parameters()),
        fit_seconds=fit_seconds,
        stop_reason=learn.run_info.stop_reason,
        message=_message(recipe, learn) + _at_chance(recipe, outcomes),
        run_dir=str(learn.run_info.run_dir or ""),
        resumed_from=learn.run_info.resumed_from,
        weights_epoch=learn.run_info.weights_epoch or len(learn.run_log.epochs) or None,
        n_valid=n_valid,
        items_root=str(Path(learn.dls.source.path).resolve()) if getattr(learn.dls, "source", None) else "",
        test=test,
        processes=distributed.world_size(),
        metrics=finals,
        learn=learn,
        predictions=predictions,
        outcomes=outcomes,
        test_outcomes=test_outcomes,
    )


def _scored(learn: Learner, dl, items) -> dict[str, Any]:
    """The weights as they are, on one DataLoader's images: accuracy, mean loss, n, per-class accuracy, the
    predictions and each image's outcome. inner=True: no fit/epoch events, which would reset the run's log and
    stop reason."""
    with learn.no_bar():
        probs, targs, losses = learn.get_preds(dl=dl, inner=True, with_loss=True)
    classes = probs.argmax(-1)  # the loss's activation: probabilities of every class
    finals = metrics.scored(classes, targs)  # every declared metric's final value (sevenstep/metrics.py)
    return {
        "accuracy": finals["accuracy"],
        "metrics": finals,
        "loss": losses.mean().item(),
        "n": len(targs),
        "per_class": per_class_accuracy(classes, targs, learn.dls.vocab),
        "predictions": (classes, targs),
        "outcomes": per_image(learn.dls, items, targs, classes, probs, losses),
    }


def per_image(dls, items, targs, classes, probs, losses) -> list[dict[str, Any]]:
    """Each validation (or test) image's outcome: its file (from the source's folder, the same for every run on that
    source), label, predicted class, probability of its true class, and loss. Two runs on the same images can
    be compared from these alone (sevenstep/stats.py), without training again."""
    vocab, root = [str(v) for v in dls.vocab], Path(dls.source.path)
    p_true = probs.gather(1, targs[:, None].long())[:, 0]
    return [
        {
            "item": run_folder.item_name(item, root),
            "label": vocab[t],
            "predicted": vocab[c],
            "correct": int(t == c),
            "p_true": round(p, 6),
            "loss": round(loss, 6),
        }
        for item, t, c, p, loss in zip(
            items, targs.tolist(), classes.tolist(), p_true.tolist(), losses.tolist()
        )
    ]


def _at_chance(recipe: Recipe, outcomes: list[dict[str, Any]]) -> str:
    """A warning for a run that ended no better than always answering the most common class."""
    if not outcomes:
        return ""
    from ..stats import at_chance

    labels = [o["label"] for o in outcomes]
    common = max(set(labels), key=labels.count)
    accuracy = sum(o["correct"] for o in outcomes) / len(outcomes)
    if not at_chance(accuracy, len(outcomes), labels.count(common) / len(labels)):
        return ""
    lr = recipe.steps["step"].get("lr")
    return (
        f"; but it ended at chance level ({100 * accuracy:.1f}%, about what always answering {common!r} gets): "
        f"it learned nothing. Try another learning rate than steps.step.lr = {lr:g} (`sevenstep lr-find` "
        "suggests one) or another init"
    )


def _message(recipe: Recipe, learn: Learner) -> str:
    if learn.run_info.stop_reason == "diverged":
        epoch, batch, loss = learn.run_info.diverged_at
        lr = recipe.steps["step"]["lr"]
        said = f"training diverged at epoch {epoch + 1}, batch {batch + 1}: the loss became {loss}. "
        if (
            epoch == 0 and batch == 0
        ):  # before any step: the weights the init drew (or the data) are the cause
            init = recipe.steps["init"]
            given = ", ".join(f"{k} = {v}" for k, v in init.items() if k != "name")
            return said + (f"No step had been taken yet: look at the init, steps.init.name = {init['name']!r}"
                           f"{f' ({given})' if given else ''}, whose weights give this loss")  # fmt: skip
        return (
            said
            + f"Try a lower learning rate than steps.step.lr = {lr:g}, e.g. --set steps.step.lr={lr / 10:g}"
        )
    n = len(learn.run_log.epochs)
    reasons = {
        "epochs_done": f"finished its {n} epoch(s)",
        "patience": f"stopped early after {n} epoch(s): {recipe.steps['stop'].get('metric')} stopped improving",
        "target": f"reached its target after {n} epoch(s)",
        "time_budget": f"spent its time budget after {n} epoch(s)",
        "interrupted": f"was interrupted after {n} complete epoch(s)"
        + (f"; the result is epoch {n}'s weights" if n else "; the result is its weights when interrupted"),
        "pruned": f"was pruned by its sweep after {n} epoch(s)",
    }
    info = learn.run_info
    said = (
        reasons.get(info.stop_reason)
        or f"was stopped by its stop rule after {n} epoch(s) ({info.stop_reason})"
    )
    said += f": {info.stop_message}" if info.stop_message else ""
    best = info.weights_epoch
    kept = f", with the weights of its best epoch, {best}" if best and best != n else ""
    return f"{recipe.name} {said}{kept}"


def load_learner(run_dir: str | Path):
    """Rebuild a saved run's Learner from its recipe and load its weights (tensors only: weights_only=True)."""
    import torch

    from ..recipe import load
    from .run_folder import MODEL, RECIPE

    run_dir = Path(run_dir)
    learn = build_learner(load(run_dir / RECIPE, saved_run=True))
    try:  # tensors only: a pickle that would run code is refused by torch here
        learn.model.load_state_dict(torch.load(run_dir / MODEL, weights_only=True, map_location="cpu"))
    except Exception as e:
        from ..errors import UsageError

        raise UsageError(
            f"{run_dir / MODEL} cannot be read as this run's weights ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
            "it is damaged, or not the model.pth sevenstep saved with this recipe"
        ) from None
    # these weights are the trained ones: a later fit or get_preds must not re-initialise them
    learn.step1_init.done = True
    return learn
