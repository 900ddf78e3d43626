"""Signals at awkward moments: a save is never cut in half, a finished run never lost (sevenstep/utils/signals.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from conftest import LINEAR, start_cli, wait_for
from sevenstep import recipe
from sevenstep.loop import run_folder, train
from sevenstep.tracking import local_runs
from sevenstep.utils import signals

# 5. a second Ctrl-C, or one during saving, never loses a finished run


def test_signals_during_a_deferred_block_wait_for_it():
    with signals.deferred() as held:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run by now: nothing was raised
    assert held == [signal.SIGINT]
    with pytest.raises(KeyboardInterrupt):  # outside the block, Ctrl-C is Ctrl-C again
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_ctrl_c_while_saving_waits_for_the_save_then_stops(tmp_path, monkeypatch):
    real_save = run_folder.save

    def save_interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return real_save(*a, **k)

    monkeypatch.setattr(run_folder, "save", save_interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.run(recipe.load(LINEAR, ["steps.repeat.n=1"]), runs_dir=tmp_path)
    (saved,) = tmp_path.iterdir()
    assert json.loads((saved / "result.json").read_text())["stop_reason"] == "epochs_done"
    assert (saved / "model.pth").exists()


def test_two_quick_ctrl_cs_still_save_the_run(tmp_path):
    proc = start_cli("run", LINEAR, "--set", "steps.repeat.n=100000", "--set", "data.bs=8",
                "--runs-dir", str(tmp_path / "runs"), "--wandb-dir", str(tmp_path))  # fmt: skip
    wait_for(
        lambda: any(f.stat().st_size > 20_000 for f in (tmp_path / "wandb").rglob("*.wandb")), what="training"
    )
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    (saved,) = (tmp_path / "runs").iterdir()
    assert json.loads((saved / "result.json").read_text())["stop_reason"] == "interrupted"
    assert not list((tmp_path / "runs").glob(".tmp-*"))
    (info,) = local_runs.list_runs(tmp_path / "wandb")
    assert info["state"] == "finished" and info["stop_reason"] == "interrupted"


def test_a_signal_in_a_nested_deferred_block_reaches_the_outer_one():
    with signals.deferred() as outer:
        with signals.deferred() as inner:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert inner is outer
    assert outer == [signal.SIGINT]


def test_an_interrupted_run_reports_its_last_complete_epochs_weights(tmp_path):
    """Ctrl-C mid-epoch: the result (accuracy, model.pth) is the last complete epoch's, as its checkpoint
    is, not the half-trained weights of the epoch in progress."""
    from fastai.callback.core import Callback

    class CtrlCMidEpoch3(Callback):
        def after_batch(self):
            if self.training and self.epoch == 2 and self.iter == 3:
                raise KeyboardInterrupt

    from sevenstep.loop import checkpoint

    sets = ["steps.repeat.n=5", "data.bs=16"]
    run = train.run(recipe.load(LINEAR, sets), [CtrlCMidEpoch3, checkpoint.Checkpointer], runs_dir=tmp_path)
    assert run.stop_reason == "interrupted" and len(run.epochs) == 2 and run.weights_epoch == 2
    assert run.accuracy == pytest.approx(run.epochs[-1]["accuracy"], abs=1e-6)
    assert "the result is epoch 2's weights" in run.message
    saved = torch.load(Path(run.run_dir) / "model.pth", weights_only=True)
    state = checkpoint.load(run.run_dir)["model"]
    assert all(torch.equal(saved[k], state[k]) for k in saved)


def test_ctrl_c_during_an_epochs_bookkeeping_stops_the_run_once_its_checkpoint_is_written(tmp_path):
    """A real SIGINT after epoch 2's row is in the run log but before the checkpointer has saved it (found under
    load in the data-parallel stop test): the result and the checkpoint both end at epoch 2, so `resume`
    continues from there instead of training epoch 2 again."""
    from fastai.callback.core import Callback

    from sevenstep.callbacks import CHECKPOINT_ORDER, RUN_LOG_ORDER
    from sevenstep.loop import checkpoint

    class CtrlCAfterTheRowOfEpoch2(Callback):
        order = (RUN_LOG_ORDER + CHECKPOINT_ORDER) // 2

        def after_epoch(self):
            if self.epoch == 1:
                os.kill(os.getpid(), signal.SIGINT)  # as a terminal sends it
                time.sleep(0.01)  # the handler runs here, or (held) once the checkpoint is written

    r = recipe.load(LINEAR, ["steps.repeat.n=5"])
    run = train.run(r, [CtrlCAfterTheRowOfEpoch2, checkpoint.Checkpointer], runs_dir=tmp_path, pictures=False)
    assert run.stop_reason == "interrupted" and len(run.epochs) == 2
    state = checkpoint.load(run.run_dir)
    assert state["epoch"] == 2 and len(state["callbacks"]["run_log"]["epochs"]) == 2


def test_a_whole_block_passes_on_the_signal_a_worker_does_not_ignore():
    """#38 item 9, cause B: a worker ignores the terminal's SIGINT and stops on its parent's SIGTERM; when both
    came during one `whole()` block, only the first (SIGINT) was sent again, and the worker trained on."""
    got = []
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        with signals.whole():
            signal.raise_signal(signal.SIGINT)  # the terminal's Ctrl-C reaches the whole process group
            signal.raise_signal(signal.SIGTERM)  # then the parent passes it on
            assert got == []  # held while the block runs
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)
    assert got == [signal.SIGTERM]


STOP_DROPPED = """
import gc, signal, sys, weakref
from sevenstep import recipe
from sevenstep.loop import train
from sevenstep.utils import signals

signals.stop_on_sigterm()
class Held: pass
held = Held()
weakref.finalize(held, signal.raise_signal, signal.SIGTERM)  # the signal lands while Python runs a callback
del held
gc.collect()
print("the KeyboardInterrupt was dropped", flush=True)
r = recipe.load(sys.argv[1], ["steps.repeat.n=300", "data.bs=8", f"data.source=folder:{sys.argv[2]}"])
print("stop:", train.run(r, runs_dir=sys.argv[3]).stop_reason)
"""


def test_a_workers_stop_that_python_dropped_is_honoured_at_the_next_batch(tmp_path, tiny_folder):
    """#38 item 9, cause A: the worker's SIGTERM handler raised KeyboardInterrupt inside a weakref callback
    during garbage collection; Python dropped it ("Exception ignored"), the handler had already ignored
    further signals, and the worker trained every remaining run."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", STOP_DROPPED, LINEAR, str(tiny_folder), str(tmp_path / "runs")],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert "the KeyboardInterrupt was dropped" in done.stdout, done.stderr[-3000:]
    assert "Exception ignored" in done.stderr  # what Python does with it: the cause, reproduced
    assert "stop: interrupted" in done.stdout, (done.stdout[-2000:], done.stderr[-2000:])
