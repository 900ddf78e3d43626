"""Data-parallel training on 2 CPU processes (gloo), launched as a user would: `sevenstep run --processes 2`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LINEAR, wait_for
from sevenstep.data import sources
from sevenstep.errors import UsageError
from sevenstep.loop import checkpoint, distributed, run_folder, train
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
    learn = train.load_learner(run_dir)  # one process, the saved weights
    with learn.no_bar():
        preds, targs = learn.get_preds(dl=learn.dls.valid)
    assert len(targs) == n_valid
    assert (preds.argmax(1) == targs).float().mean().item() == pytest.approx(out["accuracy"], abs=1e-6)
    assert out["epochs"][-1]["accuracy"] == pytest.approx(out["accuracy"], abs=1e-6)

    # resumed on another number of processes its batch size would change: refused, saying how (#24 item 9);
    # `resume --processes 2` itself is in the test below
    with pytest.raises(UsageError, match=f"resume {run_dir} --processes 2"):
        checkpoint.prepare(run_dir, ["steps.repeat.n=3"])


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


SEEN: list[int] = []  # every process a test below started, killed at its end whatever happened


def _ranks(launcher: subprocess.Popen) -> list[int]:
    """The launched processes: torchrun's agent is the launcher's one child, the ranks are the agent's."""
    wait_for(
        lambda: _children(launcher.pid) and len(_children(_children(launcher.pid)[0])) == 2, what="ranks"
    )
    agent = _children(launcher.pid)[0]
    ranks = _children(agent)
    SEEN.extend([launcher.pid, agent, *ranks])
    return ranks


@pytest.fixture
def no_strays():
    """A test that fails half-way must not leave a stopped rank or a training one behind."""
    yield
    for pid in SEEN:
        try:  # still ours (a pid is reused only after its process is gone)
            if b"sevenstep" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass
    SEEN.clear()


def _gone(pids) -> bool:
    return not any(Path(f"/proc/{p}").exists() for p in pids)


def test_a_data_parallel_run_stops_as_a_terminal_or_a_kill_tells_it_and_says_so(tmp_path, no_strays):
    """#24 item 9: a stopped rank left the other waiting for minutes; SIGTERM or Ctrl-C to the launcher left
    both ranks training on; killing torchrun's agent orphaned them. Each is done here as a user would."""
    pytest.importorskip("accelerate")
    runs, err = tmp_path / "runs", tmp_path / "err.txt"
    env = os.environ | {distributed.TIMEOUT_ENV: "3"}
    args = [LINEAR, "--set", "steps.repeat.n=100000", "--processes", "2", "--runs-dir", str(runs),
            "--wandb", "disabled"]  # fmt: skip

    def start(*args):
        cmd = [sys.executable, "-m", "sevenstep", *args]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err.open("w"))

    def checkpointed(run_dir, after=0.0):
        file = run_dir / run_folder.CHECKPOINT
        return file.exists() and file.stat().st_mtime > after

    # a rank stops (SIGSTOP): the other says, within its timeout, who is missing and how to go on
    launcher = start("run", *args)
    _, rank1 = _ranks(launcher)
    wait_for(lambda: runs.exists() and any(checkpointed(d) for d in runs.iterdir()), what="a checkpoint")
    (run_dir,) = runs.iterdir()
    os.kill(rank1, signal.SIGSTOP)
    wait_for(lambda: "lost the others" in err.read_text(), timeout=60, what="rank 0's message")
    os.kill(rank1, signal.SIGKILL)  # (torchrun would, 30 s later)
    assert launcher.wait(timeout=60) == 1
    said = err.read_text()
    assert "process 0 of 2 lost the others (rank 1)" in said and "waits 3 s" in said, said
    assert f"sevenstep resume {run_dir} --processes 2" in said and "Traceback" not in said, said

    # resumed so, SIGTERM to the launcher alone (as `kill` sends it): both ranks save and stop, it says 130
    since = (run_dir / run_folder.CHECKPOINT).stat().st_mtime
    launcher = start("resume", str(run_dir), "--processes", "2", "--wandb", "disabled")
    ranks = _ranks(launcher)
    wait_for(lambda: checkpointed(run_dir, since), what="a checkpoint of the resumed run")
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=60) == 130
    assert _gone(ranks) and "Traceback" not in err.read_text(), err.read_text()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["stop_reason"] == "interrupted" and (run_dir / run_folder.UNFINISHED).exists()

    # torchrun's agent killed outright: its ranks are told (SIGTERM), save and stop, no orphans
    since = (run_dir / run_folder.CHECKPOINT).stat().st_mtime
    launcher = start("resume", str(run_dir), "--processes", "2", "--wandb", "disabled")
    ranks = _ranks(launcher)
    wait_for(lambda: checkpointed(run_dir, since), what="a checkpoint of the resumed run")
    os.kill(_children(launcher.pid)[0], signal.SIGKILL)
    assert launcher.wait(timeout=60) == 128 + signal.SIGKILL
    wait_for(lambda: _gone(ranks), timeout=60, what="the ranks to stop")
    assert "torchrun was stopped by SIGKILL; each process was told to stop and save" in err.read_text()
    before, result = result, json.loads((run_dir / "result.json").read_text())
    assert result["stop_reason"] == "interrupted" and len(result["epochs"]) > len(before["epochs"])

    # resumed on 2 processes, it continued: the same epochs, then more (a SIGTERM during an epoch's bookkeeping
    # waits for its checkpoint, so the interrupted result holds no epoch the checkpoint lacks)
    assert result["epochs"][: len(before["epochs"])] == before["epochs"]


def test_the_processes_sevenstep_starts_do_not_import_the_current_folders_files(tmp_path):
    """#38 item 3: a `typer.py` in a cloned experiments folder ran inside torchrun's processes and the
    dashboard's; both must import the installed library."""
    from sevenstep.cli.experiments import dashboard_command

    marker = tmp_path / "imported"
    (tmp_path / "typer.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(9)\n")
    for cmd, env in (
        (distributed.launch_command(["--help"], 1), distributed.launch_env(1)),
        (dashboard_command("x.journal", 1)[:-4] + ["--help"], None),
    ):
        done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "Usage" in done.stdout, (cmd, done.stdout[-500:], done.stderr[-2000:])
        assert not marker.exists(), cmd
