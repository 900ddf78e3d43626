"""What a run is measured by, declared once: each metric's name, its per-epoch fastai metric, its final value on
the validation (and test) images, and whether lower is better. Everything that names a metric reads it from
here: the Learner's metrics, each epoch's row, result.json's `metrics`, W&B's keys and summary, `sevenstep
runs`, the stop rules' `metric` choices and direction, a sweep's metric and direction.

Adding one is one `declare(...)` (a plugin file may do it, as it adds a step option):

    declare(Metric("balanced_accuracy", per_epoch=..., final=lambda classes, targs: ...))

torch is imported only when a metric is computed: a recipe naming one is checked before torch loads.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import schema


@dataclass(frozen=True)
class Metric:
    name: str  # its key in an epoch's row, result.json's `metrics`, a stop rule's or a sweep's `metric`
    # (pred, targ) -> a tensor, averaged over the validation batches by fastai; None: fastai's Recorder has it
    per_epoch: Callable[[Any, Any], Any] | None = None
    # (classes, targs) -> float on all the validation images at the end (and on the test images); None: none
    final: Callable[[Any, Any], float] | None = None
    lower_is_better: bool = False
    percent: bool = False  # a share of the images (accuracy): shown in percent, its interval a proportion's
    wandb: str = ""  # its W&B key each epoch; by default valid/<name>
    recorded: bool = (
        False  # in each epoch's row without a per_epoch function: fastai's Recorder has it (losses)
    )

    @property
    def direction(self) -> str:
        """As Optuna says it."""
        return "minimize" if self.lower_is_better else "maximize"

    @property
    def each_epoch(self) -> bool:
        """Whether each epoch's row has it: what stop rules, pruners and sweeps can follow."""
        return self.per_epoch is not None or self.recorded

    @property
    def wandb_key(self) -> str:
        return self.wandb or f"valid/{self.name}"

    def better(self, a: float, b: float) -> bool:
        """Whether `a` is better than `b` (or as good)."""
        return a <= b if self.lower_is_better else a >= b


METRICS: dict[str, Metric] = {}


def declare(metric: Metric) -> Metric:
    """Add a metric to every run (a plugin's too). A name already taken by another metric is refused."""
    from .errors import UsageError

    if metric.name in METRICS and METRICS[metric.name] != metric:
        raise UsageError(f"metric {metric.name!r} is declared twice; choose another name")
    if not metric.name.isidentifier():
        raise UsageError(f"metric name {metric.name!r}: use letters, digits and _ (it becomes a column)")
    METRICS[metric.name] = metric
    return metric


def names() -> tuple[str, ...]:
    return tuple(METRICS)


def get(name: str) -> Metric:
    """A declared metric; a fastai metric on a Learner sevenstep did not build (a stock one) is guessed as fastai's
    trackers guess it: lower is better for a loss or an error."""
    return METRICS.get(name) or Metric(name, lower_is_better="loss" in name or "error" in name)


def epoch_names() -> tuple[str, ...]:
    return tuple(m.name for m in METRICS.values() if m.each_epoch)


# the type of a `metric` parameter (the stop rules', a plugin's) and of a sweep's `metric`: any metric each
# epoch's row has, a plugin's included
MetricName = schema.Names(epoch_names)


def finals() -> list[Metric]:
    """The metrics with a final value (result.json's `metrics`), in declaration order."""
    return [m for m in METRICS.values() if m.final is not None]


def fastai_metrics() -> list:
    """The Learner's `metrics`: each per-epoch metric under its declared name (fastai names a column after
    its function otherwise)."""
    from fastai.metrics import AvgMetric

    class Named(AvgMetric):
        def __init__(self, func, name):
            super().__init__(func)
            self._name = name

        @property
        def name(self):
            return self._name

    return [Named(m.per_epoch, m.name) for m in METRICS.values() if m.per_epoch is not None]


def scored(classes, targs) -> dict[str, float]:
    """Every declared final metric of these predictions."""
    return {m.name: float(m.final(classes, targs)) for m in finals()}


def value(result: dict[str, Any], metric: str) -> float | None:
    """A run's value of `metric` from its result.json: the final one where it has one, else its last epoch's;
    None when it has none (a diverged run)."""
    found = (result.get("metrics") or {}).get(metric)
    if found is None and metric == "accuracy":  # a result.json written before `metrics` was
        found = result.get("accuracy")
    if found is None and METRICS.get(metric, Metric(metric)).final is None:
        epochs = result.get("epochs") or []
        found = epochs[-1].get(metric) if epochs else None
    return found if isinstance(found, (int, float)) and math.isfinite(found) else None


# --- the classes a model's outputs mean, the same way for every model and for the baseline ---------------


def predicted_class(pred):
    """One output is a score for the second class (positive means class 1); several outputs: the largest wins."""
    return (pred[..., 0] > 0).long() if pred.shape[-1] == 1 else pred.argmax(-1)


def accuracy(pred, targ):
    return (predicted_class(pred) == targ).float().mean()


def per_class_accuracy(classes, targ, vocab) -> dict[str, float]:
    return {
        str(v): (classes[targ == i] == i).float().mean().item()
        for i, v in enumerate(vocab)
        if (targ == i).any()
    }


# --- sevenstep's own ----------------------------------------------------------------------------------------

declare(
    Metric("train_loss", lower_is_better=True, recorded=True, wandb="train/epoch_loss")
)  # the epoch's mean
declare(Metric("valid_loss", lower_is_better=True, recorded=True, wandb="valid/loss"))
declare(
    Metric(
        "accuracy",
        per_epoch=accuracy,
        final=lambda classes, targs: (classes == targs).float().mean().item(),
        percent=True,
    )
)
