"""fastai's contract on a sevenstep Learner, beside a stock fastai Learner on the same data and weights:
summary, validate and tta leave a run as it was; freeze/fine_tune, a cancelled backward, another opt_func and
late callbacks work on the hand-written SGD step; a callback of any kind (VerboseCallback's own __call__, a
handler set on an instance) hears its events; new item transforms apply on the fast path; MixUp and CutMix
train with a recipe's loss; a plugin loss returning the mean is refused before training, with how to fix it."""

from __future__ import annotations

import copy

import pytest
import torch
from fastai.callback.core import Callback, CancelBackwardException
from fastai.callback.mixup import CutMix, MixUp
from fastai.data.transforms import ToTensor
from fastai.learner import Learner as StockLearner
from fastai.optimizer import Adam
from fastai.vision.augment import FlipItem, Resize

from conftest import LINEAR
from sevenstep import recipe
from sevenstep.errors import UsageError
from sevenstep.loop import train

SIMPLE_NET = LINEAR.replace("fastbook_linear", "fastbook_simple_net")
QUICK = ["steps.repeat.n=2", "data.bs=64"]


@pytest.fixture(scope="module")
def run():
    return train.run(recipe.load(SIMPLE_NET, QUICK))


def _weights(learn):
    return [p.detach().clone() for p in learn.model.parameters()]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def _stock_twin(learn):
    """A stock fastai Learner on the same data, a copy of the same weights, the same loss and metrics."""
    return StockLearner(
        learn.dls, copy.deepcopy(learn.model), loss_func=learn.loss_func, metrics=learn.metrics
    )


def test_summary_validate_and_tta_leave_the_run_as_it_was(run):
    learn = run.learn
    weights, log, stop = _weights(learn), [dict(e) for e in learn.run_log.epochs], learn.run_info.stop_reason
    stock = _stock_twin(learn)
    learn.summary()
    got, expected = learn.validate(), stock.validate()
    assert got[0] == pytest.approx(expected[0]) and got[1] == pytest.approx(expected[1])
    learn.tta(n=2)
    assert (
        _same(weights, _weights(learn)) and learn.run_log.epochs == log and learn.run_info.stop_reason == stop
    )


def test_validate_before_any_fit_uses_the_weights_as_they_are():
    r = recipe.load(SIMPLE_NET, QUICK)
    learn = train.build_learner(r)
    stock = _stock_twin(learn)
    before = _weights(learn)
    assert learn.validate()[0] == pytest.approx(stock.validate()[0])
    assert _same(before, _weights(learn))


@pytest.mark.parametrize("path", [LINEAR, SIMPLE_NET], ids=["linear", "simple net"])
def test_the_hand_sgd_step_trains_frozen_groups_cancelled_backwards_and_late_callbacks(path):
    learn = train.build_learner(recipe.load(path, QUICK))
    learn.fit(1)  # a real first fit (the init step acts here)
    learn.splitter = lambda m: [list(m.parameters())[:-1], list(m.parameters())[-1:]]
    learn.opt = None
    learn.create_opt()
    learn.freeze()  # the first group gets no gradient: an empty group of parameters to step
    frozen = [p.detach().clone() for p in learn.opt.param_lists[0]]
    last = [p.detach().clone() for p in learn.opt.param_lists[1]]
    learn.fit(1)
    assert _same(frozen, learn.opt.param_lists[0]) and not _same(last, learn.opt.param_lists[1])

    class CancelEveryOther(Callback):
        n = 0

        def before_backward(self):  # no gradients this batch: the step has nothing to move
            self.n += 1
            if self.n % 2:
                raise CancelBackwardException()

    class Late(Callback):
        order, steps = 90, 0

        def before_step(self):
            self.steps += 1

    late = Late()
    learn.unfreeze()
    learn.fit(1, cbs=[CancelEveryOther(), late])
    assert late.steps == len(learn.dls.train)  # every batch's before_step, not after_cancel_step


