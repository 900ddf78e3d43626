"""The training path takes callbacks: loggers are callbacks handed to it, sevenstep's own events reach them
in order, and the loop's callbacks keep their declared order."""

from __future__ import annotations

import csv
import re
from functools import partial
from pathlib import Path

import pytest
from fastai.callback.core import Callback

from sevenstep import callbacks, compare, recipe, tracking
from sevenstep.data import sources
from sevenstep.errors import UsageError
from sevenstep.loop import train

LINEAR = str(Path("tests/recipes/linear_20_epochs.toml").resolve())  # fastbook's linear recipe at 20 epochs


class Events(Callback):
    """Records what it hears, fastai's events and sevenstep's own; ordered as a logger."""

    order = callbacks.LOGGER_ORDER

    def __init__(self, heard):
        self.heard = heard

    def before_fit(self):
        self.heard.append(("before_fit", self.learn.run_info.group, self.learn.run_info.job_type))

    def after_epoch(self):
        self.heard.append(("after_epoch", len(self.learn.run_log.epochs)))  # RunLog has the epoch already

    def after_run(self, run):
        self.heard.append(("after_run", run.stop_reason, Path(run.run_dir).is_dir()))

    def after_error(self, error):
        self.heard.append(("after_error", type(error).__name__))


def test_a_callback_handed_to_train_run_hears_the_whole_run(tmp_path):
    heard = []
    r = recipe.load(LINEAR, ["steps.repeat.n=2"])
    run = train.run(r, cbs=[Events(heard)], runs_dir=tmp_path, group="g", job_type="trial")
    assert heard == [
        ("before_fit", "g", "trial"),
        ("after_epoch", 1),
        ("after_epoch", 2),
        ("after_run", "epochs_done", True),  # after_run comes once the run is saved
    ]
    assert run.learn.events is not None  # attached under its fastai name, as any callback


def test_an_error_reaches_after_error_and_is_raised(tmp_path):
    class Boom(Callback):
        def after_epoch(self):
            raise RuntimeError("boom")

    heard = []
    with pytest.raises(RuntimeError, match="boom"):
        train.run(recipe.load(LINEAR, ["steps.repeat.n=2"]), cbs=[Boom(), Events(heard)], runs_dir=tmp_path)
    assert heard[-1] == ("after_error", "RuntimeError") and not any(e[0] == "after_run" for e in heard)
    assert not list(tmp_path.iterdir())  # nothing half-saved


def test_epochs_csv_is_written_as_each_epoch_ends(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking.CsvLogger, "every", 0)  # by default at most once a second
    seen = []

    class Watcher(Callback):  # what `tail -f epochs.csv` would see, just after each epoch
        order = tracking.CsvLogger.order + 1

        def after_epoch(self):
            with open(self.learn.run_info.run_dir / "epochs.csv") as f:
                seen.append([int(r["epoch"]) for r in csv.DictReader(f)])

    train.run(
        recipe.load(LINEAR, ["steps.repeat.n=3"]), cbs=[tracking.CsvLogger, Watcher()], runs_dir=tmp_path
    )
    assert seen == [[1], [1, 2], [1, 2, 3]]


def _printed_epochs(out: str) -> list[int]:
    return [int(line.split()[0]) for line in out.splitlines() if re.match(r"^\r*\d+ +\d", line.lstrip("\r"))]


@pytest.mark.parametrize("every, stop, printed", [
    (3600, [], [1, 12]),  # a row an hour: the first and the last epoch
    (0, [], list(range(1, 13))),  # every epoch
    (3600, ["steps.stop.name=target", "steps.stop.value=0.9"], "first and the stopping one"),
])  # fmt: skip
def test_the_printed_table_shows_epochs_at_a_readable_rate(
    tmp_path, capsys, monkeypatch, every, stop, printed
):
    monkeypatch.setattr(callbacks.ReadableRows, "every", every)
    run = train.run(recipe.load(LINEAR, ["steps.repeat.n=12", *stop]), runs_dir=tmp_path)
    shown = _printed_epochs(capsys.readouterr().out)
    if stop:
        assert run.stop_reason == "target" and shown == [1, len(run.epochs)] and len(run.epochs) > 2
    else:
        assert shown == printed
    assert [e["epoch"] for e in run.epochs] == list(range(1, len(run.epochs) + 1))  # the log has them all


def test_a_run_at_chance_level_says_so_and_points_to_the_lr_finder(tmp_path):
    out = train.run(
        recipe.load(LINEAR, ["seed=5"]), runs_dir=tmp_path
    )  # fastbook's recipe: seed 5 stays at 50%
    assert out.accuracy < 0.55 and "chance level" in out.message and "lr-find" in out.message
    fine = train.run(recipe.load(LINEAR, ["seed=1"]), runs_dir=tmp_path)
    assert fine.accuracy > 0.9 and "chance" not in fine.message


