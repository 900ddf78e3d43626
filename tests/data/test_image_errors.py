"""Image errors name their file; 16-bit images are refused, not clipped."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from conftest import make_folder
from sevenstep import data
from sevenstep.data import sources
from sevenstep.errors import UsageError

# 9. image errors name their file; 16-bit images are refused, not clipped


def test_a_truncated_image_is_named(tmp_path):
    folder = make_folder(tmp_path / "f")
    bad = folder / "train" / "a" / "broken.jpg"
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(noise, mode="L").save(buf, format="JPEG")
    bad.write_bytes(buf.getvalue()[:-50])  # its header is intact: PIL's verify() passes, decoding fails
    with pytest.raises(UsageError, match=f"{bad}: cannot read this image"):
        data.dataloaders(f"folder:{folder}", bs=4)


def test_16_bit_images_are_refused_with_their_names(tmp_path):
    folder = make_folder(tmp_path / "f")
    wide = folder / "valid" / "b" / "wide.png"
    Image.fromarray(np.full((28, 28), 40000, dtype=np.uint16)).save(wide)
    with pytest.raises(UsageError, match=f"16 or 32 bits per pixel.*\n  {wide}"):
        sources.resolve(f"folder:{folder}")


def test_a_truncated_png_in_the_prepared_embedded_data_is_named_with_what_to_do(tmp_path, monkeypatch):
    """#24: a truncated PNG in sevenstep's own copy of the embedded digits gave no file name."""
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path / "cache"))
    prepared = sources.resolve("mnist5k-3v7").path
    bad = next(prepared.glob("train/*/*.png"))
    bad.write_bytes(bad.read_bytes()[:-30])  # the file count the prepare checks is unchanged
    with pytest.raises(
        UsageError, match=f"{bad}: cannot read this image .*remove {prepared} and it is prepared again"
    ):
        data.dataloaders("mnist5k-3v7", bs=4)
