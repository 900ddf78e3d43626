"""The intervals and tests against values computed independently: textbook formulas and worked examples."""

from __future__ import annotations

import math

import pytest
from scipy import stats as scipy_stats

from sevenstep.compare import stats


def test_one_seed_interval_is_wilsons_over_the_images():
    # Wilson's score interval, by its formula: 95.0% of 200 images (the README's old baseline figure)
    p, n, z = 0.95, 200, 1.959963984540054
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    low, high = stats.interval([0.95], 200)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-9)
    assert (round(100 * low, 1), round(100 * high, 1)) == (91.0, 97.3)


def test_several_seeds_interval_is_students_t():
    accs = [0.935, 0.965, 0.950, 0.955]
    mean = sum(accs) / 4
    sd = math.sqrt(sum((a - mean) ** 2 for a in accs) / 3)
    t_975_3 = 3.182446305284263  # Student's t, 3 degrees of freedom, from a table
    low, high = stats.interval(accs, 200)
    assert (low, high) == pytest.approx((mean - t_975_3 * sd / 2, mean + t_975_3 * sd / 2), abs=1e-9)


def test_mcnemar_exact_on_a_textbook_example():
    # 10 images only a gets right, 2 only b gets right, 88 both or neither: two-sided exact binomial p
    correct_a = {f"i{k}": [1] for k in range(100)}
    correct_b = {f"i{k}": [0 if k < 10 else 1] for k in range(100)}
    for k in range(10, 12):
        correct_a[f"i{k}"] = [0]
    p = 2 * sum(math.comb(12, k) for k in range(3)) / 2**12  # 0.0386
    t = stats.paired("a", "b", [0.98], [0.90], correct_a, correct_b)
    assert t.p_images == pytest.approx(p) and t.p_seeds is None
    assert "1 seed" in t.test


def test_the_seed_test_is_a_paired_t_test():
    a, b = [0.95, 0.97, 0.96, 0.99], [0.94, 0.95, 0.95, 0.96]
    t = stats.paired("a", "b", a, b, {}, {})
    assert t.p_seeds == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert t.p_images == 1.0 and t.p_raw == 1.0  # no image evidence: the verdict needs both


def test_holm_on_a_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone: 0.06 for the last
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5]) == [0.5]


def test_identical_methods_are_never_called_different():
    correct = {f"i{k}": [k % 3 != 0, k % 5 != 0] for k in range(200)}
    (t,) = stats.decide([stats.paired("a", "b", [0.9, 0.8], [0.9, 0.8], correct, dict(correct))])
    assert (t.p_seeds, t.p_images, t.verdict) == (1.0, 1.0, "no difference")


def test_a_verdict_needs_both_tests_and_says_which_way():
    many = {f"i{k}": [1, 1, 1] for k in range(100)}
    few = {f"i{k}": [1, 1, 1] if k >= 30 else [0, 0, 0] for k in range(100)}
    better, worse = stats.decide(
        [
            stats.paired("a", "b", [1.0, 1.0, 0.99], [0.7, 0.71, 0.7], many, few),
            stats.paired("b", "a", [0.7, 0.71, 0.7], [1.0, 1.0, 0.99], few, many),
        ]
    )
    assert better.verdict == "better" and worse.verdict == "worse" and better.p < 0.05
    # the same seeds, but only 3 images of difference: the image test cannot tell, so no verdict
    close = {f"i{k}": [1, 1, 1] if k >= 3 else [0, 0, 0] for k in range(100)}
    (t,) = stats.decide([stats.paired("a", "b", [1.0, 1.0, 0.99], [0.97, 0.97, 0.96], many, close)])
    assert t.p_seeds < 0.05 and t.p_images > 0.05 and t.verdict == "no difference"


def test_a_seed_that_stays_at_chance_is_named():
    assert stats.at_chance(0.505, 200, 0.5) and not stats.at_chance(0.935, 200, 0.5)
    assert stats.at_chance(0.13, 1000, 0.1) is False  # 13% of 1,000 on ten classes is above chance
