"""`sevenstep runs` lists every local W&B run, a killed or unreadable one included."""

from __future__ import annotations

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
    assert killed["state"] != "finished" and killed["name"] == "fastbook-linear-3v7"
    # the path is the run's own folder (what predict, resume and report take), not its W&B log's
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert killed["path"] == str(run_dir) and killed["wandb_dir"].startswith(str(tmp_path / "wandb"))
