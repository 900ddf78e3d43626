"""The training loop's own callbacks, beside the seven steps: they are on every Learner whatever the recipe.

Loggers (sevenstep/tracking/), the checkpointer (checkpoint.py) and a sweep's trial reporter
(sevenstep/trials/workers.py) are callbacks of the same kind, handed to `train.run(recipe, cbs=[...])`.
fastai calls the callbacks of each event in ascending `order`; the orders of sevenstep's callbacks, with
fastai's own beside them, are defined here and only here:

    order  callback                      acts on
    -10    DivergenceGuard               after_loss: a NaN/inf loss ends the fit (with fastai's TrainEvalCallback)
      0    the gradient step             before_backward / before_step (clipping)
     20    the step step                 before_step: moves the weights, after clipping
     50    fastai's Recorder             after_epoch: the epoch's losses and metrics
     51    RunLog                        after_epoch: reads the Recorder's row into the run's log
     51    InterpretationPictures        after_run: top losses and confusion matrix, before loggers send them
     52    loggers (W&B, CSV, live page) after_epoch: read RunLog's row
     53    a sweep's TrialReporter       after_epoch: reports the metric to Optuna, may end the fit as pruned
     61    ReadableRows                  before_fit: the printed table's rows at a rate a person can read
     63    the stop step                 after_epoch: may end the fit, once everything above has the epoch
     64    Checkpointer                  after_epoch: the run's whole state, the stop rule's included

Beyond fastai's events, sevenstep calls three of its own on callbacks that define them, with `notify`:
`after_run(run)` once a run is evaluated and saved (whatever its stop reason), `after_error(error)` when
it raised instead, and `after_baseline(result, config, group)` for a comparison's baseline. A callback with
state that a resumed run needs defines `state_dict()` and `load_state_dict(state)`, as Lightning's do,
saved under its `state_key` (by default its fastai `name`; checkpoint.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastai.callback.core import Callback, CancelFitException
from fastai.callback.tracker import EarlyStoppingCallback
from fastai.learner import Recorder

from .utils import signals

GUARD_ORDER = -10
STEP_ORDER = 20
RUN_LOG_ORDER = Recorder.order + 1
PICTURES_ORDER = RUN_LOG_ORDER
LOGGER_ORDER = Recorder.order + 2
PRUNER_ORDER = Recorder.order + 3
STOP_ORDER = EarlyStoppingCallback.order  # 63; the patience rule is fastai's EarlyStoppingCallback
CHECKPOINT_ORDER = STOP_ORDER + 1
ROWS_ORDER = 61  # after fastai's ProgressCallback (60), which points learn.logger at its table


# How the loop itself ends a run without a value to report: any other stop reason (epochs_done, or whatever
# a stop rule gave, a plugin's too) ended a run whose metrics are its result
ENDINGS = ("diverged", "interrupted", "pruned")


@dataclass
class RunInfo:
    """What a callback may read about the run its Learner trains, as `learn.run_info` (one typed object, not
    loose attributes on the Learner): set by train.build_learner and train.run, updated by the stop rules."""

    recipe: Any  # the sevenstep.recipe.Recipe being trained
    group: str | None = None  # the W&B group: a comparison's report folder, a sweep's name
    job_type: str = "sgd"  # the W&B job type: sgd, trial
    run_dir: Path | None = None  # the run's folder; None for a run that is not saved
    resumed_from: int | None = None  # the epoch a resumed run continued after
    # epochs_done, the loop's own ENDINGS, or a stop rule's reason (patience, target, time_budget, a plugin's)
    stop_reason: str = "epochs_done"
    stop_message: str = ""  # what a stop rule said of why it stopped (Stop.halt), for the run's message
    # (epoch, batch, loss) where the training loss stopped being finite
    diverged_at: tuple[int, int, float] | None = None
    config: dict[str, Any] = field(default_factory=dict)  # what else loggers record: a comparison's label
    weights_epoch: int | None = None  # the epoch whose weights the model holds at the end, if not the last
    # whether the run draws its pictures (a comparison draws them for each method's first seed only)
    pictures: bool = True


class SparseCallback(Callback):
    """Answers only the events its class defines. A stock fastai Learner asks every callback about every
    event, ~20 a batch, and each unanswered ask costs attribute look-ups delegated to the Learner; sevenstep's
    Learner (learner.py) no longer asks, and on a stock one (a user's) this skips them the same way.

    While fastai gathers predictions or validates (get_preds, predict, ClassificationInterpretation, validate,
    tta, summary, which send before_fit and after_epoch too), sevenstep's callbacks sit out, as fastai's own
    trackers and W&B callback do: no re-initialised weights, no reset run log, no checkpoint of a validation
    pass."""

    def __call__(self, event_name):
        state = self.learn.__dict__
        # fastai's GatherPredsCallback is attached (add_cb sets it), or validate/summary/tta on sevenstep's Learner
        if "gather_preds" in state or state.get("not_a_fit"):
            return None
        # fastai resets `run` on after_fit, so that one always goes through
        if event_name != "after_fit" and not hasattr(type(self), event_name):
            return None
        return super().__call__(event_name)

    @property
    def training(self) -> bool:
        """The Learner's, read directly: fastai's Callback.__call__ reads it on every batch event, and a callback's
        own attribute look-up would go through fastai's delegation to the Learner (several times slower)."""
        return self.learn.training


class DivergenceGuard(SparseCallback):
    """Always on: a NaN or infinite training loss ends the run and says where it happened. Also a safe point
    for a worker's stop that Python could not deliver (utils/signals.py: `check`)."""

    order = GUARD_ORDER

    def after_loss(self):
        signals.check()
        if self.learn.training and not math.isfinite(self.learn.loss.item()):
            self.learn.run_info.stop_reason = "diverged"
            self.learn.run_info.diverged_at = (
                self.learn.epoch,
                self.learn.iter,
                self.learn.loss.detach().item(),
            )
            raise CancelFitException()


class RunLog(SparseCallback):
    """Per-epoch metrics with their wall time, and the stop reason a stop rule may overwrite."""

    order = RUN_LOG_ORDER

    def __init__(self):
        self.epochs, self.restored = [], []  # epochs: also for a run stopped before its first epoch began
        self.last_complete = (
            None  # the weights after the last complete epoch: what an interrupted run reports
        )

    def before_fit(self):
        if "run_info" not in self.learn.__dict__:  # a Learner not built from a recipe (a stock one, say)
            self.learn.run_info = RunInfo(recipe=None)
        self.learn.run_info.stop_reason, self.epochs = "epochs_done", list(self.restored)
        # a resumed run starts from its last complete epoch's weights, just loaded from the checkpoint
        self.last_complete = weights_copy(self.learn.model) if self.learn.run_info.resumed_from else None

    def state_dict(self):
        return {"epochs": list(self.epochs)}  # a snapshot: the rows of ended epochs do not change

    def load_state_dict(self, state):
        self.restored = state["epochs"]

    def before_epoch(self):
        self.start = time.perf_counter()
        # fastai's Recorder (order 50) has just begun this epoch's row: the printed table counts epochs from
        # 1, as result.json, W&B and the plots do
        self.learn.recorder.log[0] = self.learn.epoch + 1

    def after_epoch(self):
        names = self.learn.recorder.metric_names[1:-1]  # between 'epoch' and 'time'
        values = [float(v) for v in self.learn.recorder.values[-1]]
        seconds = round(time.perf_counter() - self.start, 3)
        lr = (
            {"lr": float(self.learn.opt.hypers[-1]["lr"])} if self.learn.opt is not None else {}
        )  # its last batch's
        self.epochs.append(
            {"epoch": self.learn.epoch + 1, **dict(zip(names, values)), **lr, "seconds": seconds}
        )
        self.last_complete = weights_copy(self.learn.model)


class ReadableRows(SparseCallback):
    """The printed per-epoch table at a rate a person can read: the first and last epochs, and in between a row
    every `every` seconds. fastai prints a row an epoch (in a notebook it draws the whole table again each
    time), which cost more than the epochs of fastbook's 327-epoch recipes; every epoch is still in the run log,
    epochs.csv and W&B."""

    order = ROWS_ORDER
    every = 0.5

    def before_fit(self):
        self.printed_at, self.skipped = -math.inf, None
        if self.learn.logger != self.row:  # not still this one's, from a fit that Ctrl-C cut short
            self.write = self.learn.logger
        if getattr(self.write, "__name__", "") != "noop":
            self.learn.logger = self.row

    def row(self, log):
        learn = self.learn
        epoch_row = not learn.training and not isinstance(log, str) and len(log) and isinstance(log[0], int)
        if epoch_row:
            last = learn.epoch + 1 >= learn.n_epoch
            if not (last or learn.epoch == 0 or time.monotonic() - self.printed_at >= self.every):
                self.skipped = list(log)
                return
            self.printed_at, self.skipped = time.monotonic(), None
        self.write(log)

    def after_cancel_fit(self):
        if self.skipped is not None:  # a stop rule ended the fit on an epoch not printed (before fastai's
            self.write(self.skipped)  # ProgressCallback closes its table in after_fit)
            self.skipped = None

    def after_fit(self):
        if self.learn.logger == self.row:  # fastai's ProgressCallback (order 60) has put back its own already
            self.learn.logger = self.write


def weights_copy(model) -> dict:
    """A copy of the weights as they are now, on the CPU (the model goes on changing): unwrapped, since a
    data-parallel run's model is wrapped while it trains."""
    model = getattr(model, "module", model)
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def instantiate(cbs) -> list[Callback]:
    """Callbacks, or classes and factories (functools.partial) that make one: a comparison makes fresh ones
    for each of its runs, since a callback belongs to one Learner."""
    return [cb if isinstance(cb, Callback) else cb() for cb in cbs]


def notify(cbs, event: str, *args) -> None:
    """Call sevenstep's own event `event` on the callbacks that define it, in their fastai order."""
    for cb in sorted(cbs, key=lambda c: c.order):
        handler = getattr(cb, event, None)
        if handler is not None:
            handler(*args)
