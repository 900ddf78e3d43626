"""`make bench`: sevenstep against fastbook's per-item pipeline, plain fastai and a hand-written PyTorch loop,
measured side by side in one run (median of several repeats), printed as ratios. Not a test: a report."""

from __future__ import annotations

import contextlib
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
from fastai.callback.core import CancelBackwardException  # noqa: E402

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


def bench_epoch() -> dict[str, tuple[float, float]]:
    """Seconds per epoch (train + validate) for the same CNN, data, augmentation, optimizer and batch size:
    sevenstep and plain fastai on fastbook's per-item pipeline, each against a hand-written loop."""
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.metrics import accuracy
    from fastai.optimizer import Adam
    from fastai.torch_core import TensorImageBW

    from benchmarks.small_models import interleaved
    from sevenstep import data, recipe
    from sevenstep.data.decoded import RandomPadCrop
    from sevenstep.loop import train

    sets = [
        "data.source=mnist5k",
        "steps.repeat.name=epochs",
        "steps.repeat.n=1",
        "steps.init.name=default",
        "steps.predict.channels=[16, 32, 64, 128]",
        "steps.loss.label_smoothing=0.0",
    ]
    learn = train.build_learner(recipe.load("experiments/cnn_mnist5k.toml", sets))
    dls = data.dataloaders(SOURCE, bs=BS, augment=True, fast=False)
    plain = Learner(dls, _model(), loss_func=CrossEntropyLossFlat(), opt_func=Adam, metrics=accuracy)

    fast = learn.dls
    x, y = fast.train.images, fast.train.labels
    vx, vy = fast.valid.images, fast.valid.labels
    mean, std = (x.float() / 255).mean(), (x.float() / 255).std()
    model, crop = _model(), RandomPadCrop(3)
    # fastai's Adam, as sevenstep's adam step uses it: decoupled weight decay 0.01, betas (0.9, 0.99), eps 1e-5
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)

    def hand_epoch():
        model.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - BS + 1, BS):
            idx = perm[i : i + BS]
            xb = crop(TensorImageBW(x[idx])).as_subclass(torch.Tensor)  # the same pad-and-crop
            loss = F.cross_entropy(model((xb.float() / 255 - mean) / std), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            return sum(
                (model((vx[i : i + BS].float() / 255 - mean) / std).argmax(1) == vy[i : i + BS]).sum()
                for i in range(0, len(vx), BS)
            )

    with learn.no_bar(), learn.no_logging(), plain.no_bar(), plain.no_logging():
        # each ratio from its own pair, interleaved: a third run between the two would shift one side's timing
        ours = interleaved({"ours": lambda: learn.fit(1), "hand": hand_epoch}, REPEATS)
        theirs = interleaved({"theirs": lambda: plain.fit(1, 1e-2), "hand": hand_epoch}, REPEATS)
    return {
        "sevenstep run (Learner + seven-step callbacks)": (ours["ours"], ours["hand"]),
        "plain fastai Learner.fit (fastbook's per-item pipeline)": (theirs["theirs"], theirs["hand"]),
    }


def bench_small_models() -> list[tuple[str, float, float, float]]:
    """fastbook's chapter 4's own tiny models, where the loop's overhead is most of the time: (case, sevenstep s, hand s,
    target ratio)."""
    from benchmarks.small_models import CASES, measure

    targets = [2.0, 1.5]
    return [(case.name, *measure(case, REPEATS), target) for case, target in zip(CASES, targets)]


def bench_finite_difference() -> dict[str, float]:
    """Seconds per epoch of the shipped numerical-gradient recipe: its vectorised finite differences, the
    per-weight loop it replaced, and autograd, interleaved; and one simple-net batch (23,581 weights)."""
    from benchmarks.small_models import PerWeightFiniteDifference, interleaved
    from sevenstep import recipe
    from sevenstep.loop import train

    learners = {}
    for name, gradient in (("vectorised", "finite_difference"), ("per weight", "finite_difference"),
                           ("autograd", "autograd")):  # fmt: skip
        r = recipe.load("experiments/finite_difference_3v7.toml", [f"steps.gradient.name={gradient}"])
        learn = learners[name] = train.build_learner(r)
        if name == "per weight":
            old = learn.step4_gradient
            learn.remove_cb(old)
            learn.add_cb(PerWeightFiniteDifference(old.eps, old.max_params))
    with contextlib.ExitStack() as quiet:
        for learn in learners.values():
            quiet.enter_context(learn.no_bar())
            quiet.enter_context(learn.no_logging())
        t = interleaved({name: lambda learn=learn: learn.fit(1) for name, learn in learners.items()}, REPEATS)

    sets = ["steps.gradient.name=finite_difference", "steps.repeat.n=1"]
    learn = train.build_learner(recipe.load("experiments/fastbook_simple_net.toml", sets))
    xb, yb = learn.dls.train.one_batch()
    learn.xb, learn.yb = (xb.as_subclass(torch.Tensor),), (yb.as_subclass(torch.Tensor),)

    def simple_net_batch():
        with contextlib.suppress(CancelBackwardException):
            learn.step4_gradient.before_backward()

    t["simple net batch"] = median_time(simple_net_batch)
    return t


def bench_60k(repeats: int = 3) -> dict[str, float]:
    """Full MNIST's size: 60,000 training images made from the embedded digits (shifted copies, written as
    PNGs in a temporary folder), the mlp case for one epoch against the hand loop, and the bytes each image
    takes once decoded."""
    import tempfile

    import numpy as np
    from PIL import Image

    from benchmarks.small_models import CASES, measure
    from sevenstep import data
    from sevenstep.data import sources

    src = sources.resolve("mnist5k")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-2, -1, 0, 1, 2)]  # 15 copies of 4,000
        for split, copies in ((src.train, shifts), (src.valid, [(0, 0)])):
            for f in sources.image_files(src.path / split):
                digit = np.array(Image.open(f))
                out = Path(tmp) / ("train" if split == src.train else "valid") / f.parent.name
                out.mkdir(parents=True, exist_ok=True)
                for k, (dy, dx) in enumerate(copies):
                    Image.fromarray(np.roll(digit, (dy, dx), (0, 1))).save(out / f"{f.stem}-{k}.png")
        written = time.perf_counter() - start
        source = f"folder:{tmp}"
        start = time.perf_counter()
        dls = data.dataloaders(source, bs=64)
        first = time.perf_counter() - start
        n = len(dls.train.images) + len(dls.valid.images)
        per_image = (dls.train.images.nbytes + dls.valid.images.nbytes) / n
        per_image += (dls.train.labels.nbytes + dls.valid.labels.nbytes) / n
        case = CASES[1]
        case = type(case)(
            case.name, case.file, [s for s in case.sets if "repeat" not in s] + ["steps.repeat.n=1"]
        )
        ours, hand = measure(case, repeats, source)
    return {
        "images": n,
        "write": written,
        "first load": first,
        "bytes/image": per_image,
        "ours": ours,
        "hand": hand,
    }


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


