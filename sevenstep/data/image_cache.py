"""Images decoded once: every image of a dataset as one uint8 tensor, cached on disk under
$SEVENSTEP_CACHE/decoded/, so a run (or a second process) does not decode the same PNGs again."""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import torch

from ..errors import UsageError
from ..utils import atomic


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
        h.update(os.fsencode(f.resolve()) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
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
    _check_memory(files, mode, size)
    images = _decode(files, mode, size)
    payload = images.numpy().tobytes()
    header = {"format": CACHE_FORMAT, "key": key, "shape": list(images.shape)}
    header["sha256"] = hashlib.sha256(payload).hexdigest()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(cached, json.dumps(header).encode() + b"\n" + payload)  # never half a cache
    except OSError as e:  # the cache only saves time: a full or read-only cache disk costs no run
        print(
            f"the decoded images could not be cached in {cached.parent} ({e.strerror or e}); training from "
            "memory, and they will be decoded again next time",
            file=sys.stderr,
        )
    return images


CACHE_FORMAT = "sevenstep-decoded-1"


def _available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _check_memory(files: list[Path], mode: str, size: int | None) -> None:
    """The decoded images' size is known before decoding (images x channels x side x side bytes, held about
    three times over while the cache is written): refuse what this machine cannot hold, instead of being
    killed by the kernel a minute later without a word."""
    from PIL import Image

    from ..errors import UsageError

    available = _available_bytes()
    if available is None or not files:
        return
    if size is None:
        with Image.open(files[0]) as im:
            w, h = im.size
    else:
        w = h = size
    channels = 3 if mode == "RGB" else 1
    need = len(files) * channels * w * h
    if 3 * need <= available:
        return
    fits = int((available / 3 / (len(files) * channels)) ** 0.5)
    raise UsageError(
        f"{len(files):,} images at {w}x{h} need {need / 1e9:.1f} GB decoded (about {3 * need / 1e9:.0f} GB while "
        f"they are cached), but this machine has {available / 1e9:.1f} GB free: choose a smaller data.size "
        f"(at most about {fits})"
    )


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


def _remedy(file: Path) -> str:
    """What to do about an unreadable image: sevenstep's own embedded copy is prepared again once removed."""
    from .sources import MARKER

    prepared = next((p for p in file.parents if (p / MARKER).is_file()), None)
    if prepared is not None:
        return (
            f"this is sevenstep's prepared copy of embedded data: remove {prepared} and it is prepared again"
        )
    return "fix or remove it"


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
            raise UsageError(f"{f}: cannot read this image ({e}); {_remedy(f)}") from None
        if first is None:
            first = (im.size, f)
        elif im.size != first[0]:
            raise UsageError(
                f"images differ in size: {first[1]} is {first[0][0]}x{first[0][1]} but {f} is "
                f"{im.size[0]}x{im.size[1]}; set data.size = N to resize every image to N x N (`data show --size N`; or resize "
                "them yourself)"
            )
        pixels = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8)
        arrays.append(pixels.view(im.size[1], im.size[0], -1).permute(2, 0, 1))  # (C, H, W), as ToTensor
    return torch.stack(arrays)
