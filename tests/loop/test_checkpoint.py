"""Checkpoints and exact resume: a run stopped after epoch k and resumed ends exactly as if left alone."""

from __future__ import annotations

import functools
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fastai.callback.core import Callback
from typer.testing import CliRunner

from sevenstep import recipe
from sevenstep.cli import app
from sevenstep.errors import UsageError
from sevenstep.loop import checkpoint, run_folder, train
from sevenstep.tracking import local_runs
from sevenstep.tracking.layer_stats import LayerStats

EXPERIMENTS = Path("experiments").resolve()
LINEAR = str(Path("tests/recipes/linear_20_epochs.toml").resolve())  # fastbook's linear recipe at 20 epochs


class StopAfter(Callback):
    """Ctrl-C right after epoch k has been checkpointed, as a user would press it."""

    order = 2000

    def __init__(self, k):
        self.k = k

    def after_epoch(self):
        if self.epoch + 1 == self.k:
            raise KeyboardInterrupt


def _metrics(run) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "seconds"} for e in run.epochs]


def _same_weights(a, b) -> bool:
    sa, sb = a.learn.model.state_dict(), b.learn.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _interrupted_then_resumed(r, k, tmp_path, cbs=()):
    stopped = train.run(r, [checkpoint.Checkpointer, *cbs, StopAfter(k)], runs_dir=tmp_path / "stopped")
    assert stopped.stop_reason == "interrupted" and len(stopped.epochs) == k
    assert (Path(stopped.run_dir) / run_folder.UNFINISHED).exists()
    again, state = checkpoint.prepare(stopped.run_dir)
    return train.run(again, [checkpoint.Checkpointer, *cbs], resume=(Path(stopped.run_dir), state))


