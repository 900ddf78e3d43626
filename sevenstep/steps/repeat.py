"""Step 6, repeat: go round predict-loss-gradient-step, epoch after epoch, at a constant or scheduled lr."""

from __future__ import annotations

import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle)

from ..registry import option
from .base import StepCallback, positive


class Repeat(StepCallback):
    """Supplies `loop(learn)`, which starts fastai's fit: `learn.fit` at a constant lr, or `fit_one_cycle`,
    which adds a ParamScheduler. Every other step then acts inside that loop."""

    step = "repeat"

    def __init__(self, n: int, lr_max: float | None = None, cycle: bool = False):
        self.n, self.lr_max, self.cycle = n, lr_max, cycle

    def loop(self, learn):
        if self.cycle:
            learn.fit_one_cycle(self.n, self.lr_max or learn.lr)
        else:
            learn.fit(self.n)


@option("repeat")
def epochs(n: int = 5) -> Repeat:
    """n epochs at the step's constant lr."""
    return Repeat(positive("steps.repeat.n", n))


@option("repeat")
def one_cycle(n: int = 5, lr_max: float | None = None) -> Repeat:
    """n epochs of fastai's one-cycle schedule: lr warms up to lr_max (default: the step's lr), then anneals."""
    positive("steps.repeat.lr_max", lr_max)
    return Repeat(positive("steps.repeat.n", n), lr_max, cycle=True)
