"""Step 4, gradient: how each weight should change to lower the loss.

`autograd` is backpropagation (fastai's own `loss.backward()`); `finite_difference` is fastbook's
"nudge a weight a little and see whether the loss goes up or down", done for every weight.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
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

    The loss is evaluated at w + eps and w - eps for every weight, as fastbook says, but not by two whole
    forward passes per weight:
    - a nudged weight changes only its own layer's output and what comes after, so for a model that is a
      sequence of layers (nn.Sequential) each layer's input is computed once a batch, and a nudge re-runs that
      layer and the ones after it (any other model is one layer: each nudge re-runs all of it);
    - a layer's nudged copies run a chunk at a time, `torch.func.vmap` over `functional_call`;
    - nn.Linear is linear in its weights: nudging weight (i, j) by eps adds eps x input j to output i (the bias
      (i): eps to output i), so those nudged outputs are written directly instead of multiplied out again."""

    def __init__(self, eps: float, max_params: int):
        self.eps, self.max_params = eps, max_params

    def check(self, model, dls):
        n = sum(p.numel() for p in model.parameters())
        if n > self.max_params:
            raise UsageError(
                f"gradient 'finite_difference' evaluates the loss twice per weight per batch, and this model "
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
        model, y = learn.model, learn.yb
        layers = list(model) if type(model) is nn.Sequential and len(learn.xb) == 1 else [model]
        inputs, outputs = [], []  # each layer's input (a tuple of arguments) and output, unnudged
        args = tuple(learn.xb)
        for layer in layers:
            inputs.append(args)
            outputs.append(layer(*args))
            args = (outputs[-1],)

        for k, layer in enumerate(layers):

            def loss_from(out, k=k):  # the loss when layer k outputs `out`
                for later in layers[k + 1 :]:
                    out = later(out)
                return learn.loss_func(out, *y)

            losses = vmap(loss_from)
            params = dict(layer.named_parameters())
            largest = max(o.numel() for o in outputs[k:])  # activations a nudge holds from here on
            for name, p in params.items():
                if not p.requires_grad:
                    continue
                direct = isinstance(layer, nn.Linear) and inputs[k][0].dim() == 2
                if direct:
                    nudged = partial(_nudged_linear, layer, name, inputs[k][0], outputs[k])
                else:
                    nudged = partial(_nudged_layer, layer, params, name, inputs[k])
                n = p.numel()
                chunk = max(1, min(n, CHUNK_ELEMENTS // (largest + (0 if direct else n))))
                # its own tensor, not a view: a stock Learner's zero_grad detaches and zeroes it in place
                grad = torch.empty_like(p)
                flat_grad = grad.view(-1)
                for start in range(0, n, chunk):
                    rows = torch.arange(start, min(start + chunk, n), device=p.device)
                    up = losses(nudged(rows, self.eps))
                    down = losses(nudged(rows, -self.eps))
                    flat_grad[rows] = (up - down) / (2 * self.eps)
                p.grad = grad
        raise CancelBackwardException()


def _nudged_layer(layer, params, name, args, rows, delta):
    """The layer's outputs, one per weight of `name` in `rows`, each with that one weight moved by `delta`."""
    p = params[name]
    flat = p.detach().reshape(-1)
    copies = flat.expand(len(rows), len(flat)).clone()
    copies[torch.arange(len(rows), device=rows.device), rows] += delta
    return vmap(lambda w: functional_call(layer, {**params, name: w.view(p.shape)}, args))(copies)


def _nudged_linear(layer, name, x, out, rows, delta):
    """As _nudged_layer for nn.Linear (x: batch x in_features), written directly: weight (i, j) + delta adds
    delta * x[:, j] to output i; bias i + delta adds delta to output i."""
    if name == "weight":
        i, inputs = rows // layer.in_features, x.T[rows % layer.in_features, :, None]  # (nudge, batch, 1)
    else:
        i, inputs = rows, torch.ones((), dtype=out.dtype, device=out.device)
    which = F.one_hot(i, out.shape[1]).to(out.dtype)[:, None, :]  # (nudge, 1, output): output i of each
    return torch.addcmul(out, inputs, which, value=delta)  # (nudge, batch, output): out + delta * input at i


# values a chunk of nudges holds at once: 4 MiB of float32 stays in the CPU's cache (16x more was 7x slower)
CHUNK_ELEMENTS = 1 << 20


@option("gradient")
def autograd(clip: float | None = None) -> Gradient:
    """Backpropagation (loss.backward()); `clip` caps the gradient's norm."""
    positive("steps.gradient.clip", clip)
    return ClippedAutograd(clip) if clip else Autograd()


@option("gradient")
def finite_difference(eps: float = 1e-3, max_params: int = 25_000) -> Gradient:
    """Nudge each weight by ±eps and watch the loss: two losses per weight per batch, refused above max_params.

    fastbook's simple net (23,581 weights) takes 0.2-0.6 s a batch of 256 on two CPU cores."""
    positive("steps.gradient.eps", eps)
    positive("steps.gradient.max_params", max_params)
    return FiniteDifference(eps, max_params)
