"""Your own step options: a hinge loss and an init, each a few lines. `plugins = ["my_steps.py"]` in a recipe
(experiments/hinge_3v7.toml) makes them options like the built-in ones: `sevenstep steps --plugin
experiments/my_steps.py` lists them, `--set steps.loss.margin=0.5` checks and sets their parameters.

An option is a function decorated with `@option(step)`. Its parameters, each with a type and a default, are
what a recipe may set; it returns that step's callback (here `Loss` and `Init`, from sevenstep.steps).
"""

import torch
from torch import nn

from sevenstep.registry import option
from sevenstep.steps.init import Init
from sevenstep.steps.loss import Loss


@option("loss")
def hinge(margin: float = 1.0) -> Loss:
    """Two-class hinge loss (an SVM's): zero once the score is on the right side by `margin`, linear before."""

    def per_item(pred, targ):  # one score per image: positive means the second class
        sign = targ.to(pred.dtype) * 2 - 1  # the second class -> +1, the first -> -1
        return (margin - sign * pred.squeeze(-1)).clamp(min=0)

    return Loss(per_item, binary=True)


@option("init")
def lecun(gain: float = 1.0) -> Init:
    """LeCun normal: weights N(0, gain/fan_in), so each output starts with about the spread of its inputs; biases 0."""

    def fill(layer):
        fan_in = layer.weight[0].numel()
        nn.init.normal_(layer.weight, 0.0, (gain / fan_in) ** 0.5)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)

    return Init(fill)
