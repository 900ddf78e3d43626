"""Step 7, stop: decide when training ends. Each rule records why in `learn.run_info.stop_reason`.

(The divergence guard is not a choice: it is always on, in sevenstep/callbacks.py.)
"""

from __future__ import annotations

import time

from fastai.callback.core import CancelFitException, CancelTrainException
from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback

from .. import metrics
from ..callbacks import STOP_ORDER, weights_copy
from ..errors import UsageError
from ..metrics import MetricName
from ..registry import option
from .base import StepCallback, positive

PARALLEL_TIME_BUDGET = (
    "steps.stop 'time_budget' cannot stop a data-parallel run: its processes would stop at different batches "
    "and wait for each other for ever; use 'epochs_done', 'patience' or 'target' with --processes"
)


class Stop(StepCallback):
    """The plain rule: stop when the repeat step has done its epochs."""

    step = "stop"
    order = STOP_ORDER  # after the Recorder, RunLog and the loggers have the epoch

    def halt(self, reason: str, message: str = ""):
        """End the fit now, at the end of this epoch, saying why: `reason` is a word for tables and sweeps
        (patience, target, a plugin's own), `message` the words for the run's result line."""
        self.learn.run_info.stop_reason, self.learn.run_info.stop_message = reason, message
        raise CancelFitException()


class Patience(Stop, EarlyStoppingCallback):
    """fastai's EarlyStoppingCallback, recording the reason it stopped. With `restore_best`, the best epoch's
    weights are kept (in memory, and in the checkpoint) and put back when the fit ends, as fastai's
    SaveModelCallback does with a file: the result then says which epoch's weights it holds."""

    restored = None

    def __init__(self, *args, restore_best: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.restore_best, self.best_weights, self.best_epoch = restore_best, None, None

    def before_fit(self):
        super().before_fit()
        self.best_weights, self.best_epoch = None, None
        if self.restored:  # once: a later fit on the same Learner starts afresh
            self.best, self.wait = self.restored["best"], self.restored["wait"]
            self.best_weights, self.best_epoch = self.restored.get("weights"), self.restored.get("best_epoch")
            self.restored = None

    def state_dict(self):
        state = {"best": float(self.best), "wait": self.wait}
        if self.restore_best and self.best_weights is not None:
            state |= {"weights": self.best_weights, "best_epoch": self.best_epoch}
        return state

    def load_state_dict(self, state):
        self.restored = state

    def after_fit(self):
        if (
            self.restore_best
            and self.best_weights is not None
            and self.learn.run_info.stop_reason != "diverged"
        ):
            self.learn.model.load_state_dict(self.best_weights)
            self.learn.run_info.weights_epoch = self.best_epoch

    def after_epoch(self):
        """fastai's rule (is this epoch a new best? if not for `patience` epochs, stop), saying the best epoch
        as the table counts it, from 1 (fastai's own message counts from 0)."""
        TrackerCallback.after_epoch(self)
        if self.new_best:
            self.wait = 0
            if self.restore_best:
                self.best_weights = weights_copy(self.learn.model)
                self.best_epoch = self.epoch + 1
            return
        self.wait += 1
        if self.wait >= self.patience:
            print(f"No improvement since epoch {self.epoch - self.wait + 1}: early stopping")
            self.halt("patience")


class Target(Stop):
    def __init__(self, metric: str, value: float):
        self.metric, self.value = metric, value

    def after_epoch(self):
        names = list(self.learn.recorder.metric_names[1:])
        got = self.learn.recorder.values[-1][names.index(self.metric)]
        if metrics.get(self.metric).better(got, self.value):
            print(f"{self.metric} reached {got:.4f} (target {self.value}): stopping")
            self.halt("target")


class TimeBudget(Stop):
    """Ends the training part of the epoch once the budget is spent; that epoch is still validated."""

    def __init__(self, seconds: float):
        self.seconds, self.already = seconds, 0.0

    def check(self, model, dls):
        import os

        if int(os.environ.get("WORLD_SIZE", 1)) > 1:  # each process's clock would stop it at another batch
            raise UsageError(PARALLEL_TIME_BUDGET)

    def before_fit(self):
        self.start, self.spent = time.perf_counter() - self.already, False

    def state_dict(self):
        return {"seconds_spent": time.perf_counter() - self.start}

    def load_state_dict(self, state):
        self.already = state["seconds_spent"]

    def after_batch(self):
        if self.learn.training and time.perf_counter() - self.start > self.seconds:
            self.spent = True
            raise CancelTrainException()

    def after_epoch(self):
        if self.spent or time.perf_counter() - self.start > self.seconds:
            print(f"time budget of {self.seconds:g} s spent: stopping")
            self.halt("time_budget")


@option("stop")
def epochs_done() -> Stop:
    """Stop when the repeat step's epochs are done."""
    return Stop()


@option("stop")
def patience(
    metric: MetricName = "valid_loss",
    patience: int = 3,
    min_delta: float = 0.0,
    restore_best: bool = False,
) -> Stop:
    """Early stopping: stop once `metric` has not improved by min_delta for `patience` epochs (restore_best:
    end with the best epoch's weights)."""
    positive("steps.stop.patience", patience)
    positive("steps.stop.min_delta", min_delta, allow_zero=True)
    import numpy as np

    comp = np.less if metrics.get(metric).lower_is_better else np.greater  # fastai would guess from the name
    return Patience(
        monitor=metric, comp=comp, patience=patience, min_delta=min_delta, restore_best=restore_best
    )


@option("stop")
def target(metric: MetricName = "accuracy", value: float = 0.99) -> Stop:
    """Stop as soon as `metric` reaches `value`: at most, for a metric where lower is better (a loss); else at least."""
    return Target(metric, value)


@option("stop")
def time_budget(seconds: float = 60.0) -> Stop:
    """Stop once training has run for `seconds`; the epoch in progress is cut short and still validated."""
    return TimeBudget(positive("steps.stop.seconds", seconds))
