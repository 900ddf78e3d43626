"""Comparisons over several seeds: paired runs, per-image outcomes, intervals and verdicts in every output."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import LINEAR
from sevenstep import compare, recipe
from sevenstep.cli import app
from sevenstep.errors import UsageError
from sevenstep.loop import run_folder, train

SIMPLE_NET = str(Path("experiments/fastbook_simple_net.toml").resolve())
QUICK = '{ "steps.repeat.n" = 2, "data.bs" = 8 }'


def _file(tmp_path: Path, body: str, name: str = "cmp.toml") -> Path:
    file = tmp_path / name
    file.write_text(body)
    return file


def test_a_runs_folder_keeps_each_validation_images_outcome(tmp_path, tiny_folder):
    run = train.run(
        recipe.load(LINEAR, [f"data.source=folder:{tiny_folder}", "data.bs=8"]), runs_dir=tmp_path
    )
    rows = run_folder.read_outcomes(run.run_dir)
    assert len(rows) == run.n_valid == 8
    assert {r["item"] for r in rows} == {f"valid/{c}/{i}.png" for c in "ab" for i in range(4)}
    assert all(r["correct"] == (r["label"] == r["predicted"]) for r in rows)
    assert sum(r["correct"] for r in rows) / len(rows) == pytest.approx(run.accuracy)
    assert all(0 <= r["p_true"] <= 1 and r["loss"] >= 0 for r in rows)
    # the probability of the true class is the one the run's own predictions give
    preds, targs = run.learn.get_preds(dl=run.learn.dls.valid)
    assert [r["p_true"] for r in rows] == pytest.approx(preds[range(len(targs)), targs].tolist(), abs=1e-5)


def test_each_seed_equals_a_separate_run_with_that_seed(tmp_path, tiny_folder):
    file = _file(
        tmp_path,
        f'source = "folder:{tiny_folder}"\nseeds = [1, 2, 3]\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "linear"\nset = {QUICK}\n',
    )
    results, report = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    sgd = [r for r in results if r.kind == "sgd"]
    assert [r.seed for r in sgd] == [1, 2, 3]
    for r in sgd:
        alone = CliRunner().invoke(app, ["run", LINEAR, "--set", f"data.source=folder:{tiny_folder}",
                                         "--set", "steps.repeat.n=2", "--set", "data.bs=8", "--set", f"seed={r.seed}",
                                         "--json", "--wandb", "disabled", "--runs-dir", str(tmp_path / "alone")])  # fmt: skip
        out = json.loads(alone.stdout.strip().splitlines()[-1])
        assert out["accuracy"] == r.accuracy and out["epochs"][-1]["valid_loss"] == r.epochs[-1]["valid_loss"]
    summary = json.loads((report / "results.json").read_text())
    (linear,) = [m for m in summary["methods"] if m["method"] == "linear"]
    assert linear["accuracies"] == [r.accuracy for r in sgd] and linear["seeds"] == [1, 2, 3]
    assert linear["mean"] == pytest.approx(sum(linear["accuracies"]) / 3)
    low, high = linear["interval"]
    assert low <= linear["mean"] <= high
    assert (
        linear["vs_baseline"]["verdict"] in ("better", "worse", "not shown")
        and 0 <= linear["vs_baseline"]["p"] <= 1
    )
    rows = {r["method"]: r for r in csv.DictReader(open(report / "results.csv"))}
    assert rows["linear"]["accuracies"].split() == [f"{a:.4f}" for a in linear["accuracies"]]
    assert rows["linear"]["vs_baseline"] == linear["vs_baseline"]["verdict"]
    assert "95% interval" in (report / "results.md").read_text() and (report / "seeds.png").exists()


def test_the_same_recipe_under_two_labels_is_never_called_different(tmp_path, tiny_folder):
    run = f'recipe = "{LINEAR}"\nset = {QUICK}\n'
    file = _file(tmp_path, f'source = "folder:{tiny_folder}"\nseeds = 3\n[[runs]]\n{run}label = "one"\n'
                           f'[[runs]]\n{run}label = "two"\n')  # fmt: skip
    results, report = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    methods = {m["method"]: m for m in json.loads((report / "results.json").read_text())["methods"]}
    assert methods["one"]["accuracies"] == methods["two"]["accuracies"]
    verdict = (
        methods["two"]["vs_best"]
        if methods["one"]["vs_best"]["verdict"] == "best"
        else methods["one"]["vs_best"]
    )
    assert verdict["verdict"] == "not shown" and verdict["p"] == 1.0


def test_a_model_far_above_the_baseline_is_called_better(tmp_path):
    file = _file(
        tmp_path,
        'source = "mnist5k"\nseeds = 3\n'
        f'[[runs]]\nrecipe = "{SIMPLE_NET}"\nlabel = "simple net"\n'
        'set = { "steps.loss.name" = "cross_entropy", "steps.step.lr" = 0.5, "steps.repeat.n" = 5 }\n',
    )
    result = CliRunner().invoke(
        app, ["compare", str(file), "--wandb", "disabled", "--runs-dir", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    table = result.stdout.split("(seeds 1, 2, 3)")[1]  # the table, not the progress log
    line = next(line for line in table.splitlines() if line.startswith("simple net"))
    assert "better (p=" in line, table
    assert "images x seeds" in table


def test_seeds_on_the_command_line_replace_the_files(tmp_path, tiny_folder):
    file = _file(tmp_path, f'source = "folder:{tiny_folder}"\nseed = 7\n[[runs]]\nrecipe = "{LINEAR}"\n')
    assert compare.load(file).seeds == [7]
    assert compare.load(file, seeds=4).seeds == [1, 2, 3, 4]


def _split_runs(tmp_path, seeds: list[int], split: str):
    """A comparison of the quick linear recipe with this split: its baselines, its runs and its report."""
    file = _file(
        tmp_path, f'seeds = {seeds}\nsplit = "{split}"\n[[runs]]\nrecipe = "{LINEAR}"\nset = {QUICK}\n'
    )
    results, report = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    return [r for r in results if r.kind == "baseline"], [r for r in results if r.kind == "sgd"], report, file


def test_a_per_seed_split_gives_every_seed_its_own_validation_images(tmp_path):
    base, sgd, _, _ = _split_runs(tmp_path, [1, 2], "per_seed")
    assert [r.seed for r in base] == [1, 2] and base[0].outcomes.keys() != base[1].outcomes.keys()
    for b, s in zip(base, sgd):  # each seed's runs validate on the same images as its baseline
        assert b.outcomes.keys() == s.outcomes.keys() and len(b.outcomes) == 200


def test_kfold_validates_every_image_once_with_the_baseline_on_each_fold(tmp_path):
    base, sgd, report, file = _split_runs(tmp_path, [4, 5, 6], "kfold")
    folds = [set(b.outcomes) for b in base]
    assert len(set().union(*folds)) == sum(map(len, folds)) == 1000  # the 1,000 images, each validated once
    for b, s in zip(base, sgd):  # each fold's runs validate on its baseline's images, stratified by class
        assert b.outcomes.keys() == s.outcomes.keys() and abs(b.majority - 0.5) < 0.01
    summary = json.loads((report / "results.json").read_text())
    (linear,) = [m for m in summary["methods"] if m["kind"] == "sgd"]
    assert "resampled" in linear["vs_baseline"]["test"] and linear["vs_baseline"]["seeds"] == 3
    assert "3 folds" in summary["legend"]
    # the same folds on another run of the same file: a fold is a fixed set of images, whatever trains on it
    again = compare.load(file)
    assert (
        again.split_options(5).items() >= {"folds": 3, "fold": 2, "split_seed": 4, "valid_pct": None}.items()
    )


def test_kfold_needs_two_seeds_and_an_embedded_source(tmp_path, tiny_folder):
    one = _file(tmp_path, f'seeds = 1\nsplit = "kfold"\n[[runs]]\nrecipe = "{LINEAR}"\n', "one.toml")
    with pytest.raises(UsageError, match="each seed a fold: give 2 seeds or more"):
        compare.load(one)
    folder = _file(tmp_path, f'source = "folder:{tiny_folder}"\nseeds = 3\nsplit = "kfold"\n[[runs]]\n'
                             f'recipe = "{LINEAR}"\n', "folder.toml")  # fmt: skip
    with pytest.raises(UsageError, match='split = "kfold" draws a new split'):
        compare.load(folder)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("seeds = []", "seeds = []: list at least one seed"),
        ("seeds = [1, 2, 1]", "seeds lists 1 more than once"),
        ('seeds = ["one"]', "seeds: expected a list of an integer or an integer"),
        ("seeds = 0", "seeds = 0: give a count of at least 1"),
        ("seeds = 2.5", "seeds: expected a list of an integer or an integer"),
    ],
)
def test_bad_seeds_are_one_clear_line(tmp_path, tiny_folder, line, expected):
    file = _file(tmp_path, f'source = "folder:{tiny_folder}"\n{line}\n[[runs]]\nrecipe = "{LINEAR}"\n')
    with pytest.raises(UsageError, match=expected.replace("[", r"\[")):
        compare.load(file)
    result = CliRunner().invoke(app, ["compare", str(file), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_a_per_seed_split_of_a_folder_source_is_refused(tmp_path, tiny_folder):
    file = _file(
        tmp_path, f'source = "folder:{tiny_folder}"\nsplit = "per_seed"\n[[runs]]\nrecipe = "{LINEAR}"\n'
    )
    result = CliRunner().invoke(app, ["compare", str(file), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "split is its own train/ and valid/ folders" in result.output
    for args in (["compare", str(file), "--seeds", "0"], ["run", LINEAR, "--seeds", "0"]):
        result = CliRunner().invoke(app, [*args, "--runs-dir", str(tmp_path)])
        assert result.exit_code == 2 and "--seeds" in result.output and "Traceback" not in result.output


def test_run_over_seeds_prints_the_mean_interval_and_every_seed(tmp_path, tiny_folder):
    result = CliRunner().invoke(app, ["run", LINEAR, "--seeds", "3", "--set", f"data.source=folder:{tiny_folder}",
                                      "--set", "steps.repeat.n=2", "--set", "data.bs=8", "--wandb", "disabled",
                                      "--runs-dir", str(tmp_path / "runs"), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert (
        out["seeds"] == [1, 2, 3]
        and len(out["accuracies"]) == 3
        and len(list((tmp_path / "runs").iterdir())) == 3
    )
    assert out["interval"][0] <= out["mean"] <= out["interval"][1]
    assert [re.search(r"-seed(\d+)-", Path(r["run_dir"]).name).group(1) for r in out["runs"]] == [
        "1",
        "2",
        "3",
    ]
    # the first seed draws the pictures, as a comparison's first seed does; every seed keeps its outcomes
    folders = [Path(r["run_dir"]) for r in out["runs"]]
    assert [(f / "confusion_matrix.png").exists() for f in folders] == [True, False, False]
    assert all((f / "valid_outcomes.csv").exists() and (f / "model.pth").exists() for f in folders)


def _two_by_two(tmp_path, tiny_folder) -> Path:
    zeros = '{ "steps.init.name" = "zeros", "steps.repeat.n" = 2, "data.bs" = 8 }'
    return _file(tmp_path, f'name = "grid"\nsource = "folder:{tiny_folder}"\nseeds = 2\n'
                           f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "zeros"\nset = {zeros}\n'
                           f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "normal"\nset = {QUICK}\n')  # fmt: skip


def _table(report: Path) -> list[tuple]:
    methods = json.loads((report / "results.json").read_text())["methods"]
    return [
        (m["method"], m["seeds"], m["accuracies"], (m["vs_baseline"] or {}).get("verdict")) for m in methods
    ]


def test_one_worker_and_two_give_the_same_table(tmp_path, tiny_folder):
    file = _two_by_two(tmp_path, tiny_folder)
    tables = []
    for workers in ("1", "2"):
        result = CliRunner().invoke(app, ["compare", str(file), "--workers", workers, "--wandb", "disabled",
                                          "--runs-dir", str(tmp_path / f"runs{workers}")])  # fmt: skip
        assert result.exit_code == 0, result.output
        (report,) = (tmp_path / f"runs{workers}").glob("compare-grid-*")
        tables.append(_table(report))
        assert not (report / "UNFINISHED").exists()
    assert tables[0] == tables[1] and [t[0] for t in tables[0]] == ["baseline (l1)", "zeros", "normal"]


def _stopped_at(call: int):
    """train.build_learner, but its `call`-th call is Ctrl-C (while that run's Learner is being built)."""
    real, calls = train.build_learner, []

    def build_learner(*a, **k):
        calls.append(1)
        if len(calls) == call:
            raise KeyboardInterrupt
        return real(*a, **k)

    return build_learner


def test_a_stopped_comparison_continues_where_it_stopped(tmp_path, tiny_folder, monkeypatch):
    file = _two_by_two(tmp_path, tiny_folder)
    real = train.build_learner
    monkeypatch.setattr(train, "build_learner", _stopped_at(3))
    results, report = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    assert [(r.method, r.seed, r.status) for r in results if r.kind == "sgd"] == [
        ("zeros", 1, "ok"), ("normal", 1, "ok"), ("zeros", 2, "interrupted"), ("normal", 2, "missing")]  # fmt: skip
    assert (report / "UNFINISHED").exists()
    kept = sorted(p.name for p in report.iterdir() if p.is_dir())
    monkeypatch.setattr(train, "build_learner", real)
    again, same = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    assert same == report and not (report / "UNFINISHED").exists()
    assert [(r.method, r.seed, r.status) for r in again if r.kind == "sgd"] == [
        ("zeros", 1, "ok"), ("normal", 1, "ok"), ("zeros", 2, "ok"), ("normal", 2, "ok")]  # fmt: skip
    runs = sorted(p.name for p in report.iterdir() if p.is_dir())
    assert set(kept) < set(runs) and len(runs) == 4  # the two finished runs kept, two more
    # a finished comparison is not continued: the same command again starts a new one
    _, third = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    assert third != report


def test_the_baseline_validates_on_the_runs_images_at_their_size(tmp_path):
    from PIL import Image

    from conftest import make_folder

    folder = make_folder(tmp_path / "mixed")
    for i, f in enumerate(sorted(folder.rglob("*.png"))[::3]):
        Image.open(f).resize((20 + i % 3 * 7, 31)).save(f)  # other sizes: only data.size can compare them
    sized = '{ "data.size" = 16, "steps.repeat.n" = 1, "data.bs" = 8 }'
    file = _file(tmp_path, f'source = "folder:{folder}"\n[[runs]]\nrecipe = "{LINEAR}"\nset = {sized}\n')
    results, report = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    base, sgd = results
    assert base.status == sgd.status == "ok" and base.outcomes.keys() == sgd.outcomes.keys()
    other = '{ "data.size" = 20, "steps.repeat.n" = 1, "data.bs" = 8 }'
    file = _file(tmp_path, f'source = "folder:{folder}"\n[[runs]]\nrecipe = "{LINEAR}"\nset = {sized}\nlabel = "a"\n'
                           f'[[runs]]\nrecipe = "{LINEAR}"\nset = {other}\nlabel = "b"\n', "two.toml")  # fmt: skip
    with pytest.raises(UsageError, match=r"the runs differ in data.size \(a: 16, b: 20\)"):
        compare.load(file)


def test_an_a_a_comparison_is_not_called_different(tmp_path):
    # one recipe on seeds 1-3 against the same recipe on seeds 4-6, as two labels: the truth is "no difference"
    file = _file(tmp_path, f'seeds = 6\n[[runs]]\nrecipe = "{LINEAR}"\nlabel = "linear"\n'
                           'set = { "steps.init.name" = "zeros", "steps.repeat.n" = 3 }\n')  # fmt: skip
    plan = compare.load(file)
    results, _ = compare.run(plan, tmp_path / "runs", log=lambda *a: None)
    a = [r for r in results if r.kind == "sgd" and r.seed <= 3]
    b = [
        dataclasses.replace(r, method="linear again", seed=r.seed - 3)
        for r in results
        if r.kind == "sgd" and r.seed > 3
    ]
    assert len(a) == len(b) == 3 and [r.accuracy for r in a] != [r.accuracy for r in b]  # other seeds indeed
    plan.seeds = [1, 2, 3]
    rows = {m.method: m for m in compare.report.methods(plan, a + b)}
    verdict = rows["linear again"].vs_best or rows["linear"].vs_best
    assert verdict["verdict"] == "not shown", verdict


def test_a_baseline_that_beats_every_recipe_is_the_best(tmp_path, tiny_folder):
    from sevenstep.compare.report import Result, methods

    file = _file(tmp_path, f'source = "folder:{tiny_folder}"\nseeds = 2\n[[runs]]\nrecipe = "{LINEAR}"\nlabel = "a"\n'
                           f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "b"\n')  # fmt: skip
    plan = compare.load(file)
    images = [f"i{k}" for k in range(300)]

    def result(method, kind, seed, wrong):  # wrong: how many of the 300 images it gets wrong
        outcomes = {i: int(k >= wrong) for k, i in enumerate(images)}
        return Result(
            method, kind, 1 - wrong / 300, {}, 0, 0.0, "ok", seed=seed, n_valid=300, outcomes=outcomes
        )

    results = [r for s in (1, 2) for r in (result("base", "baseline", s, 3), result("a", "sgd", s, 30 + s),
                                           result("b", "sgd", s, 40 + s))]  # fmt: skip
    rows = {m.method: m for m in methods(plan, results)}
    assert rows["base"].vs_best["verdict"] == "best"
    assert rows["a"].vs_best["against"] == "base" and rows["a"].vs_best["verdict"] == "worse"
    assert rows["b"].vs_best == rows["b"].vs_baseline


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["data.folds=5"], "data.folds and data.fold go together"),
        (["data.folds=5", "data.fold=6"], "data.fold between 1 and it; got 5 and 6"),
        (["data.folds=1", "data.fold=1"], "data.folds must be 2 or more"),
        (["data.folds=5", "data.fold=1", "data.valid_pct=0.2"], "two ways to split: give one of them"),
    ],
)
def test_bad_folds_are_one_clear_line(sets, expected):
    with pytest.raises(UsageError, match=re.escape(expected)):
        recipe.load(LINEAR, sets)


