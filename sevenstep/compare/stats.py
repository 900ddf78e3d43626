"""How sure a comparison is: intervals for each method's accuracy, and paired verdicts between methods.

Two things fake a difference between two setups here, and a verdict accounts for both:

- **the seed** (init, batch order, augmentation): would other seeds change it? The *seed test* is a paired
  t-test on the per-seed accuracy differences (scipy.stats.ttest_rel); it needs two seeds or more.
- **which images are in the validation set**: would other images change it? The *image test* is McNemar's
  exact test: on the images where the two disagree (one right, the other wrong), is one right more often than
  a fair coin would be? (scipy.stats.binomtest on those images; with several seeds, each image's correctness
  is first averaged over the seeds that validated on it.)

A difference is `better` or `worse` only when both tests find it (the larger of the two p-values is below 0.05,
after Holm's correction for the number of comparisons in the table); otherwise `no difference`, meaning none
that this data can detect. With one seed only the image test is possible, and the seed's own noise is not
measured: the table says so.

Intervals (95%): across seeds, Student's t (scipy.stats.t); with one seed, Wilson's interval over the
validation images (scipy.stats.binomtest(...).proportion_ci). What is written here is the glue: scipy has
neither Holm's correction nor a two-test verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
VERDICTS = ("better", "worse", "no difference")


def interval(accuracies: list[float], n_images: int) -> tuple[float, float]:
    """A 95% interval for the mean accuracy: Student's t across seeds; Wilson over the images for one seed."""
    acc = np.asarray(accuracies, dtype=float)
    if len(acc) == 1:
        k = round(acc[0] * n_images)
        ci = stats.binomtest(k, n_images).proportion_ci(0.95, method="wilson")
        return float(ci.low), float(ci.high)
    sem = acc.std(ddof=1) / math.sqrt(len(acc))
    if sem == 0:
        return float(acc[0]), float(acc[0])
    low, high = stats.t.interval(0.95, len(acc) - 1, loc=acc.mean(), scale=sem)
    return float(max(low, 0.0)), float(min(high, 1.0))


def at_chance(accuracy: float, n_images: int, majority: float) -> bool:
    """No better than always answering the most common class (one-sided binomial test at 5%)."""
    k = round(accuracy * n_images)
    return bool(stats.binomtest(k, n_images, majority, alternative="greater").pvalue > ALPHA)


@dataclass
class Test:
    """One paired comparison of method `a` against `b`: the raw p-value, Holm's, and the verdict."""

    a: str
    b: str
    difference: float  # mean accuracy of a minus b
    p_seeds: float | None  # the seed test (None with one seed)
    p_images: float  # the image test
    p: float = 1.0  # Holm-corrected p of the verdict, filled in by `decide`
    verdict: str = "no difference"

    @property
    def p_raw(self) -> float:
        return self.p_images if self.p_seeds is None else max(self.p_seeds, self.p_images)

    @property
    def test(self) -> str:
        if self.p_seeds is None:
            return "McNemar exact (images; 1 seed: seed noise not measured)"
        return "paired t (seeds) and McNemar exact (images)"

    def to_json(self) -> dict:
        return {
            "against": self.b,
            "verdict": self.verdict,
            "p": self.p,
            "difference": self.difference,
            "p_seeds": self.p_seeds,
            "p_images": self.p_images,
            "test": self.test,
        }


def paired(
    a: str,
    b: str,
    acc_a: list[float],
    acc_b: list[float],
    correct_a: dict[str, list[float]],
    correct_b: dict[str, list[float]],
) -> Test:
    """Method a against b. `acc_*`: accuracy per seed, in the same seed order. `correct_*`: image -> its
    correctness (1 or 0) under each seed that validated on it, in seed order; an image absent from one side
    (a per-seed split can leave it out) is left out of the image test."""
    diff = float(np.mean(acc_a) - np.mean(acc_b))
    p_seeds = None
    if len(acc_a) >= 2:
        d = np.asarray(acc_a, float) - np.asarray(acc_b, float)
        if np.allclose(d, d[0]):  # no spread: the t statistic is undefined
            p_seeds = 1.0 if abs(d[0]) < 1e-12 else 0.0
        else:
            p_seeds = float(stats.ttest_rel(acc_a, acc_b).pvalue)
    wins = losses = 0
    for image in correct_a.keys() & correct_b.keys():
        delta = np.mean(correct_a[image]) - np.mean(correct_b[image])
        wins, losses = wins + (delta > 0), losses + (delta < 0)
    p_images = float(stats.binomtest(wins, wins + losses, 0.5).pvalue) if wins + losses else 1.0
    return Test(a, b, diff, p_seeds, p_images)


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down correction for several tests at once: the k-th smallest p is multiplied by (m - k + 1),
    and kept at least as large as the one before it."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [1.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def decide(tests: list[Test]) -> list[Test]:
    """Holm-correct the tests as one family, then give each its verdict."""
    for t, p in zip(tests, holm([t.p_raw for t in tests])):
        t.p = p
        t.verdict = "no difference" if p >= ALPHA else ("better" if t.difference > 0 else "worse")
    return tests
