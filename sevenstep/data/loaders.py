"""The fastai low-level pipeline, as fastbook's chapter 4 builds it: items -> PILImageBW -> Categorize.

The keyword parameters of `dataloaders` before `*` are a recipe's [data] table: they are declared once, here,
and read as a schema by sevenstep/recipe.py. Where the images come from is sources.py; the fast path's
batches, decoded.py. This module imports fastai only inside `dataloaders`: a recipe is checked without it.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UsageError
from ..schema import fields_of
from .sources import Source, resolve


def dataloaders(
    source: str = "mnist5k-3v7",
    bs: int = 64,
    augment: bool = False,
    normalize: bool = True,
    pad: int | None = None,
    size: int | None = None,
    channels: int = 1,
    valid_pct: float | None = None,
    split_seed: int | None = None,
    test: str | None = None,
    folds: int | None = None,
    fold: int | None = None,
    *,
    seed: int = 42,
    device=None,
    fast: bool = True,
):
    """A Datasets of paths (-> PILImageBW, parent_label -> Categorize), item transforms, then batch
    transforms on the model's device.

    `source` is a name (see `sevenstep data list`) or an already resolved `Source`. `augment` zero-pads each
    training image by `pad` pixels and crops it back at a random offset, so a digit moves by up to `pad`
    pixels; `pad` defaults to a ninth of the image's side, as fastbook's chapter 4 pads 28 -> 34 -> 28 (3
    pixels), which is 1 pixel on 8x8 images. `size` resizes every image to size x size (squished, as fastai's
    Resize(method="squish")), so a folder of mixed sizes trains; `channels = 3` keeps colour (PILImage instead
    of PILImageBW). `test` is a folder of class folders held out from training and choosing (`folder:PATH`;
    default: the source's own test/ folder beside train/ and valid/, if it has one), evaluated once with the
    final weights (`dls.test_items`). `valid_pct` ignores the source's own train/valid split: all its images
    are split at random by fastai's RandomSplitter(valid_pct, seed=split_seed; the run's seed when not
    given). `folds` and `fold` validate on the fold-th of `folds` stratified folds of all the images instead
    (scikit-learn's StratifiedKFold, shuffled by split_seed, 42 when not given): a comparison's split = "kfold"
    gives each seed a fold, so every image is validated once. `normalize=False` keeps pixels in [0, 1], as fastbook's
    linear model had them. `fast` (the default) keeps that Datasets but makes batches from images decoded
    once, and pads and crops a whole batch at once on the device (decoded.py); `fast=False` is
    fastbook's per-item path."""
    from fastai.data.all import (
        Categorize,
        Datasets,
        GrandparentSplitter,
        IntToFloatTensor,
        Normalize,
        RandomSplitter,
        parent_label,
    )
    from fastai.torch_core import set_seed
    from fastai.vision.core import PILImage, PILImageBW

    from .device import default
    from .test_items import SevenstepDataLoaders

    check_options(bs=bs, pad=pad, augment=augment, size=size, channels=channels, valid_pct=valid_pct,
                  split_seed=split_seed, test=test, folds=folds, fold=fold)  # fmt: skip
    src = source if isinstance(source, Source) else resolve(source)
    items = src.items()
    if valid_pct is None and folds is None and src.valid is None:
        raise UsageError(
            f"{src.path} is a folder of class folders with no train/ and valid/ split; set data.valid_pct = 0.2 "
            "to validate on a random fifth of its images (fastai's RandomSplitter, seeded by the run's seed)"
        )
    if folds is not None:
        splits = fold_split(items, folds, fold, 42 if split_seed is None else split_seed)
    elif valid_pct is None:
        splits = GrandparentSplitter(train_name=src.train, valid_name=src.valid)(items)
    else:
        splits = RandomSplitter(valid_pct, seed=seed if split_seed is None else split_seed)(items)
        _check_split(items, splits, f"data.valid_pct = {valid_pct}")
    set_seed(seed)
    device = device or default()
    image = PILImageBW if channels == 1 else PILImage
    dsets = Datasets(items, tfms=[[image.create], [parent_label, Categorize()]], splits=splits)
    after_batch = [IntToFloatTensor()] + ([Normalize()] if normalize else [])
    # fastai drops a last partial training batch: a batch size above the training set would leave none
    kwargs = dict(bs=min(bs, len(dsets.train)), device=device, num_workers=0)
    make = _decoded_loaders if fast else _per_item_loaders
    dls = make(dsets, splits, after_batch, augment, pad, size, channels, **kwargs)
    dls = SevenstepDataLoaders(*dls.loaders, path=dls.path, device=device)  # test_dl takes folders too
    _plain_statistics(after_batch)
    dls.mode = "L" if channels == 1 else "RGB"
    dls.source = src
    dls.test_items = held_out(src, test)
    return dls


def _check_split(items, splits, how: str) -> None:
    """A random split that leaves no validation image, or a class with no training image (which the model
    could not learn, and fastai's vocabulary would not know), is refused with the counts."""
    from collections import Counter

    from fastai.data.all import parent_label

    train, valid = (Counter(parent_label(items[i]) for i in split) for split in splits)
    classes = sorted(set(map(parent_label, items)))
    missing = [c for c in classes if not train[c]]
    if not valid or missing:
        said = (
            "no validation images" if not valid else f"class(es) {', '.join(missing)} with no training images"
        )
        counts = "; ".join(f"{c}: {train[c]} train, {valid[c]} valid" for c in classes)
        raise UsageError(
            f"{how} leaves {said} ({counts}); choose a fraction that leaves some of each class on both sides, "
            "e.g. 0.2"
        )


def fold_split(items, folds: int, fold: int, seed: int):
    """(train, valid) indices: the fold-th of `folds` folds, each class spread evenly over them. fastai has
    random and folder splitters but no k-fold one; scikit-learn (installed with fastai) has."""
    from fastai.data.all import L, parent_label
    from sklearn.model_selection import StratifiedKFold

    labels = [parent_label(f) for f in items]
    train, valid = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels))[
        fold - 1
    ]
    return L(train.tolist()), L(valid.tolist())


