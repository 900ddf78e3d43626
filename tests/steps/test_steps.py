"""Each step option's contract, not only that it runs."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from fastai.callback.core import Callback, CancelBackwardException
from fastai.learner import Learner
from fastai.metrics import Metric
from torch import nn

from sevenstep import data, recipe, registry
from sevenstep.callbacks import RunLog
from sevenstep.errors import UsageError
from sevenstep.loop import train
from sevenstep.steps import loss as loss_step
from sevenstep.steps.gradient import FiniteDifference
from sevenstep.steps.step import HandSGD
from sevenstep.steps.stop import Patience, Target, TimeBudget

EXPERIMENTS = "experiments"


class TwoInputs(nn.Module):
    """Not a Sequential: finite differences re-run the whole model for each nudge."""

    def __init__(self, n_out):
        super().__init__()
        self.a, self.b = nn.Linear(12, 5), nn.Linear(5, n_out)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


MODELS = {
    # nn.Linear layers: their nudged outputs are written directly
    "one layer": lambda n_out: nn.Sequential(nn.Linear(12, n_out)),
    "two layers": lambda n_out: nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.Tanh(), nn.Linear(6, n_out)),
    # any other layer, or a model that is not a Sequential: functional_call on nudged copies
    "conv layer": lambda n_out: nn.Sequential(
        nn.Unflatten(1, (3, 2, 2)), nn.Conv2d(3, 4, 2), nn.Sigmoid(), nn.Flatten(), nn.Linear(4, n_out)
    ),
    "not a sequential": TwoInputs,
}


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("loss_name", [n for n, o in registry.REGISTRY["loss"].items() if not o.plugin])
def test_finite_difference_matches_autograd(loss_name, model_name):
    loss = registry.get("loss", loss_name).build({})
    torch.manual_seed(0)
    model = MODELS[model_name](loss.n_out(2)).double()
    x, y = torch.randn(32, 12, dtype=torch.float64), torch.randint(0, 2, (32,))
    loss.func(model(x), y).backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    cb = FiniteDifference(eps=1e-4, max_params=1000)
    cb.learn = SimpleNamespace(model=model, loss_func=loss.func, xb=(x,), yb=(y,))
    with pytest.raises(CancelBackwardException):
        cb.before_backward()
    for got, want in zip((p.grad for p in model.parameters()), expected, strict=True):
        assert want.abs().max() > 1e-3  # a gradient worth comparing
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_finite_difference_works_in_chunks(monkeypatch):
    """A layer's nudges are evaluated a chunk at a time: small chunks give the same gradient as one."""
    from sevenstep.steps import gradient

    torch.manual_seed(0)
    model = MODELS["conv layer"](2).double()
    x, y = torch.randn(8, 12, dtype=torch.float64), torch.randint(0, 2, (8,))
    grads = []
    for elements in (1 << 20, 40):
        monkeypatch.setattr(gradient, "CHUNK_ELEMENTS", elements)
        cb = FiniteDifference(eps=1e-4, max_params=1000)
        cb.learn = SimpleNamespace(model=model, loss_func=loss_step.mse().func, xb=(x,), yb=(y,))
        with pytest.raises(CancelBackwardException):
            cb.before_backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_autograd_clip_caps_the_gradients_norm_and_costs_nothing_without_it():
    torch.manual_seed(0)
    model = nn.Linear(10, 3)
    (model(torch.randn(16, 10)) * 100).pow(2).sum().backward()
    norm = lambda: torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))  # noqa: E731
    assert norm() > 1.0
    clipped = registry.get("gradient", "autograd").build({"clip": 0.5})
    clipped.learn = SimpleNamespace(model=model)
    clipped.before_step()
    assert norm() == pytest.approx(0.5, rel=1e-5)
    plain = registry.get("gradient", "autograd").build({})
    assert not hasattr(plain, "before_step")  # no call on every batch when nothing is clipped


def test_finite_difference_refuses_big_models():
    with pytest.raises(UsageError, match="max_params"):
        FiniteDifference(1e-3, 1000).check(nn.Linear(100, 20), 2)


