"""What an experiment costs around its arithmetic: fastbook's linear recipe at fastbook's 980 SGD steps as a whole
`sevenstep run` against a hand-written PyTorch script on the same PNGs, interleaved (run, script, run, ...) and
medians; then N runs in one warm process, each run's wall time against its fit. `python -m
benchmarks.experiment_cost [REPEATS]`; `--hand` runs the hand-written script alone (it prints its seconds as JSON);
`--layers [REPEATS]` measures what the per-layer records (LayerStats) add to a fit.
Not a test: a report, quoted in docs/performance.md."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECIPE = "experiments/fastbook_linear.toml"
EPOCHS, BS, LR = 327, 256, 1.0  # the recipe's: 327 epochs of 3 batches = 981 steps


def hand(quiet: bool = False) -> float:
    """fastbook's linear model written out: read the PNGs, N(0, 1) weights, mnist_loss, p -= lr * grad, shuffled
    full batches (the last partial one dropped, as fastai does), the validation accuracy after every epoch.
    Returns the fit's seconds."""
    start = time.perf_counter()
    import numpy as np
    import torch
    from PIL import Image

    from sevenstep.data import sources

    root = sources.resolve("mnist5k-3v7").path

    def load(split):
        files = sorted((root / split).glob("*/*.png"))
        x = torch.tensor(np.stack([np.asarray(Image.open(f)) for f in files]), dtype=torch.float32) / 255
        y = torch.tensor([f.parent.name == "7" for f in files], dtype=torch.float32)
        return x.view(len(files), -1), y

    (x, y), (vx, vy) = load("train"), load("valid")
    torch.manual_seed(42)
    w, b = torch.randn(784, 1, requires_grad=True), torch.randn(1, requires_grad=True)
    fit = time.perf_counter()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x))
        for i in range(0, len(x) - BS + 1, BS):
            idx = order[i : i + BS]
            pred = (x[idx] @ w + b).sigmoid().squeeze(1)
            torch.where(y[idx] == 1, 1 - pred, pred).mean().backward()
            with torch.no_grad():
                for p in (w, b):
                    p -= LR * p.grad
                    p.grad = None
        with torch.no_grad():
            ((vx @ w + b).squeeze(1) > 0).float().eq(vy).float().mean().item()
    seconds = time.perf_counter() - fit
    if not quiet:
        print(json.dumps({"fit_seconds": seconds, "seconds": time.perf_counter() - start}))
    return seconds


def fits(repeats: int) -> dict[str, list[float]]:
    """In one process, interleaved: the hand loop's fit; fastai's loop on sevenstep's Learner with the seven
    steps only (build_learner, no run folder: the floor fastai's Learner sets); the whole run (run folder,
    checkpoints, epochs.csv, W&B disabled); the same with W&B offline."""
    import fastprogress.fastprogress as fp

    from sevenstep import recipe
    from sevenstep.cli.common import callbacks, wandb_session
    from sevenstep.loop import train

    fp.NO_BAR = True
    r = recipe.load(RECIPE)
    got: dict[str, list[float]] = {k: [] for k in ("hand", "fastai loop", "run", "run, W&B offline")}
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {m: wandb_session(m, Path(tmp)) for m in ("disabled", "offline")}
        for _ in range(repeats):
            got["hand"].append(hand(quiet=True))
            learn = train.build_learner(r)
            start = time.perf_counter()
            learn.step6_repeat.loop(learn)
            got["fastai loop"].append(time.perf_counter() - start)
            for name, mode in (("run", "disabled"), ("run, W&B offline", "offline")):
                run = train.run(r, callbacks(sessions[mode]), runs_dir=Path(tmp) / "runs", pictures=False)
                got[name].append(run.fit_seconds)
    return got


def _timed(cmd: list[str], env=None) -> tuple[float, dict]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return time.perf_counter() - start, json.loads(out.strip().splitlines()[-1])


def commands(repeats: int) -> dict[str, list[float]]:
    exe = os.path.join(os.path.dirname(sys.executable), "sevenstep")
    got: dict[str, list[float]] = {
        k: [] for k in ("run wall", "run fit", "hand wall", "hand fit", "off wall")
    }
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"WANDB_DIR": tmp, "WANDB_MODE": "offline"}
        for i in range(repeats):
            wall, out = _timed([exe, "run", RECIPE, "--json", "--runs-dir", f"{tmp}/runs{i}"], env)
            got["run wall"].append(wall)
            got["run fit"].append(out["fit_seconds"])
            wall, out = _timed([sys.executable, "-m", "benchmarks.experiment_cost", "--hand"])
            got["hand wall"].append(wall)
            got["hand fit"].append(out["fit_seconds"])
            wall, _ = _timed(
                [exe, "run", RECIPE, "--json", "--wandb", "disabled", "--runs-dir", f"{tmp}/r{i}"]
            )
            got["off wall"].append(wall)
    return got