def held_out(src: Source, test: str | None) -> list:
    """The test images: `data.test`'s folder of class folders, else the source's own test/ folder."""
    from .sources import check_folder, check_test_classes, kind_of

    if test is None:
        return src.test_items()
    folder = kind_of(test)[1]
    test_src = check_folder(Path(folder).expanduser(), test)
    if test_src.valid is not None:
        raise UsageError(
            f"data.test = {test!r} has its own train/ and valid/ folders; data.test is a folder of class "
            f"folders (<class>/*.png) that training never sees"
        )
    check_test_classes(test_src.path, src.classes)
    import hashlib

    from .sources import refuse_overlap

    trained = {hashlib.sha256(f.read_bytes()).digest(): f for f in src.items()}
    tested = [(hashlib.sha256(f.read_bytes()).digest(), f) for f in test_src.items()]
    refuse_overlap([{"source": trained[d], "data.test": f} for d, f in tested if d in trained], test_src.path)
    return test_src.items()


def _decoded_loaders(dsets, splits, after_batch, augment, pad, size, channels, **kwargs):
    """The fast path: every image decoded once (cached), batches sliced and augmented on the device."""
    from fastai.data.all import ToTensor

    from .decoded import DecodedDL, RandomPadCrop
    from .image_cache import decoded

    device, items = kwargs["device"], dsets.items
    images = decoded(items, "L" if channels == 1 else "RGB", size).to(device)
    labels = labels_of(items, dsets.vocab, device)
    per_split = [dict(images=images[s], labels=labels[s]) for s in splits]
    aug = [RandomPadCrop(pad_for(images.shape[-1], pad))] if augment else []
    # ToTensor runs only in fastai's one-item type check, and Resize only on new items (test_dl, predict):
    # batches never go through the item transforms
    return dsets.dataloaders(
        after_item=[*_resize(size), ToTensor()],
        after_batch=aug + after_batch,
        dl_type=DecodedDL,
        dl_kwargs=per_split,
        **kwargs,
    )


def labels_of(items, vocab, device=None):
    """Each image's class index, from its folder's name (fastai's parent_label, then the vocab)."""
    import torch
    from fastai.data.all import parent_label

    return torch.tensor([vocab.o2i[parent_label(f)] for f in items], device=device)