def test_hand_sgd_step_equals_torch_sgd():
    torch.manual_seed(0)
    ours, theirs = nn.Linear(5, 3), nn.Linear(5, 3)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(8, 5)
    for m in (ours, theirs):
        m(x).pow(2).sum().backward()
    step = registry.get("step", "sgd").build({"lr": 0.3, "wd": 0.01})
    opt = step.opt_func(list(ours.parameters()), lr=step.lr)
    assert isinstance(opt, HandSGD)
    opt.step()
    torch.optim.SGD(theirs.parameters(), lr=0.3, weight_decay=0.01).step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b)


def _init(name, **params):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(400, 300), nn.ReLU(), nn.Linear(300, 200))
    before = [p.clone() for p in model.parameters()]
    cb = registry.get("init", name).build(params)
    cb.learn = SimpleNamespace(model=model)
    cb.before_fit()
    return model[0], before


def test_init_distributions():
    layer, _ = _init("normal", std=0.5)
    assert abs(layer.weight.std().item() - 0.5) < 0.01 and abs(layer.weight.mean().item()) < 0.01
    assert abs(layer.bias.std().item() - 0.5) < 0.1  # fastbook's init_params draws the bias too

    layer, _ = _init("zeros")
    assert layer.weight.abs().sum() == 0 and layer.bias.abs().sum() == 0

    layer, _ = _init("uniform", a=0.2)
    assert layer.weight.abs().max() <= 0.2 and abs(layer.weight.var().item() - 0.2**2 / 3) < 1e-3

    layer, _ = _init("kaiming")
    assert abs(layer.weight.std().item() - math.sqrt(2 / 400)) < 0.003 and layer.bias.abs().sum() == 0

    layer, _ = _init("xavier")
    bound = math.sqrt(6 / (400 + 300))
    assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.95 * bound
    assert abs(layer.weight.var().item() - bound**2 / 3) < 1e-4

    layer, before = _init("default")
    assert torch.equal(layer.weight, before[0])


class Scripted(Metric):
    """A metric that reports a given sequence, one value per epoch."""

    def __init__(self, values):
        self.values, self.i = values, -1

    def reset(self):
        self.i += 1

    def accumulate(self, learn):
        pass

    @property
    def value(self):
        return self.values[self.i]

    @property
    def name(self):
        return "scripted"


def _scripted_learner(tiny_folder, values, stop_cb, extra=()):
    dls = data.dataloaders(f"folder:{tiny_folder}", bs=8)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    learn = Learner(
        dls,
        model,
        loss_func=loss_step.cross_entropy().func,
        metrics=[Scripted(values)],
        cbs=[stop_cb, RunLog(), *extra],
    )
    with learn.no_bar(), learn.no_logging():
        learn.fit(len(values), 0.01)
    return learn


def test_patience_stops_at_the_right_epoch(tiny_folder, capsys):
    # best 0.7 at epoch 3; epochs 4, 5, 6 do not beat it: stop after epoch 6
    values = [0.5, 0.6, 0.7, 0.65, 0.69, 0.7, 0.9, 0.95]
    learn = _scripted_learner(tiny_folder, values, Patience(monitor="scripted", patience=3))
    assert len(learn.run_log.epochs) == 6 and learn.run_info.stop_reason == "patience"
    # the message counts epochs from 1, as the table and result.json do (fastai's own says "epoch 2")
    assert "No improvement since epoch 3: early stopping" in capsys.readouterr().out


def test_patience_min_delta_counts_small_gains_as_none(tiny_folder):
    values = [0.5, 0.505, 0.509, 0.512, 0.9]
    learn = _scripted_learner(tiny_folder, values, Patience(monitor="scripted", patience=2, min_delta=0.02))
    assert len(learn.run_log.epochs) == 3 and learn.run_info.stop_reason == "patience"


def test_target_stops_when_reached(tiny_folder):
    learn = _scripted_learner(tiny_folder, [0.5, 0.8, 0.91, 0.95, 0.99], Target("scripted", 0.9))
    assert len(learn.run_log.epochs) == 3 and learn.run_info.stop_reason == "target"


