"""`sevenstep predict`: a saved run's model on new images, through the run's own preprocessing.

The run's Learner is rebuilt from its recipe.toml and model.pth (sevenstep.loop.train.load_learner), and the images go
through fastai's `test_dl`: the run's own PILImageBW/PILImage.create, resize (data.size) and Normalize.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data.sources import image_files
from ..errors import UsageError


def images(paths: list[Path]) -> list[Path]:
    """Files as given, folders as the images in them (recursively, sorted)."""
    found = []
    for p in paths:
        if p.is_dir():
            inside = image_files(p)
            if not inside:
                raise UsageError(f"{p} holds no images (.png, .jpg, ...)")
            found += inside
        elif p.is_file():
            found.append(p)
        elif p.exists():
            raise UsageError(f"{p} is not an image file (a device, a pipe, ...); give image files or folders")
        else:
            raise UsageError(f"{p} does not exist")
    return found


def problems(files: list[Path], size: tuple[int, int], resize: int | None) -> dict[Path, str]:
    """The images the model cannot take, each with why: unreadable, or (without data.size) not of the size it
    was trained on. Found before predicting, so that the others can be."""
    from PIL import Image, UnidentifiedImageError

    found = {}
    for f in files:
        try:
            with Image.open(f) as im:
                got = (im.size[1], im.size[0])
        except Image.DecompressionBombError as e:  # PIL refuses images too large to decode safely
            found[f] = f"{f} is too large to read safely ({e})"
            continue
        except (OSError, UnidentifiedImageError) as e:
            found[f] = f"{f}: cannot read this image ({e})"
            continue
        if resize is None and got != size:
            found[f] = (
                f"{f} is {got[1]}x{got[0]} pixels, but this run's model was trained on {size[1]}x{size[0]} "
                f"images; resize it to {size[1]}x{size[0]}, or train with data.size = {size[0]} to resize "
                "every image"
            )
    return found


def predict(run_dir: Path, paths: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each image's predicted class, its probability, and every class's probability; and what was wrong with
    the images it could not take (all of them wrong: a UsageError)."""
    from ..loop import train

    for needed in ("recipe.toml", "model.pth"):
        if not (run_dir / needed).is_file():
            raise UsageError(
                f"{run_dir} is not a saved run (no {needed}); saved runs are the folders under runs/"
            )
    files = images(paths)
    learn = train.load_learner(run_dir)
    bad = problems(files, tuple(learn.dls.valid.images.shape[-2:]), learn.run_info.recipe.data.get("size"))
    files = [f for f in files if f not in bad]
    if not files:
        raise UsageError("; ".join(bad.values()))
    with learn.no_bar():
        probs = learn.get_preds(dl=learn.dls.test_dl(files))[0]
    vocab = [str(v) for v in learn.dls.vocab]
    return [
        {
            "file": str(f),
            "class": vocab[int(p.argmax())],
            "probability": round(float(p.max()), 4),
            "probabilities": {v: round(float(x), 4) for v, x in zip(vocab, p)},
        }
        for f, p in zip(files, probs)
    ], list(bad.values())