def warm(n: int) -> list[tuple[float, float]]:
    """N runs of the recipe in one process (a notebook, a comparison's worker), W&B offline, pictures drawn:
    each run's (wall, fit) seconds."""
    import fastprogress.fastprogress as fp

    from sevenstep import recipe
    from sevenstep.cli.common import callbacks, wandb_session
    from sevenstep.loop import train

    fp.NO_BAR = True
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        session = wandb_session("offline", Path(tmp))
        r = recipe.load(RECIPE)
        for _ in range(n):
            start = time.perf_counter()
            run = train.run(r, callbacks(session), runs_dir=Path(tmp) / "runs")
            out.append((time.perf_counter() - start, run.fit_seconds))
    return out


def layer_cost(repeats: int) -> None:
    """What LayerStats (per-layer records, on by default) adds to a run's fit: the whole run with and without
    it, W&B disabled, interleaved in one process."""
    import fastprogress.fastprogress as fp

    from sevenstep import recipe
    from sevenstep.cli.common import callbacks, wandb_session
    from sevenstep.loop import train
    from sevenstep.tracking.layer_stats import LayerStats

    fp.NO_BAR = True
    with tempfile.TemporaryDirectory() as tmp:
        every = callbacks(wandb_session("disabled", Path(tmp)))
        without = [c for c in every if c is not LayerStats]
        got: dict[str, list[float]] = {"with": [], "without": []}
        for name in ["with", "without"] * repeats:
            cbs = every if name == "with" else without
            for r in (recipe.load(RECIPE), recipe.load("experiments/fastbook_simple_net.toml")):
                run = train.run(r, cbs, runs_dir=Path(tmp) / "runs", pictures=False)
                got[name].append(run.fit_seconds)
    pairs = sorted(a / b for a, b in zip(got["with"], got["without"]))
    print(
        f"LayerStats: fit with it / without it, fastbook linear and simple net at fastbook's steps, {repeats} "
        f"interleaved repeats: median {statistics.median(pairs):.3f}x (pairs {', '.join(f'{p:.3f}' for p in pairs)})"
    )


def main(repeats: int = 3) -> None:
    inside = {k: statistics.median(v) for k, v in fits(repeats).items()}
    print(
        f"fastbook linear, 327 epochs (981 steps), fits in one process, {repeats} interleaved repeats, medians:"
    )
    print("  " + ", ".join(f"{k} {v:.2f} s ({v / inside['hand']:.1f}x)" for k, v in inside.items()))
    got = commands(repeats)
    med = {k: statistics.median(v) for k, v in got.items()}
    fit_ratios = sorted(a / b for a, b in zip(got["run fit"], got["hand fit"]))
    wall_ratios = sorted(a / b for a, b in zip(got["run wall"], got["hand wall"]))
    print(f"whole commands, {repeats} interleaved repeats, medians:")
    print(f"  fit: sevenstep run {med['run fit']:.2f} s, hand-written {med['hand fit']:.2f} s: "
          f"{med['run fit'] / med['hand fit']:.2f}x (pairs {', '.join(f'{r:.2f}' for r in fit_ratios)})")  # fmt: skip
    print(f"  whole command: sevenstep run (W&B offline) {med['run wall']:.2f} s, --wandb disabled "
          f"{med['off wall']:.2f} s, hand-written script {med['hand wall']:.2f} s: "
          f"{med['run wall'] / med['hand wall']:.2f}x (pairs {', '.join(f'{r:.2f}' for r in wall_ratios)})")  # fmt: skip
    runs = warm(4)
    around = [wall - fit for wall, fit in runs[1:]]  # the first pays for W&B's first start in the process
    print(f"  warm process, W&B offline, pictures drawn: wall minus fit {', '.join(f'{a:.2f}' for a in around)} s "
          f"(first run {runs[0][0] - runs[0][1]:.2f} s)")  # fmt: skip


if __name__ == "__main__":
    if "--hand" in sys.argv:
        hand()
    elif "--layers" in sys.argv:
        layer_cost(int(sys.argv[2]) if len(sys.argv) > 2 else 5)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
