"""The speed work keeps fastai's semantics: sevenstep's Learner sends every callback the same events in the
same order as stock fastai's, and the fast data path trains to the same per-epoch metrics as fastai's
per-item path on a stock Learner. (Speed itself is measured by `make bench`, not here.)"""

from __future__ import annotations

import pytest
import torch
from fastai.callback.core import Callback
from fastai.learner import Learner as StockLearner

from sevenstep import recipe
from sevenstep.data.shuffle import ShuffledDL
from sevenstep.loop import train
from sevenstep.loop.learner import Learner, _handles

LINEAR = "tests/recipes/linear_20_epochs.toml"  # fastbook's linear recipe at 20 epochs


class UsersOwn(Callback):
    """A user's own fastai callback, added with learn.add_cb: it must still run, in its place."""

    order = 55

    def __init__(self):
        self.seen = []

    def before_epoch(self):
        self.seen.append(("before_epoch", self.epoch))

    def after_batch(self):
        self.seen.append(("after_batch", self.iter))


def _record(learn, monkeypatch) -> list[tuple[str, str]]:
    """Every (event, callback) call that reaches a handler, in order."""
    calls = []
    original = Callback.__call__

    def spy(cb, event_name):
        if _handles(cb, event_name):
            calls.append((event_name, type(cb).__name__))
        return original(cb, event_name)

    monkeypatch.setattr(Callback, "__call__", spy)
    with learn.no_bar():
        train.fit(learn)
    monkeypatch.undo()
    return calls


@pytest.mark.parametrize(
    "stop",
    [
        [],
        ["steps.stop.name=patience", "steps.stop.patience=1", "steps.stop.metric=accuracy"],
        ["steps.stop.name=target", "steps.stop.value=0.6"],
        ["steps.stop.name=time_budget", "steps.stop.seconds=0.05"],
        ["steps.gradient.name=finite_difference", "steps.step.name=adam", "steps.repeat.name=one_cycle"],
    ],
    ids=["epochs_done", "patience", "target", "time_budget", "finite_difference+adam+one_cycle"],
)
def test_every_callback_gets_the_events_of_stock_fastai_in_its_order(stop, tiny_folder, monkeypatch):
    sets = [f"data.source=folder:{tiny_folder}", "data.bs=4", "steps.repeat.n=4", *stop]
    runs = {}
    for kind in (StockLearner, Learner):
        learn = train.build_learner(recipe.load(LINEAR, sets), cbs=[UsersOwn()])
        assert type(learn) is Learner
        learn.__class__ = kind
        if stop and stop[0] == "steps.stop.name=time_budget":
            learn.step7_stop.seconds = 1e9  # the same number of epochs on both: the clock is not the point
        runs[kind] = (
            _record(learn, monkeypatch),
            learn.run_log.epochs,
            learn.users_own.seen,
            learn.run_info.stop_reason,
        )
    (stock_calls, stock_epochs, stock_seen, stock_reason), (calls, epochs, seen, reason) = runs.values()
    assert len(calls) > 50
    assert calls == stock_calls
    assert seen == stock_seen and seen  # the user's callback ran, at the same moments
    assert reason == stock_reason
    for a, b in zip(epochs, stock_epochs, strict=True):
        assert a.keys() == b.keys() and all(a[k] == pytest.approx(b[k]) for k in a if k != "seconds")


def test_a_callback_added_or_removed_mid_way_is_seen(tiny_folder):
    learn = train.build_learner(recipe.load(LINEAR, [f"data.source=folder:{tiny_folder}", "data.bs=4", "steps.repeat.n=1"]))  # fmt: skip
    with learn.no_bar():
        train.fit(learn)
        own = UsersOwn()
        learn.add_cb(own)
        train.fit(learn)
        assert [e for e, _ in own.seen].count("before_epoch") == 1
        learn.remove_cb(own)
        train.fit(learn)
    assert [e for e, _ in own.seen].count("before_epoch") == 1


