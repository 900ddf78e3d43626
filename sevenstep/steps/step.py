"""Step 5, step: change each weight by lr x gradient (plain SGD by hand), or let a fastai optimizer do it."""

from __future__ import annotations

from functools import partial

import torch
from fastai.callback.core import CancelStepException
from fastai.optimizer import SGD, Adam

from ..callbacks import STEP_ORDER
from ..registry import option
from .base import StepCallback, positive


class Step(StepCallback):
    """Supplies the Learner's optimizer (`opt_func`, `lr`); fastai's `opt.step()` moves the weights."""

    step = "step"
    order = STEP_ORDER  # after gradient clipping, which also acts in before_step

    def __init__(self, opt_func, lr: float):
        self.opt_func, self.lr = opt_func, lr


class HandSGD(Step):
    """fastbook's update, `p -= lr * p.grad` (plus weight decay as L2), done here instead of `opt.step()`.

    lr and wd are read from fastai's optimizer each batch, so a schedule such as one_cycle still applies."""

    def before_step(self):
        with torch.no_grad():
            for params, hyper in zip(self.learn.opt.param_lists, self.learn.opt.hypers):
                ps = [p for p in params if p.grad is not None]
                grads = [p.grad for p in ps]
                if hyper["wd"]:
                    grads = torch._foreach_add(grads, ps, alpha=hyper["wd"])  # p.grad + wd * p
                # p -= lr * grad for every parameter at once: one call, not one per parameter
                torch._foreach_add_(ps, grads, alpha=-hyper["lr"])
        raise CancelStepException()


def _check(lr, wd):
    positive("steps.step.lr", lr)
    positive("steps.step.wd", wd, allow_zero=True)


@option("step")
def sgd(lr: float = 0.1, wd: float = 0.0) -> Step:
    """Plain SGD written out by hand, as fastbook does: p -= lr * (p.grad + wd * p)."""
    _check(lr, wd)
    return HandSGD(partial(SGD, mom=0.0, wd=wd, decouple_wd=False), lr)


@option("step")
def momentum(lr: float = 0.1, mom: float = 0.9, wd: float = 0.0) -> Step:
    """fastai's SGD with momentum: a running average of gradients smooths the steps."""
    _check(lr, wd)
    return Step(partial(SGD, mom=mom, wd=wd), lr)


@option("step")
def adam(lr: float = 0.001, wd: float = 0.01) -> Step:
    """fastai's Adam (decoupled weight decay): a step size per weight from gradient statistics."""
    _check(lr, wd)
    return Step(partial(Adam, wd=wd), lr)
