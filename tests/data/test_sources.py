"""Embedded sources prepared once and checked on every use; a prepare cut short leaves nothing behind."""

from __future__ import annotations

import os
import signal

from conftest import start_cli, wait_for
from sevenstep.data import sources

# 2. the prepared embedded data is checked against its manifest


def test_a_missing_embedded_image_means_preparing_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path))
    src = sources.resolve("mnist5k-3v7")
    next((src.path / "train" / "7").glob("*.png")).unlink()
    assert sources.counts(sources.resolve("mnist5k-3v7"))["train"] == {"3": 400, "7": 400}
    assert "train/7 has 399 of 400 images" in capsys.readouterr().err


def test_stale_temporary_folders_are_cleaned_at_the_next_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path))
    (tmp_path / ".mnist5k.tmp-left-by-a-kill" / "train").mkdir(parents=True)
    (tmp_path / ".mnist5k-3v7.tmp-being-written").mkdir()  # another source's, under its own lock: not ours
    sources.resolve("mnist5k")
    assert sorted(p.name for p in tmp_path.glob(".mnist5k*") if p.is_dir()) == [
        ".mnist5k-3v7.tmp-being-written"
    ]


def test_data_show_stopped_by_sigterm_leaves_no_half_folder(tmp_path):
    env = os.environ | {"SEVENSTEP_CACHE": str(tmp_path / "cache")}
    proc = start_cli("data", "show", "mnist5k", "--out", str(tmp_path / "grid.png"), env=env)
    wait_for(lambda: any((tmp_path / "cache").glob(".mnist5k.tmp-*/*/*/*.png")), what="the prepare to start")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert (
        not list((tmp_path / "cache").glob(".mnist5k.tmp-*"))
        and not (tmp_path / "cache" / "mnist5k").exists()
    )


def test_a_name_that_is_not_utf8_is_one_line_naming_it(tmp_path):
    """#38 item 16: a class folder or image named in Latin-1 gave UnicodeEncodeError from run, data show and
    report: class names and items reach CSV, JSON, W&B and the terminal, which are UTF-8."""
    from typer.testing import CliRunner

    from conftest import LINEAR, make_folder
    from sevenstep.cli import app

    root = make_folder(tmp_path / "latin1", classes=("a", os.fsdecode(b"caf\xe9")))
    for args in (["data", "show", f"folder:{root}"],
                 ["run", LINEAR, "--set", f"data.source=folder:{root}", "--wandb", "disabled"]):  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert (
            "have a file or folder name that is not UTF-8" in result.output and "caf\\xe9/" in result.output
        )
