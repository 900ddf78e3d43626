"""A held-out test set: a test/ folder beside train/ and valid/, or data.test = "folder:PATH"; evaluated once at
the end with the final weights, reported beside validation, never used for training, stopping or choosing."""

from __future__ import annotations

import json

import pytest

from conftest import LINEAR, make_folder
from sevenstep import compare, recipe
from sevenstep.errors import UsageError
from sevenstep.loop import run_folder, train

QUICK = ["steps.repeat.n=3", "data.bs=8"]


def _with_test(root, n_test=5):
    make_folder(root, n_train=12, n_valid=4)
    make_folder(root, n_train=n_test, n_valid=0, splits=("test", "unused"), seed=1)
    (root / "unused" / "a").rmdir(), (root / "unused" / "b").rmdir(), (root / "unused").rmdir()
    return root


def test_a_test_folder_is_evaluated_once_with_the_final_weights_and_changes_nothing_else(tmp_path):
    plain = make_folder(tmp_path / "plain", n_train=12, n_valid=4)
    tested = _with_test(tmp_path / "tested")
    without = train.run(recipe.load(LINEAR, [f"data.source=folder:{plain}", *QUICK]), runs_dir=tmp_path / "r")
    run = train.run(recipe.load(LINEAR, [f"data.source=folder:{tested}", *QUICK]), runs_dir=tmp_path / "r")
    # the same training, epoch by epoch: the test images took no part in it
    assert [e["valid_loss"] for e in run.epochs] == [e["valid_loss"] for e in without.epochs]
    assert run.accuracy == without.accuracy and without.test is None
    dls = run.learn.dls
    test_files = {str(f) for f in dls.test_items}
    assert len(test_files) == 10 and not test_files & {str(f) for f in dls.train.items + dls.valid.items}
    rows = run_folder.read_outcomes(run.run_dir, run_folder.TEST_OUTCOMES)
    assert {r["item"] for r in rows} == {f"test/{c}/{i}.png" for c in "ab" for i in range(5)}
    assert run.test["n"] == 10
    assert run.test["accuracy"] == pytest.approx(sum(r["correct"] for r in rows) / 10)
    # the saved weights, on those images by hand, give the same accuracy
    preds, targs = run.learn.get_preds(dl=dls.test_dl(dls.test_items, with_labels=True))
    assert (preds.argmax(1) == targs).float().mean().item() == pytest.approx(run.test["accuracy"])
    saved = json.loads((run_folder.Path(run.run_dir) / run_folder.RESULT).read_text())
    assert saved["test"]["n"] == 10 and saved["test"]["accuracy"] == run.test["accuracy"]


def test_data_test_names_a_folder_of_class_folders(tmp_path):
    source = make_folder(tmp_path / "src", n_train=12, n_valid=4)
    held = make_folder(tmp_path / "held", n_train=3, n_valid=0, splits=("imgs", "none"), seed=1)
    r = recipe.load(LINEAR, [f"data.source=folder:{source}", f"data.test=folder:{held / 'imgs'}", *QUICK])
    run = train.run(r)
    assert run.test["n"] == 6
    odd = make_folder(
        tmp_path / "odd", classes=("a", "zebra"), n_train=2, n_valid=0, splits=("imgs", "x"), seed=2
    )
    r = recipe.load(LINEAR, [f"data.source=folder:{source}", f"data.test=folder:{odd / 'imgs'}", *QUICK])
    with pytest.raises(UsageError, match=r"class folder\(s\) zebra that training does not have \(a, b\)"):
        train.build_learner(r)
    with pytest.raises(UsageError, match=r"data.test = 'mnist5k': expected folder:PATH"):
        recipe.load(LINEAR, ["data.test=mnist5k"])


def test_a_set_folder_path_is_saved_resolved(tmp_path, monkeypatch):
    """`--set data.test=folder:REL` (and data.source) mean REL from the current folder, wherever the saved
    recipe is read later."""
    _with_test(tmp_path / "shapes")
    monkeypatch.chdir(tmp_path)
    r = recipe.load(LINEAR, ["data.source=folder:shapes", "data.test=folder:shapes/test"])
    assert r.data["source"] == f"folder:{tmp_path / 'shapes'}"
    assert r.data["test"] == f"folder:{tmp_path / 'shapes' / 'test'}"


def test_a_comparison_reports_the_test_set_beside_validation(tmp_path):
    tested = _with_test(tmp_path / "tested")
    file = tmp_path / "cmp.toml"
    file.write_text(
        f'source = "folder:{tested}"\nseeds = 2\n[[runs]]\nrecipe = "{LINEAR}"\nlabel = "linear"\n'
        'set = { "steps.repeat.n" = 2, "data.bs" = 8 }\n'
    )
    results, report = compare.run(compare.load(file), tmp_path / "runs", log=lambda *a: None)
    base, sgd = results[0], [r for r in results if r.kind == "sgd"]
    assert len(sgd) == 2 and base.test["n"] == 10 and all(r.test["n"] == 10 for r in sgd)
    summary = json.loads((report / "results.json").read_text())
    (linear,) = [m for m in summary["methods"] if m["method"] == "linear"]
    assert linear["test_mean"] == pytest.approx(sum(r.test["accuracy"] for r in sgd) / 2)
    low, high = linear["test_interval"]
    assert low <= linear["test_mean"] <= high
    text = (report / "results.md").read_text()
    assert "test (held out)" in text and "nothing stopped, chose or was tested on them" in text
