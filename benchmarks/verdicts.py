"""The comparison verdict's error rates where the truth is known (sevenstep/compare/simulate.py): the share of
simulated experiments called `better` or `worse` at 5%, under the null and under a 1.5-point difference.
`python -m benchmarks.verdicts [REPS]`; docs/compare.md quotes its table. Not a test: the suite's
tests/compare/test_calibration.py checks the bounds with fewer experiments."""

from __future__ import annotations

import sys

import numpy as np

from sevenstep.compare import simulate

SEEDS, IMAGES = (1, 2, 3, 5), (200, 2000)
TRUTHS = {
    "null: equal methods, seeds flip a few answers": {"b_stochastic": True},
    "null: deterministic (baseline) vs stochastic": {},
    "null: deterministic vs stochastic, seed effect 0.2": {"seed_effect": 0.2},
    "null: deterministic vs stochastic, seed effect 0.5": {"seed_effect": 0.5},
    "null: equal methods, seed effect 0.5": {"b_stochastic": True, "seed_effect": 0.5},
    "power: +1.5 points vs deterministic": {"difference": 0.015},
    "power: +1.5 points, seed effect 0.2": {"difference": 0.015, "seed_effect": 0.2},
}


def main(reps: int = 2000) -> None:
    rng = np.random.default_rng(0)
    head = [f"{n} img, {s} seed{'s' * (s > 1)}" for n in IMAGES for s in SEEDS]
    print(f"share called different at 5% ({reps} experiments each; Monte Carlo SE at 5%: "
          f"{100 * (0.05 * 0.95 / reps) ** 0.5:.1f} points); mean accuracy 95%, difficulty spread 4\n")  # fmt: skip
    print("| truth | " + " | ".join(head) + " |")
    print("|---|" + "---|" * len(head))
    for name, truth in TRUTHS.items():
        rates = [simulate.rate(rng, reps, n, s, spread=4.0, **truth) for n in IMAGES for s in SEEDS]
        print(f"| {name} | " + " | ".join(f"{100 * r:.1f}%" for r in rates) + " |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
