"""The decoded-image cache checks what it reads: a damaged cache is noticed, said once, and rebuilt."""

from __future__ import annotations

import json
import os

import pytest
import torch

from conftest import make_folder
from sevenstep.data.image_cache import decoded

# 1. a corrupted decoded cache is noticed, said once, and rebuilt


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "wrong shape"])
def test_a_damaged_decoded_cache_is_rebuilt_and_said_once(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path / "cache"))
    files = sorted(make_folder(tmp_path / "f").rglob("*.png"))
    good = decoded(files)
    (cached,) = (tmp_path / "cache" / "decoded").glob("*.u8")
    raw = cached.read_bytes()
    header, payload = raw.split(b"\n", 1)
    if damage == "truncate":
        cached.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        cached.write_bytes(os.urandom(len(raw)))
    elif damage == "empty":
        cached.write_bytes(b"")
    else:  # a well-formed file that claims a shape of other images
        h = json.loads(header) | {"shape": [len(files) // 2, 1, 28, 56]}
        cached.write_bytes(json.dumps(h).encode() + b"\n" + payload)
    capsys.readouterr()
    assert torch.equal(decoded(files), good)
    assert "unusable" in capsys.readouterr().err
    assert torch.equal(decoded(files), good)
    assert capsys.readouterr().err == ""  # rebuilt: said once
