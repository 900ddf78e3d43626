"""Your own step options from your own files: a plugin loss trains from a recipe, through the CLI and in a
comparison; every mistake in a plugin is one clear line and exit 2."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sevenstep import compare, plugins, recipe, registry
from sevenstep.cli import app
from sevenstep.errors import UsageError

EXPERIMENTS = Path("experiments").resolve()


@pytest.fixture(autouse=True)
def registry_as_shipped():
    """Each test's plugins are forgotten after it: other tests see the built-in options only."""
    saved = {step: dict(options) for step, options in registry.REGISTRY.items()}
    loaded = dict(plugins._loaded)
    yield
    for step, options in saved.items():
        registry.REGISTRY[step].clear()
        registry.REGISTRY[step].update(options)
    plugins._loaded.clear()
    plugins._loaded.update(loaded)


def _plugin(folder: Path, body: str, name: str = "mine.py") -> Path:
    path = folder / name
    header = "import torch\nfrom sevenstep.registry import option\nfrom sevenstep.steps.loss import Loss\n\n"
    path.write_text(header + textwrap.dedent(body))
    return path


def test_shipped_hinge_loss_equals_its_formula_and_trains_through_the_cli(tmp_path):
    r = recipe.load(EXPERIMENTS / "hinge_3v7.toml", ["steps.loss.margin=0.5"])
    assert r.steps["loss"] == {"name": "hinge", "margin": 0.5} and r.steps["init"]["name"] == "lecun"
    loss = registry.get("loss", "hinge").build({"margin": 0.5})
    pred, targ = torch.tensor([[2.0], [0.2], [-1.0], [0.1]]), torch.tensor([1, 1, 0, 0])
    torch.testing.assert_close(loss.func.per_item(pred, targ), torch.tensor([0.0, 0.3, 0.0, 0.6]))

    out = CliRunner().invoke(app, ["run", str(EXPERIMENTS / "hinge_3v7.toml"), "--json", "--runs-dir", str(tmp_path / "runs"), "--wandb-dir", str(tmp_path)])  # fmt: skip
    assert out.exit_code == 0, out.output
    run = json.loads(out.stdout)
    assert run["accuracy"] > 0.9  # well above the 50% of chance on 3s and 7s
    plugin = str(EXPERIMENTS / "my_steps.py")
    digest = __import__("hashlib").sha256(Path(plugin).read_bytes()).hexdigest()
    assert run["recipe"]["plugins"] == [plugin] and run["recipe"]["plugin_sha256"] == {plugin: digest}
    saved = recipe.read_toml(Path(run["run_dir"]) / "recipe.toml")
    assert saved["plugin_sha256"] == {plugin: digest}  # the run can be traced to the code it ran
    listed = json.loads(CliRunner().invoke(app, ["runs", str(tmp_path / "wandb"), "--json"]).stdout)
    assert (
        listed[0]["config"]["plugins"] == [plugin]
        and listed[0]["config"][f"plugin_sha256.{plugin}"] == digest
    )


