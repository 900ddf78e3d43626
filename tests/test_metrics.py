"""A metric is declared once (sevenstep/metrics.py) and reaches every output: each epoch's row, epochs.csv,
result.json, W&B's history and summary, `sevenstep runs`, the stop rules' choices and direction, a sweep's
metric and direction, `sevenstep steps`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sevenstep import metrics
from sevenstep.cli import app
from sevenstep.errors import UsageError
from sevenstep.metrics import Metric
from sevenstep.tracking import local_runs

LINEAR = str(Path("tests/recipes/linear_20_epochs.toml").resolve())


@pytest.fixture
def mistakes():
    """A metric of the kind a user adds: the share of images wrong. Lower is better, and its name says neither
    loss nor error, so nothing can guess its direction from the name: it must come from the declaration."""
    saved = dict(metrics.METRICS)
    declared = metrics.declare(
        Metric(
            "mistakes",
            per_epoch=lambda pred, targ: 1 - metrics.accuracy(pred, targ),
            final=lambda classes, targs: (classes != targs).float().mean().item(),
            lower_is_better=True,
        )
    )
    yield declared
    metrics.METRICS.clear()
    metrics.METRICS.update(saved)


def test_a_declared_metric_reaches_every_output(mistakes, tmp_path):
    target = 0.3
    result = CliRunner().invoke(app, ["run", LINEAR, "--set", "steps.repeat.n=8", "--set", "steps.stop.name=target",
                                      "--set", "steps.stop.metric=mistakes", "--set", f"steps.stop.value={target}",
                                      "--json", "--runs-dir", str(tmp_path / "runs"), "--wandb-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    epochs = out["epochs"]
    # each epoch's row, and the stop rule following it in the declared direction (at most the target)
    assert all(e["mistakes"] == pytest.approx(1 - e["accuracy"], abs=1e-6) for e in epochs)
    assert out["stop_reason"] == "target" and epochs[-1]["mistakes"] <= target
    assert all(e["mistakes"] > target for e in epochs[:-1])
    # result.json's final value, from the validation images' own outcomes
    outcomes = (Path(out["run_dir"]) / "valid_outcomes.csv").read_text().splitlines()
    wrong = sum(line.split(",")[3] == "0" for line in outcomes[1:]) / (len(outcomes) - 1)
    assert out["metrics"]["mistakes"] == pytest.approx(wrong) == pytest.approx(1 - out["accuracy"])
    assert json.loads((Path(out["run_dir"]) / "result.json").read_text())["metrics"] == out["metrics"]
    assert "mistakes" in (Path(out["run_dir"]) / "epochs.csv").read_text().splitlines()[0].split(",")
    # W&B: its own series each epoch, and the summary
    (log,) = list((tmp_path / "wandb").rglob("*.wandb"))
    records = [json.loads(line) for line in local_runs._inspect(log, "--json").splitlines()]
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    assert [h["valid/mistakes"] for h in history if "valid/mistakes" in h] == pytest.approx(
        [e["mistakes"] for e in epochs]
    )
    assert local_runs.read(log)["summary"]["mistakes"] == pytest.approx(out["metrics"]["mistakes"])
    # `sevenstep runs`: a column of its own
    listing = CliRunner().invoke(app, ["runs", str(tmp_path / "wandb"), "--json"])
    assert listing.exit_code == 0, listing.output
    (row,) = json.loads(listing.stdout)
    header = local_runs.table([row])[0]
    assert "mistakes" in header and local_runs.table([row])[1][header.index("mistakes")] == (
        f"{out['metrics']['mistakes']:.4f}"
    )


def test_a_declared_metric_is_a_choice_with_its_direction_for_stop_rules_and_sweeps(mistakes, tmp_path):
    from sevenstep import recipe
    from sevenstep.sweep import spec

    assert (
        recipe.load(LINEAR, ["steps.stop.name=patience", "steps.stop.metric=mistakes"]).steps["stop"][
            "metric"
        ]
        == "mistakes"
    )
    patience = recipe.load(LINEAR, ["steps.stop.name=patience", "steps.stop.metric=mistakes"]).build_steps()[
        "stop"
    ]
    assert patience.comp(0.1, 0.2)  # lower is better: 0.1 improves on 0.2
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'recipe = "{LINEAR}"\nmetric = "mistakes"\n[space]\n"steps.step.lr" = [0.1, 1.0]\n')
    assert spec.load(sweep).direction == "minimize"
    shown = CliRunner().invoke(app, ["steps", "stop"]).output
    assert "mistakes" in shown
    with pytest.raises(UsageError, match="declared twice"):
        metrics.declare(Metric("mistakes", lower_is_better=False))


def test_without_the_declaration_the_metric_is_refused_with_the_choices(tmp_path):
    with pytest.raises(UsageError, match="must be one of train_loss, valid_loss, accuracy; got 'mistakes'"):
        from sevenstep import recipe

        recipe.load(LINEAR, ["steps.stop.name=target", "steps.stop.metric=mistakes"])
