"""Recipe files and `sevenstep run`: the keys are a contract; bad input is a clear message, exit 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import LINEAR, SHIPPED, SHIPPED_RECIPES
from sevenstep import recipe, registry, schema
from sevenstep.cli import app
from sevenstep.errors import UsageError
from sevenstep.loop import run_folder, train

RECIPES = [Path("experiments") / name for name in SHIPPED_RECIPES]


def test_the_shipped_list_is_what_git_ships_in_experiments():
    """The suite tests the shipped files by name: one added to experiments/ must be added to the list too."""
    import shutil
    import subprocess

    if not (shutil.which("git") and Path(".git").exists()):
        pytest.skip("not a git checkout: the files git ships cannot be listed")
    tracked = subprocess.run(["git", "ls-files", "experiments"], capture_output=True, text=True, check=True)
    assert sorted(Path(f).name for f in tracked.stdout.split()) == sorted(SHIPPED)


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_shipped_recipes_are_valid(path):
    r = recipe.load(path)
    assert set(r.steps) == set(registry.STEPS)
    assert r.to_dict()["steps"]["step"]["lr"] > 0


def test_the_fastbook_file_reads_as_written():
    r = recipe.load(LINEAR)
    assert (r.name, r.seed, r.data["source"], r.data["bs"]) == ("fastbook-linear-3v7", 42, "mnist5k-3v7", 256)
    assert r.steps["init"] == {"name": "normal", "std": 1.0}
    assert r.steps["step"] == {"name": "sgd", "lr": 1.0, "wd": 0.0}
    assert r.steps["repeat"] == {"name": "epochs", "n": 20}


def test_set_overrides_with_toml_values_and_bare_strings():
    r = recipe.load(
        LINEAR,
        [
            "steps.step.lr=0.5",
            "data.source=mnist5k",
            "steps.predict.name=mlp",
            "steps.predict.hidden=[8, 4]",
            "data.augment=true",
            "seed=7",
        ],
    )
    assert r.steps["step"]["lr"] == 0.5 and r.data["source"] == "mnist5k" and r.data["augment"] is True
    assert (
        r.steps["predict"] == {"name": "mlp", "hidden": [8, 4], "activation": "relu", "dropout": 0.0}
        and r.seed == 7
    )


def test_set_changing_a_step_drops_its_old_parameters():
    r = recipe.load(LINEAR, ["steps.stop.name=patience", "steps.stop.patience=2", "steps.init.name=kaiming"])
    assert r.steps["stop"] == {"name": "patience", "metric": "valid_loss", "patience": 2, "min_delta": 0.0,
                               "restore_best": False}  # fmt: skip
    assert r.steps["init"] == {"name": "kaiming"}  # std belonged to 'normal'


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["steps.init.name=gaussian"], "unknown init option 'gaussian'; valid options: normal, zeros"),
        (["steps.step.lrate=0.1"], "sgd' has no parameter 'lrate'; its parameters: lr, wd"),
        (["steps.step.lr=fast"], "steps.step.lr: expected a number (float), got 'fast' (str)"),
        (["steps.repeat.n=2.5"], "steps.repeat.n: expected an integer, got 2.5"),
        (["data.augment=1"], "data.augment: expected true or false, got 1"),
        (["data.bs=0"], "data.bs must be at least 1"),
        (["steps.step.lr=-1"], "steps.step.lr must be greater than zero"),
        (["steps.predict.name=mlp", "steps.predict.activation=swish"], "activation must be one of relu"),
        (
            ["steps.stop.name=target", "steps.stop.metric=f1"],
            "metric must be one of train_loss, valid_loss, accuracy",
        ),
        (["data.colour=red"], "--set data.colour: no such key"),
        (["steps.optimizer.name=adam"], "--set steps.optimizer.name: no such key"),
        (["lr"], "expected KEY=VALUE"),
        # #38 item 15: an overflow inside torch's step, as a traceback
        (["steps.step.lr=1e308"], "steps.step.lr: 1e+308 does not fit in a 32-bit float (at most 3.403e+38)"),
        # #36 item 18: a name in the wrong case is guessed; a --set's mistake is said once
        (["steps.step.name=SGD"], "steps.step.name: unknown step option 'SGD' (did you mean 'sgd'?)"),
        (
            ["steps.step.lrr=0.1"],
            "--set steps.step.lrr: step option 'sgd' has no parameter 'lrr' (did you mean",
        ),
    ],
)
def test_bad_recipes_name_the_key_and_what_is_expected(sets, expected):
    with pytest.raises(UsageError) as e:
        recipe.load(LINEAR, sets)
    assert expected in str(e.value) and ": --set " not in str(e.value)  # a --set named once


def test_an_unknown_option_in_a_file_names_the_file_and_key(tmp_path):
    """#36 item 18: `name = "SGD"` in a file said "unknown step option 'SGD'", with no file and no guess."""
    file = tmp_path / "mine.toml"
    file.write_text(Path(LINEAR).read_text().replace('name = "sgd"', 'name = "SGD"'))
    with pytest.raises(
        UsageError, match=r"mine.toml: steps.step.name: unknown step option 'SGD' \(did you mean 'sgd'"
    ):
        recipe.load(file)


