"""Inside steps 4 and 5 (#37): each recorded number is checked against what it says it is, at that moment; the
record changes nothing in training."""

from __future__ import annotations

import dataclasses
import functools
import math

import pytest
import torch
from torch import nn

from conftest import LINEAR
from sevenstep import recipe as recipes
from sevenstep.callbacks import SparseCallback
from sevenstep.loop import run_folder, train
from sevenstep.tracking import layer_stats
from sevenstep.tracking.layer_stats import LayerStats


class Spy(SparseCallback):
    """What LayerStats should find, taken independently at the last batch of every epoch."""

    order = LayerStats.order + 1

    def before_fit(self):
        self.seen = {}

    def before_step(self):
        if self.learn.iter == self.learn.n_iter - 1:
            lin = [m for m in self.learn.model.modules() if isinstance(m, nn.Linear)]
            self.grads = [
                torch.cat([p.grad.flatten() for p in m.parameters(recurse=False)]).norm().item() for m in lin
            ]
            self.w0 = [
                torch.cat([p.detach().flatten() for p in m.parameters(recurse=False)]).clone() for m in lin
            ]

    def after_step(self):
        if self.learn.iter == self.learn.n_iter - 1:
            lin = [m for m in self.learn.model.modules() if isinstance(m, nn.Linear)]
            w1 = [torch.cat([p.detach().flatten() for p in m.parameters(recurse=False)]) for m in lin]
            ratios = [((b - a).norm() / a.norm()).item() for a, b in zip(self.w0, w1)]
            self.seen[self.learn.epoch + 1] = (self.grads, [a.norm().item() for a in self.w0], ratios)


def _recipe(folder, *sets):
    return recipes.load(LINEAR, [f"data.source=folder:{folder}", "data.bs=8", *sets])


def test_each_number_is_what_it_says_at_that_moment(tiny_folder):
    r = _recipe(tiny_folder, "steps.predict.name=mlp", "steps.predict.hidden=[6, 5]", "steps.repeat.n=4",
                "steps.step.lr=0.5", "steps.loss.name=cross_entropy")  # fmt: skip
    run = train.run(r, cbs=[functools.partial(LayerStats, every=1), Spy])
    stats, spy = run.learn.layer_stats, run.learn.spy
    assert sorted({row["epoch"] for row in stats.rows}) == [1, 2, 3, 4]
    weighted = [row for row in stats.rows if "grad_norm" in row]
    assert {row["kind"] for row in weighted} == {"Linear"}
    for epoch, (grads, sizes, ratios) in spy.seen.items():
        mine = [row for row in weighted if row["epoch"] == epoch]
        assert [row["grad_norm"] for row in mine] == pytest.approx(grads, rel=1e-5)
        assert [row["weight_norm"] for row in mine] == pytest.approx(sizes, rel=1e-5)
        assert [row["update_ratio"] for row in mine] == pytest.approx(ratios, rel=1e-4)
    relus = [row for row in stats.rows if row["kind"] == "ReLU"]
    assert relus and all(0 <= row["dead_share"] <= 1 and row["act_mean"] >= 0 for row in relus)


def test_dead_units_on_a_constructed_layer():
    out = torch.tensor([[0.0, 1.0, 0.0, 2.0], [0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    assert layer_stats.dead_share(out) == 0.5  # units 0 and 2 are 0 for every item
    image = torch.zeros(2, 4, 3, 3)  # 4 channels; channel 1 fires somewhere in one image
    image[1, 1, 2, 2] = 0.7
    assert layer_stats.dead_share(image) == 0.75
    assert layer_stats.dead_share(nn.ReLU()(torch.randn(500, 8) + 5)) == 0.0


def test_the_record_changes_nothing_in_training(tiny_folder, tmp_path):
    r = _recipe(tiny_folder, "steps.predict.name=mlp", "steps.repeat.n=3", "steps.loss.name=cross_entropy")
    plain = train.run(r)
    looked = train.run(r, cbs=[LayerStats], runs_dir=tmp_path)
    strip = lambda es: [{k: v for k, v in e.items() if k != "seconds"} for e in es]  # noqa: E731
    assert strip(plain.epochs) == strip(looked.epochs)
    # saved with the run: the CSV reads back as recorded, and the picture is drawn
    rows = run_folder.read_layers(looked.run_dir)
    assert [row["layer"] for row in rows] == [row["layer"] for row in looked.learn.layer_stats.rows]
    assert (tmp_path / looked.run_dir / "layers.png").stat().st_size > 5_000
    assert not math.isnan(rows[0]["grad_norm"])
    # a run without pictures (a comparison's later seeds) keeps its records, and draws no picture
    quiet = train.run(r, cbs=[LayerStats], runs_dir=tmp_path / "quiet", pictures=False)
    assert run_folder.read_layers(quiet.run_dir) == rows
    assert not (tmp_path / quiet.run_dir / "layers.png").exists()


def test_about_fifty_records_a_run_first_and_last_epochs_always(tiny_folder):
    r = _recipe(tiny_folder, "steps.repeat.n=120")
    run = train.run(r, cbs=[LayerStats])
    epochs = sorted({row["epoch"] for row in run.learn.layer_stats.rows})
    assert epochs[0] == 1 and epochs[-1] == 120 and 40 <= len(epochs) <= 62


def test_the_vanishing_gradients_experiment_shows_them_in_its_first_epoch():
    """experiments/vanishing_gradients.toml (docs/inside.md): the sigmoid net's first layer gets a gradient
    orders of magnitude below its last's; with ReLU and Kaiming's init, one of the same size."""
    from sevenstep import compare

    plan = compare.load("experiments/vanishing_gradients.toml")
    ratios = {}
    for label in ("sigmoid, default init", "relu, kaiming init"):
        r = plan.recipe(label, 1)
        r = dataclasses.replace(r, steps=r.steps | {"repeat": r.steps["repeat"] | {"n": 1}})
        rows = train.run(r, cbs=[LayerStats]).learn.layer_stats.rows
        linear = [row["grad_norm"] for row in rows if row["kind"] == "Linear"]
        ratios[label] = linear[0] / linear[-1]
    assert ratios["sigmoid, default init"] < 1e-2 and ratios["relu, kaiming init"] > 0.3, ratios


def test_a_layer_followed_by_an_in_place_activation_is_recorded_as_it_put_out():
    """An in-place ReLU after a layer overwrites that layer's output: the record keeps a copy of what it was."""
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(inplace=True))
    stats = LayerStats()
    stats.outputs = {}
    hook = model[0].register_forward_hook(stats._keep("0"))
    x = torch.randn(50, 4)
    model(x)
    hook.remove()
    with torch.no_grad():
        assert torch.equal(stats.outputs["0"], model[0](x)) and (stats.outputs["0"] < 0).any()