@pytest.mark.parametrize(
    ("file", "sets"),
    [
        (LINEAR, ["steps.repeat.n=5"]),
        ("experiments/fastbook_simple_net.toml", ["steps.repeat.n=5"]),
        ("experiments/cnn_3v7.toml", ["steps.repeat.n=2", "data.augment=false"]),
        ("experiments/finite_difference_3v7.toml", ["steps.repeat.n=2"]),
    ],
    ids=["linear", "simple_net", "cnn", "finite_difference"],
)
@pytest.mark.parametrize("order", ["torch", "fastai"])
def test_fast_path_trains_as_fastais_per_item_path_on_a_stock_learner(file, sets, order, monkeypatch):
    """Same seed: the same batches in the same order, so the same per-epoch metrics (augmentation draws its
    crops differently on the two paths, so it is off here). Both paths shuffle with torch; with fastai's own
    shuffle put back (Python's random.sample, on a stock TfmdDL), the fast path still matches it."""
    from fastai.data.core import TfmdDL

    from sevenstep.data import decoded, shuffle

    if order == "fastai":  # both paths' shuffle (the decoded one's, and ShuffledDL's while fastai sets up)
        for module in (decoded, shuffle):
            monkeypatch.setattr(module, "permutation", lambda rng, n: torch.tensor(rng.sample(range(n), n)))
    r = recipe.load(file, sets)
    fast = train.build_learner(r)
    slow = train.build_learner(r, fast=False)
    slow.__class__ = StockLearner
    if order == "fastai":
        for dl in slow.dls.loaders:
            assert type(dl) is ShuffledDL
            dl.__class__ = TfmdDL  # fastai's own shuffle_fn
    norm = [t for t in slow.dls.after_batch.fs if type(t).__name__ == "Normalize"]
    if norm:  # both take their statistics from one training batch: use the same ones
        (fast_norm,) = [t for t in fast.dls.after_batch.fs if type(t).__name__ == "Normalize"]
        norm[0].mean, norm[0].std = fast_norm.mean, fast_norm.std
    slow.model.load_state_dict(fast.model.state_dict())
    for learn in (fast, slow):
        torch.manual_seed(0)
        with learn.no_bar():
            train.fit(learn)
    for a, b in zip(fast.run_log.epochs, slow.run_log.epochs, strict=True):
        for k in ("train_loss", "valid_loss", "accuracy"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), (a["epoch"], k)


def test_a_pass_over_the_fast_path_draws_from_torchs_generator_as_fastais_does():
    """torch's DataLoader takes one number from the global generator a pass; the fast path does the same, so a
    recipe's later random numbers (init, augmentation) are those of fastai's own path."""
    from fastai.data.load import DataLoader

    dl = train.build_learner(recipe.load(LINEAR)).dls.valid
    torch.manual_seed(1)
    list(DataLoader.__iter__(dl))  # fastai's own iteration, through torch's DataLoader
    after_stock = torch.rand(3)
    torch.manual_seed(1)
    list(dl)
    assert torch.equal(torch.rand(3), after_stock)


@pytest.mark.parametrize(
    "sets", [[], ["steps.repeat.name=one_cycle", "steps.step.name=adam"]], ids=["sgd", "one_cycle"]
)
def test_sevensteps_recorder_records_what_fastais_does(sets, tiny_folder):
    """sevenstep's Recorder (a cheaper after_batch) against fastai's own, on the same run: same smoothed
    losses, learning rates, per-epoch values and iteration counts."""
    from fastai.learner import Recorder as FastaiRecorder

    from sevenstep.loop.learner import Recorder

    sets = [f"data.source=folder:{tiny_folder}", "data.bs=4", "steps.repeat.n=3", *sets]
    recorders = []
    for stock in (False, True):
        learn = train.build_learner(recipe.load(LINEAR, sets))
        assert type(learn.recorder) is Recorder
        if stock:
            ours = learn.recorder
            learn.cbs[learn.cbs.index(ours)] = theirs = FastaiRecorder()
            theirs.learn = learn
            learn.recorder = theirs
        with learn.no_bar():
            train.fit(learn)
        recorders.append(learn.recorder)
    ours, theirs = recorders
    assert type(theirs) is FastaiRecorder
    assert len(ours.losses) > 10 and ours.iters == theirs.iters and ours.lrs == theirs.lrs
    assert [float(v) for v in ours.losses] == [float(v) for v in theirs.losses]
    assert [[float(v) for v in row] for row in ours.values] == [
        [float(v) for v in row] for row in theirs.values
    ]
