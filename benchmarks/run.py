"""`make bench`: sevenstep against fastbook's per-item pipeline, plain fastai and a hand-written PyTorch loop,
measured side by side in one run (median of several repeats), printed as ratios. Not a test: a report."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("WANDB_MODE", "disabled")

import fastprogress.fastprogress as fp  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

fp.NO_BAR = True
REPEATS = int(os.environ.get("BENCH_REPEATS", 5))
SOURCE, BS = "mnist5k", 64


def median_time(fn, repeats=REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_pipeline() -> dict[str, float]:
    """Images/s through one augmented training epoch of mnist5k."""
    from sevenstep import data

    out = {}
    for name, fast in (("fastbook's per-item pipeline", False), ("sevenstep pipeline", True)):
        dls = data.dataloaders(SOURCE, bs=BS, augment=True, fast=fast)
        n = len(dls.train) * BS

        def epoch(dl=dls.train):
            for _ in dl:
                pass

        epoch()  # warm-up
        out[name] = n / median_time(epoch)
    return out


def _model(n_out=10):
    import sevenstep.steps  # noqa: F401
    from sevenstep import registry

    return registry.get("predict", "cnn").build({"channels": [16, 32, 64, 128]}).make((1, 28, 28), n_out)


def bench_epoch() -> dict[str, float]:
    """Seconds per epoch (train + validate) for the same CNN, data, augmentation, Adam and batch size."""
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.optimizer import Adam
    from fastai.torch_core import TensorImageBW

    from sevenstep import data, recipe, train
    from sevenstep.fastpath import RandomPadCrop

    out = {}
    sets = [
        "data.source=mnist5k",
        "steps.repeat.name=epochs",
        "steps.repeat.n=1",
        "steps.init.name=default",
        "steps.predict.channels=[16, 32, 64, 128]",
        "steps.loss.label_smoothing=0.0",
    ]
    r = recipe.load("experiments/cnn_mnist5k.toml", sets)
    learn = train.build_learner(r)
    learn.fit(1)  # warm-up
    out["sevenstep run (Learner + seven-step callbacks)"] = median_time(lambda: learn.fit(1))

    import tempfile

    from sevenstep import loggers

    with tempfile.TemporaryDirectory() as tmp:
        logger = loggers.WandbLogger(loggers.WandbSession("offline", Path(tmp)))
        learn.add_cb(logger)
        learn.fit(1)  # starts the W&B run
        out["sevenstep run, logging to W&B offline"] = median_time(lambda: learn.fit(1))
        logger.wb.finish()

    dls = data.dataloaders(SOURCE, bs=BS, augment=True, fast=False)
    plain = Learner(dls, _model(), loss_func=CrossEntropyLossFlat(), opt_func=Adam, metrics=accuracy)
    with plain.no_bar(), plain.no_logging():
        plain.fit(1, 1e-2)
        out["plain fastai Learner.fit (fastbook's per-item pipeline)"] = median_time(
            lambda: plain.fit(1, 1e-2)
        )

    fast = data.dataloaders(SOURCE, bs=BS, augment=True)
    x, y = fast.train.images.as_subclass(torch.Tensor), fast.train.labels.as_subclass(torch.Tensor)
    vx, vy = fast.valid.images, fast.valid.labels.as_subclass(torch.Tensor)
    mean, std = (x.float() / 255).mean(), (x.float() / 255).std()
    model, crop = _model(), RandomPadCrop(3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def hand_epoch():
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - BS + 1, BS):
            idx = perm[i : i + BS]
            xb = crop(TensorImageBW(x[idx])).as_subclass(
                torch.Tensor
            )  # the same pad-and-crop, on a plain slice
            xb = (xb.float() / 255 - mean) / std
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model((vx[i : i + BS].float() / 255 - mean) / std).argmax(1) == vy[i : i + BS]).sum()
                for i in range(0, len(vx), BS)
            )
        return correct

    hand_epoch()
    out["hand-written PyTorch loop (the floor)"] = median_time(hand_epoch)
    return out


def bench_startup() -> float:
    exe = os.path.join(os.path.dirname(sys.executable), "sevenstep")
    subprocess.run([exe, "--help"], capture_output=True, check=True)
    return median_time(lambda: subprocess.run([exe, "--help"], capture_output=True, check=True))


def bench_memory() -> float:
    """Peak RSS (MiB) of `sevenstep run experiments/cnn_3v7.toml` in a child process of its own."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True, check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    exe = os.path.join(os.path.dirname(sys.executable), "sevenstep")
    cmd = [
        sys.executable,
        "-c",
        code,
        exe,
        "run",
        "experiments/cnn_3v7.toml",
        "--wandb",
        "disabled",
        "--runs-dir",
        "/tmp/sevenstep-bench-runs",
    ]
    return int(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout) / 1024


