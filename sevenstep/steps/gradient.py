"""Step 4, gradient: how each weight should change to lower the loss.

`autograd` is backpropagation (fastai's own `loss.backward()`); `finite_difference` is fastbook's
"nudge a weight a little and see whether the loss goes up or down", done for every weight.
"""

from __future__ import annotations

import torch
from fastai.callback.core import CancelBackwardException
from torch import nn
from torch.func import functional_call, vmap

from ..errors import UsageError
from ..registry import option
from .base import StepCallback, positive


class Gradient(StepCallback):
    """Makes each parameter's `.grad` before the step: fastai's backward pass, or in place of it."""

    step = "gradient"


class Autograd(Gradient):
    """Backpropagation needs nothing added: fastai's backward pass fills every `.grad`."""


class ClippedAutograd(Autograd):
    """Backpropagation, then the gradient's norm capped at `clip` before the step (a class of its own, so
    that without clipping nothing is called on every batch)."""

    def __init__(self, clip: float):
        self.clip = clip

    def before_step(self):
        nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.clip)


class FiniteDifference(Gradient):
    """Fills every `.grad` with central differences (L(w+eps) - L(w-eps)) / 2eps, then cancels fastai's backward.

    The nudged copies of a weight tensor are evaluated a chunk at a time: `torch.func.vmap` over
    `functional_call` runs the model once for a whole chunk of nudged weights (each nudging one weight),
    instead of two Python-level forward passes per weight. The result is the same central difference."""

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
        if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
            raise UsageError(
                "gradient 'finite_difference' cannot probe a model with batch norm: every probe would change "
                "its running statistics; use gradient 'autograd', or predict 'linear' or 'mlp'"
            )

    @torch.no_grad()
    def before_backward(self):
        learn = self.learn
        model, x, y = learn.model, learn.xb, learn.yb
        params = dict(model.named_parameters())

        def loss_with(name, value):  # the loss with one parameter tensor replaced
            return learn.loss_func(functional_call(model, {**params, name: value}, x), *y)

        for name, p in params.items():
            if not p.requires_grad:
                continue
            flat, n = p.detach().reshape(-1), p.numel()
            grad = torch.empty_like(p)  # its own tensor, not a view: fastai's zero_grad detaches it in place
            flat_grad = grad.view(-1)
            chunk = max(1, min(n, CHUNK_ELEMENTS // n))  # nudged copies per vectorised pass
            batched = vmap(lambda v, name=name, shape=p.shape: loss_with(name, v.view(shape)))
            for start in range(0, n, chunk):
                rows = torch.arange(start, min(start + chunk, n), device=flat.device)
                nudged = flat.expand(len(rows), n).clone()
                original = flat[rows]
                nudged[torch.arange(len(rows)), rows] = original + self.eps
                up = batched(nudged)
                nudged[torch.arange(len(rows)), rows] = original - self.eps
                down = batched(nudged)
                flat_grad[rows] = (up - down) / (2 * self.eps)
            p.grad = grad
        raise CancelBackwardException()


CHUNK_ELEMENTS = 1 << 24  # nudged weights held at once (64 MiB of float32)


@option("gradient")
def autograd(clip: float | None = None) -> Gradient:
    """Backpropagation (loss.backward()); `clip` caps the gradient's norm."""
    positive("steps.gradient.clip", clip)
    return ClippedAutograd(clip) if clip else Autograd()


@option("gradient")
def finite_difference(eps: float = 1e-3, max_params: int = 20_000) -> Gradient:
    """Nudge each weight by ±eps and watch the loss: slow, so refused above max_params weights."""
    positive("steps.gradient.eps", eps)
    positive("steps.gradient.max_params", max_params)
    return FiniteDifference(eps, max_params)
