"""Per-image outcomes of two methods where the truth is known: how the verdict's false-positive rate and power
are measured (tests/compare/test_calibration.py, `python -m benchmarks.verdicts`, docs/compare.md).

Each image has a difficulty: method B is right on it with probability p_i, logit p_i ~ N(c, spread) with c set
so that B's mean accuracy is `accuracy`, so most images are easy and a few are hard for both methods. Method A is right with probability
q_i = p_i + gain (1 - p_i): it fixes a share `gain` of B's mistakes, chosen so that the mean accuracies differ by
`difference` (0 under the null, where q_i = p_i on every image). A stochastic method draws its answers again
for every seed (the seeds flip the uncertain images), and `seed_effect` also moves a whole seed up or down
(p -> p + v p (1 - p), v symmetric in [-1, 1]: the mean over seeds is still p). A deterministic method (the
baseline) draws its answers once: the same in every seed's column.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize, special

from .. import stats

NODES, WEIGHTS = np.polynomial.hermite_e.hermegauss(80)  # for E[.] over a normal difficulty


def _mean(centre: float, spread: float, f=lambda p: p) -> float:
    """E[f(p)] over images, logit p ~ N(centre, spread)."""
    return float(WEIGHTS @ f(special.expit(centre + spread * NODES)) / WEIGHTS.sum())


def centre(accuracy: float, spread: float) -> float:
    """The logit at the middle of the difficulties that gives B this mean accuracy."""
    return optimize.brentq(lambda c: _mean(c, spread) - accuracy, -20, 20)


def outcomes(
    rng: np.random.Generator,
    reps: int,
    images: int,
    seeds: int,
    *,
    difference: float = 0.0,
    accuracy: float = 0.95,
    spread: float = 2.0,
    a_stochastic: bool = True,
    b_stochastic: bool = False,
    seed_effect: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """`reps` independent experiments: A's and B's 0/1 outcomes, each (reps, images, seeds)."""
    gain = difference / (1 - accuracy)
    p = special.expit(centre(accuracy, spread) + spread * rng.standard_normal((reps, images, 1)))
    q = p + gain * (1 - p)

    def draw(prob: np.ndarray, stochastic: bool) -> np.ndarray:
        if not stochastic:
            return np.repeat(rng.random(prob.shape) < prob, seeds, axis=-1)
        v = np.clip(rng.normal(0.0, seed_effect, (reps, 1, seeds)), -1, 1) if seed_effect else 0.0
        return rng.random((reps, images, seeds)) < prob + v * prob * (1 - prob)

    return draw(q, a_stochastic).astype(float), draw(p, b_stochastic).astype(float)


def p_values(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The verdict's raw p for each experiment, by the test `stats.paired` picks for this design."""
    d = a - b
    if d.shape[-1] == 1:
        return stats.mcnemar(d[..., 0])[1]
    return stats.crossed(d)[1]


def rate(rng: np.random.Generator, reps: int, images: int, seeds: int, **truth) -> float:
    """The share of experiments called `better` or `worse` at 5%."""
    return float((p_values(*outcomes(rng, reps, images, seeds, **truth)) < stats.ALPHA).mean())
