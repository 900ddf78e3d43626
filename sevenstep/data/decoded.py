"""The fast data path: decode every image once, then make batches by slicing tensors on the model's device.

fastbook's per-item pipeline decodes a PNG and runs three transforms per image, every epoch: slower than the
small models it feeds (docs/performance.md, `make bench` row 1). Here the `Datasets` stays exactly fastbook's one
(same items, labels, splits and vocab); only how a batch is made changes. fastai has no batch-level
pad-and-crop, so `RandomPadCrop` is written here: CropPad(34, zeros) + RandomCrop(28) for a whole batch in one
indexing op. Both paths shuffle with torch (shuffle.py), so they train on the same batches in the same order;
the decoded images come from image_cache.py.
"""

from __future__ import annotations

import functools

import fastai.vision.learner  # noqa: F401  # registers show_results and plot_top_losses for images
import torch
import torch.nn.functional as F
from fastai.data.transforms import IntToFloatTensor, Normalize
from fastai.torch_core import TensorCategory, TensorImage, TensorImageBW, to_detach
from fasttransform import Transform
from plum import NotFoundLookupError

from .shuffle import ShuffledDL, permutation


class RandomPadCrop(Transform):
    """Zero-pad each image by `pad` on every side, then crop it back at a random offset: training batches only."""

    split_idx, order = 0, 5  # 0: the training split alone; 5: before IntToFloatTensor, on uint8

    def __init__(self, pad: int = 3):
        super().__init__()
        self.pad = pad

    def encodes(self, x: TensorImage):
        b, c, h, w = x.shape
        p, dev = self.pad, x.device
        padded = F.pad(x.as_subclass(torch.Tensor), (p, p, p, p))
        dy, dx = torch.randint(0, 2 * p + 1, (2, b, 1), device=dev)  # offsets 0..2p, as RandomCrop draws them
        rows = (dy + torch.arange(h, device=dev))[:, None, :, None]
        cols = (dx + torch.arange(w, device=dev))[:, None, None, :]
        out = padded[
            torch.arange(b, device=dev)[:, None, None, None],
            torch.arange(c, device=dev)[None, :, None, None],
            rows,
            cols,
        ]
        return out.as_subclass(type(x))


