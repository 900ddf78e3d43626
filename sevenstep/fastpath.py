"""The fast data path: decode every image once, then make batches by slicing tensors on the model's device.

fastbook's per-item pipeline decodes a PNG and runs three transforms per image, every epoch: about 2,000 images/s on
two cores, slower than the small models it feeds. Here the `Datasets` stays exactly fastbook's one (same
items, labels, splits and vocab); only how a batch is made changes. fastai has no batch-level pad-and-crop,
so `RandomPadCrop` is written here: CropPad(34, zeros) + RandomCrop(28) for a whole batch in one indexing op.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

import fastai.vision.learner  # noqa: F401  # registers show_results and plot_top_losses for images
import torch
import torch.nn.functional as F
from fastai.data.core import DataLoaders, TfmdDL
from fastai.torch_core import TensorCategory, TensorImage, TensorImageBW, to_detach
from fasttransform import Transform

from . import atomic
from .errors import UsageError


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


class ImageDataLoaders(DataLoaders):
    """fastai's DataLoaders, whose `test_dl` also takes a folder for the images in it (recursively, sorted):
    `learn.dls.test_dl(["my_digits/"])`. A PIL image is converted to the training images' mode first, as
    PILImageBW.create does for files (fastai wraps an open image as it is); files and tensors go as they are."""

    mode = "L"

    def test_dl(self, test_items, rm_type_tfms=None, with_labels=False, **kwargs):
        from PIL import Image

        from .sources import image_files

        items = []
        for item in test_items:
            if isinstance(item, (str, Path)) and Path(item).is_dir():
                items.extend(image_files(Path(item)))
            else:
                items.append(item.convert(self.mode) if isinstance(item, Image.Image) else item)
        return super().test_dl(items, rm_type_tfms=rm_type_tfms, with_labels=with_labels, **kwargs)


class DecodedDL(TfmdDL):
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
        same = dataset is None or dataset is self.dataset
        decoded = {"images": self.images, "labels": self.labels} if same else {"images": None, "labels": None}
        return super().new(dataset, cls, **{**decoded, "gather": self.gather, **kwargs})

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
        idxs = self.get_idxs()
        # torch's DataLoader iterator draws its workers' base seed from torch's global generator on every
        # pass; this draws it too, so that later random numbers (init, augmentation) are those of fastai's path
        torch.empty((), dtype=torch.int64).random_()
        for b in self.create_batches(idxs):
            yield self.after_batch(b)
        self.after_iter()

    def create_batches(self, samps):
        if self.images is None:  # other items than the decoded ones: fastai's per-item path
            yield from super().create_batches(samps)
            return
        image = TensorImageBW if self.images.shape[1] == 1 else TensorImage  # greyscale or colour
        order = torch.as_tensor(list(samps), device=self.images.device)  # one copy an epoch, not one a batch
        end = len(order) - len(order) % self.bs if self.drop_last else len(order)
        for start in range(0, end, self.bs):
            i = order[start : start + self.bs]
            # index_select, not images[i]: the same rows, a tenth of the time on the CPU
            images, labels = self.images.index_select(0, i), self.labels.index_select(0, i)
            yield images.as_subclass(image), labels.as_subclass(TensorCategory)


def decoded(files: list[Path], mode: str = "L", size: int | None = None) -> torch.Tensor:
    """All images as one uint8 tensor (N, C, H, W), decoded once and cached; a changed file means a new cache.
    `mode` is PIL's ("L": greyscale, as PILImageBW.create converts; "RGB": PILImage's); `size` resizes each
    image to size x size as fastai's Resize(size, method="squish") does (bilinear).

    The cache is raw bytes after a one-line JSON header (shape, checksum, the files' key): nothing is
    unpickled, and a file that is truncated, altered or of the wrong shape is noticed and rebuilt."""
    from .sources import cache_dir

    h = hashlib.sha256(f"{mode}\0{size}\n".encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    key = h.hexdigest()
    cached = cache_dir() / "decoded" / f"{key[:32]}.u8"
    if cached.exists():
        images, problem = _read_cache(cached, key, len(files))
        if images is not None:
            return images
        print(
            f"the decoded-image cache {cached} is unusable ({problem}); decoding the images again",
            file=sys.stderr,
        )
    images = _decode(files, mode, size)
    payload = images.numpy().tobytes()
    header = {"format": CACHE_FORMAT, "key": key, "shape": list(images.shape)}
    header["sha256"] = hashlib.sha256(payload).hexdigest()
    cached.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(cached, json.dumps(header).encode() + b"\n" + payload)  # never half a cache
    return images


CACHE_FORMAT = "sevenstep-decoded-1"


def _read_cache(path: Path, key: str, n: int) -> tuple[torch.Tensor | None, str]:
    try:
        with open(path, "rb") as f:
            header = json.loads(f.readline())
            payload = f.read()
    except (OSError, ValueError) as e:
        return None, f"unreadable: {type(e).__name__}"
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT or header.get("key") != key:
        return None, "not a cache of these images"
    shape = header.get("shape")
    if not (isinstance(shape, list) and len(shape) == 4 and all(isinstance(d, int) and d > 0 for d in shape)):
        return None, f"a bad shape {shape!r}"
    if shape[0] != n or math.prod(shape) != len(payload):
        return None, f"{len(payload):,} bytes for shape {shape} and {n:,} images"
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        return None, "its checksum does not match"
    return torch.frombuffer(bytearray(payload), dtype=torch.uint8).view(shape), ""


def _decode(files: list[Path], mode: str, size: int | None) -> torch.Tensor:
    from PIL import Image

    arrays, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert(mode)  # as PILImageBW.create (or PILImage.create) does
                if size:
                    im = im.resize((size, size), Image.BILINEAR)
        except (OSError, ValueError, SyntaxError) as e:  # a truncated or corrupt file: name it
            raise UsageError(f"{f}: cannot read this image ({e}); fix or remove it") from None
        if first is None:
            first = (im.size, f)
        elif im.size != first[0]:
            raise UsageError(
                f"images differ in size: {first[1]} is {first[0][0]}x{first[0][1]} but {f} is "
                f"{im.size[0]}x{im.size[1]}; set data.size = N to resize every image to N x N (or resize "
                "them yourself)"
            )
        pixels = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        arrays.append(pixels.view(im.size[1], im.size[0], -1).permute(2, 0, 1))  # (C, H, W), as ToTensor
    return torch.stack(arrays)
