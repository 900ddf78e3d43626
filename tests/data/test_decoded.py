"""The fast data path means what fastbook's per-item path means: same images, labels, normalisation and
augmentation distribution, validation never augmented, and a decode cache that notices changed files."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F
from fastai.torch_core import TensorImage
from fasttransform import Transform
from PIL import Image

from conftest import make_folder
from sevenstep import data
from sevenstep.data.image_cache import decoded


def _ordered(dls):
    x, y = zip(
        *[
            (xb.as_subclass(torch.Tensor), yb.as_subclass(torch.Tensor))
            for xb, yb in dls.train.new(shuffle=False)
        ]
    )
    return torch.cat(x), torch.cat(y)


def test_same_images_labels_and_normalisation_as_the_per_item_path():
    fast = data.dataloaders("mnist5k-3v7", bs=100, seed=3)
    slow = data.dataloaders("mnist5k-3v7", bs=100, seed=3, fast=False)
    assert fast.vocab == slow.vocab and len(fast.train_ds) == len(slow.train_ds)
    (fx, fy), (sx, sy) = _ordered(fast), _ordered(slow)
    assert torch.equal(fy, sy)
    torch.testing.assert_close(fx, sx)  # same pixels, same Normalize statistics (from the same first batch)
    vf, vs = fast.valid.one_batch(), slow.valid.one_batch()
    torch.testing.assert_close(vf[0].as_subclass(torch.Tensor), vs[0].as_subclass(torch.Tensor))
    assert torch.equal(vf[1], vs[1])


def _offsets(augmented, original, pad=3):
    """For each image, the (dy, dx) crop of the zero-padded original that gives the augmented one."""
    padded = F.pad(original, (pad, pad, pad, pad))
    found = []
    for a, p in zip(augmented, padded):
        hits = [
            (dy, dx)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if torch.equal(p[:, dy : dy + 28, dx : dx + 28], a)
        ]
        assert hits, "an augmented image is not a padded crop of its original"
        found.append(hits[0])
    return np.array(found)


def test_augmentation_has_the_per_item_paths_distribution():
    plain = _ordered(data.dataloaders("mnist5k-3v7", bs=100, normalize=False))[0]
    offsets = {}
    for fast in (True, False):
        aug = data.dataloaders("mnist5k-3v7", bs=100, normalize=False, augment=True, fast=fast)
        offsets[fast] = _offsets(_ordered(aug)[0], plain)
    for fast, o in offsets.items():
        for axis in (0, 1):
            freq = np.bincount(o[:, axis], minlength=7) / len(o)
            assert len(freq) == 7 and freq.min() > 0.08 and freq.max() < 0.21, (
                fast,
                axis,
                freq,
            )  # uniform on 0..6
        assert abs(o.mean() - 3) < 0.25  # centred: as many shifts one way as the other
    # and the two paths' offset distributions agree with each other
    assert (
        np.abs(
            np.bincount(offsets[True].ravel(), minlength=7) - np.bincount(offsets[False].ravel(), minlength=7)
        ).max()
        < 60
    )


def test_validation_is_never_augmented_on_the_fast_path():
    # normalize=False: Normalize's statistics come from a (padded) training batch, in both paths alike
    aug = data.dataloaders("mnist5k-3v7", bs=200, augment=True, normalize=False)
    plain = data.dataloaders("mnist5k-3v7", bs=200, normalize=False)
    for (a, ya), (p, yp) in zip(aug.valid, plain.valid):
        assert torch.equal(a, p) and torch.equal(ya, yp)


def test_decode_cache_notices_a_changed_file(tmp_path):
    folder = make_folder(tmp_path / "f")
    files = sorted(folder.rglob("*.png"))
    first = decoded(files)
    assert first.shape == (len(files), 1, 28, 28) and first.dtype == torch.uint8
    assert torch.equal(decoded(files), first)  # from the cache
    Image.fromarray(np.full((28, 28), 7, dtype=np.uint8), mode="L").save(files[0])
    os.utime(files[0], ns=(1, 1))  # a different mtime even on a coarse clock
    again = decoded(files)
    assert torch.equal(again[0], torch.full((1, 28, 28), 7, dtype=torch.uint8))
    assert torch.equal(again[1:], first[1:])


def test_images_of_different_sizes_are_refused(tmp_path):
    folder = make_folder(tmp_path / "f")
    odd = next((folder / "train" / "a").glob("*.png"))
    Image.fromarray(np.zeros((32, 30), dtype=np.uint8), mode="L").save(odd)
    import pytest

    from sevenstep.errors import UsageError

    with pytest.raises(UsageError, match="differ in size"):
        data.dataloaders(f"folder:{folder}", bs=4)


def _pipeline_and_plain(dl, seed=0):
    """One pass's first batch through fastai's Pipeline (after_batch on the typed batch) and through the fast
    path's plain-tensor version of it, from the same random state."""
    from sevenstep.data.decoded import DecodedDL

    plain = dl._plain_after_batch()
    assert plain is not None
    order = torch.arange(min(dl.bs, dl.n))
    (typed,) = list(DecodedDL.create_batches(dl, order))
    (raw,) = list(dl._slices(order))
    torch.manual_seed(seed)
    want = dl.after_batch(typed)
    torch.manual_seed(seed)
    got = plain(raw)
    return want, got


def test_plain_batch_transforms_give_fastais_pipeline_result():
    """The fast path runs each batch transform's own encodes on plain tensors; same values and types as fastai's
    Pipeline gives, augmentation (same random crops from the same seed) and normalisation included."""
    dls = data.dataloaders("mnist5k-3v7", bs=64, augment=True)
    for dl in (dls.train, dls.valid):  # the training split is augmented, validation is not
        want, got = _pipeline_and_plain(dl)
        for w, g in zip(want, got, strict=True):
            assert type(g) is type(w)
            assert torch.equal(g.as_subclass(torch.Tensor), w.as_subclass(torch.Tensor))
    # and the augmentation did something on the training split
    plain = data.dataloaders("mnist5k-3v7", bs=64, augment=False)
    assert not torch.equal(_pipeline_and_plain(dls.train)[1][0], _pipeline_and_plain(plain.train)[1][0])


class Invert(Transform):
    """A user's own batch transform."""

    order = 100

    def encodes(self, x: TensorImage):
        return -x


def test_a_batch_transform_the_fast_path_does_not_know_goes_through_fastais_pipeline():
    dls = data.dataloaders("mnist5k-3v7", bs=64)
    before = dls.valid.one_batch()[0].as_subclass(torch.Tensor)
    dls.valid.after_batch.add(Invert())
    assert dls.valid._plain_after_batch() is None
    after = dls.valid.one_batch()[0].as_subclass(torch.Tensor)
    assert torch.equal(after, -before)


def test_the_fast_paths_order_is_get_idxs_order():
    """fastai's get_idxs (which DistributedDL calls) and the fast path's own iteration give one order."""
    import random

    dl = data.dataloaders("mnist5k-3v7", bs=50).train
    dl.rng = random.Random(7)
    dl.randomize()  # as __iter__ does first
    expected = dl.get_idxs()
    assert sorted(expected) == list(range(dl.n)) and expected != sorted(expected)
    dl.rng = random.Random(7)
    got = torch.cat([yb.as_subclass(torch.Tensor) for _, yb in dl])
    assert torch.equal(got, dl.labels[torch.tensor(expected[: len(got)])])
