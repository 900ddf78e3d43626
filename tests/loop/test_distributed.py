"""Data-parallel training on 2 CPU processes (gloo), launched as a user would: `sevenstep run --processes 2`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sevenstep.data import sources
from sevenstep.errors import UsageError
from sevenstep.loop import checkpoint, run_folder
from sevenstep.tracking import local_runs

CNN = str(Path("experiments/cnn_3v7.toml").resolve())


def test_a_two_process_run_writes_one_run_whose_metrics_cover_the_validation_set_once(tmp_path):
    pytest.importorskip("accelerate")
    cmd = [sys.executable, "-m", "sevenstep", "run", CNN, "--set", "steps.repeat.n=2", "--set", "steps.repeat.name=epochs", "--set",
           "steps.predict.channels=[8, 16, 32]", "--processes", "2", "--json", "--runs-dir", str(tmp_path / "runs"),
           "--wandb-dir", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "batch size 64 each, 128 in all" in done.stderr
    out = json.loads(done.stdout)
    assert out["processes"] == 2 and out["stop_reason"] == "epochs_done" and len(out["epochs"]) == 2

    (run_dir,) = (tmp_path / "runs").iterdir()  # rank 0 alone writes
    assert Path(out["run_dir"]) == run_dir and (run_dir / "model.pth").exists()
    (logged,) = local_runs.list_runs(tmp_path / "wandb")  # and logs
    assert logged["config"]["data.effective_bs"] == 128 and logged["summary"]["accuracy"] == out["accuracy"]

    n_valid = sum(sources.counts(sources.resolve("mnist5k-3v7"))["valid"].values())
    assert out["n_valid"] == n_valid == 200  # each validation image counted once, no padding
    learn = run_folder.load_learner(run_dir)  # one process, the saved weights
    with learn.no_bar():
        preds, targs = learn.get_preds(dl=learn.dls.valid)
    assert len(targs) == n_valid
    assert (preds.argmax(1) == targs).float().mean().item() == pytest.approx(out["accuracy"], abs=1e-6)
    assert out["epochs"][-1]["accuracy"] == pytest.approx(out["accuracy"], abs=1e-6)

    # resumed on another number of processes its batch size would change: refused, saying how (#24 item 9)
    resume = [sys.executable, "-m", "sevenstep", "resume", str(run_dir), "--set", "steps.repeat.n=3", "--json",
              "--wandb-dir", str(tmp_path)]  # fmt: skip
    with pytest.raises(UsageError, match=f"resume {run_dir} --processes 2"):
        checkpoint.prepare(run_dir, ["steps.repeat.n=3"])
    again = subprocess.run(resume + ["--processes", "2"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    out = json.loads(again.stdout)
    assert out["processes"] == 2 and out["resumed_from"] == 2 and len(out["epochs"]) == 3
    assert (
        out["epochs"][:2]
        == json.loads((run_dir / "finished-at-epoch-2" / "result.json").read_text())["epochs"]
    )