def test_time_budget_cuts_training_short_and_still_validates(tiny_folder):
    learn = _scripted_learner(tiny_folder, [0.5] * 5, TimeBudget(1e-6))
    assert learn.run_info.stop_reason == "time_budget"
    assert len(learn.run_log.epochs) == 1 and "valid_loss" in learn.run_log.epochs[0]
    assert learn.recorder.iters == [1]  # one training batch, then the budget was spent


def test_epochs_done_runs_all_epochs(tiny_folder):
    learn = _scripted_learner(tiny_folder, [0.1, 0.2, 0.3], registry.get("stop", "epochs_done").build({}))
    assert len(learn.run_log.epochs) == 3 and learn.run_info.stop_reason == "epochs_done"


def test_divergence_guard_stops_a_huge_lr():
    r = recipe.load(
        f"{EXPERIMENTS}/fastbook_linear.toml",
        ["steps.loss.name=mse", "steps.step.lr=1e12", "data.normalize=true"],
    )
    run = train.run(r)
    assert run.stop_reason == "diverged" and run.diverged and run.accuracy is None
    assert "epoch 1, batch" in run.message and "steps.step.lr" in run.message
    assert len(run.epochs) < r.steps["repeat"]["n"]


def test_fastbook_linear_beats_chance_within_a_few_epochs():
    run = train.run(recipe.load(f"{EXPERIMENTS}/fastbook_linear.toml", ["steps.repeat.n=4"]))
    assert run.stop_reason == "epochs_done" and len(run.epochs) == 4
    assert run.accuracy > 0.75
    assert run.epochs[-1]["accuracy"] > run.epochs[0]["accuracy"]  # it learns, epoch after epoch


def test_finite_difference_recipe_trains():
    run = train.run(recipe.load(f"{EXPERIMENTS}/finite_difference_3v7.toml", ["steps.repeat.n=1"]))
    assert run.accuracy > 0.9


def test_same_seed_twice_gives_identical_metrics():
    sets = ["steps.predict.name=mlp", "steps.repeat.n=2", "data.augment=true"]

    def metrics():
        run = train.run(recipe.load(f"{EXPERIMENTS}/fastbook_linear.toml", sets))
        return [{k: v for k, v in e.items() if k != "seconds"} for e in run.epochs], run.accuracy

    assert metrics() == metrics()


@pytest.mark.parametrize("loss_name", ["mnist_loss", "bce"])
def test_two_class_loss_on_ten_classes_names_both_choices(loss_name):
    r = recipe.load(f"{EXPERIMENTS}/cnn_mnist5k.toml", [f"steps.loss.name={loss_name}"])
    with pytest.raises(UsageError, match=f"'{loss_name}'.*'mnist5k'"):
        train.build_learner(r)


def test_every_option_builds_a_model_that_trains_one_batch(tiny_folder):
    """Each predict x loss pair gives outputs of the right shape and a finite, decreasing-capable loss."""
    dls = data.dataloaders(f"folder:{tiny_folder}", bs=8)
    xb, yb = (t.as_subclass(torch.Tensor) for t in dls.one_batch())  # as fastai's CastToTensor does
    for pname, popt in registry.REGISTRY["predict"].items():
        for lname, lopt in registry.REGISTRY["loss"].items():
            loss = lopt.build({})
            model = popt.build({}).make(tuple(xb.shape[1:]), loss.n_out(2))
            out = model(xb)
            assert out.shape == (8, loss.n_out(2)), (pname, lname)
            value = loss.func(out, yb)
            value.backward()
            assert torch.isfinite(value), (pname, lname)


