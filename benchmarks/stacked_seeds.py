"""Would training N seeds side by side, stacked in one vectorised pass, cost about one seed? (the premise of
the issue "Five seeds for the price of one"). Measured before building it, on the three small models learners
train here: one batch's forward, loss, backward and SGD step for 1 seed, for 5 seeds one after another, and
for 5 seeds stacked (each its own weights and batch: torch.baddbmm, one autograd pass, one foreach step),
interleaved (1, 5 one by one, 5 stacked, 1, ...) and compared by medians. Then the share of a whole
`sevenstep run` that its fit is: what stacking could save at most.

    python -m benchmarks.stacked_seeds
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time

import torch

MODELS = {"fastbook linear 784-1": (None, 1), "simple net 784-30-1": (30, 1), "MLP 784-30-10": (30, 10)}
N, BS, BATCHES, REPEATS = 5, 256, 50, 7


def weights(n: int, hidden: int | None, out: int) -> list[torch.Tensor]:
    shapes = [(n, 784, out), (n, 1, out)] if hidden is None else [(n, 784, hidden), (n, 1, hidden),
                                                                  (n, hidden, out), (n, 1, out)]  # fmt: skip
    return [(torch.randn(s) * 0.1).requires_grad_() for s in shapes]


def sgd_batch(ws: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, hidden: int | None) -> None:
    """One batch for every seed stacked in `ws` (n seeds: leading dimension n): each seed's mean loss, summed,
    so that autograd gives each seed its own gradient; then p -= lr * grad for all at once."""
    out = torch.baddbmm(ws[1], x, ws[0])
    if hidden is not None:
        out = torch.baddbmm(ws[3], out.relu(), ws[2])
    if out.shape[-1] == 1:  # fastbook's mnist_loss
        p = out.squeeze(-1).sigmoid()
        loss = torch.where(y == 1, 1 - p, p).mean(dim=1).sum()
    else:
        loss = torch.nn.functional.cross_entropy(out.transpose(1, 2), y, reduction="none").mean(dim=1).sum()
    grads = torch.autograd.grad(loss, ws)
    with torch.no_grad():
        torch._foreach_add_(ws, grads, alpha=-0.1)


def measure(hidden: int | None, out: int) -> dict[str, float]:
    """Microseconds a batch for each side, medians of REPEATS interleaved repeats."""
    x = torch.rand(N, BS, 784)
    y = torch.randint(0, out if out > 1 else 2, (N, BS))
    one, each, stacked = (
        weights(1, hidden, out),
        [weights(1, hidden, out) for _ in range(N)],
        weights(N, hidden, out),
    )
    sides = {
        "1 seed": lambda: sgd_batch(one, x[:1], y[:1], hidden),
        f"{N} one after another": lambda: [sgd_batch(each[k], x[k : k + 1], y[k : k + 1], hidden) for k in range(N)],
        f"{N} stacked": lambda: sgd_batch(stacked, x, y, hidden),
    }  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in sides}
    for _ in range(REPEATS):
        for side, fn in sides.items():
            start = time.perf_counter()
            for _ in range(BATCHES):
                fn()
            times[side].append((time.perf_counter() - start) / BATCHES * 1e6)
    return {k: statistics.median(v) for k, v in times.items()}


def fit_share(repeats: int = 3) -> list[tuple[float, float]]:
    """(fit seconds, whole command seconds) of `sevenstep run` fastbook linear, 20 epochs, W&B disabled."""
    pairs = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            cmd = [sys.executable, "-m", "sevenstep", "run", "experiments/fastbook_linear.toml", "--json", "--wandb",
                   "disabled", "--runs-dir", tmp, "--set", "steps.repeat.n=20"]  # fmt: skip
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            whole = time.perf_counter() - start
            pairs.append((json.loads(out.strip().splitlines()[-1])["fit_seconds"], whole))
    return pairs


def main() -> None:
    print(f"one batch of {BS}: forward, loss, backward, SGD step; microseconds, medians of {REPEATS} interleaved "
          f"repeats ({torch.get_num_threads()} threads)")  # fmt: skip
    for name, (hidden, out) in MODELS.items():
        one, after, stacked = measure(hidden, out).values()
        print(f"  {name:<22} 1 seed {one:6.0f}   {N} one after another {after:6.0f} ({after / one:.2f}x)   "
              f"{N} stacked {stacked:6.0f} ({stacked / one:.2f}x; target at most 1.5x)")  # fmt: skip
    pairs = fit_share()
    fits, wholes = [f for f, _ in pairs], [w for _, w in pairs]
    print(f"`sevenstep run experiments/fastbook_linear.toml` (20 epochs): fit {statistics.median(fits):.2f} s of "
          f"{statistics.median(wholes):.1f} s for the whole command ({100 * statistics.median(f / w for f, w in pairs):.0f}%; "
          f"{len(pairs)} runs): start-up, evaluation, pictures and saving are the rest")  # fmt: skip


if __name__ == "__main__":
    main()
