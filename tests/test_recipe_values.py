"""Every number finite and in range, checked when the recipe is read; models too large refused before they are built."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from conftest import LINEAR
from sevenstep import recipe
from sevenstep.cli import app
from sevenstep.errors import UsageError

# 6. every number finite and in range, checked when the recipe is read; models that cannot fit refused


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["seed=18446744073709551616"], "seed: expected an integer that fits in 64 bits"),
        (["steps.init.std=nan"], "steps.init.std: expected a finite number, got nan"),
        (["steps.step.lr=nan"], "steps.step.lr: expected a finite number, got nan"),
        (["steps.step.lr=inf"], "steps.step.lr: expected a finite number, got inf"),
        (
            ["steps.stop.name=time_budget", "steps.stop.seconds=nan"],
            "steps.stop.seconds: expected a finite number",
        ),
        (["steps.stop.name=target", "steps.stop.value=nan"], "steps.stop.value: expected a finite number"),
        (["steps.predict.name=resnet", "steps.predict.widen=1e-9"], "widen must be at least 1/64"),
        (["steps.predict.name=resnet", "steps.predict.layers=[]"], "layers needs at least one stage"),
        (["steps.predict.name=mlp", "steps.predict.hidden=[30, nan]"], "expected a list of an integer"),
    ],
)
def test_values_are_refused_when_the_recipe_is_read(sets, expected, tmp_path):
    with pytest.raises(UsageError, match=expected.replace("[", r"\[")):
        recipe.load(LINEAR, sets)
    result = CliRunner().invoke(app, ["run", LINEAR, *[a for s in sets for a in ("--set", s)],
                                      "--runs-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_a_model_beyond_this_machines_memory_is_refused_before_it_is_built(tmp_path):
    sets = [
        "steps.predict.name=mlp",
        "steps.predict.hidden=[100000, 100000]",
        "steps.loss.name=cross_entropy",
    ]
    result = CliRunner().invoke(app, ["run", LINEAR, *[a for s in sets for a in ("--set", s)],
                                      "--runs-dir", str(tmp_path / "runs"), "--wandb", "disabled"])  # fmt: skip
    assert result.exit_code == 2, result.output
    n = 784 * 100_000 + 100_000 + 100_000 * 100_000 + 100_000 + 100_000 * 2 + 2  # 784-100000-100000-2
    assert f"{n:,} parameters" in result.output and "GiB of memory" in result.output
