"""How sure a comparison is: intervals for each method's accuracy, and paired verdicts between methods.

Two things fake a difference between two setups, and one verdict accounts for both at once:

- **the seed** (init, batch order, augmentation): would other seeds change it?
- **which images are in the validation set**: would other images change it?

Every (method, seed) run's per-image outcomes are the data. How they are tested depends on the design:

- **one shared split, several seeds** (the default): the differences form an images x seeds table, seen as a
  two-way crossed random-effects model (image + seed + noise). The mean difference is tested with Student's t,
  its variance (MS_images + MS_seeds) / (N S) from the table's mean squares (the noise counted once more than
  the unbiased estimator: see `crossed`), on Satterthwaite's degrees of freedom with the seeds' term counted
  twice. A deterministic method (the baseline) is fair game: its
  outcomes are the same in every seed's column, and a stochastic method's seed-to-seed flips count as noise,
  averaged over the seeds, not as losses. (The old test averaged each image over the seeds and counted signs:
  an image the baseline got right and the model on 4 of 5 seeds was a loss, so it missed real differences.)
- **one seed**: McNemar's exact test on the images the two disagree on; the seed's own noise is not measured.
- **a split per seed, or k folds** (each seed validates on other images): the per-seed differences, with
  Nadeau and Bengio's corrected resampled t-test (variance x (1/S + n_valid/n_train)), since the seeds' training
  sets overlap and a plain t-test across them overstates confidence.

The false-positive rate and power of each are measured by simulation where the truth is known
(sevenstep/compare/simulate.py, tests/compare/test_calibration.py, docs/compare.md). scipy gives the
distributions; the variance split, Satterthwaite's df and Holm's correction are written here because scipy has
none of them for this design (statsmodels, not installed, fits crossed random effects only as variance
components of one all-enclosing group, iteratively; in a balanced table the mean squares give them directly).

Intervals (95%): across seeds, Student's t (scipy.stats.t); with one seed, Wilson's interval over the
validation images (scipy.stats.binomtest(...).proportion_ci).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

ALPHA = 0.05
POWER = 0.8  # the power "what would settle it" plans for
# n_valid / n_train of an 80/20 split: the resampled test's correction when none is given
VALID_TO_TRAIN = 0.25


def interval(accuracies: list[float], n_images: int, one_split: bool = False) -> tuple[float, float]:
    """A 95% interval for the mean accuracy. One seed: Wilson's, over the images. Several: Student's t across
    seeds, which measures the seeds' noise only; on `one_split` (every seed validating on the same images) the
    images' own sampling noise is added in quadrature (seeds that agree exactly gave [96.5, 96.5] from 20
    images), and on splits of their own it is the floor (Wilson's interval at the mean)."""
    acc = np.asarray(accuracies, dtype=float)
    if len(acc) == 1:
        return _wilson(acc[0], n_images)
    mean = float(acc.mean())
    seeds_half = float(stats.t.ppf(0.975, len(acc) - 1) * acc.std(ddof=1) / math.sqrt(len(acc)))
    if one_split:  # the images were drawn once: their noise is not among the seeds' (checked by simulation)
        low, high = _wilson(mean, n_images)  # Wilson's, not mean ± 2 SE: 20 of 20 right is not certainty
        return max(mean - math.hypot(seeds_half, mean - low), 0.0), min(
            mean + math.hypot(seeds_half, high - mean), 1.0
        )
    low, high = _wilson(mean, n_images * len(acc))  # every seed's images, each drawn afresh
    return max(min(mean - seeds_half, low), 0.0), min(max(mean + seeds_half, high), 1.0)


def over_seeds(values: list[float], n_images: int, one_split: bool = False, proportion: bool = True):
    """The mean of a metric over seeds and its 95% interval: `interval` for a share of images (accuracy); for
    any other metric (a loss) Student's t across the seeds alone, and no interval from one seed."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if proportion:
        return mean, interval(values, n_images, one_split) if n_images else None
    if len(values) < 2:
        return mean, None
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
    return mean, (mean - half, mean + half)


def _wilson(accuracy: float, n_images: int) -> tuple[float, float]:
    k = round(accuracy * n_images)
    ci = stats.binomtest(k, n_images).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def at_chance(accuracy: float, n_images: int, majority: float) -> bool:
    """No better than always answering the most common class (one-sided binomial test at 5%)."""
    k = round(accuracy * n_images)
    return bool(stats.binomtest(k, n_images, majority, alternative="greater").pvalue > ALPHA)


@dataclass
class Test:
    """One paired comparison of method `a` against `b`: the raw p-value, Holm's, the verdict, and the variance
    parts that say what more data would settle a `not shown`."""

    a: str
    b: str
    difference: float  # mean accuracy of a minus b, on the images and seeds both have
    p_raw: float
    test: str  # which test, in words
    n_images: int = 0
    n_seeds: int = 0
    # the variance of the mean difference, by source: images, seeds, noise (crossed: V = vi/N + vs/S + ve/(NS));
    # resampled: {"seeds": s^2, "ratio": n_valid/n_train}
    parts: dict = field(default_factory=dict, repr=False)
    p: float = 1.0  # Holm-corrected p of the verdict, filled in by `decide`
    verdict: str = "not shown"
    settle: str = ""  # what would settle a `not shown`, filled in by `decide`

    def to_json(self) -> dict:
        return {
            "against": self.b,
            "verdict": self.verdict,
            "p": self.p,
            "p_raw": self.p_raw,
            "difference": self.difference,
            "test": self.test,
            "images": self.n_images,
            "seeds": self.n_seeds,
            "settle": self.settle,
        }


def paired(
    a: str,
    b: str,
    outcomes_a: list[dict[str, int]],
    outcomes_b: list[dict[str, int]],
    valid_to_train: float | None = None,
) -> Test:
    """Method a against b. `outcomes_*`: one dict per seed, in the same seed order on both sides, image -> 1 if
    right, else 0. Each seed is tested on the images both of its runs have. When every seed has the same images
    the design is crossed (images x seeds); otherwise each seed has its own split (per-seed splits, k folds),
    whose training sets overlap by `valid_to_train` (n_valid / n_train; default 0.25, an 80/20 split)."""
    if len(outcomes_a) != len(outcomes_b) or not outcomes_a:
        raise ValueError("paired needs one outcome dict per seed on each side, in the same seed order")
    shared = [sorted(x.keys() & y.keys()) for x, y in zip(outcomes_a, outcomes_b)]
    diffs = [
        np.array([x[i] - y[i] for i in images], float) for x, y, images in zip(outcomes_a, outcomes_b, shared)
    ]
    n, s = int(np.mean([len(d) for d in diffs])), len(diffs)
    if any(len(d) == 0 for d in diffs):
        return Test(a, b, 0.0, 1.0, "no images in common", 0, s)
    if s == 1:
        difference, p, vi = mcnemar(diffs[0])
        test = "McNemar exact (images; 1 seed: seed noise not measured)"
        return Test(
            a, b, float(difference), float(p), test, n, 1, {"images": float(vi), "seeds": None, "noise": 0.0}
        )
    if all(images == shared[0] for images in shared):
        difference, p, vi, vs, ve = crossed(np.stack(diffs, axis=1))
        parts = {"images": float(vi), "seeds": float(vs), "noise": float(ve)}
        return Test(
            a, b, float(difference), float(p), "crossed images x seeds (t, Satterthwaite)", n, s, parts
        )
    ratio = VALID_TO_TRAIN if valid_to_train is None else valid_to_train
    per_seed = np.array([d.mean() for d in diffs])
    p, sd2 = resampled(per_seed, ratio)
    test = "corrected resampled t (a split per seed: Nadeau-Bengio)"
    return Test(a, b, float(per_seed.mean()), float(p), test, n, s, {"seeds": float(sd2), "ratio": ratio})


# The three tests work on arrays, with any leading dimensions: the calibration simulates thousands at once.


def mcnemar(d: np.ndarray):
    """One seed, d (..., N) in {-1, 0, 1}: on the images where the two disagree, is one right more often than a
    fair coin would be? Exact (binomial); returns the mean difference, p and the per-image variance."""
    wins, losses = (d > 0).sum(-1), (d < 0).sum(-1)
    p = np.minimum(1.0, 2 * stats.binom.cdf(np.minimum(wins, losses), wins + losses, 0.5))
    return d.mean(-1), np.where(wins + losses > 0, p, 1.0), d.var(-1, ddof=1)


def crossed(y: np.ndarray):
    """Images x seeds, y (..., N, S): two-way crossed random effects (image + seed + noise), the mean's variance
    from the table's mean squares, (MS_images + MS_seeds) / (N S), and Student's t on Satterthwaite's degrees of
    freedom (the seeds' term counted twice). Returns the mean, p and the variance parts (images, seeds, noise)
    of one image on one seed, as the ANOVA estimators give them."""
    n, s = y.shape[-2:]
    mean, rows, cols = y.mean((-2, -1)), y.mean(-1), y.mean(-2)
    ms_i = s * ((rows - mean[..., None]) ** 2).sum(-1) / (n - 1)
    ms_s = n * ((cols - mean[..., None]) ** 2).sum(-1) / (s - 1)
    noise = y - rows[..., :, None] - cols[..., None, :] + mean[..., None, None]
    ms_e = (noise**2).sum((-2, -1)) / ((n - 1) * (s - 1))
    # E[MS_images + MS_seeds] = S var_images + N var_seeds + 2 var_noise: N S times the mean's variance, plus one
    # var_noise (a small, conservative excess). The unbiased MS_i + MS_s - MS_e, truncated at MS_s < MS_e, called
    # up to 8% of null experiments different at 5% (3 seeds, a large seed effect): on S - 1 degrees of freedom the
    # seeds' share is often estimated near zero. For the same reason the seeds' term counts twice in
    # Satterthwaite's degrees of freedom (never below S - 1): as he has it, they let 7% through in that case. With
    # no seed term they are N - 1: a paired t-test over the images. Both measured: tests/compare/test_calibration.py
    var = (ms_i + ms_s) / (n * s)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (ms_i + ms_s) ** 2 / (ms_i**2 / (n - 1) + 2 * ms_s**2 / (s - 1))
        p = 2 * stats.t.sf(np.abs(mean) / np.sqrt(var), np.maximum(s - 1, df))
    # no spread: every image differs alike on every seed
    p = np.where(var > 0, p, np.where(mean == 0, 1.0, 0.0))
    seeds = np.maximum(0.0, ms_s - ms_e)
    return mean, p, np.maximum(0.0, (ms_i - ms_e) / s), seeds / n, ms_e


def resampled(per_seed: np.ndarray, ratio: float):
    """A split per seed, per_seed (..., S): Nadeau and Bengio's corrected resampled t-test, the variance across
    seeds times (1/S + n_valid/n_train), S - 1 degrees of freedom. Returns p and that variance."""
    s = per_seed.shape[-1]
    mean, sd2 = per_seed.mean(-1), per_seed.var(-1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.t.sf(np.abs(mean) / np.sqrt((1 / s + ratio) * sd2), s - 1)
    return np.where(sd2 > 0, p, np.where(mean == 0, 1.0, 0.0)), sd2


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
    """Holm-correct the tests as one family, then give each its verdict: `better`, `worse`, or `not shown`
    (none that this data can show, which is not a finding of no difference) with what would settle it."""
    for t, p in zip(tests, holm([t.p_raw for t in tests])):
        t.p = p
        t.verdict = "not shown" if p >= ALPHA else ("better" if t.difference > 0 else "worse")
        t.settle = "" if t.verdict != "not shown" else settle(t, len(tests))
    return tests


def settle(t: Test, family: int = 1) -> str:
    """Roughly how many images, or seeds, would show the observed difference with 80% power, at the level
    Holm's correction starts from (5% / family), if the difference stayed what it is. A planning figure from
    the observed effect (optimistic when the effect was lucky): a rough guide, and said as one."""
    d, parts, n, s = abs(t.difference), t.parts, t.n_images, t.n_seeds
    if d == 0 or not parts:
        return "no difference observed at all"
    z = stats.norm.ppf(1 - ALPHA / (2 * family)) + stats.norm.ppf(POWER)
    target = (d / z) ** 2  # the variance of the mean difference that would show it
    images = seeds = None  # None: that alone would not do it
    if "ratio" in parts:  # a split per seed: more seeds shrink the 1/S part only
        room = target / parts["seeds"] - parts["ratio"]
        seeds = math.ceil(1 / room) if room > 0 else None
    else:
        vi, vs, ve = parts["images"], parts["seeds"], parts["noise"]
        if (room := target - (vs or 0.0) / s) > 0:
            images = math.ceil((vi + ve / s) / room)
        if vs is not None and (room := target - vi / n) > 0:
            seeds = math.ceil((vs + ve / n) / room)
    points = f"{100 * t.difference:+.1f} points"
    said = []
    if images is not None and images <= 100 * n:
        said.append(f"about {images:,} images ({images / n:.1f}x these)")
    if seeds is not None and seeds <= 100:
        said.append(f"about {seeds} seeds")
    if s == 1:  # one seed: the seeds' share is unknown
        said.append("more seeds (one seed's own noise is not measured)")
    if said:
        return f"to show {points}: {' or '.join(said)}"
    if images is None and seeds is None:  # neither alone would do
        return f"to show {points}: " + (
            "more seeds alone would not (their training sets overlap): larger splits as well"
            if "ratio" in parts
            else "more images and more seeds together"
        )
    return f"to show {points}: over 100 times these images, or over 100 seeds, at this spread"