def test_a_linear_runs_folder_has_its_weights_picture(tmp_path):
    from PIL import Image

    run = train.run(
        recipe.load(LINEAR, ["steps.repeat.n=1"]), cbs=[tracking.InterpretationPictures], runs_dir=tmp_path
    )
    with Image.open(Path(run.run_dir) / "weights.png") as im:
        assert im.format == "PNG" and im.size[0] > 200


def test_csv_logger_writes_the_runs_epochs(tmp_path):
    run = train.run(recipe.load(LINEAR, ["steps.repeat.n=3"]), cbs=[tracking.CsvLogger], runs_dir=tmp_path)
    with open(Path(run.run_dir) / "epochs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["accuracy"]) for r in rows] == pytest.approx([e["accuracy"] for e in run.epochs])


def test_a_comparison_gives_each_run_fresh_callbacks_and_one_group(tmp_path, tiny_folder):
    file = tmp_path / "cmp.toml"
    file.write_text(
        f'name = "fresh"\nsource = "folder:{tiny_folder}"\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "a"\nset = {{ "steps.repeat.n" = 1, "data.bs" = 8 }}\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "b"\nset = {{ "steps.repeat.n" = 2, "data.bs" = 8 }}\n'
    )
    made, heard = [], []

    def factory():
        cb = Events(heard)
        made.append(cb)
        return cb

    results, report = compare.run(compare.load(file), tmp_path / "runs", cbs=[factory], log=lambda *a: None)
    assert [r.status for r in results] == ["ok", "ok", "ok"]
    # the baseline's, one per run, and the comparison's (it hears after_comparison)
    assert len({id(cb) for cb in made}) == len(made) == 4
    assert [h for h in heard if h[0] == "before_fit"] == [("before_fit", report.name, "sgd")] * 2


def test_the_loops_callbacks_act_in_their_declared_order():
    r = recipe.load(LINEAR, ["steps.stop.name=patience"])
    learn = train.build_learner(r, cbs=[tracking.CsvLogger])
    order = {type(cb).__name__: cb.order for cb in learn.cbs}
    assert order["DivergenceGuard"] < order["Step"] < order["Recorder"] < order["RunLog"]
    assert order["RunLog"] < order["CsvLogger"] < order["Patience"]
    assert order["Patience"] == callbacks.STOP_ORDER


def test_notify_calls_only_those_that_define_the_event_in_order():
    calls = []

    class A(Callback):
        order = 5

        def after_run(self, run):
            calls.append(("A", run))

    class B(Callback):
        order = 1

        def after_run(self, run):
            calls.append(("B", run))

    callbacks.notify(callbacks.instantiate([A, partial(B), Callback()]), "after_run", 7)
    assert calls == [("B", 7), ("A", 7)]


def test_a_new_source_is_one_decorated_function(tmp_path, tiny_folder):
    try:
        sources.source("mine", "a test's own source")(lambda: tiny_folder)
        assert sources.resolve("mine").classes == ["a", "b"]
        with pytest.raises(UsageError, match="folder:PATH, mine"):
            sources.resolve("mine:x")  # it takes no argument
    finally:
        del sources.SOURCES["mine"]


def test_comparison_files_use_the_same_checker(tmp_path):
    file = tmp_path / "cmp.toml"
    file.write_text(f'seed = "one"\n[[runs]]\nrecipe = "{LINEAR}"\n')
    with pytest.raises(UsageError, match=r"cmp.toml: seed: expected an integer, got 'one' \(str\)"):
        compare.load(file)
    file.write_text(f'[baseline]\ndistanse = "l2"\n[[runs]]\nrecipe = "{LINEAR}"\n')
    with pytest.raises(
        UsageError,
        match=r"unknown key 'baseline.distanse' \(did you mean 'baseline.distance'\?\); valid keys: distance",
    ):
        compare.load(file)
    file.write_text(f'[[runs]]\nrecipe = "{LINEAR}"\nlabels = "x"\n')
    with pytest.raises(
        UsageError,
        match=r"runs #1: unknown key 'labels' \(did you mean 'label'\?\); valid keys: recipe, label, set",
    ):
        compare.load(file)


def test_a_learner_fit_again_after_ctrl_c_prints_its_table(tmp_path, capsys):
    # Ctrl-C skips fastai's after_fit: the table's writer must not end up calling itself on the next fit
    run = train.run(recipe.load(LINEAR, ["steps.repeat.n=2"]))
    learn = run.learn

    class CtrlC(Callback):
        def after_epoch(self):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        learn.fit(2, cbs=[CtrlC()])
    capsys.readouterr()
    learn.fit(2)
    assert _printed_epochs(capsys.readouterr().out) == [1, 2]