def test_adam_is_fastais_adam_step_by_step():
    """sevenstep's foreach Adam against fastai's own: the same weights and state after steps with changing
    hyper-parameters (as one_cycle changes lr and mom), a parameter exempt from weight decay (fastai's Learner
    exempts batch norm and biases) and one without a gradient on some steps."""
    from fastai.optimizer import Adam

    from sevenstep.steps.step import ForeachAdam

    torch.manual_seed(0)
    ours = [nn.Parameter(torch.randn(shape)) for shape in ((4, 3), (3,), (5,))]
    theirs = [nn.Parameter(p.detach().clone()) for p in ours]
    opts = [ForeachAdam(ours, lr=0.01), Adam(theirs, lr=0.01)]
    for opt, ps in zip(opts, (ours, theirs)):
        opt.state[ps[1]]["do_wd"] = False
    for step in range(6):
        grads = [torch.randn_like(p) for p in ours]
        for opt, ps in zip(opts, (ours, theirs)):
            opt.set_hypers(lr=0.01 * (step + 1), mom=0.95 - 0.01 * step)
            for p, g in zip(ps, grads):
                p.grad = None if (p is ps[2] and step % 2) else g.clone()
            opt.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-7)
    for a, b in zip(ours, theirs):
        sa, sb = opts[0].state[a], opts[1].state[b]
        assert sa.keys() == sb.keys() and sa["step"] == sb["step"]
        torch.testing.assert_close(sa["sqr_avg"], sb["sqr_avg"], rtol=0, atol=1e-7)
    assert opts[0].state[ours[2]]["step"] == 3  # it had a gradient on three steps of six


def test_patience_can_end_with_the_best_epochs_weights(tiny_folder):
    class Weights(Callback):  # the weights at the end of each epoch, before the stop rule decides
        order = Patience.order - 1

        def __init__(self):
            self.seen = []

        def after_epoch(self):
            self.seen.append({k: v.clone() for k, v in self.learn.model.state_dict().items()})

    values = [0.5, 0.9, 0.6, 0.7, 0.8]  # best at epoch 2; epochs 3 and 4 do not beat it: stop after 4
    weights = Weights()
    stop = Patience(monitor="scripted", patience=2, restore_best=True)
    learn = _scripted_learner(tiny_folder, values, stop, extra=[weights])
    assert len(learn.run_log.epochs) == 4 and learn.run_info.weights_epoch == 2
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, weights.seen[1][k]) and not torch.equal(v, weights.seen[3][k])
    assert set(stop.state_dict()) == {"best", "wait", "weights", "best_epoch"}  # kept for a resumed run
    plain = _scripted_learner(tiny_folder, values, Patience(monitor="scripted", patience=2))
    assert plain.run_info.weights_epoch is None  # without it, the last epoch's weights, as before


def test_dropout_trains_then_is_off_whenever_the_model_predicts(tiny_folder, tmp_path):
    """#37: dropout in the MLP (and the CNN), honoured by a saved run's load_learner, off in evaluation."""

    r = recipe.load("experiments/fastbook_simple_net.toml", [f"data.source=folder:{tiny_folder}", "data.bs=8",
                    "steps.repeat.n=2", "steps.predict.dropout=0.5"])  # fmt: skip
    run = train.run(r, runs_dir=tmp_path)
    learn = train.load_learner(run.run_dir)
    drops = [m for m in learn.model.modules() if isinstance(m, nn.Dropout)]
    assert [m.p for m in drops] == [0.5]  # one hidden layer: one dropout, after its activation
    with learn.no_bar():
        preds, targs = learn.get_preds(dl=learn.dls.valid)
        again, _ = learn.get_preds(dl=learn.dls.valid)
    assert torch.equal(preds, again)  # off when predicting
    assert (preds.argmax(1) == targs).float().mean().item() == pytest.approx(run.accuracy)
    x = learn.dls.valid.one_batch()[0]
    learn.model.train()
    with torch.no_grad():
        assert not torch.equal(learn.model(x), learn.model(x))  # on while training
    cnn = recipe.load("experiments/cnn_3v7.toml", ["steps.predict.dropout=0.25"])
    model = cnn.build_steps()["predict"].make((1, 28, 28), 2)
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.25]
    with pytest.raises(UsageError, match="steps.predict.dropout is the share of outputs zeroed"):
        recipe.load("experiments/fastbook_simple_net.toml", ["steps.predict.dropout=1"])