def bench_processes(repeats: int = 3) -> dict:
    """Seconds of one epoch (train + validate) of the 10-class CNN on 1 and on 2 processes (data-parallel,
    gloo on CPU), read from each run's own epoch timing; interleaved 1, 2, 1, 2, ...: medians, and each pair's
    ratio (a busy moment slows one pair, not one side), so that the spread is printed beside the speed-up."""
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
    ratios = sorted(a / b for a, b in zip(times[1], times[2]))
    return {n: statistics.median(t) for n, t in times.items()} | {"ratios": ratios}


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True)
    return time.perf_counter() - start


def bench_seeds(repeats: int = 3) -> dict[str, float]:
    """`make run`'s comparison over 5 seeds on 2 workers (what `make run` runs) against the same comparison on
    1 seed, each a whole command with W&B offline, interleaved 1, 5, 1, 5, ...; and a 10-class comparison (the
    linear model and the simple net, 5 seeds) on 2 workers against 1, interleaved the same way."""
    import tempfile

    exe = os.path.join(os.path.dirname(sys.executable), "sevenstep")
    experiments = Path("experiments").resolve()
    times: dict[str, list[float]] = {"1 seed": [], "5 seeds, 2 workers": [], "1 worker": [], "2 workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        ten = Path(tmp) / "ten.toml"
        ten.write_text(
            'name = "ten"\nsource = "mnist5k"\nseeds = 5\n'
            f'[[runs]]\nrecipe = "{experiments / "fastbook_linear.toml"}"\nlabel = "linear"\n'
            'set = { "steps.loss.name" = "cross_entropy", "steps.init.name" = "zeros", "steps.step.lr" = 0.5, '
            '"steps.repeat.n" = 20 }\n'
            f'[[runs]]\nrecipe = "{experiments / "fastbook_simple_net.toml"}"\nlabel = "simple net"\n'
            'set = { "steps.loss.name" = "cross_entropy", "steps.step.lr" = 0.5, "steps.repeat.n" = 40 }\n'
        )
        for i in range(repeats):
            for name, args in (("1 seed", ["--seeds", "1"]), ("5 seeds, 2 workers", ["--workers", "2"])):
                out = Path(tmp) / f"{i}-{name}"
                times[name].append(_timed([exe, "compare", str(experiments / "baseline_vs_sgd.toml"), *args,
                                           "--runs-dir", str(out), "--wandb-dir", str(out)]))  # fmt: skip
            for name in ("1 worker", "2 workers"):
                out = Path(tmp) / f"{i}-ten-{name}"
                times[name].append(_timed([exe, "compare", str(ten), "--workers", name[0], "--wandb", "disabled",
                                           "--runs-dir", str(out)]))  # fmt: skip
    return {name: statistics.median(t) for name, t in times.items()}


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

    print(
        "\n2. one training epoch + validation of the 10-class CNN, same data, augmentation and optimizer, against a"
    )
    print(
        "   hand-written PyTorch loop (seconds; each pair measured interleaved; target for sevenstep at most 1.1x)"
    )
    for name, (v, floor) in bench_epoch().items():
        print(f"   {name:<55} {v:>6.3f} s vs {floor:.3f} s   {v / floor:5.2f}x the hand loop")

    print(
        "\n2b. fastbook's chapter 4 small models: sevenstep's train.fit against a hand-written loop, same everything"
    )
    for name, ours, hand, target in bench_small_models():
        print(
            f"   {name:<55} {ours:.3f} s vs {hand:.3f} s   {ours / hand:5.2f}x   (target at most {target}x)"
        )

    fd = bench_finite_difference()
    print(
        f"\n2c. finite_difference_3v7, one epoch: vectorised numerical gradient {fd['vectorised']:.3f} s, the "
        f"per-weight loop it replaced {fd['per weight']:.3f} s ({fd['per weight'] / fd['vectorised']:.0f}x faster; "
        f"target at least 20x), autograd {fd['autograd']:.3f} s ({fd['vectorised'] / fd['autograd']:.1f}x autograd's "
        f"time)\n    simple net (23,581 weights), one batch of 256 by finite differences: {fd['simple net batch']:.2f} s"
    )
    big = bench_60k()
    print(
        f"\n2d. {big['images']:,} images (a folder of full MNIST's size): written in {big['write']:.0f} s, first "
        f"load (check + decode once) {big['first load']:.0f} s, {big['bytes/image']:.0f} bytes per image decoded; "
        f"mlp epoch {big['ours']:.2f} s vs {big['hand']:.2f} s by hand: {big['ours'] / big['hand']:.2f}x"
    )
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
        f"gloo), medians of {len(procs['ratios'])} interleaved pairs: 2 processes run at "
        f"{statistics.median(procs['ratios']):.2f}x the speed of 1 (pairs: "
        f"{', '.join(f'{r:.2f}x' for r in procs['ratios'])})"
    )
    seeds = bench_seeds()
    print(
        f"7. `make run`'s comparison: {seeds['1 seed']:.1f} s on 1 seed, {seeds['5 seeds, 2 workers']:.1f} s on 5 "
        f"seeds with 2 workers (what `make run` runs): {seeds['5 seeds, 2 workers'] / seeds['1 seed']:.2f}x the time "
        f"(target at most 2x)\n   a 10-class comparison (linear, simple net; 5 seeds): {seeds['1 worker']:.1f} s on "
        f"1 worker, {seeds['2 workers']:.1f} s on 2: {seeds['1 worker'] / seeds['2 workers']:.2f}x the speed"
    )
    from .pages import bench_pages

    pages = bench_pages()
    print("8. report pages in headless Chromium (size; median seconds to open with every chart drawn)")
    if not pages:
        print("   skipped: no headless chromium here (Debian's chromium and chromium-driver)")
    for name, (mb, seconds) in pages.items():
        print(f"   {name:<45} {mb:.1f} MB, {seconds:.2f} s   (targets: under 5 MB, under 2 s)")
    print(
        f"\n(peak RSS of this benchmark process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
