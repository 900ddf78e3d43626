"""Step 2, predict: the model that turns an image into scores, one per class (or one for two classes)."""

from __future__ import annotations

import math
import os
from typing import Literal

import torch
from fastai.layers import ConvLayer, NormType
from torch import nn

from ..errors import UsageError
from ..registry import option
from .base import StepCallback, positive

ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}


class Predict(StepCallback):
    """Supplies the Learner's model: `make(image_shape, n_out) -> nn.Module`; training itself is fastai's
    forward pass. `pixels_to_weights`: one weight per pixel and class, so the weights can be drawn as images."""

    step = "predict"

    def __init__(self, make, pixels_to_weights: bool = False):
        self.make, self.pixels_to_weights = make, pixels_to_weights

    def n_params(self, shape, n_out: int) -> int:
        """Counted on PyTorch's meta device: no memory is allocated, however large the model."""
        with torch.device("meta"):
            return sum(p.numel() for p in self.make(shape, n_out).parameters())

    def check_size(self, shape, n_out: int) -> None:
        """Refuse, before allocating it, a model that cannot be trained in this machine's memory."""
        n = self.n_params(shape, n_out)
        need = n * 4 * 4  # float32 weights, their gradients, and up to two optimizer statistics (Adam)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if need > memory:
            raise UsageError(
                f"steps.predict {self.option!r} would have {n:,} parameters: about {need / 2**30:,.1f} GiB to "
                f"train, and this machine has {memory / 2**30:,.1f} GiB of memory; make the model smaller "
                "(steps.predict.hidden, channels or widen)"
            )


def _check_dropout(p: float) -> None:
    if not 0 <= p < 1:
        raise UsageError(
            f"steps.predict.dropout is the share of outputs zeroed, from 0 up to (not) 1; got {p}"
        )


@option("predict")
def linear() -> Predict:
    """One weight per pixel per output, plus a bias: fastbook's linear model."""
    return Predict(lambda shape, n_out: nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), n_out)), True)


@option("predict")
def mlp(
    hidden: list[int] = [30],  # noqa: B006 (read-only default)
    activation: Literal["relu", "sigmoid", "tanh", "gelu"] = "relu",
    dropout: float = 0.0,
) -> Predict:  # noqa: B006 (read-only default)
    """Fully connected layers with a non-linearity between them; fastbook's simple net is 784-30-1 with ReLU.
    `dropout` zeroes that share of each hidden layer's outputs while training (PyTorch's nn.Dropout: off when
    the model predicts, in validation and in `sevenstep predict`)."""
    for h in hidden:
        positive("steps.predict.hidden", h)
    _check_dropout(dropout)
    act = ACTIVATIONS[activation]

    def make(shape, n_out):
        sizes = [math.prod(shape), *hidden]
        layers = [nn.Flatten()]
        for a, b in zip(sizes, sizes[1:]):
            layers += [nn.Linear(a, b), act(), *([nn.Dropout(dropout)] if dropout else [])]
        return nn.Sequential(*layers, nn.Linear(sizes[-1], n_out))

    return Predict(make)


@option("predict")
def cnn(
    channels: list[int] = [16, 32, 64, 128],  # noqa: B006 (read-only default)
    strides: list[int] | None = None,
    dropout: float = 0.0,
) -> Predict:
    """A small conv net: 3x3 conv + batchnorm + ReLU per entry of `channels` (stride 2 unless `strides` says), then average pooling; `dropout` before the last layer, while training only."""
    for c in channels:
        positive("steps.predict.channels", c)
    _check_dropout(dropout)
    strides = strides or [2] * len(channels)
    if len(strides) != len(channels) or any(s not in (1, 2) for s in strides):
        raise UsageError(
            f"steps.predict.strides needs one stride, 1 or 2, per channel entry ({len(channels)}); got {strides}"
        )

    def make(shape, n_out):
        sizes = [shape[0], *channels]
        convs = [
            ConvLayer(a, b, ks=3, stride=s, norm_type=NormType.Batch)
            for a, b, s in zip(sizes, sizes[1:], strides)
        ]
        head = [nn.Dropout(dropout)] if dropout else []
        return nn.Sequential(
            *convs, nn.AdaptiveAvgPool2d(1), nn.Flatten(), *head, nn.Linear(sizes[-1], n_out)
        )

    return Predict(make)


@option("predict")
def resnet(layers: list[int] = [1, 1, 1, 1], widen: float = 0.25) -> Predict:  # noqa: B006
    """fastai's XResNet for 1-channel input, random init (no pretrained weights offline); `widen` scales 64..512.

    (XResNet always feeds its first stage 64 channels, so the slim stem still ends at 64.)"""
    if not layers:
        raise UsageError("steps.predict.layers needs at least one stage, e.g. [1, 1, 1, 1]")
    for n in layers:
        positive("steps.predict.layers", n)
    if widen * 64 < 1:  # XResNet's first stage has int(64 * widen) channels
        raise UsageError(
            f"steps.predict.widen must be at least 1/64 (one channel in the first stage), got {widen}"
        )

    def make(shape, n_out):
        # imported here: fastai.vision.models brings torchvision's models and torch._dynamo, 2.4 s of every
        # command's start-up, for this one option
        from fastai.vision.models.xresnet import ResBlock, XResNet

        return XResNet(ResBlock, 1, layers, c_in=shape[0], n_out=n_out, widen=widen, stem_szs=(16, 32, 64))

    return Predict(make)
