"""Turning model outputs into classes and accuracies, the same way for every model and for the baseline."""

from __future__ import annotations

import torch


def predicted_class(pred: torch.Tensor) -> torch.Tensor:
    """One output is a score for the second class (positive means class 1); several outputs: the largest wins."""
    return (pred[..., 0] > 0).long() if pred.shape[-1] == 1 else pred.argmax(-1)


def accuracy(pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
    return (predicted_class(pred) == targ).float().mean()


def per_class_accuracy(classes: torch.Tensor, targ: torch.Tensor, vocab) -> dict[str, float]:
    return {
        str(v): (classes[targ == i] == i).float().mean().item()
        for i, v in enumerate(vocab)
        if (targ == i).any()
    }
