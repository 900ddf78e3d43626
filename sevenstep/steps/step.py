"""Step 5, step: change each weight by lr x gradient (plain SGD, written out by hand as a fastai optimizer's
step), or let one of fastai's optimizers do it."""

from __future__ import annotations

from functools import partial

import torch
from fastai.optimizer import (
    SGD,
    Optimizer,
    adam_step,
    average_grad,
    average_sqr_grad,
    debias,
    l2_reg,
    sgd_step,
    step_stat,
    weight_decay,
)

from ..callbacks import STEP_ORDER
from ..registry import option
from .base import StepCallback, positive


class Step(StepCallback):
    """Supplies the Learner's optimizer (`opt_func`, `lr`); fastai's `opt.step()` moves the weights."""

    step = "step"
    order = STEP_ORDER  # after gradient clipping, which also acts in before_step

    def __init__(self, opt_func, lr: float):
        self.opt_func, self.lr = opt_func, lr


class HandSGD(Optimizer):
    """fastbook's update, `p -= lr * (p.grad + wd * p)`, written out as this optimizer's step: fastai's
    `opt.step()` runs it, so frozen layers, a cancelled backward, fastai's schedules (lr and wd are read from
    the optimizer's hyper-parameters each batch), later callbacks' `before_step` and a Learner's own
    `opt_func` all behave as with any fastai optimizer. State and hyper-parameters are fastai's SGD's (mom=0, L2
    weight decay, `do_wd` per parameter), so checkpoints are interchangeable with it."""

    def __init__(self, params, lr, wd=0.0):
        super().__init__(params, [l2_reg, sgd_step], lr=lr, mom=0.0, wd=wd)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise NotImplementedError("fastai optimizers do not support closure")
        for params, hyper in zip(self.param_lists, self.hypers):
            ps = [p for p in params if p.grad is not None]  # frozen, or no gradient this batch: left alone
            if not ps:
                continue
            decayed = [p for p in ps if self.state[p].get("do_wd", True)]
            if (
                hyper["wd"] and decayed
            ):  # p -= lr * wd * p: for plain SGD, L2 and decoupled decay are one thing
                torch._foreach_mul_(decayed, 1 - hyper["lr"] * hyper["wd"])
            # p -= lr * p.grad for every parameter at once: one call, not one per parameter
            torch._foreach_add_(ps, [p.grad for p in ps], alpha=-hyper["lr"])


class ForeachAdam(Optimizer):
    """fastai's Adam, decoupled weight decay (AdamW): the same step functions, state (grad_avg, sqr_avg, step
    per parameter, so checkpoints are interchangeable), hyper-parameters and per-parameter `do_wd`, computed for
    all parameters at once with torch's foreach operations.

    fastai's Optimizer calls its five step functions one parameter at a time, a tenth of the small CNN's epoch
    when this was written (docs/performance.md; `make bench` row 2 measures the epoch). torch's own AdamW is as quick but knows nothing of `do_wd` (fastai's
    Learner exempts batch norm and biases from weight decay) nor of fastai's state."""

    def __init__(self, params, lr, mom=0.9, sqr_mom=0.99, eps=1e-5, wd=0.01):
        cbs = [weight_decay, partial(average_grad, dampening=True), average_sqr_grad, step_stat, adam_step]
        super().__init__(params, cbs, lr=lr, mom=mom, sqr_mom=sqr_mom, eps=eps, wd=wd)

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise NotImplementedError("fastai optimizers do not support closure")
        for params, hyper in zip(self.param_lists, self.hypers):
            ps = [p for p in params if p.grad is not None]
            if not ps:
                continue
            lr, mom, sqr_mom = hyper["lr"], hyper["mom"], hyper["sqr_mom"]
            states = [self.state[p] for p in ps]
            for p, state in zip(ps, states):
                if "grad_avg" not in state:  # as average_grad and average_sqr_grad start them
                    state.update(grad_avg=torch.zeros_like(p.grad), sqr_avg=torch.zeros_like(p.grad), step=0)
                state["step"] += 1  # step_stat
            decayed = [p for p, state in zip(ps, states) if state.get("do_wd", True)]
            if hyper["wd"] != 0 and decayed:  # weight_decay
                torch._foreach_mul_(decayed, 1 - lr * hyper["wd"])
            grads = [p.grad for p in ps]
            grad_avgs, sqr_avgs = [st["grad_avg"] for st in states], [st["sqr_avg"] for st in states]
            torch._foreach_mul_(grad_avgs, mom)  # average_grad
            torch._foreach_add_(grad_avgs, grads, alpha=1 - mom)
            torch._foreach_mul_(sqr_avgs, sqr_mom)  # average_sqr_grad
            torch._foreach_addcmul_(sqr_avgs, grads, grads, value=1 - sqr_mom)
            steps = [st["step"] for st in states]  # adam_step
            denoms = torch._foreach_div(sqr_avgs, [debias(sqr_mom, 1 - sqr_mom, n) for n in steps])
            torch._foreach_sqrt_(denoms)
            torch._foreach_add_(denoms, hyper["eps"])
            torch._foreach_addcdiv_(ps, grad_avgs, denoms, [-lr / debias(mom, 1 - mom, n) for n in steps])


@option("step")
def sgd(lr: float = 0.1, wd: float = 0.0) -> Step:
    """Plain SGD written out by hand, as fastbook does: p -= lr * (p.grad + wd * p)."""
    positive("steps.step.lr", lr)
    positive("steps.step.wd", wd, allow_zero=True)
    return Step(partial(HandSGD, wd=wd), lr)


@option("step")
def momentum(lr: float = 0.1, mom: float = 0.9, wd: float = 0.0) -> Step:
    """fastai's SGD with momentum: a running average of gradients smooths the steps."""
    positive("steps.step.lr", lr)
    positive("steps.step.wd", wd, allow_zero=True)
    return Step(partial(SGD, mom=mom, wd=wd), lr)


@option("step")
def adam(lr: float = 0.001, wd: float = 0.01) -> Step:
    """fastai's Adam (decoupled weight decay): a step size per weight from gradient statistics."""
    positive("steps.step.lr", lr)
    positive("steps.step.wd", wd, allow_zero=True)
    return Step(partial(ForeachAdam, wd=wd), lr)