class DecodedDL(ShuffledDL):
    """A TfmdDL whose batches are slices of decoded uint8 images and label indices, already on the device.

    The decoded tensors belong to the Datasets the DataLoader was made for. Given other items (fastai's
    `test_dl`, which `predict` and `ClassificationInterpretation` use), it is a plain TfmdDL: each item
    goes through the Datasets' own transforms (PILImageBW.create, Categorize), then the same batch
    transforms, so new images are read exactly as the training images were."""

    def __init__(self, dataset=None, images=None, labels=None, gather=True, **kwargs):
        # plain tensors: indexing fastai's typed tensors goes through Python (__torch_function__)
        self.images, self.labels = (t if t is None else t.as_subclass(torch.Tensor) for t in (images, labels))
        self.gather = gather  # False: every process of a data-parallel run has the whole set (distributed.py)
        super().__init__(dataset, **kwargs)

    def new(self, dataset=None, cls=None, **kwargs):
        # new item transforms (Resize, FlipItem, tta's item_tfms) need each item read again: fastai's path
        same = (dataset is None or dataset is self.dataset) and kwargs.get("after_item") is None
        decoded = {"images": self.images, "labels": self.labels} if same else {"images": None, "labels": None}
        return super().new(dataset, cls, **{**decoded, "gather": self.gather, **kwargs})

    @property
    def decoded_device(self):
        """Where this DataLoader makes its batches (None: it reads other items, fastai's way)."""
        return None if self.images is None else self.images.device

    def to_detach(self, b, cpu=True, gather=True):
        return to_detach(b, cpu, gather and self.gather)

    def __iter__(self):
        """fastai's DataLoader.__iter__ (same shuffling, with this DataLoader's own random generator, same
        before_iter/after_iter and batch transforms) without the torch DataLoader machinery that fastai wraps
        around each batch: here a batch is one index into a tensor already on the device."""
        if self.images is None:
            yield from super().__iter__()
            return
        self.randomize()
        self.before_iter()
        # the order get_idxs gives (a list there, fastai's contract), as one tensor here
        idxs = permutation(self.rng, self.n) if self.shuffle else torch.arange(self.n)
        # torch's DataLoader iterator draws its workers' base seed from torch's global generator on every
        # pass; this draws it too, so that later random numbers (init, augmentation) are those of fastai's path
        torch.empty((), dtype=torch.int64).random_()
        plain = self._plain_after_batch()
        if plain is not None:
            yield from map(plain, self._slices(idxs))
        else:
            yield from map(self.after_batch, self.create_batches(idxs))
        self.after_iter()

    def _plain_after_batch(self):
        """`after_batch` as one function for this pass, or None where fastai's Pipeline must run it.

        A batch transform's `encodes` is chosen by its input's type (image or label) on every batch, and each
        tensor operation inside it goes through fastai's typed tensors (`__torch_function__`): together, more
        time than the arithmetic on a small model's batch. Here each transform's own `encodes` is chosen once a
        pass, by the types this DataLoader's batches always have, and run on plain tensors; the results get their
        types back at the end. Only for transforms whose `encodes` is plain tensor arithmetic (PLAIN_TFMS); any
        other transform (a user's, fastai's batch augmentations) leaves the whole pipeline to fastai."""
        tfms = self.after_batch.fs
        if not all(type(t) in PLAIN_TFMS for t in tfms):
            return None
        image = TensorImageBW if self.images.shape[1] == 1 else TensorImage
        types = (image, TensorCategory)
        split_idx = self.after_batch.split_idx
        plan = []  # (transform, its encodes for the image, for the label): None where it leaves one alone
        for t in tfms:
            if t.split_idx is not None and t.split_idx != split_idx:
                continue  # as fastai's Transform does: e.g. augmentation on the training split only
            plan.append((t, *(_encodes_for(type(t), typ) for typ in types)))

        def after_batch(b):  # b: plain tensors, from _slices
            x, y = b
            for t, on_x, on_y in plan:
                x = x if on_x is None else on_x(t, x)
                y = y if on_y is None else on_y(t, y)
            return x.as_subclass(types[0]), y.as_subclass(types[1])

        return after_batch

    def create_batches(self, samps):
        if self.images is None:  # other items than the decoded ones: fastai's per-item path
            yield from super().create_batches(samps)
            return
        image = TensorImageBW if self.images.shape[1] == 1 else TensorImage  # greyscale or colour
        for images, labels in self._slices(samps):
            yield images.as_subclass(image), labels.as_subclass(TensorCategory)

    def _slices(self, samps):
        """Batches of `samps` (indices: a tensor, or fastai's list) as plain uint8 images and label indices."""
        samps = samps if isinstance(samps, torch.Tensor) else list(samps)  # ours, or fastai's (DistributedDL)
        order = torch.as_tensor(samps, device=self.images.device)  # one copy an epoch, not one a batch
        end = len(order) - len(order) % self.bs if self.drop_last else len(order)
        for start in range(0, end, self.bs):
            i = order[start : start + self.bs]
            # index_select, not images[i]: the same rows, a tenth of the time on the CPU
            yield self.images.index_select(0, i), self.labels.index_select(0, i)


# the batch transforms whose encodes are tensor arithmetic alone (no typed-tensor methods): see _plain_after_batch
PLAIN_TFMS = (RandomPadCrop, IntToFloatTensor, Normalize)


@functools.cache  # plum caches what it finds, not what it does not find (a label, for most transforms)
def _encodes_for(tfm: type[Transform], typ: type):
    """The function a `tfm` transform's `encodes` dispatches to for an input of type `typ`, or None (fastai
    leaves such an input as it is)."""
    try:
        method, _ = tfm.encodes._resolve_method_with_cache(types=(tfm, typ))  # as Transform does
    except NotFoundLookupError:
        return None
    return method
