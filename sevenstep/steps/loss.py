"""Step 3, loss: a number that is small when the model is good, and smooth enough to follow downhill."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F

from ..errors import UsageError
from ..registry import option
from .base import StepCallback


class Loss(StepCallback):
    """Supplies the Learner's `loss_func` and `n_out(n_classes)`, the number of outputs the model needs: a
    `binary` loss wants one (a score for the second class) and only two classes.

    `per_item(pred, targ)` returns one loss per image; it becomes a `LossFunc`, which fastai's inference and
    interpretation tools (get_preds, predict, ClassificationInterpretation) know how to use."""

    step = "loss"

    def __init__(self, per_item, binary: bool = False):
        self.func, self.binary = LossFunc(per_item, binary), binary

    def n_out(self, n_classes: int) -> int:
        return 1 if self.binary else n_classes

    def check(self, model, dls):
        n_classes = len(dls.vocab)
        if self.binary and n_classes != 2:
            raise UsageError(
                f"steps.loss {self.option!r} is a two-class loss, but data.source {dls.source.name!r} has "
                f"{n_classes} classes; use loss 'cross_entropy' (or 'mse') with it, or a two-class source "
                "such as 'mnist5k-3v7'"
            )
        self._check_per_item(n_classes)

    def _check_per_item(self, n_classes: int) -> None:
        """A loss of one's own that returns the batch's mean (as fastbook's mnist_loss does) would train, then
        fail at the first per-image use (top losses, outcomes): said now, before training."""
        pred, targ = torch.zeros(3, self.n_out(n_classes)), torch.tensor([0, 1, 0])
        try:
            with torch.no_grad():
                out = self.func.per_item(pred, targ)
        except Exception as e:
            raise UsageError(
                f"steps.loss {self.option!r} fails on a batch of 3 images: {type(e).__name__}: {e}"
            ) from None
        shape = tuple(getattr(out, "shape", ()))
        if shape != (3,):
            got = "a single number" if shape == () else f"shape {shape}"
            raise UsageError(
                f"steps.loss {self.option!r} must return one loss per image (shape [batch]); for a batch of 3 it "
                f"returned {got}. Leave out the .mean(): sevenstep averages the losses itself, and top losses "
                "and per-image outcomes need each one"
            )


class LossFunc:
    """A loss as fastai's own loss classes are: the mean of per-item losses, `reduction = "none"` for one
    loss per image (top losses), `activation` (outputs -> class probabilities) and `decodes` (-> class
    indices). One output means a score for the second class, so its probabilities are [1 - p, p]."""

    y_int = (
        True  # targets are class indices, as fastai's CrossEntropyLossFlat says: MixUp and CutMix mix losses
    )

    def __init__(self, per_item, binary: bool = False, reduction: str = "mean"):
        self.per_item, self.binary, self.reduction = per_item, binary, reduction

    def __call__(self, pred, targ):
        losses = self.per_item(pred, targ)
        return losses.mean() if self.reduction == "mean" else losses

    def activation(self, pred):
        if self.binary:
            p = pred[..., :1].sigmoid()
            return torch.cat([1 - p, p], -1)
        return pred.softmax(-1)

    def decodes(self, probs):
        return probs.argmax(-1)

    def __repr__(self):
        return f"LossFunc({getattr(self.per_item, '__name__', self.per_item)})"


def _mnist_loss(pred, targ):
    p = pred.squeeze(-1).sigmoid()
    return torch.where(targ == 1, 1 - p, p)


def _mse(pred, targ):
    return F.mse_loss(pred, F.one_hot(targ, pred.shape[-1]).to(pred.dtype), reduction="none").mean(-1)


def _bce(pred, targ):
    return F.binary_cross_entropy_with_logits(pred.squeeze(-1), targ.to(pred.dtype), reduction="none")


@option("loss")
def mnist_loss() -> Loss:
    """fastbook's two-class loss: sigmoid, then torch.where(target==1, 1-p, p).mean()."""
    return Loss(_mnist_loss, binary=True)


@option("loss")
def cross_entropy(label_smoothing: float = 0.0) -> Loss:
    """Softmax + negative log likelihood, for any number of classes; label_smoothing softens the targets."""
    if not 0 <= label_smoothing < 1:
        raise UsageError(f"steps.loss.label_smoothing must be in [0, 1), got {label_smoothing}")
    return Loss(partial(F.cross_entropy, label_smoothing=label_smoothing, reduction="none"))


@option("loss")
def mse() -> Loss:
    """Mean squared error between the raw outputs and one-hot targets."""
    return Loss(_mse)


@option("loss")
def bce() -> Loss:
    """Binary cross-entropy on one logit, for two classes."""
    return Loss(_bce, binary=True)
