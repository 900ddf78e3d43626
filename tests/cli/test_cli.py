"""What a learner meets at the command line: the choices printed before training, epochs counted from 1,
a closed pipe that does not lose a run, flags that say they are flags, devices, and paths read from the file
they are written in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sevenstep import compare, data, recipe
from sevenstep.cli import app
from sevenstep.data.decoded import RandomPadCrop
from sevenstep.errors import UsageError
from sevenstep.tracking import plots

LINEAR = str(Path("tests/recipes/linear_20_epochs.toml").resolve())  # fastbook's linear recipe at 20 epochs


def test_run_prints_the_seven_choices_and_counts_epochs_from_1(tmp_path):
    r = CliRunner().invoke(app, ["run", LINEAR, "--set", "steps.repeat.n=2", "--runs-dir", str(tmp_path), "--wandb", "disabled"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert (
        "init=normal predict=linear loss=mnist_loss gradient=autograd step=sgd repeat=epochs stop=epochs_done"
        in r.output
    )
    assert "device: cpu" in r.output
    rows = [line.split() for line in r.output.splitlines() if line[:1].isdigit() and "." in line]
    assert [row[0] for row in rows[:2]] == ["1", "2"]  # fastai's table, as result.json counts them
    saved = json.loads(next(tmp_path.glob("*/result.json")).read_text())
    assert [e["epoch"] for e in saved["epochs"]] == [1, 2]


def test_a_closed_pipe_does_not_lose_the_run(tmp_path):
    """`sevenstep run ... | head -1`: head exits after one line, the run goes on and is saved."""
    cmd = [sys.executable, "-m", "sevenstep", "run", LINEAR, "--set", "steps.repeat.n=40", "--set", "data.bs=16",
           "--runs-dir", str(tmp_path), "--wandb", "disabled"]  # fmt: skip
    run = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    head = subprocess.run(["head", "-1"], stdin=run.stdout, capture_output=True)
    run.stdout.close()  # only head reads the pipe; once head exits, every write meets a closed pipe
    assert run.wait(timeout=300) == 0
    assert head.stdout.startswith(b"device:")
    saved = json.loads(next(tmp_path.glob("*/result.json")).read_text())
    assert saved["stop_reason"] == "epochs_done" and len(saved["epochs"]) == 40


def test_flags_take_no_value():
    helped = CliRunner().invoke(app, ["runs", "--help"])
    assert "--json" in helped.output and "<bool>" not in helped.output
    wrong = CliRunner().invoke(app, ["runs", "--json", "true"])
    assert wrong.exit_code == 2 and "--json is a flag and takes no value" in wrong.output


@pytest.mark.parametrize(
    ("device", "expected"),
    [("banana", "is not a device"), ("cuda:7", "CUDA GPU"), ("tpu", "not a device")],
)
def test_device_errors(tmp_path, device, expected):
    if torch.cuda.device_count() > 7 and device == "cuda:7":
        pytest.skip("this machine has 8 GPUs")
    r = CliRunner().invoke(app, ["run", LINEAR, "--device", device, "--runs-dir", str(tmp_path)])
    assert r.exit_code == 2 and expected in r.output and "Traceback" not in r.output
    assert not list(tmp_path.iterdir())  # refused before training


def test_folder_paths_in_a_file_are_read_from_that_files_folder(tmp_path, tiny_folder, monkeypatch):
    here = tmp_path / "project"
    here.mkdir()
    (here / "digits").symlink_to(tiny_folder)
    (here / "my.toml").write_text(
        'name = "mine"\n[data]\nsource = "folder:digits"\nbs = 8\n[steps.repeat]\nname = "epochs"\nn = 1\n'
    )
    (here / "cmp.toml").write_text(
        'source = "folder:digits"\n[[runs]]\nrecipe = "my.toml"\nlabel = "Mine (v2)"\n'
    )
    monkeypatch.chdir(tmp_path)  # neither file is in the current folder
    assert recipe.load(here / "my.toml").data["source"] == f"folder:{here / 'digits'}"
    plan = compare.load(here / "cmp.toml")
    # the baseline reads the same folder as the runs (it read "folder:digits" from the current folder before)
    assert plan.source == plan.runs[0][1].data["source"] == f"folder:{here / 'digits'}"
    assert (
        plan.runs[0][0] == "Mine (v2)" and plan.runs[0][1].name == "mine-v2"
    )  # the run is named by its label
    # --set is typed in the current folder, so it is read from there, and kept resolved (the saved recipe.toml
    # then means the same folder wherever it is read)
    assert (
        recipe.load(here / "my.toml", ["data.source=folder:x"]).data["source"] == f"folder:{tmp_path / 'x'}"
    )
    (here / "bad.toml").write_text('[data]\nsource = "folder:nowhere"\n')
    with pytest.raises(UsageError, match=f"data folder {here / 'nowhere'} does not exist"):
        data.dataloaders(**recipe.load(here / "bad.toml").data)


def test_augmentation_padding_scales_with_the_image(tmp_path):
    from conftest import make_folder

    assert [data.pad_for(side, None) for side in (28, 8, 64)] == [3, 1, 7]
    assert data.pad_for(28, 0) == 0 and data.pad_for(8, 2) == 2
    small = make_folder(tmp_path / "small", size=8)
    dls = data.dataloaders(f"folder:{small}", bs=8, augment=True, normalize=False)
    (crop,) = [t for t in dls.train.after_batch.fs if isinstance(t, RandomPadCrop)]
    assert crop.pad == 1
    slow = data.dataloaders(f"folder:{small}", bs=8, augment=True, normalize=False, fast=False)
    (pad,) = [t for t in slow.train.after_item.fs if type(t).__name__ == "CropPad"]
    assert tuple(pad.size) == (10, 10) and "RandomCrop" in [
        type(t).__name__ for t in slow.train.after_item.fs
    ]
    assert tuple(slow.train.one_batch()[0].shape[-2:]) == (8, 8)
    # a shift of at most `pad` pixels: the bright bar of class 0 stays within a row of where it was
    x = torch.zeros(64, 1, 8, 8, dtype=torch.uint8)
    x[:, :, 3, :] = 255
    shifted = RandomPadCrop(1)(x.as_subclass(type(dls.one_batch()[0])).clone())
    rows = shifted.as_subclass(torch.Tensor).amax((1, 3)).argmax(-1)
    assert set(rows.tolist()) <= {2, 3, 4}
    with pytest.raises(UsageError, match="set data.augment = true"):
        recipe.load(LINEAR, ["data.pad=2"])
    with pytest.raises(UsageError, match="data.pad must be 0 or more"):
        recipe.load(LINEAR, ["data.augment=true", "data.pad=-1"])


def test_weights_picture_has_a_colour_bar_that_says_what_the_colours_mean():
    model = torch.nn.Linear(28 * 28, 10)
    fig = plots.linear_weights(model, list("0123456789"))
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 1 and "red" in bars[0].get_ylabel() and "blue" in bars[0].get_ylabel()
    assert fig.get_size_inches()[1] >= 5  # two rows of five, each readable


def test_help_texts_say_what_each_command_and_option_does_in_whole_sentences():
    """#36 item 16: the command list broke sentences at their source's line breaks; report's --storage was
    sweep's text; resume's argument said "whose run did not finish" though it extends finished runs too."""
    import re

    top = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"}).output
    # at 200 columns every command's summary fits on its line: a wrapped one was cut at a source line break
    summaries = re.findall(r"^│ (\w[\w-]*)\s{2,}(.+?)\s*│$", top, re.M)
    assert len(summaries) >= 10 and all(
        not text.endswith((",", " or", " its", " why")) for _, text in summaries
    )
    report = CliRunner().invoke(app, ["report", "--help"], env={"COLUMNS": "200"}).output
    assert "machines that share it share the work" not in report and "it is read, never written" in report
    resume = CliRunner().invoke(app, ["resume", "--help"], env={"COLUMNS": "200"}).output
    assert "did not finish" not in resume and "a finished one trains on to more epochs" in resume


def test_report_of_a_glob_matching_a_comparisons_folders_makes_the_newest_ones_page(tmp_path, tiny_folder):
    """#36 item 5: the README's `sevenstep report runs/compare-baseline-vs-sgd-3v7-*` failed once a second
    comparison folder existed ("give one comparison or sweep folder")."""
    import glob
    import shutil

    from conftest import LINEAR

    file = tmp_path / "c.toml"
    file.write_text(f'name = "twice"\nsource = "folder:{tiny_folder}"\n[[runs]]\nrecipe = "{LINEAR}"\n'
                    'set = { "steps.repeat.n" = 1, "data.bs" = 8 }\n')  # fmt: skip
    _, first = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    older = first.with_name("compare-twice-20000101-000000")
    shutil.copytree(first, older)
    (older / "report.html").touch()
    os.utime(older / "report.html", (0, 0))  # written long ago
    matched = sorted(glob.glob(str(tmp_path / "runs" / "compare-twice-*")))
    assert len(matched) == 2
    result = CliRunner().invoke(app, ["report", *matched])
    assert result.exit_code == 0, result.output
    assert f"2 comparison folders given: the page is the newest's, {first}" in result.output
    assert f"page: {first / 'report.html'}" in result.output