def test_a_plugin_option_in_a_comparison(tmp_path, tiny_folder):
    folder = tmp_path / "mine"
    folder.mkdir()
    _plugin(
        folder,
        '''
        @option("loss")
        def squared_hinge(margin: float = 1.0) -> Loss:
            """Hinge, squared."""
            return Loss(lambda p, t: (margin - (t * 2 - 1) * p.squeeze(-1)).clamp(min=0) ** 2, binary=True)
    ''',
    )
    (folder / "r.toml").write_text('plugins = ["mine.py"]\n[steps.loss]\nname = "squared_hinge"\n[steps.repeat]\nname = "epochs"\nn = 2\n[data]\nbs = 8\n')  # fmt: skip
    (folder / "cmp.toml").write_text(
        f'source = "folder:{tiny_folder}"\n[[runs]]\nrecipe = "r.toml"\nlabel = "sq"\n'
    )
    results, _ = compare.run(compare.load(folder / "cmp.toml"), tmp_path / "runs", log=lambda *a: None)
    sgd = [r for r in results if r.kind == "sgd"]
    assert [r.status for r in sgd] == ["ok"] and sgd[0].accuracy is not None


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("def broken(:\n", r"mine\.py, line 5: syntax error"),
        ("import no_such_module_here\n", r"mine\.py, line 5: plugin failed to load: ModuleNotFoundError"),
        (
            '@option("loss")\ndef untyped(margin=1.0) -> Loss:\n    return Loss(None)\n',
            "'margin' needs a type",
        ),
        (
            '@option("loss")\ndef nodefault(margin: float) -> Loss:\n    return Loss(None)\n',
            "'margin' needs a default",
        ),
        (
            '@option("loss")\ndef mse() -> Loss:\n    return Loss(None)\n',
            "'mse' is already a built-in option",
        ),
        ('@option("jump")\ndef far() -> Loss:\n    return Loss(None)\n', "unknown step"),
    ],
    ids=["syntax", "import", "untyped", "no-default", "clash", "unknown-step"],
)
def test_plugin_mistakes_are_one_clear_line(tmp_path, body, expected):
    path = _plugin(tmp_path, body)
    with pytest.raises(UsageError, match=expected):
        plugins.load([str(path)], "r.toml")
    (tmp_path / "r.toml").write_text('plugins = ["mine.py"]\n')
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.toml"), "--runs-dir", str(tmp_path / "runs")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "mine.py" in result.output and not (tmp_path / "runs").exists()


def test_missing_plugin_and_wrong_return_type(tmp_path):
    (tmp_path / "r.toml").write_text('plugins = ["nowhere.py"]\n')
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.toml")])
    assert result.exit_code == 2 and f"plugin file {tmp_path / 'nowhere.py'} does not exist" in result.output
    result = CliRunner().invoke(app, ["steps", "--plugin", "no_such_module_either"])
    assert result.exit_code == 2 and "neither a .py file nor a module" in result.output
    _plugin(tmp_path, '@option("loss")\ndef not_a_loss(k: int = 1) -> Loss:\n    return 42\n', "odd.py")
    (tmp_path / "odd.toml").write_text('plugins = ["odd.py"]\n[steps.loss]\nname = "not_a_loss"\n')
    result = CliRunner().invoke(app, ["run", str(tmp_path / "odd.toml")])
    assert result.exit_code == 2 and "returned int; a loss option returns a loss step" in result.output


def test_steps_lists_plugin_options_beside_the_built_ins():
    result = CliRunner().invoke(app, ["steps", "--plugin", str(EXPERIMENTS / "my_steps.py")])
    assert result.exit_code == 0
    assert "hinge *" in result.output and "lecun *" in result.output and "mnist_loss" in result.output
    assert "params: margin=1.0" in result.output and "* from" in result.output


