"""Step 1, init: give the weights their first values, once, before the first epoch."""

from __future__ import annotations

import torch
from torch import nn

from ..registry import option
from .base import StepCallback, positive

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Init(StepCallback):
    """Fills each Linear/Conv layer with `fill(layer)` in `before_fit`; a later `fit` continues, it does not restart."""

    step = "init"

    def __init__(self, fill=None):
        self.fill, self.done = fill, False

    def before_fit(self):
        if self.done or self.fill is None:
            return
        with torch.no_grad():
            for m in self.learn.model.modules():
                if isinstance(m, LAYERS):
                    self.fill(m)
        self.done = True


def _weight_then_zero_bias(weight_init):
    def fill(m):
        weight_init(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)

    return fill


@option("init")
def normal(std: float = 1.0) -> Init:
    """Every weight and bias drawn from N(0, std²): fastbook's init_params."""
    positive("steps.init.std", std)
    return Init(lambda m: [nn.init.normal_(p, 0.0, std) for p in m.parameters(recurse=False)])


@option("init")
def zeros() -> Init:
    """All weights and biases 0: fine for a linear model, a trap for hidden layers (they stay identical)."""
    return Init(lambda m: [nn.init.zeros_(p) for p in m.parameters(recurse=False)])


@option("init")
def uniform(a: float = 0.1) -> Init:
    """Every weight and bias drawn from U(-a, a)."""
    positive("steps.init.a", a)
    return Init(lambda m: [nn.init.uniform_(p, -a, a) for p in m.parameters(recurse=False)])


@option("init")
def kaiming() -> Init:
    """He normal: weights N(0, 2/fan_in), suited to ReLU; biases 0."""
    return Init(_weight_then_zero_bias(lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu")))


@option("init")
def xavier() -> Init:
    """Glorot uniform: weights U(±sqrt(6/(fan_in+fan_out))), suited to tanh/sigmoid; biases 0."""
    return Init(_weight_then_zero_bias(nn.init.xavier_uniform_))


@option("init")
def default() -> Init:
    """Leave PyTorch's (and fastai's layers') own initialisation as it is."""
    return Init(None)