def test_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[steps.step]\nlr = = 3\n')
    with pytest.raises(UsageError, match=r"bad.toml: not valid TOML: .*line 3"):
        recipe.load(bad)
    with pytest.raises(UsageError, match="missing.toml: no such file"):
        recipe.load(tmp_path / "missing.toml")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('name = "x"\nepochs = 3\n')
    with pytest.raises(UsageError, match="unknown key 'epochs'"):
        recipe.load(unknown)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["experiments/nope.toml"], "no such file"),
        (
            [LINEAR, "--set", "steps.loss.name=hingeloss"],
            "valid options: mnist_loss, cross_entropy, mse, bce",
        ),
        ([LINEAR, "--set", "steps.step.momentum=0.9"], "has no parameter 'momentum'"),
        ([LINEAR, "--set", "data.source=mnist5k"], "two-class loss"),
        (
            [LINEAR, "--set", "steps.gradient.name=finite_difference", "--set", "steps.predict.name=cnn"],
            "max_params",
        ),
    ],
)
def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, args, expected):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["run", *args, "--runs-dir", str(runs)])
    assert result.exit_code == 2, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert not runs.exists() or not any(runs.iterdir())


def test_an_unusable_runs_dir_is_refused_before_training(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    result = CliRunner().invoke(app, ["run", LINEAR, "--runs-dir", str(blocker), "--wandb", "disabled"])
    assert result.exit_code == 2 and "is a file; expected a folder" in result.output
    assert "epoch" not in result.output  # nothing trained, nothing lost


def test_option_defaults_are_not_shared_between_recipes():
    a = recipe.load(LINEAR, ["steps.predict.name=mlp"])
    a.steps["predict"]["hidden"].append(99)
    assert recipe.load(LINEAR, ["steps.predict.name=mlp"]).steps["predict"]["hidden"] == [30]


def test_cli_run_json_and_the_saved_run(tmp_path):
    runs = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["run", LINEAR, "--set", "steps.repeat.n=2", "--json", "--runs-dir", str(runs)]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"name", "recipe", "epochs", "accuracy", "stop_reason", "run_dir"} <= set(out)
    # the run is named after what --set changed (#36 item 9): its folder and W&B run tell it from the file's own
    assert out["name"] == "fastbook-linear-3v7_n-2" and out["stop_reason"] == "epochs_done"
    assert [e["epoch"] for e in out["epochs"]] == [1, 2]
    assert out["accuracy"] == pytest.approx(out["epochs"][-1]["accuracy"])
    assert out["recipe"]["steps"]["repeat"]["n"] == 2

    run_dir = Path(out["run_dir"])
    assert run_dir.parent == runs and run_dir.name.startswith("fastbook-linear-3v7_n-2-")
    # #36 item 17: valid_outcomes.csv's items are relative to a root its result.json names: each opens
    saved = json.loads((run_dir / "result.json").read_text())
    items = [r["item"] for r in run_folder.read_outcomes(run_dir)]
    assert items and all((Path(saved["items_root"]) / item).is_file() for item in items)
    assert sorted(p.name for p in runs.iterdir()) == [run_dir.name]  # no temporary folder left behind
    assert (
        recipe.load(run_dir / "recipe.toml").to_dict() == out["recipe"]
    )  # the resolved recipe re-runs as is
    state = torch.load(run_dir / "model.pth", weights_only=True)
    assert set(state) == {"1.weight", "1.bias"}
    learn = train.load_learner(run_dir)
    with learn.no_bar():
        preds, targs = learn.get_preds(dl=learn.dls.valid)
    assert preds.shape == (len(targs), 2)  # probabilities of 3 and of 7, from the loss's activation
    assert ((preds.argmax(1) == targs).float().mean().item()) == pytest.approx(out["accuracy"])