def test_another_opt_func_on_an_sgd_recipe_is_used():
    learn = train.build_learner(recipe.load(SIMPLE_NET, QUICK))
    learn.fit(1)
    learn.opt_func, learn.opt = Adam, None
    learn.fit(1, lr=1e-3)
    assert all(
        "grad_avg" in learn.opt.state[p] and "sqr_avg" in learn.opt.state[p] for p in learn.model.parameters()
    )


def test_every_callback_hears_its_events_as_on_a_stock_learner(capsys):
    from fastai.test_utils import VerboseCallback  # prints every event it is given, from its own __call__

    learn = train.build_learner(recipe.load(LINEAR, ["steps.repeat.n=1"]))
    stock = _stock_twin(learn)
    heard = {}
    for name, target in (("sevenstep", learn), ("stock", stock)):
        with target.no_bar():
            target.fit(1, cbs=[VerboseCallback()])
        heard[name] = [
            line for line in capsys.readouterr().out.split() if line.startswith(("before_", "after_"))
        ]
    assert heard["sevenstep"] == heard["stock"] and len(heard["stock"]) > 30

    class Plain(Callback):
        pass

    plain = Plain()
    learn.add_cb(plain)
    seen = []
    plain.after_epoch = lambda: seen.append("after_epoch")  # a handler set on the instance, after add_cb
    learn.fit(1)
    assert seen == ["after_epoch"]
    learn.remove_cb(plain)


def test_new_item_transforms_apply_on_the_fast_path(run):
    dls = run.learn.dls
    small = dls.valid.new(after_item=[Resize(14), ToTensor()])
    assert small.one_batch()[0].shape[-2:] == (14, 14)
    # FlipItem flips training items only (split_idx 0), as fastai's augmentations do
    flipped = dls.train.new(after_item=[FlipItem(p=1.0), ToTensor()], shuffle=False)
    plain = dls.train.new(shuffle=False)
    x_flip, x = flipped.one_batch()[0], plain.one_batch()[0]
    assert torch.allclose(x_flip, x.flip(-1))


@pytest.mark.parametrize("cb", [MixUp, CutMix])
def test_mixup_and_cutmix_train_with_a_recipes_loss(cb):
    learn = train.build_learner(recipe.load(SIMPLE_NET, ["steps.repeat.n=1"]))  # fastbook's mnist_loss
    learn.fit(1, cbs=[cb()])
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_a_plugin_loss_that_returns_the_mean_is_refused_before_training(tmp_path):
    plugin = tmp_path / "mean_loss.py"
    plugin.write_text(
        "from sevenstep.registry import option\nfrom sevenstep.steps.loss import Loss\n\n"
        "def _mnist_loss(pred, targ):\n    p = pred.sigmoid().squeeze()\n"
        "    return (targ * (1 - p) + (1 - targ) * p).mean()  # fastbook's: one number for the batch\n\n"
        "@option('loss')\ndef mean_mnist_loss() -> Loss:\n    return Loss(_mnist_loss, binary=True)\n"
    )
    file = tmp_path / "r.toml"
    file.write_text(f'plugins = ["{plugin}"]\n[steps.loss]\nname = "mean_mnist_loss"\n')
    with pytest.raises(UsageError, match=r"one loss per image.*returned a single number"):
        train.build_learner(recipe.load(file))


def _twins(path, sets):
    """A sevenstep Learner and a stock fastai Learner in the same state: two builds of one recipe (same seed:
    same data, same order, same init), each fitted one epoch; the second's model and data then go to a stock
    Learner with the recipe's loss, optimizer and lr."""
    from fastai.torch_core import set_seed

    ours, other = (train.build_learner(recipe.load(path, sets)) for _ in range(2))
    for learn in (ours, other):
        set_seed(0)
        with learn.no_bar():
            learn.fit(1)
    stock = StockLearner(other.dls, other.model, loss_func=other.loss_func, opt_func=other.opt_func,
                         lr=other.lr, metrics=other.metrics)  # fmt: skip
    return ours, stock


