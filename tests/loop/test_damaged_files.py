"""Damaged, swapped or hostile files in a run folder, and odd inputs to predict: one line naming the file and
what to do, exit 2, never a traceback."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import LINEAR
from sevenstep import recipe
from sevenstep.cli import app
from sevenstep.loop import checkpoint, train


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    return train.run(
        recipe.load(LINEAR, ["steps.repeat.n=1"]),
        [checkpoint.Checkpointer],
        runs_dir=tmp_path_factory.mktemp("r"),
    )


def _copy(run, tmp_path, name):
    folder = tmp_path / name
    shutil.copytree(run.run_dir, folder)
    return folder


def _refused(args, expected):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    return result


def test_damaged_files_in_a_run_folder_are_named(finished, tmp_path):
    image = str(tmp_path / "x.png")
    Image.new("L", (28, 28)).save(image)
    cut = _copy(finished, tmp_path, "cut")
    (cut / "model.pth").write_bytes((cut / "model.pth").read_bytes()[:100])
    _refused(["predict", str(cut), image], f"{cut / 'model.pth'} cannot be read as this run's weights")
    swapped = _copy(finished, tmp_path, "swapped")
    shutil.copy(swapped / "model.pth", swapped / "checkpoint.pt")
    (swapped / "UNFINISHED").touch()
    (swapped / "result.json").unlink()
    _refused(["resume", str(swapped)], "is not a sevenstep checkpoint (a model.pth copied over it?)")
    truncated = _copy(finished, tmp_path, "truncated")
    (truncated / "result.json").write_text('{"acc')
    _refused(["resume", str(truncated)], f"{truncated / 'result.json'} is damaged (not a JSON object)")


def test_predict_names_a_device_and_a_decompression_bomb(finished, tmp_path):
    _refused(["predict", finished.run_dir, "/dev/zero"], "/dev/zero is not an image file")
    bomb = tmp_path / "bomb.png"
    Image.new("1", (14_000, 14_000)).save(bomb)  # 196 M pixels, over PIL's limit; a small file
    _refused(["predict", finished.run_dir, str(bomb)], "is too large to read safely")