def bench_sweep(repeats: int = 3) -> dict[str, dict[int, float]]:
    """One small grid (8 trials of the 3v7 simple net) with 1 and with 2 workers, each a whole `sevenstep sweep`
    command, interleaved 1, 2, 1, 2, ... so drift cancels. Two rates: trials per minute while trials run (first
    start to last end, from the study), and per minute of the whole command (start-up and report included)."""
    import tempfile

    import optuna

    exe = os.path.join(os.path.dirname(sys.executable), "sevenstep")
    recipe = Path("experiments/fastbook_simple_net.toml").resolve()
    space = '"steps.init.name" = ["default", "kaiming"]\n"steps.step.lr" = [0.05, 0.1, 0.2, 0.4]\n'
    rates: dict[str, dict[int, list[float]]] = {"trials": {1: [], 2: []}, "command": {1: [], 2: []}}
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "bench.toml"
        file.write_text(f'name = "bench"\nrecipe = "{recipe}"\n[space]\n{space}"steps.repeat.n" = [40]\n')
        for i in range(repeats):
            for workers in (1, 2):
                runs = Path(tmp) / f"runs-{i}-{workers}"  # a new sweep each time
                cmd = [exe, "sweep", str(file), "--workers", str(workers), "--runs-dir", str(runs)]
                start = time.perf_counter()
                subprocess.run(cmd + ["--wandb", "disabled"], capture_output=True, check=True)
                rates["command"][workers].append(8 * 60 / (time.perf_counter() - start))
                journal = optuna.storages.journal.JournalFileBackend(
                    str(runs / "sweep-bench" / "study.journal")
                )
                trials = optuna.load_study(
                    study_name="bench", storage=optuna.storages.JournalStorage(journal)
                ).trials
                span = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
                rates["trials"][workers].append(len(trials) * 60 / span.total_seconds())
    return {k: {w: statistics.median(v) for w, v in r.items()} for k, r in rates.items()}


def bench_processes(repeats: int = 3) -> dict[int, float]:
    """Seconds of one epoch (train + validate) of the 10-class CNN on 1 and on 2 processes (data-parallel,
    gloo on CPU), read from each run's own epoch timing; interleaved 1, 2, 1, 2, ..."""
    import json
    import tempfile

    exe = os.path.join(os.path.dirname(sys.executable), "sevenstep")
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            for n in (1, 2):
                cmd = [exe, "run", "experiments/cnn_mnist5k.toml", "--set", "steps.repeat.n=2", "--processes", str(n),
                       "--json", "--wandb", "disabled", "--runs-dir", f"{tmp}/{i}-{n}"]  # fmt: skip
                out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
                times[n].append(out["epochs"][-1]["seconds"])  # the second epoch: warm
    return {n: statistics.median(t) for n, t in times.items()}


def main() -> None:
    print(
        f"sevenstep benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, median of {REPEATS}\n"
    )

    pipe = bench_pipeline()
    base = pipe["fastbook's per-item pipeline"]
    print("1. data pipeline, mnist5k with augmentation (images/s)")
    for name, v in pipe.items():
        print(f"   {name:<48} {v:>10,.0f}   {v / base:6.1f}x")

    epoch = bench_epoch()
    floor = epoch["hand-written PyTorch loop (the floor)"]
    print("\n2. one training epoch + validation, same CNN, data, augmentation (seconds)")
    for name, v in epoch.items():
        print(f"   {name:<48} {v:>10.3f}   {v / floor:6.2f}x the floor")

    print(f"\n3. `sevenstep --help` start-up: {bench_startup():.3f} s")
    print(f"4. peak memory (RSS) of `sevenstep run experiments/cnn_3v7.toml`: {bench_memory():.0f} MiB")
    sweep = bench_sweep()
    print("5. a sweep of 8 small trials (simple net, 40 epochs), trials per minute")
    for what, label in (("trials", "while trials run"), ("command", "whole command, start-up included")):
        r = sweep[what]
        print(f"   {label:<40} 1 worker {r[1]:6.1f}   2 workers {r[2]:6.1f}   {r[2] / r[1]:.2f}x")
    procs = bench_processes()
    print(
        f"6. one epoch of the 10-class CNN: {procs[1]:.2f} s on 1 process, {procs[2]:.2f} s on 2 (data-parallel, "
        f"gloo): {procs[1] / procs[2]:.2f}x faster"
    )
    print(
        f"\n(peak RSS of this benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
