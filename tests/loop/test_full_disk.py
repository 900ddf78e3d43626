"""A full disk (#24 item 11), on a real one: a small tmpfs mounted for the test and filled up. The message names
the file; a full cache disk costs no run; a run stopped by a full disk while saving is finished by `resume`."""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import LINEAR
from sevenstep.cli import app
from sevenstep.loop import run_folder


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True)
    if done.returncode:
        pytest.skip(
            f"cannot mount a small tmpfs to fill up (needs root): {done.stderr.decode().strip()[:120]}"
        )
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Every free byte of `disk` in one file (removed to free the disk again)."""
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as e:
            assert e.errno == errno.ENOSPC
            f.truncate(f.tell())  # (what could not be written is dropped)
    return filler


def test_a_full_cache_disk_costs_no_run(tmp_path, small_disk, tiny_folder, monkeypatch):
    monkeypatch.setenv("SEVENSTEP_CACHE", str(small_disk / "cache"))
    fill(small_disk)
    said = CliRunner().invoke(app, ["run", LINEAR, "--set", f"data.source=folder:{tiny_folder}", "--set",
                                    "steps.repeat.n=1", "--runs-dir", str(tmp_path / "runs"), "--wandb", "disabled"])  # fmt: skip
    assert said.exit_code == 0, said.output
    assert (
        f"could not be cached in {small_disk / 'cache' / 'decoded'} (No space left on device)" in said.output
    )
    assert "training from memory" in said.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "result.json").read_text())["stop_reason"] == "epochs_done"


def test_a_disk_that_fills_while_a_run_is_saved_loses_nothing(tmp_path, small_disk):
    """The disk fills between the last epoch and the final save (a step's after_fit fills it, once, from a plugin):
    one line naming the file and what to do, exit 2; the run keeps its checkpoint, and once there is room again
    `resume` finishes it: result, weights, epochs and pictures all whole."""
    (tmp_path / "filler.py").write_text(
        "import errno\nfrom pathlib import Path\nfrom sevenstep.registry import option\n"
        "from sevenstep.steps.stop import Stop\n\n"
        "class FillDisk(Stop):\n    def after_fit(self):\n"
        f"        if Path({str(tmp_path / 'filled')!r}).exists():\n            return\n"
        f"        Path({str(tmp_path / 'filled')!r}).touch()\n"
        "        with open(self.learn.run_info.run_dir.parent / 'filler', 'wb') as f:\n"
        "            try:\n                while True:\n                    f.write(bytes(65536)); f.flush()\n"
        "            except OSError as e:\n                assert e.errno == errno.ENOSPC\n\n"
        "@option('stop')\ndef fill_disk() -> Stop:\n    return FillDisk()\n"
    )
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'plugins = ["filler.py"]\n' + Path(LINEAR).read_text().replace('"epochs_done"', '"fill_disk"')
    )
    runs = small_disk / "runs"
    said = CliRunner().invoke(app, ["run", str(recipe), "--set", "steps.repeat.n=2", "--runs-dir", str(runs),
                                    "--wandb", "disabled"])  # fmt: skip
    assert said.exit_code == 2 and "Traceback" not in said.output, said.output
    (run_dir,) = [d for d in runs.iterdir() if d.is_dir()]
    (line,) = [x for x in said.output.splitlines() if x.startswith("error:")]
    assert f"No space left on device: {run_dir}/" in line and "sevenstep resume RUN_FOLDER" in line
    assert (run_dir / run_folder.UNFINISHED).exists() and (run_dir / run_folder.CHECKPOINT).exists()
    assert not list(run_dir.glob(".*.tmp"))  # no half-written file left behind

    (runs / "filler").unlink()
    resumed = CliRunner().invoke(app, ["resume", str(run_dir), "--wandb", "disabled"])
    assert resumed.exit_code == 0, resumed.output
    result = json.loads((run_dir / "result.json").read_text())
    assert result["stop_reason"] == "epochs_done" and len(result["epochs"]) == 2
    assert not (run_dir / run_folder.UNFINISHED).exists()
    for name in ("model.pth", "epochs.csv", "valid_outcomes.csv", "top_losses.png", "confusion_matrix.png"):
        assert (run_dir / name).stat().st_size > 0, name
