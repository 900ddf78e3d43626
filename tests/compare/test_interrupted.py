"""A comparison stopped at any moment: exit 130, the report for what finished, W&B runs finished."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import LINEAR, start_cli, wait_for
from sevenstep.cli import app
from sevenstep.loop import train
from sevenstep.tracking import local_runs

# 4. interrupting a comparison: exit 130, the report for what finished, W&B runs finished as interrupted


def _comparison(tmp_path: Path, tiny_folder: Path) -> Path:
    file = tmp_path / "cmp.toml"
    file.write_text(
        f'name = "stopped"\nsource = "folder:{tiny_folder}"\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "short"\nset = {{ "steps.repeat.n" = 1, "data.bs" = 8 }}\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "long"\nset = {{ "steps.repeat.n" = 100000, "data.bs" = 8 }}\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "never"\nset = {{ "steps.repeat.n" = 1, "data.bs" = 8 }}\n'
    )
    return file


def test_ctrl_c_during_a_comparisons_training_exits_130_with_the_report(tmp_path, tiny_folder):
    proc = start_cli("compare", str(_comparison(tmp_path, tiny_folder)), "--runs-dir", str(tmp_path / "runs"),
                "--wandb-dir", str(tmp_path))  # fmt: skip
    wait_for(lambda: len(list((tmp_path / "wandb").glob("offline-run-*"))) >= 3, what="the long run to start")
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (report,) = (tmp_path / "runs").glob("compare-stopped-*")
    results = {r["method"]: r for r in json.loads((report / "results.json").read_text())["results"]}
    assert results["short"]["status"] == "ok" and results["long"]["status"] == "interrupted"
    assert results["never"]["status"] == "missing" and (report / "learning_curves.png").exists()
    assert "PARTIAL: 2 run(s) have not finished (long seed 42, never seed 42)" in out
    runs = local_runs.list_runs(tmp_path / "wandb")
    # the baseline, two runs, and the comparison's table (job type comparison)
    assert len(runs) == 4 and {r["state"] for r in runs} == {"finished"}
    assert sorted(r["stop_reason"] for r in runs if r["job_type"] == "sgd") == ["epochs_done", "interrupted"]


@pytest.mark.parametrize("where", ["baseline", "build_learner"])
def test_ctrl_c_outside_training_still_writes_the_report(tmp_path, tiny_folder, monkeypatch, where):
    from sevenstep.compare import baseline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    if where == "baseline":
        monkeypatch.setattr(baseline, "run", interrupted)
    else:  # the second recipe is interrupted while its Learner is being built
        calls = []
        real = train.build_learner
        monkeypatch.setattr(train, "build_learner", lambda *a, **k: calls.append(1) or (interrupted() if len(calls) == 2 else real(*a, **k)))  # fmt: skip
    result = CliRunner().invoke(app, ["compare", str(_comparison(tmp_path, tiny_folder)), "--runs-dir",
                                      str(tmp_path / "runs"), "--wandb", "disabled"])  # fmt: skip
    assert result.exit_code == 130, result.output
    (report,) = (tmp_path / "runs").glob("compare-stopped-*")
    statuses = [
        (r["method"], r["status"]) for r in json.loads((report / "results.json").read_text())["results"]
    ]
    if where == "baseline":
        assert statuses == [("baseline (l1)", "interrupted"), ("short", "missing"), ("long", "missing"),
                            ("never", "missing")]  # fmt: skip
    else:
        assert statuses == [
            ("baseline (l1)", "ok"),
            ("short", "ok"),
            ("long", "interrupted"),
            ("never", "missing"),
        ]
    assert (report / "results.md").exists() and (report / "learning_curves.png").exists()


def test_a_comparison_whose_worker_was_killed_exits_1_naming_the_missing_runs(tmp_path, tiny_folder):
    """#38 item 8: a SIGKILLed worker's comparison exited 0 with a final-looking table that lacked a seed."""
    import psutil

    proc = start_cli("compare", str(_comparison(tmp_path, tiny_folder)), "--runs-dir", str(tmp_path / "runs"),
                     "--wandb", "disabled", "--workers", "2")  # fmt: skip
    wait_for(
        lambda: list((tmp_path / "runs").glob("compare-stopped-*/long-*/checkpoint.pt")), what="long to train"
    )
    (long_dir,) = (tmp_path / "runs").glob("compare-stopped-*/long-*")
    trainer = psutil.Process(_owner(long_dir))  # the worker training it holds its lock open
    assert trainer in psutil.Process(proc.pid).children(recursive=True)
    trainer.kill()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, err
    assert "1 run(s) did not finish: long seed 42" in err and "Run the same command again" in err, err
    assert "PARTIAL: 1 run(s) have not finished (long seed 42)" in out and "Traceback" not in err
    (report,) = (tmp_path / "runs").glob("compare-stopped-*")
    summary = json.loads((report / "results.json").read_text())
    assert summary["partial"] == ["long seed 42"] and (report / "UNFINISHED").exists()


def _owner(run_dir: Path) -> int | None:
    """The process holding a run folder's lock file open (the one training it)."""
    import psutil

    for p in psutil.process_iter():
        try:
            if any(f.path == str(run_dir / ".owner.lock") for f in p.open_files()):
                return p.pid
        except psutil.Error:
            continue
    return None


def test_a_shared_storage_refuses_a_finished_or_edited_comparison_and_leaves_no_empty_folder(
    tmp_path, tiny_folder
):
    """#38 items 12 and 18: run again on a finished comparison's --storage, it trained nothing and wrote a new
    folder whose runs were the old one's; an edited one, or a storage that cannot be opened, left a folder
    holding only UNFINISHED."""
    file = tmp_path / "cmp.toml"
    run = f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "short"\nset = {{ "steps.repeat.n" = 1, "data.bs" = 8 }}\n'
    file.write_text(f'name = "shared"\nsource = "folder:{tiny_folder}"\n{run}')
    storage = f"sqlite:///{tmp_path / 'shared.db'}"

    def compare(runs: str, store: str = storage):
        return CliRunner().invoke(app, ["compare", str(file), "--runs-dir", str(tmp_path / runs), "--storage",
                                        store, "--wandb", "disabled"])  # fmt: skip

    first = compare("first")
    assert first.exit_code == 0, first.output
    (report,) = (tmp_path / "first").glob("compare-shared-*")
    again = compare("second")
    assert again.exit_code == 2 and "comparison 'shared' has finished there" in again.output, again.output
    assert f"its report is {report}" in again.output and not list((tmp_path / "second").glob("compare-*"))
    file.write_text(file.read_text().replace('"steps.repeat.n" = 1', '"steps.repeat.n" = 2'))
    edited = compare("third")
    assert (
        edited.exit_code == 2
        and "holds a comparison named 'compare-shared' with other methods" in edited.output
    )
    assert not list((tmp_path / "third").glob("compare-*"))
    unreachable = compare("fourth", "postgresql+psycopg://me:secret@127.0.0.1:1/db")
    assert unreachable.exit_code == 2 and "cannot open it" in unreachable.output
    assert not list((tmp_path / "fourth").glob("compare-*"))
