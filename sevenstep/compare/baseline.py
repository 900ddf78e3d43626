"""The pixel-similarity baseline from fastbook's chapter 4: average each class's training images into an "ideal" digit,
then give each validation image the class of the nearest ideal. No weights, no loop, nothing to learn."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import UsageError
from ..metrics import per_class_accuracy

DISTANCES = ("l1", "l2")  # mean absolute difference (fastbook's), mean squared difference


def ideals(images: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """The mean image of each class, pixels in [0, 1]: (n_classes, C, H, W)."""
    x = images.float() / 255
    return torch.stack([x[labels == k].mean(0) for k in range(n_classes)])


def distances(images: torch.Tensor, ideal: torch.Tensor, distance: str = "l1") -> torch.Tensor:
    """(N, n_classes): how far each image is from each ideal."""
    diff = images.float()[:, None] / 255 - ideal[None]
    return (diff.abs() if distance == "l1" else diff.pow(2)).mean((-3, -2, -1))


@dataclass
class BaselineResult:
    accuracy: float
    per_class: dict[str, float]
    fit_seconds: float
    distance: str
    ideals: torch.Tensor = field(repr=False)
    vocab: list[str] = field(default_factory=list)
    correct: list[int] = field(default_factory=list, repr=False)  # per validation image: 1 if right, else 0
    labels: list[str] = field(default_factory=list, repr=False)  # per validation image
    predicted: list[str] = field(default_factory=list, repr=False)  # per validation image
    test: dict[str, Any] | None = None  # on the held-out test images (data.test): accuracy, n

    def to_json(self) -> dict[str, Any]:
        return {
            "accuracy": self.accuracy,
            "per_class": self.per_class,
            "fit_seconds": self.fit_seconds,
            "distance": self.distance,
        } | ({"test": self.test} if self.test else {})


def run(dls, distance: str = "l1") -> BaselineResult:
    """Uses the decoded training and validation tensors of sevenstep's DataLoaders: the very split SGD sees."""
    if distance not in DISTANCES:
        raise UsageError(f"baseline.distance must be one of {', '.join(DISTANCES)}; got {distance!r}")
    start = time.perf_counter()
    ideal = ideals(dls.train.images, dls.train.labels, len(dls.vocab))
    fit_seconds = time.perf_counter() - start
    pred = distances(dls.valid.images, ideal, distance).argmin(1)
    targ = dls.valid.labels
    return BaselineResult(
        accuracy=(pred == targ).float().mean().item(),
        per_class=per_class_accuracy(pred, targ, dls.vocab),
        fit_seconds=round(fit_seconds, 4),
        distance=distance,
        ideals=ideal.cpu(),
        vocab=list(dls.vocab),
        correct=(pred == targ).int().tolist(),
        labels=[str(dls.vocab[t]) for t in targ.tolist()],
        predicted=[str(dls.vocab[t]) for t in pred.tolist()],
        test=_on_test_images(dls, ideal, distance),
    )


def _on_test_images(dls, ideal: torch.Tensor, distance: str) -> dict[str, Any] | None:
    """The same ideals on the held-out images, decoded as the validation images were (same mode and side)."""
    items = getattr(dls, "test_items", None)
    if not items:
        return None
    from ..data.image_cache import decoded
    from ..data.loaders import labels_of

    images = decoded(items, dls.mode, dls.valid.images.shape[-1]).to(ideal.device)
    targ = labels_of(items, dls.vocab, ideal.device)
    pred = distances(images, ideal, distance).argmin(1)
    return {"accuracy": (pred == targ).float().mean().item(), "n": len(items)}
