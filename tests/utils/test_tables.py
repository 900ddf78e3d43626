"""The tables sevenstep writes and prints carry what they are given as data: a spreadsheet never runs a cell
as a formula, and a terminal never receives an escape sequence (#38 item 6)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from sevenstep import compare
from sevenstep.errors import UsageError
from sevenstep.loop import run_folder
from sevenstep.utils import tables

FORMULAS = ['=HYPERLINK("http://evil","click")', "+SUM(A1:A9)", "-2+3+cmd|' /C calc'!A0", "@SUM(1)", "\t=1"]


def test_a_formula_cell_is_written_as_text_and_read_back_as_it_was(tmp_path):
    records = [{"label": f, "accuracy": 0.5, "delta": "-0.25", "n": -3} for f in FORMULAS]
    tables.write_csv(tmp_path / "t.csv", records)
    with open(tmp_path / "t.csv", newline="") as f:
        raw = list(csv.DictReader(f))
    assert [r["label"] for r in raw] == ["'" + f for f in FORMULAS]  # what a spreadsheet opens: text
    assert {(r["delta"], r["n"]) for r in raw} == {("-0.25", "-3")}  # numbers stay numbers
    assert [r["label"] for r in tables.read_csv(tmp_path / "t.csv")] == FORMULAS


def test_a_run_folders_outcomes_keep_a_hostile_class_name_as_text(tmp_path):
    class Result:  # what run_folder.write reads of a run's result
        recipe, learn, test_outcomes = {"name": "r"}, None, []
        diverged = False
        outcomes = [{"item": "=cmd|'/C calc'!A0.png", "label": "=1+1", "predicted": "3", "correct": 0,
                     "p_true": 0.25, "loss": 1.5}]  # fmt: skip

        def to_json(self):
            return {}

    run_folder.save(Result(), tmp_path)
    text = (tmp_path / run_folder.OUTCOMES).read_text()
    assert "'=cmd" in text and "'=1+1" in text
    (row,) = run_folder.read_outcomes(tmp_path)
    assert row["item"] == "=cmd|'/C calc'!A0.png" and row["label"] == "=1+1" and row["p_true"] == 0.25


def test_the_terminal_gets_escapes_as_text_and_a_label_with_one_is_refused(tmp_path):
    title = "\x1b]0;owned\x07evil"
    printed = tables.text([["method", "accuracy"], [title, "0.5"]])
    assert "\x1b" not in printed and "\x07" not in printed and "\\x1b]0;owned\\x07evil" in printed
    file = tmp_path / "c.toml"
    file.write_text(f'[[runs]]\nrecipe = "{Path("experiments/fastbook_linear.toml").resolve()}"\n'
                    'label = "\\u001b]0;owned\\u0007"\n')  # fmt: skip
    with pytest.raises(UsageError, match=r"label: '\\x1b': control characters are not allowed"):
        compare.load(file)
