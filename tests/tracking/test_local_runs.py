"""`sevenstep runs` lists every local W&B run, a killed or unreadable one included; a resumed run is one row."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from typer.testing import CliRunner

from conftest import LINEAR, start_cli, wait_for
from sevenstep.cli import app
from sevenstep.tracking import local_runs

# 3. `sevenstep runs` lists a killed run, and an unreadable one, without crashing


def test_runs_lists_a_killed_run_and_an_unreadable_one(tmp_path):
    proc = start_cli("run", LINEAR, "--set", "steps.repeat.n=100000", "--set", "data.bs=8",
                "--runs-dir", str(tmp_path / "runs"), "--wandb-dir", str(tmp_path))  # fmt: skip
    wait_for(
        lambda: any(f.stat().st_size > 20_000 for f in (tmp_path / "wandb").rglob("*.wandb")), what="training"
    )
    (live,) = local_runs.list_runs(tmp_path / "wandb")
    assert live["state"] == "running"  # its folder's owner lock is held
    proc.kill()
    proc.communicate(timeout=60)
    broken = tmp_path / "wandb" / "offline-run-20260101_000000-broken"
    broken.mkdir()
    (broken / "run-broken.wandb").write_bytes(b"\x00garbage" * 100)
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "wandb")])
    assert result.exit_code == 0, result.output
    listed = {r["path"]: r for r in local_runs.list_runs(tmp_path / "wandb")}
    assert listed[str(broken)]["state"] == "unreadable"
    (killed,) = [r for p, r in listed.items() if p != str(broken)]
    # its log says `running` for ever; nothing holds its folder's lock any more (#24 item 4)
    assert killed["state"] == "killed" and killed["name"] == "fastbook-linear-3v7_n-100000_bs-8"
    assert "killed" in result.output
    # the path is the run's own folder (what predict, resume and report take), not its W&B log's
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert killed["path"] == str(run_dir) and killed["wandb_dir"].startswith(str(tmp_path / "wandb"))
    # #38 item 19: a process killed sooner leaves less of its log; whatever is left, the row says `killed` or
    # `unreadable`, as docs/tracking.md promises (it said `unknown`)
    (log,) = Path(killed["wandb_dir"]).glob("*.wandb")
    whole = log.read_bytes()
    for cut in (200, 1000, 4000, 12000):
        early = tmp_path / "early" / f"offline-run-20260101_00000{len(str(cut))}-cut{cut}"
        early.mkdir(parents=True)
        (early / f"run-cut{cut}.wandb").write_bytes(whole[:cut])
    states = {r["wandb_dir"]: r["state"] for r in local_runs.list_runs(tmp_path / "early")}
    assert set(states.values()) <= {"killed", "unreadable"}, states
    shutil.rmtree(tmp_path / "early")

    # #38 item 10: a FIFO planted as the folder's lock hung `runs`, `leet` and `report --group` for ever
    lock = run_dir / ".owner.lock"
    lock.unlink()
    os.mkfifo(lock)
    listing = subprocess.run([sys.executable, "-m", "sevenstep", "runs", str(tmp_path / "wandb")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert listing.returncode == 0 and "killed" in listing.stdout, listing.stderr
    lock.unlink()

    # resumed, it has a second log with the same run id: still one row, finished, saying where it resumed
    done = torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"]
    resumed = CliRunner().invoke(
        app, ["resume", str(run_dir), "--set", f"steps.repeat.n={done + 1}", "--wandb-dir", str(tmp_path)]
    )
    assert resumed.exit_code == 0, resumed.output
    (row,) = [r for r in local_runs.list_runs(tmp_path / "wandb") if r["path"] != str(broken)]
    assert row["state"] == "finished" and len(row["wandb_dirs"]) == 2 and row["started"] == killed["started"]
    shown = CliRunner().invoke(app, ["runs", str(tmp_path / "wandb"), "--name", "linear"]).output
    (line,) = [line for line in shown.splitlines() if str(run_dir) in line]
    assert f"epochs_done (resumed after epoch {done})" in line


def test_a_moved_project_still_lists_its_runs_folders(tmp_path, tiny_folder):
    """#36 item 19: W&B recorded run folders as absolute paths, so a moved project listed dead paths."""
    project = tmp_path / "project"
    result = CliRunner().invoke(app, ["run", LINEAR, "--set", f"data.source=folder:{tiny_folder}", "--set",
                                      "steps.repeat.n=1", "--wandb-dir", str(project), "--runs-dir",
                                      str(project / "runs")])  # fmt: skip
    assert result.exit_code == 0, result.output
    shutil.move(project, tmp_path / "moved")
    (row,) = local_runs.list_runs(tmp_path / "moved" / "wandb")
    assert Path(row["path"]).parent == (tmp_path / "moved" / "runs").resolve()
    assert (Path(row["path"]) / "result.json").is_file()