def test_run_over_seeds_stopped_part_way_continues_with_its_finished_seeds_kept(
    tmp_path, tiny_folder, monkeypatch
):
    """#38 item 20: a rerun of `run --seeds N` started every seed again."""
    real = train.build_learner
    args = ["run", LINEAR, "--seeds", "3", "--set", f"data.source=folder:{tiny_folder}", "--set", "steps.repeat.n=2",
            "--set", "data.bs=8", "--wandb", "disabled", "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    monkeypatch.setattr(train, "build_learner", _stopped_at(2))
    stopped = CliRunner().invoke(app, args)
    assert stopped.exit_code == 130 and "run the same command again to continue" in stopped.output, (
        stopped.output
    )
    (first,) = [p for p in (tmp_path / "runs").iterdir() if "-seed1-" in p.name]
    monkeypatch.setattr(train, "build_learner", real)
    again = CliRunner().invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    assert f"finished before, kept: {first}" in again.output
    out = json.loads(again.stdout.strip().splitlines()[-1])
    assert out["seeds"] == [1, 2, 3] and out["runs"][0]["run_dir"] == str(first)
    assert sorted(re.search(r"-seed(\d+)-", p.name).group(1) for p in (tmp_path / "runs").iterdir()
                  if (p / "result.json").exists()) == ["1", "2", "3"]  # fmt: skip
    # another recipe (more epochs) is another run: nothing of the first is kept
    other = CliRunner().invoke(
        app, [*args[:-2], "--set", "steps.repeat.n=3", "--runs-dir", str(tmp_path / "runs")]
    )
    assert other.exit_code == 0 and "kept" not in other.output, other.output