def test_an_importable_module_is_a_plugin_too(tmp_path, monkeypatch):
    (tmp_path / "class_steps.py").write_text(
        "from torch import nn\nfrom sevenstep.registry import option\nfrom sevenstep.steps.init import Init\n\n"
        '@option("init")\ndef ones(scale: float = 0.01) -> Init:\n    """Every weight `scale`."""\n'
        "    return Init(lambda m: [nn.init.constant_(p, scale) for p in m.parameters(recurse=False)])\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "r.toml").write_text('plugins = ["class_steps"]\n[steps.init]\nname = "ones"\nscale = 0.5\n')
    r = recipe.load(tmp_path / "r.toml")
    assert r.to_dict()["plugins"] == ["class_steps"] and r.steps["init"] == {"name": "ones", "scale": 0.5}
    layer = torch.nn.Linear(3, 2)
    init = r.build_steps()["init"]
    init.fill(layer)
    assert torch.all(layer.weight == 0.5)


def test_an_edited_plugin_file_is_loaded_again(tmp_path):
    """A notebook edits its steps file and runs again: the new code is what trains."""
    body = '@option("loss")\ndef edited(k: float = {k}) -> Loss:\n    """v{k}"""\n    return Loss(lambda p, t: (p.squeeze(-1) - t) ** 2, binary=True)\n'
    path = _plugin(tmp_path, body.format(k=1.0))
    first = plugins.load([str(path)])[str(path)]
    assert registry.get("loss", "edited").params["k"].default == 1.0
    assert plugins.load([str(path)])[str(path)] == first  # unchanged: not imported twice
    _plugin(tmp_path, body.format(k=2.0))
    assert plugins.load([str(path)])[str(path)] != first
    assert registry.get("loss", "edited").params["k"].default == 2.0


def test_a_run_folders_plugin_that_changed_is_refused_before_it_is_imported(
    tmp_path, tiny_folder, monkeypatch
):
    """Loading a run folder (predict, resume, load_learner) imports its plugins: a file that is not the one
    the run recorded is refused, unimported, unless SEVENSTEP_TRUST_PLUGINS=1 says to trust it."""
    from sevenstep.loop import train

    path = _plugin(tmp_path, """
        @option("loss")
        def trusted_loss() -> Loss:
            return Loss(lambda pred, targ: (pred.squeeze(-1) - targ).pow(2), binary=True)
        """)  # fmt: skip
    (tmp_path / "r.toml").write_text(
        f'plugins = ["{path.name}"]\n[data]\nsource = "folder:{tiny_folder}"\nbs = 8\n'
        '[steps.loss]\nname = "trusted_loss"\n[steps.repeat]\nname = "epochs"\nn = 1\n'
    )
    run = train.run(recipe.load(tmp_path / "r.toml"), runs_dir=tmp_path / "runs")
    train.load_learner(run.run_dir)  # the file it ran: loads
    marker = tmp_path / "imported"
    path.write_text(path.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")  # someone else's code
    with pytest.raises(UsageError, match=r"has changed since this run used it .*SEVENSTEP_TRUST_PLUGINS=1"):
        train.load_learner(run.run_dir)
    assert not marker.exists()  # refused before a line of it ran
    monkeypatch.setenv("SEVENSTEP_TRUST_PLUGINS", "1")
    train.load_learner(run.run_dir)
    assert marker.exists()


def test_a_plugin_factory_that_raises_or_a_plugin_that_exits_is_one_line(tmp_path):
    path = _plugin(tmp_path, """
        @option("loss")
        def broken_loss() -> Loss:
            raise ValueError("my factory is broken")
        """, name="broken.py")  # fmt: skip
    (tmp_path / "r.toml").write_text(f'plugins = ["{path.name}"]\n[steps.loss]\nname = "broken_loss"\n')
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.toml"), "--wandb", "disabled"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = 1 + path.read_text().splitlines().index('    raise ValueError("my factory is broken")')
    assert (
        f"{path}, line {line}: option 'broken_loss' failed: ValueError: my factory is broken" in result.output
    )
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(0)\n")
    (tmp_path / "e.toml").write_text('plugins = ["exits.py"]\n')
    result = CliRunner().invoke(app, ["run", str(tmp_path / "e.toml"), "--wandb", "disabled"])
    assert result.exit_code == 2 and "plugin called sys.exit(0) while loading" in result.output


def test_the_bytes_hashed_are_the_bytes_run_never_a_cache_nor_a_second_read(tmp_path, monkeypatch):
    """#38 item 2: a .pyc planted in __pycache__ (unchecked-hash, so Python trusts it), and a file swapped
    between its hash and its import, both ran code other than the file that was hashed."""
    import py_compile

    marker = tmp_path / "imported"
    good = '@option("loss")\ndef hashed_loss() -> Loss:\n    return Loss(lambda p, t: (p - t).abs(), binary=True)\n'
    evil = good + f"open({str(marker)!r}, 'w').close()\n"
    path = _plugin(tmp_path, evil)
    py_compile.compile(str(path), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    assert list((tmp_path / "__pycache__").glob("mine.*.pyc"))
    _plugin(tmp_path, good)  # the file now says `good`; its cache still holds `evil`
    digest = plugins.load([str(path)])[str(path)]
    assert not marker.exists() and "hashed_loss" in registry.REGISTRY["loss"]

    swapped = tmp_path / "swapped.py"
    _plugin(tmp_path, good.replace("hashed_loss", "swapped_loss"), name="swapped.py")
    check = plugins._check

    def swap_after_hashing(*args):  # the attacker's moment: after the hash is taken, before the import
        check(*args)
        swapped.write_text(swapped.read_text() + f"open({str(marker)!r}, 'w').close()\n")

    monkeypatch.setattr(plugins, "_check", swap_after_hashing)
    plugins.load([str(swapped)])
    assert not marker.exists() and "swapped_loss" in registry.REGISTRY["loss"]
    assert digest == plugins.load([str(path)])[str(path)]


def test_a_run_folder_naming_a_plugin_without_its_hash_is_refused(tmp_path, tiny_folder):
    """#38 item 2: a received run folder whose recipe.toml names a plugin and records no hash for it."""
    import tomllib

    import tomli_w

    from sevenstep.loop import train

    path = _plugin(tmp_path, '@option("loss")\ndef plain_loss() -> Loss:\n    return Loss(lambda p, t: (p.squeeze(-1) - t).pow(2), binary=True)\n')  # fmt: skip
    (tmp_path / "r.toml").write_text(
        f'plugins = ["{path.name}"]\n[data]\nsource = "folder:{tiny_folder}"\nbs = 8\n'
        '[steps.loss]\nname = "plain_loss"\n[steps.repeat]\nname = "epochs"\nn = 1\n'
    )
    run = train.run(recipe.load(tmp_path / "r.toml"), runs_dir=tmp_path / "runs")
    file = Path(run.run_dir) / "recipe.toml"
    saved = tomllib.loads(file.read_text())
    del saved["plugin_sha256"]
    file.write_text(tomli_w.dumps(saved))
    marker = tmp_path / "imported"
    path.write_text(path.read_text() + f"\nopen({str(marker)!r}, 'w').close()\n")
    plugins._loaded.clear()
    with pytest.raises(UsageError, match="is not one this run recorded"):
        train.load_learner(run.run_dir)
    assert not marker.exists()


def test_a_plugin_stop_rule_with_a_reason_of_its_own(tmp_path, tiny_folder):
    """#35: a stop rule's own reason (`halt("after_one")`) crashed with a KeyError after training, and the run
    folder of its one epoch was deleted; in a sweep with repeats, it ended the trial after its first seed."""
    path = tmp_path / "stops.py"
    path.write_text(textwrap.dedent('''
        from sevenstep.registry import option
        from sevenstep.steps.stop import Stop


        class AfterOne(Stop):
            def after_epoch(self):
                self.halt("after_one", "one epoch is enough for this lesson")


        @option("stop")
        def after_one() -> Stop:
            """Stop after the first epoch."""
            return AfterOne()
        '''))  # fmt: skip
    file = tmp_path / "r.toml"
    file.write_text(
        f'name = "one-epoch"\nplugins = ["{path.name}"]\n[data]\nsource = "folder:{tiny_folder}"\nbs = 8\n'
        '[steps.repeat]\nname = "epochs"\nn = 5\n[steps.stop]\nname = "after_one"\n'
    )
    result = CliRunner().invoke(
        app, ["run", str(file), "--wandb", "disabled", "--runs-dir", str(tmp_path / "runs")]
    )
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert (
        "one-epoch was stopped by its stop rule after 1 epoch(s) (after_one): one epoch is enough"
        in result.output
    )
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = json.loads((run_dir / "result.json").read_text())
    assert saved["stop_reason"] == "after_one" and len(saved["epochs"]) == 1
    assert (
        torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    )  # the stopping epoch's state

    sweep = tmp_path / "sweep.toml"
    sweep.write_text(f'name = "stops"\nrecipe = "{file.name}"\nmetric = "accuracy"\nsampler = "grid"\nrepeats = 2\n'
                     '[space]\n"steps.step.lr" = [0.5]\n')  # fmt: skip
    swept = CliRunner().invoke(app, ["sweep", str(sweep), "--json", "--wandb", "disabled", "--runs-dir",
                                     str(tmp_path / "runs")])  # fmt: skip
    assert swept.exit_code == 0, swept.output
    (trial,) = json.loads(swept.stdout)["trials"]
    assert trial["state"] == "complete" and len(trial["run_dirs"]) == 2 and len(trial["values"].split()) == 2