def _per_item_loaders(dsets, splits, after_batch, augment, pad, size, channels, **kwargs):
    """fastbook's per-item path: each image decoded and transformed on its own, every epoch.
    RandomCrop crops at random on the training split only (split_idx=0) and centre-crops validation, which
    undoes CropPad's padding there: augmentation touches training batches alone."""
    from fastai.data.all import ToTensor
    from fastai.vision.augment import CropPad, PadMode, RandomCrop

    from .shuffle import ShuffledDL

    aug = []
    if augment:
        from PIL import Image

        with Image.open(dsets.items[0]) as im:
            side = size or im.size[0]
        aug = [CropPad(side + 2 * pad_for(side, pad), pad_mode=PadMode.Zeros), RandomCrop(side)]
    return dsets.dataloaders(
        after_item=[*_resize(size), ToTensor(), *aug], after_batch=after_batch, dl_type=ShuffledDL, **kwargs
    )


def _resize(size: int | None) -> list:
    from fastai.vision.augment import Resize

    return [Resize(size, method="squish")] if size else []


def _plain_statistics(after_batch) -> None:
    """Normalize's statistics, taken from a typed batch, keep the batch's type: every batch's (x - mean) / std
    would then go through fastai's typed-tensor dispatch (__torch_function__), twice a batch."""
    import torch
    from fastai.data.all import Normalize

    for t in after_batch:
        if isinstance(t, Normalize) and t.mean is not None:
            t.mean, t.std = t.mean.as_subclass(torch.Tensor), t.std.as_subclass(torch.Tensor)


OPTIONS = fields_of(dataloaders, skip=("seed", "device", "fast"))  # a recipe's [data] table


def check_options(
    source: str = "mnist5k-3v7",
    bs: int = 64,
    pad: int | None = None,
    augment: bool = False,
    size: int | None = None,
    channels: int = 1,
    valid_pct: float | None = None,
    split_seed: int | None = None,
    test: str | None = None,
    folds: int | None = None,
    fold: int | None = None,
    **_,
) -> None:
    """Values a type cannot say; called when a recipe is read, long before any data is loaded."""
    from .sources import kind_of

    if isinstance(source, str):
        kind_of(source)  # a known source's name: its folder is checked when it is loaded
    if test is not None and kind_of(test)[0].name != "folder":
        raise UsageError(
            f"data.test = {test!r}: expected folder:PATH, a folder of class folders (<class>/*.png)"
        )
    if bs < 1:
        raise UsageError(f"data.bs must be at least 1, got {bs}")
    if pad is not None and pad < 0:
        raise UsageError(f"data.pad must be 0 or more pixels, got {pad}")
    if size is not None and not 1 <= size <= 4096:
        raise UsageError(f"data.size must be between 1 and 4096 pixels, got {size}")
    if channels not in (1, 3):
        raise UsageError(f"data.channels must be 1 (greyscale) or 3 (colour), got {channels}")
    if valid_pct is not None and not 0 < valid_pct < 1:
        raise UsageError(
            f"data.valid_pct must be between 0 and 1 (0.2: a fifth of the images), got {valid_pct}"
        )
    if (folds is None) != (fold is None):
        raise UsageError(
            "data.folds and data.fold go together: validate on fold `fold` of `folds` (e.g. 5 and 1)"
        )
    if folds is not None and not (folds >= 2 and 1 <= fold <= folds):
        raise UsageError(
            f"data.folds must be 2 or more and data.fold between 1 and it; got {folds} and {fold}"
        )
    if folds is not None and valid_pct is not None:
        raise UsageError("data.folds and data.valid_pct are two ways to split: give one of them")
    if split_seed is not None and valid_pct is None and folds is None:
        raise UsageError(
            f"data.split_seed = {split_seed} draws a random split; set data.valid_pct as well (e.g. 0.2)"
        )
    if pad is not None and not augment:
        raise UsageError(f"data.pad = {pad} pads augmented images only; set data.augment = true as well")


def pad_for(side: int, pad: int | None) -> int:
    """Augmentation's padding in pixels: as asked, or a ninth of the side (28 -> 3, 8 -> 1)."""
    return pad if pad is not None else max(1, round(side / 9))