def _values(learn):
    return [[round(float(v), 6) for v in row] for row in learn.recorder.values]


@pytest.mark.parametrize(
    "how",
    ["fit_one_cycle", "fit_flat_cos", "EarlyStoppingCallback", "ReduceLROnPlateau", "GradientClip",
     "GradientAccumulation"],
)  # fmt: skip
def test_fastais_schedules_and_callbacks_give_a_stock_learners_numbers(how):
    from fastai.callback import schedule  # noqa: F401  (fit_one_cycle, fit_flat_cos)
    from fastai.callback.tracker import EarlyStoppingCallback, ReduceLROnPlateau
    from fastai.callback.training import GradientAccumulation, GradientClip
    from fastai.torch_core import set_seed

    ours, stock = _twins(SIMPLE_NET, ["steps.repeat.n=1", "data.bs=64"])
    cbs = {"EarlyStoppingCallback": lambda: [EarlyStoppingCallback(patience=1)],
           "ReduceLROnPlateau": lambda: [ReduceLROnPlateau(patience=0)],
           "GradientClip": lambda: [GradientClip(0.01)],
           "GradientAccumulation": lambda: [GradientAccumulation(128)]}.get(how, list)  # fmt: skip
    for learn in (ours, stock):
        set_seed(1)
        with learn.no_bar(), learn.no_logging():
            if how.startswith("fit_"):
                getattr(learn, how)(2, 0.1)
            else:
                learn.fit(2, 0.1, cbs=cbs())
    assert _values(ours) == _values(stock)


def test_a_validation_that_fails_leaves_sevenstep_s_callbacks_on():
    learn = train.build_learner(recipe.load(LINEAR, ["steps.repeat.n=1"]))

    class Fails(Callback):
        def before_fit(self):
            raise RuntimeError("a broken callback")

    with pytest.raises(RuntimeError, match="a broken callback"):
        learn.validate(cbs=[Fails()])
    assert not learn.__dict__.get("not_a_fit")  # the next real fit is one: the init step, the run log act
    learn.fit(1)
    assert len(learn.run_log.epochs) == 1


def test_gradients_after_a_step_are_zeros_as_on_a_stock_learner():
    """#36 item 20: sevenstep's Learner set p.grad = None after a step, where fastai's Optimizer.zero_grad zeroes
    it in place: fastai's own TestOneBatch asserts p.grad == 0 in after_batch, and p.grad.norm() raised."""
    seen = []

    class AfterBatch(Callback):
        def after_batch(self):
            if self.training:
                seen.append([p.grad for p in self.learn.model.parameters()])

    learn = train.build_learner(recipe.load(SIMPLE_NET, ["steps.repeat.n=1", "data.bs=64"]))
    learn.fit(1, cbs=[AfterBatch()])
    assert seen and all(g is not None and torch.all(g == 0) for grads in seen for g in grads)
    assert all(p.grad is not None and float(p.grad.norm()) == 0 for p in learn.model.parameters())


@pytest.mark.parametrize("torch_opt", ["SGD", "AdamW"])
def test_a_pytorch_optimizer_in_fastais_optimwrapper_trains_as_on_a_stock_learner(torch_opt):
    """#36 item 21: `opt_func=partial(OptimWrapper, opt=torch.optim.SGD)` (fastai's own tutorial's way) crashed:
    OptimWrapper delegates zero_grad per instance, and sevenstep looked it up on the class."""
    from functools import partial

    from fastai.optimizer import OptimWrapper
    from fastai.torch_core import set_seed

    ours, stock = _twins(SIMPLE_NET, ["steps.repeat.n=1", "data.bs=64"])
    for learn in (ours, stock):
        learn.opt_func, learn.opt = partial(OptimWrapper, opt=getattr(torch.optim, torch_opt)), None
        set_seed(1)
        with learn.no_bar(), learn.no_logging():
            learn.fit(2, 0.01)
    assert _values(ours) == _values(stock)
