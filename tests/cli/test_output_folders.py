"""Output folders are created and written to before anything trains."""

from __future__ import annotations

from typer.testing import CliRunner

from conftest import LINEAR
from sevenstep.cli import app

# 7. output folders are created and written to before training


def test_a_runs_dir_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["run", LINEAR, "--runs-dir", str(tmp_path / "file" / "runs"),
                                      "--wandb-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2 and "cannot write there" in result.output
    assert "epoch" not in result.output and not (tmp_path / "wandb").exists()  # nothing trained or logged


def test_pictures_without_out_go_under_runs_not_the_current_folder(tmp_path, tiny_folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["data", "show", f"folder:{tiny_folder}"])
    assert result.exit_code == 0, result.output
    (png,) = (tmp_path / "runs").glob("*-samples.png")
    assert str(png.relative_to(tmp_path)) in result.output
    assert not list(tmp_path.glob("*.png"))  # nothing left in the current folder, which git may track