CASES = {
    "plain sgd": (LINEAR, ["steps.repeat.n=4"]),
    "adam, one-cycle, augmentation": (
        str(EXPERIMENTS / "cnn_3v7.toml"),
        ["steps.repeat.n=4", "steps.predict.channels=[8, 16]"],
    ),
    "dropout (#37)": (
        str(EXPERIMENTS / "fastbook_simple_net.toml"),
        ["steps.repeat.n=4", "steps.predict.dropout=0.5"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_resumed_run_ends_exactly_as_the_run_left_alone(tmp_path, case):
    file, sets = CASES[case]
    r = recipe.load(file, sets)
    alone = train.run(r, [checkpoint.Checkpointer, LayerStats], runs_dir=tmp_path / "alone")
    resumed = _interrupted_then_resumed(r, 2, tmp_path, [LayerStats])
    assert _metrics(resumed) == _metrics(alone) and _same_weights(resumed, alone)
    # the per-layer records (#37) continue as well: the resumed run's are the lone run's
    assert resumed.learn.layer_stats.rows == alone.learn.layer_stats.rows
    assert resumed.stop_reason == "epochs_done" and resumed.resumed_from == 2
    saved = json.loads((Path(resumed.run_dir) / "result.json").read_text())
    assert saved["resumed_from"] == 2 and saved["stop_reason"] == "epochs_done"
    assert not (Path(resumed.run_dir) / run_folder.UNFINISHED).exists()


def test_a_patience_stop_resumes_with_its_wait_count(tmp_path):
    sets = ["steps.repeat.n=40", "steps.step.lr=3", "steps.stop.name=patience", "steps.stop.metric=accuracy",
            "steps.stop.patience=3"]  # fmt: skip
    r = recipe.load(LINEAR, sets)
    alone = train.run(r, runs_dir=tmp_path / "alone")
    assert alone.stop_reason == "patience"
    accs = [e["accuracy"] for e in alone.epochs]
    # stop just after an epoch that did not improve: the patience rule is then part-way through its wait
    k = next(i + 1 for i in range(1, len(accs) - 1) if accs[i] <= max(accs[:i]))
    resumed = _interrupted_then_resumed(r, k, tmp_path)
    assert _metrics(resumed) == _metrics(alone) and _same_weights(resumed, alone)
    assert resumed.stop_reason == "patience"


class Watch(Callback):
    """The epoch checkpoint.pt holds just after each epoch (after the Checkpointer's turn)."""

    order = checkpoint.Checkpointer.order + 1

    def __init__(self):
        self.seen = []

    def after_epoch(self):
        self.seen.append(_checkpoint_epoch([self.learn.run_info.run_dir]))


class CtrlCInEpoch(Callback):
    """Ctrl-C in the middle of epoch k (at its second batch): the weights are then half-way to epoch k."""

    order = 2000

    def __init__(self, k):
        self.k = k

    def before_batch(self):
        if self.training and self.epoch + 1 == self.k and self.iter == 1:
            raise KeyboardInterrupt


def test_checkpoints_are_written_by_time_after_the_first_epoch_and_at_the_end(tmp_path):
    watch = Watch()
    r = recipe.load(LINEAR, ["steps.repeat.n=5"])
    train.run(r, [functools.partial(checkpoint.Checkpointer, every=3600), watch], runs_dir=tmp_path)
    assert watch.seen == [1, 1, 1, 1, 5]  # an hour apart: the first epoch's, then the last one's
    watch = Watch()
    train.run(r, [functools.partial(checkpoint.Checkpointer, every=0), watch], runs_dir=tmp_path)
    assert watch.seen == [1, 2, 3, 4, 5]


def test_ctrl_c_between_writes_saves_the_last_whole_epoch_and_resumes_exactly(tmp_path):
    r = recipe.load(LINEAR, ["steps.repeat.n=6", "data.bs=64"])
    alone = train.run(r, [checkpoint.Checkpointer], runs_dir=tmp_path / "alone")
    rarely = functools.partial(checkpoint.Checkpointer, every=3600)
    stopped = train.run(r, [rarely, CtrlCInEpoch(4)], runs_dir=tmp_path / "stopped")
    assert stopped.stop_reason == "interrupted" and len(stopped.epochs) == 3
    # the result's epochs and weights are the checkpoint's: epoch 3, written when Ctrl-C came
    saved = torch.load(Path(stopped.run_dir) / run_folder.CHECKPOINT, weights_only=True)
    assert saved["epoch"] == 3 and all(
        torch.equal(saved["model"][k], v) for k, v in stopped.learn.model.state_dict().items()
    )
    again, state = checkpoint.prepare(stopped.run_dir)
    resumed = train.run(again, [rarely], resume=(Path(stopped.run_dir), state))
    assert (
        _metrics(resumed) == _metrics(alone) and _same_weights(resumed, alone) and resumed.resumed_from == 3
    )


@pytest.mark.parametrize("every", [0, 3600])
def test_the_epoch_a_stop_rule_ends_is_in_the_checkpoint(tmp_path, every):
    # the stop rule (order 63) raises before the Checkpointer's (64) turn in that epoch: it is kept all the same
    r = recipe.load(LINEAR, ["steps.repeat.n=30", "steps.stop.name=target", "steps.stop.value=0.9"])
    run = train.run(r, [functools.partial(checkpoint.Checkpointer, every=every)], runs_dir=tmp_path)
    assert run.stop_reason == "target" and 1 < len(run.epochs) < 30
    saved = torch.load(Path(run.run_dir) / run_folder.CHECKPOINT, weights_only=True)
    assert saved["epoch"] == len(run.epochs) and saved["callbacks"]["run_log"]["epochs"] == run.epochs


def test_checkpoint_every_is_refused_when_it_is_not_seconds(monkeypatch):
    monkeypatch.setenv("SEVENSTEP_CHECKPOINT_EVERY", "soon")
    with pytest.raises(UsageError, match="give seconds, 0 or more"):
        checkpoint.Checkpointer()
    result = CliRunner().invoke(app, ["run", LINEAR, "--checkpoint-every", "-1"])
    assert result.exit_code == 2 and "Traceback" not in result.output


def _checkpoint_epoch(run_dirs) -> int:
    for d in run_dirs:
        try:
            return torch.load(d / run_folder.CHECKPOINT, weights_only=True)["epoch"]
        except Exception:
            pass
    return 0


def test_a_run_killed_with_sigkill_resumes_from_its_last_checkpoint(tmp_path):
    sets = ["--set", "steps.repeat.n=8", "--set", "data.bs=8"]
    alone = CliRunner().invoke(app, ["run", LINEAR, *sets, "--json", "--runs-dir", str(tmp_path / "alone"),
                                     "--wandb", "disabled"])  # fmt: skip
    assert alone.exit_code == 0, alone.output
    cmd = [sys.executable, "-m", "sevenstep", "run", LINEAR, *sets, "--runs-dir", str(tmp_path / "runs"),
           "--wandb-dir", str(tmp_path)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _checkpoint_epoch((tmp_path / "runs").glob("*")) < 2 and time.time() < deadline:
        time.sleep(0.05)
    # while it trains, a second process may not train into the same folder (the run holds its lock)
    (training,) = (tmp_path / "runs").iterdir()
    twice = CliRunner().invoke(app, ["resume", str(training), "--wandb", "disabled"])
    assert proc.poll() is None, "the run ended before the second resume was tried"
    assert twice.exit_code == 2 and "is being trained by another process" in twice.output
    proc.send_signal(signal.SIGKILL)  # and the OS releases its lock: the resume below may go on
    proc.communicate(timeout=30)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / run_folder.UNFINISHED).exists() and not (run_dir / "result.json").exists()
    k = _checkpoint_epoch([run_dir])
    assert 2 <= k < 8

    (run_dir / ".checkpoint.pt-killed.tmp").write_bytes(b"half")  # as a kill during a checkpoint write leaves
    resumed = CliRunner().invoke(app, ["resume", str(run_dir), "--json", "--wandb-dir", str(tmp_path)])
    assert resumed.exit_code == 0, resumed.output
    assert not list(run_dir.glob(".*.tmp"))
    out, expected = json.loads(resumed.stdout), json.loads(alone.stdout)
    strip = lambda es: [{k: v for k, v in e.items() if k != "seconds"} for e in es]  # noqa: E731
    assert strip(out["epochs"]) == strip(expected["epochs"]) and out["resumed_from"] == k
    a = torch.load(Path(expected["run_dir"]) / "model.pth", weights_only=True)
    b = torch.load(run_dir / "model.pth", weights_only=True)
    assert all(torch.equal(a[n], b[n]) for n in a)

    # offline W&B: the resumed part is a second log of the same run; together, every epoch once
    (logged,) = local_runs.list_runs(tmp_path / "wandb")  # one row: two logs of one run id
    assert len(logged["wandb_dirs"]) == 2 and logged["state"] == "finished"
    epochs = []
    for f in sorted((tmp_path / "wandb").rglob("*.wandb")):
        records = local_runs._inspect(f, "--json").splitlines()
        history = [json.loads(x)["history"]["item"] for x in records if '"history"' in x]
        epochs += [h["epoch"] for h in history if "valid/accuracy" in h]
    assert sorted(epochs) == list(range(1, 9))


def test_resume_refuses_what_cannot_continue(tmp_path):
    r = recipe.load(LINEAR, ["steps.repeat.n=3"])
    done = train.run(r, [checkpoint.Checkpointer], runs_dir=tmp_path)
    with pytest.raises(UsageError, match="has finished"):
        checkpoint.prepare(done.run_dir)
    with pytest.raises(UsageError, match="cannot continue with .*steps.predict.name"):
        checkpoint.prepare(done.run_dir, ["steps.predict.name=mlp", "steps.repeat.n=5"])
    with pytest.raises(UsageError, match="cannot continue with data.source changed"):
        checkpoint.prepare(done.run_dir, ["data.source=mnist5k", "steps.repeat.n=5"])
    result = CliRunner().invoke(app, ["resume", done.run_dir, "--set", "steps.predict.name=mlp"])
    assert result.exit_code == 2 and "cannot continue" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["resume", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and "not a run folder" in result.output


class MarkerAtTheEnd(Callback):
    """Looks at the run folder when the loggers have been told the run ended (sevenstep's after_run)."""

    order = 10_000  # after every logger and picture

    def __init__(self):
        self.marked = []  # at the start of each epoch: is the folder marked UNFINISHED?

    def before_epoch(self):
        self.marked.append((self.learn.run_info.run_dir / run_folder.UNFINISHED).exists())

    def after_run(self, result):
        self.unfinished = (Path(result.run_dir) / run_folder.UNFINISHED).exists()
        self.written = sorted(f.name for f in Path(result.run_dir).iterdir())


WRITTEN_LAST = ["epochs.csv", "top_losses.png", "confusion_matrix.png", "weights.png"]


@pytest.mark.parametrize("killed", ["after its last checkpoint", "after result.json"])
def test_a_run_killed_before_it_was_wholly_saved_is_finished_by_resume(tmp_path, killed):
    """#24 item 6: the folder as a SIGKILL leaves it at those two moments (the kill itself is too quick to time:
    the files are removed instead); a one-cycle run, which cannot be given more epochs to get it going."""
    from sevenstep.tracking.csv_logger import CsvLogger
    from sevenstep.tracking.pictures import InterpretationPictures

    r = recipe.load(LINEAR, ["steps.repeat.name=one_cycle", "steps.repeat.n=3"])
    marker = MarkerAtTheEnd()
    cbs = [checkpoint.Checkpointer, CsvLogger, InterpretationPictures, marker]
    alone = train.run(r, cbs, runs_dir=tmp_path / "alone")
    # the marker comes with the first checkpoint (before it, a killed run has nothing to resume) and goes
    # last: while the loggers write, the run is still UNFINISHED
    assert marker.marked[:3] == [False, True, True]  # (then get_preds, at the end)
    assert marker.unfinished and set(WRITTEN_LAST) <= set(marker.written)
    run_dir = Path(alone.run_dir)
    assert not (run_dir / run_folder.UNFINISHED).exists()
    expected = (run_dir / "model.pth").read_bytes(), json.loads((run_dir / "result.json").read_text())
    gone = WRITTEN_LAST + (
        ["result.json", "model.pth", "valid_outcomes.csv"] if "checkpoint" in killed else []
    )
    for name in gone:
        (run_dir / name).unlink()
    run_folder.mark_unfinished(run_dir)

    said = CliRunner().invoke(app, ["resume", str(run_dir), "--json", "--wandb", "disabled"])
    assert said.exit_code == 0, said.output
    assert f"finishing {run_dir}: its 3 epoch(s) were trained" in said.stderr
    assert all((run_dir / name).exists() for name in gone) and not (run_dir / run_folder.UNFINISHED).exists()
    result = json.loads((run_dir / "result.json").read_text())
    assert result["accuracy"] == expected[1]["accuracy"] and _strip(result["epochs"]) == _strip(
        expected[1]["epochs"]
    )
    assert result["stop_reason"] == "epochs_done" and result["resumed_from"] == 3
    a, b = (
        torch.load(io.BytesIO(x), weights_only=True)
        for x in (expected[0], (run_dir / "model.pth").read_bytes())
    )
    assert all(torch.equal(a[n], b[n]) for n in a)
    again = CliRunner().invoke(
        app, ["resume", str(run_dir), "--wandb", "disabled"]
    )  # and now it has finished
    assert again.exit_code == 2 and "has finished" in again.output


def _strip(epochs):
    return [{k: v for k, v in e.items() if k != "seconds"} for e in epochs]


def test_resume_refuses_a_recipe_edited_after_its_checkpoint(tmp_path):
    """#24 item 14: a hand-edited lr would otherwise resume silently as if it were the run's."""
    r = recipe.load(LINEAR, ["steps.repeat.n=4"])
    stopped = train.run(r, [checkpoint.Checkpointer, StopAfter(2)], runs_dir=tmp_path)
    file = Path(stopped.run_dir) / "recipe.toml"
    original = file.read_text()
    lr = r.steps["step"]["lr"]
    file.write_text(original.replace(f"lr = {lr}", "lr = 0.5").replace("bs = ", "bs = 1"))
    said = CliRunner().invoke(app, ["resume", stopped.run_dir, "--wandb", "disabled"])
    assert said.exit_code == 2 and "Traceback" not in said.output
    assert f"steps.step.lr = 0.5, trained with {lr}" in said.output and "data.bs = " in said.output
    assert f"sevenstep run {file}" in said.output
    file.write_text(original)  # put back, it resumes
    resumed = CliRunner().invoke(app, ["resume", stopped.run_dir, "--wandb", "disabled"])
    assert resumed.exit_code == 0, resumed.output


def test_a_finished_epochs_run_can_be_given_more_epochs(tmp_path):
    three = train.run(
        recipe.load(LINEAR, ["steps.repeat.n=3"]), [checkpoint.Checkpointer], runs_dir=tmp_path / "a"
    )
    finished = {f.name: f.read_bytes() for f in Path(three.run_dir).iterdir() if f.is_file()}
    again, state = checkpoint.prepare(three.run_dir, ["steps.repeat.n=5"])
    five = train.run(again, [checkpoint.Checkpointer], resume=(Path(three.run_dir), state))
    alone = train.run(recipe.load(LINEAR, ["steps.repeat.n=5"]), runs_dir=tmp_path / "b")
    assert _metrics(five) == _metrics(alone) and _same_weights(five, alone) and five.resumed_from == 3
    # what the run was when it finished is kept beside the extension, byte for byte
    kept = Path(three.run_dir) / "finished-at-epoch-3"
    for name in ("result.json", "model.pth", "valid_outcomes.csv", "recipe.toml"):
        assert (kept / name).read_bytes() == finished[name], name
    assert json.loads((kept / "result.json").read_text())["accuracy"] == three.accuracy
    assert len(json.loads((Path(three.run_dir) / "result.json").read_text())["epochs"]) == 5


class _Counter(Callback):
    """A user's callback with state to keep, in Lightning's convention."""

    def __init__(self, key: str | None = None):
        self.n, self.key = 0, key

    @property
    def state_key(self):
        return self.key or self.name

    def after_epoch(self):
        self.n += 1

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def test_each_callbacks_state_is_kept_under_its_own_state_key(tmp_path):
    r = recipe.load(LINEAR, ["steps.repeat.n=2"])
    with pytest.raises(UsageError, match="two callbacks keep their checkpoint state under '_counter'"):
        train.run(r, cbs=[_Counter(), _Counter(), checkpoint.Checkpointer], runs_dir=tmp_path)
    first, second = _Counter("first"), _Counter("second")
    second.n = 10
    run = train.run(r, cbs=[first, second, checkpoint.Checkpointer], runs_dir=tmp_path)
    saved = torch.load(Path(run.run_dir) / run_folder.CHECKPOINT, weights_only=True)["callbacks"]
    assert saved["first"] == {"n": 2} and saved["second"] == {"n": 12}
    assert "run_log" in saved and "step7_stop" not in saved  # fastai's name is the default key
