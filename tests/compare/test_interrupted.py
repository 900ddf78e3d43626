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
    assert "never" not in results and (report / "learning_curves.png").exists()
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
        assert statuses == [("baseline (l1)", "interrupted")]
    else:
        assert statuses == [("baseline (l1)", "ok"), ("short", "ok"), ("long", "interrupted")]
    assert (report / "results.md").exists() and (report / "learning_curves.png").exists()
