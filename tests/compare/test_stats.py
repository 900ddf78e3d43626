"""The intervals and tests against values computed independently: textbook formulas and worked examples."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sevenstep import stats


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


def _images(columns: list[list[int]]) -> list[dict[str, int]]:
    """One outcome dict per seed from columns of 0/1 per image."""
    return [{f"i{k}": c for k, c in enumerate(col)} for col in columns]


def test_one_seed_is_mcnemars_exact_test_on_a_textbook_example():
    # 10 images only a gets right, 2 only b gets right, 88 both or neither: two-sided exact binomial p
    a = [1] * 10 + [0] * 2 + [1] * 88
    b = [0] * 10 + [1] * 2 + [1] * 88
    p = 2 * sum(math.comb(12, k) for k in range(3)) / 2**12  # 0.0386
    t = stats.paired("a", "b", _images([a]), _images([b]))
    assert t.p_raw == pytest.approx(p) and "1 seed" in t.test
    assert t.difference == pytest.approx(0.08)


def test_several_seeds_with_no_seed_spread_is_a_paired_t_test_over_the_images():
    # the same outcomes on every seed (two deterministic methods): the seeds add nothing, and the test is
    # Student's paired t over the images, on N - 1 degrees of freedom
    rng = np.random.default_rng(0)
    a, b = (rng.random(300) < 0.9).astype(int), (rng.random(300) < 0.85).astype(int)
    t = stats.paired("a", "b", _images([a, a, a]), _images([b, b, b]))
    assert t.p_raw == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert t.test.startswith("crossed") and (t.n_images, t.n_seeds) == (300, 3)


def test_the_crossed_variance_is_the_two_way_anova_one():
    # mean squares by their textbook definitions, from the row and column means of the difference table
    rng = np.random.default_rng(1)
    a = (rng.random((500, 4)) < 0.93).astype(int)
    b = np.repeat((rng.random((500, 1)) < 0.9).astype(int), 4, axis=1)
    y = a - b
    n, s = y.shape
    ms_images = s * y.mean(1).var(ddof=1)
    ms_seeds = n * y.mean(0).var(ddof=1)
    t_stat = y.mean() / math.sqrt((ms_images + ms_seeds) / (n * s))
    df = max(s - 1, (ms_images + ms_seeds) ** 2 / (ms_images**2 / (n - 1) + 2 * ms_seeds**2 / (s - 1)))
    t = stats.paired("a", "b", _images(a.T.tolist()), _images(b.T.tolist()))
    assert t.p_raw == pytest.approx(2 * scipy_stats.t.sf(abs(t_stat), df), rel=1e-9)


def test_a_seed_that_flips_an_image_is_not_charged_as_a_loss():
    # the case: the baseline (the same every seed) is right on every image; the model fixes 60 of its
    # mistakes on every seed, and each seed also flips 25 other images, different ones per seed. Averaged over
    # seeds and counted by sign, the 125 flipped images outnumber the 60 fixed; each seed alone has 60 against
    # 25, and so does the verdict
    n, seeds = 2000, 5
    base = np.ones((n, seeds), int)
    base[:60] = 0  # the baseline's mistakes the model fixes
    model = np.ones((n, seeds), int)
    for s in range(seeds):
        model[60 + 25 * s : 60 + 25 * (s + 1), s] = 0
    (t,) = stats.decide(
        [stats.paired("model", "baseline", _images(model.T.tolist()), _images(base.T.tolist()))]
    )
    assert t.verdict == "better" and t.p < 1e-4
    for s in range(seeds):  # and each seed's own McNemar test agrees
        assert stats.paired("m", "b", _images([model[:, s]]), _images([base[:, s]])).p_raw < 1e-3


def test_a_split_per_seed_is_the_corrected_resampled_t_test():
    # each seed validates on its own images: Nadeau and Bengio's variance, (1/S + n_valid/n_train) s^2
    rng = np.random.default_rng(2)
    a_runs, b_runs, per_seed = [], [], []
    for s in range(5):
        a, b = (rng.random(200) < 0.95).astype(int), (rng.random(200) < 0.93).astype(int)
        a_runs.append({f"s{s}-i{k}": v for k, v in enumerate(a)})
        b_runs.append({f"s{s}-i{k}": v for k, v in enumerate(b)})
        per_seed.append((a - b).mean())
    d = np.array(per_seed)
    t_stat = d.mean() / math.sqrt((1 / 5 + 0.25) * d.var(ddof=1))
    t = stats.paired("a", "b", a_runs, b_runs, valid_to_train=0.25)
    assert t.p_raw == pytest.approx(2 * scipy_stats.t.sf(abs(t_stat), 4), rel=1e-9)
    assert "resampled" in t.test


def test_holm_on_a_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone: 0.06 for the last
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5]) == [0.5]


def test_identical_methods_are_never_called_different():
    correct = _images([[k % 3 != 0 for k in range(200)], [k % 5 != 0 for k in range(200)]])
    (t,) = stats.decide([stats.paired("a", "b", correct, correct)])
    assert (t.p_raw, t.verdict, t.settle) == (1.0, "not shown", "no difference observed at all")


def test_a_verdict_says_which_way_and_what_would_settle_a_not_shown():
    many, few = [1] * 100, [1] * 70 + [0] * 30
    better, worse = stats.decide(
        [stats.paired("a", "b", _images([many] * 3), _images([few] * 3)),
         stats.paired("b", "a", _images([few] * 3), _images([many] * 3))]
    )  # fmt: skip
    assert better.verdict == "better" and worse.verdict == "worse" and better.p < 0.05
    assert better.settle == ""
    # 3 images of difference in 100: not shown, and about how many images would show it
    close = [1] * 97 + [0] * 3
    (t,) = stats.decide([stats.paired("a", "b", _images([many] * 3), _images([close] * 3))])
    assert t.verdict == "not shown"
    images = int(re.search(r"about ([\d,]+) images", t.settle).group(1).replace(",", ""))
    # the same 3% on that many images is shown
    big = [[1] * images, [1] * (images - round(0.03 * images)) + [0] * round(0.03 * images)]
    (shown,) = stats.decide([stats.paired("a", "b", _images([big[0]] * 3), _images([big[1]] * 3))])
    assert shown.verdict == "better", (t.settle, shown.p)


def test_a_seed_that_stays_at_chance_is_named():
    assert stats.at_chance(0.505, 200, 0.5) and not stats.at_chance(0.935, 200, 0.5)
    assert stats.at_chance(0.13, 1000, 0.1) is False  # 13% of 1,000 on ten classes is above chance
