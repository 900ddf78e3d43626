"""Shuffling for both data paths: fastai's TfmdDL order drawn by torch, so the per-item path and the decoded
path train on the same batches in the same order."""

from __future__ import annotations

import random

import torch
from fastai.data.core import TfmdDL


def permutation(rng: random.Random, n: int) -> torch.Tensor:
    """A random order of 0..n-1, drawn by torch from a seed that `rng` (a DataLoader's own generator, which
    fastai re-seeds every pass and a checkpoint saves) gives. fastai shuffles with Python's random.sample,
    about 30 times slower than torch's, a tenth of a pass of fastbook's linear model (docs/performance.md)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(rng.getrandbits(63)))


class ShuffledDL(TfmdDL):
    """fastai's TfmdDL, shuffled by `permutation`: fastbook's per-item path and the fast path draw the same
    order, so the two train on the same batches."""

    def shuffle_fn(self, idxs):
        return [idxs[i] for i in permutation(self.rng, len(idxs)).tolist()]
