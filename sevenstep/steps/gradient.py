"""Step 4, gradient: how each weight should change to lower the loss.

`autograd` is backpropagation (fastai's own `loss.backward()`); `finite_difference` is fastbook's
"nudge a weight a little and see whether the loss goes up or down", done for every weight.
"""

from __future__ import annotations

import torch
from fastai.callback.core import CancelBackwardException
from torch import nn

from ..errors import UsageError
from ..registry import option
from .base import StepCallback, positive


class Gradient(StepCallback):
    """Makes each parameter's `.grad` before the step: fastai's backward pass, or in place of it."""

    step = "gradient"


class Autograd(Gradient):
    """Backpropagation needs nothing added; this only clips the gradient's norm when asked to."""

    def __init__(self, clip: float | None = None):
        self.clip = clip

    def before_step(self):
        if self.clip:
            nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.clip)


class FiniteDifference(Gradient):
    """Fills every `.grad` with central differences (L(w+eps) - L(w-eps)) / 2eps, then cancels fastai's backward."""

    def __init__(self, eps: float, max_params: int):
        self.eps, self.max_params = eps, max_params

    def check(self, model, dls):
        n = sum(p.numel() for p in model.parameters())
        if n > self.max_params:
            raise UsageError(
                f"gradient 'finite_difference' needs two forward passes per weight per batch, and this model "
                f"has {n:,} weights (limit steps.gradient.max_params = {self.max_params:,}); use gradient "
                "'autograd', a smaller model (predict 'linear'), or raise max_params if you mean it"
            )

    @torch.no_grad()
    def before_backward(self):
        learn = self.learn

        def loss():
            return learn.loss_func(learn.model(*learn.xb), *learn.yb)

        for p in learn.model.parameters():
            if not p.requires_grad:
                continue
            grad = torch.zeros_like(p)  # its own tensor, not a view: fastai's zero_grad detaches it in place
            flat, grad_flat = p.view(-1), grad.view(-1)
            for i in range(flat.numel()):
                original = flat[i].clone()
                flat[i] = original + self.eps
                up = loss()
                flat[i] = original - self.eps
                down = loss()
                flat[i] = original
                grad_flat[i] = (up - down) / (2 * self.eps)
            p.grad = grad
        raise CancelBackwardException()


@option("gradient")
def autograd(clip: float | None = None) -> Gradient:
    """Backpropagation (loss.backward()); `clip` caps the gradient's norm."""
    positive("steps.gradient.clip", clip)
    return Autograd(clip)


@option("gradient")
def finite_difference(eps: float = 1e-3, max_params: int = 20_000) -> Gradient:
    """Nudge each weight by ±eps and watch the loss: slow, so refused above max_params weights."""
    positive("steps.gradient.eps", eps)
    positive("steps.gradient.max_params", max_params)
    return FiniteDifference(eps, max_params)