def test_cli_run_human_output_and_a_diverging_run(tmp_path):
    runs = str(tmp_path / "runs")
    ok = CliRunner().invoke(app, ["run", LINEAR, "--set", "steps.repeat.n=1", "--runs-dir", runs])
    assert ok.exit_code == 0 and "accuracy" in ok.output and "finished its 1 epoch" in ok.output
    bad = CliRunner().invoke(
        app,
        [
            "run",
            LINEAR,
            "--set",
            "steps.loss.name=mse",
            "--set",
            "steps.step.lr=1e12",
            "--set",
            "data.normalize=true",
            "--runs-dir",
            runs,
        ],
    )
    assert bad.exit_code == 1 and "diverged at epoch 1" in bad.output and "Traceback" not in bad.output
    assert "Try a lower learning rate than steps.step.lr = 1e+12" in bad.output
    # #38 item 15: diverged before any step was taken: the init is named, not the learning rate
    init = CliRunner().invoke(app, ["run", LINEAR, "--set", "steps.init.std=3e38", "--runs-dir", runs])
    assert init.exit_code == 1 and "diverged at epoch 1, batch 1" in init.output, init.output
    assert (
        "No step had been taken yet: look at the init, steps.init.name = 'normal' (std = 3e+38)"
        in init.output
    )
    assert "learning rate" not in init.output


def test_steps_command_lists_the_registry():
    result = CliRunner().invoke(app, ["steps"])
    assert result.exit_code == 0
    for step, options in registry.REGISTRY.items():
        assert step in result.output
        for name, opt in options.items():
            assert name in result.output and opt.doc in result.output
    bad = CliRunner().invoke(app, ["steps", "jump"])
    assert bad.exit_code == 2 and "the seven steps are: 1 init, 2 predict" in bad.output
    # #36 item 12: a description is whole (it was cut at its docstring's first line), and a step by its number
    patience = registry.REGISTRY["stop"]["patience"].doc
    assert patience.endswith("(restore_best: end with the best epoch's weights).") and "\n" not in patience
    third = CliRunner().invoke(app, ["steps", "3"])
    assert third.exit_code == 0 and third.output.startswith("3. loss") and "mnist_loss" in third.output


@pytest.mark.parametrize(
    "sets, hint",
    [
        (["data.batch_size=8"], "did you mean 'data.bs'?"),
        (["sede=3"], "did you mean 'seed'?"),
        (["steps.step.learning_rate=0.1"], "did you mean 'lr'?"),
        (["steps.repeat.epochs=3"], "did you mean 'n'?"),
        (["steps.loss.name=cross_entopy"], "did you mean 'cross_entropy'?"),
        (["data.source=mnist5k3v7"], "did you mean 'mnist5k-3v7'?"),
        (["steps.predict.name=mlp", "steps.predict.activation=rellu"], "did you mean 'relu'?"),
    ],
)
def test_a_typo_gets_a_did_you_mean(sets, hint, tmp_path):
    args = [a for s in sets for a in ("--set", s)]
    result = CliRunner().invoke(
        app, ["run", LINEAR, *args, "--runs-dir", str(tmp_path), "--wandb", "disabled"]
    )
    assert result.exit_code == 2 and hint in result.output and "Traceback" not in result.output


def test_version():
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"sevenstep {version('sevenstep')}"


def test_a_mistake_in_a_set_names_the_set_not_the_file(tmp_path):
    with pytest.raises(UsageError, match=r"^--set steps.step.lr=abc: steps.step.lr: expected a number"):
        recipe.load(LINEAR, ["steps.step.lr=abc"])
    with pytest.raises(UsageError, match=r"^--set data.bs=0: data.bs must be at least 1"):
        recipe.load(LINEAR, ["data.bs=0"])
    bad = tmp_path / "bad.toml"
    bad.write_text('[steps.step]\nname = "sgd"\nlr = "fast"\n')
    with pytest.raises(UsageError, match=f"^{bad}: steps.step.lr: expected a number"):  # the file's own
        recipe.load(bad, ["data.bs=8"])
    assert recipe.load(bad, ["steps.step.lr=0.1"]).steps["step"]["lr"] == 0.1  # a --set may mend the file


def test_a_run_is_named_after_what_set_changed(tmp_path):
    sets = ["steps.step.lr=0.3", "steps.loss.name=mse", f"data.source=folder:{tmp_path / 'my digits'}"]
    named = recipe.named_for_sets(recipe.load(LINEAR, sets[:2]), sets)
    assert named.name == "fastbook-linear-3v7_lr-0.3_loss-mse_source-my-digits"
    schema.folder_name(named.name, "name", "test")  # still a name a run folder can take
    assert recipe.named_for_sets(recipe.load(LINEAR), []).name == "fastbook-linear-3v7"
    given = ["name=mine", "steps.step.lr=0.3"]
    assert recipe.named_for_sets(recipe.load(LINEAR, given), given).name == "mine"
