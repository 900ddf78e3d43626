"""The small models learners train, against a hand-written PyTorch loop over the same decoded tensors: same
model, initial weights, optimizer (plain SGD, p -= lr * grad), batch size and epochs, validating every epoch.
Each pair is measured interleaved (sevenstep, hand, sevenstep, hand, ...) and compared by medians."""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import dataclass

import torch
from fastai.callback.core import CancelBackwardException

from sevenstep import recipe
from sevenstep.loop import train
from sevenstep.steps.gradient import FiniteDifference


@dataclass
class Case:
    name: str
    file: str
    sets: list[str]


CASES = [
    Case(
        "fastbook linear, mnist5k-3v7, 20 epochs, bs 256",
        "experiments/fastbook_linear.toml",
        ["steps.repeat.n=20"],
    ),
    Case(
        "mlp 784-30-10, mnist5k, 5 epochs, bs 64, plain SGD",
        "experiments/fastbook_simple_net.toml",
        ["data.source=mnist5k", "data.bs=64", "steps.loss.name=cross_entropy", "steps.repeat.n=5"],
    ),
]


def hand_loop(learn, epochs: int):
    """The floor: what the recipe does, written out in PyTorch with nothing around it."""
    dls, loss_func = learn.dls, learn.loss_func
    x, y = dls.train.images.as_subclass(torch.Tensor), dls.train.labels.as_subclass(torch.Tensor)
    vx, vy = dls.valid.images.as_subclass(torch.Tensor), dls.valid.labels.as_subclass(torch.Tensor)
    norm = [t for t in dls.after_batch.fs if type(t).__name__ == "Normalize"]
    mean, std = (norm[0].mean, norm[0].std) if norm else (0.0, 1.0)
    model = copy.deepcopy(learn.model)
    params, lr, bs = list(model.parameters()), learn.lr, dls.train.bs

    def prep(images):
        return ((images.float() / 255) - mean) / std

    def run():
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(x))
            for i in range(0, len(x) - bs + 1, bs):
                idx = perm[i : i + bs]
                loss = loss_func(model(prep(x[idx])), y[idx])
                loss.backward()
                with torch.no_grad():
                    for p in params:
                        p -= lr * p.grad
                        p.grad = None
            model.eval()
            with torch.no_grad():
                total = correct = 0.0
                for i in range(0, len(vx), bs):
                    out = model(prep(vx[i : i + bs]))
                    total += loss_func(out, vy[i : i + bs]).item() * len(out)
                    correct += (loss_func.decodes(loss_func.activation(out)) == vy[i : i + bs]).sum().item()
        return total, correct

    return run


def interleaved(fns: dict[str, callable], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turns (A, B, A, B, ...) so that the machine's drift cancels."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(case: Case, repeats: int, source: str | None = None) -> tuple[float, float]:
    """Median seconds of sevenstep's `train.fit` and of the hand loop, measured interleaved."""
    r = recipe.load(case.file, case.sets + ([f"data.source={source}"] if source else []))
    learn = train.build_learner(r)
    with learn.no_bar(), learn.no_logging():  # no progress bars, no epoch tables in the benchmark's output
        train.fit(learn)  # the init step's one-off initialisation, before the copy the hand loop trains
        t = interleaved(
            {"sevenstep": lambda: train.fit(learn), "hand": hand_loop(learn, r.steps["repeat"]["n"])}, repeats
        )
    return t["sevenstep"], t["hand"]


class PerWeightFiniteDifference(FiniteDifference):
    """The reference for the vectorised numerical gradient: sevenstep's before #12, fastbook's loop as written,
    two whole forward passes per weight, one weight at a time."""

    @torch.no_grad()
    def before_backward(self):
        learn = self.learn

        def loss():
            return learn.loss_func(learn.model(*learn.xb), *learn.yb)

        for p in learn.model.parameters():
            grad = torch.zeros_like(p)
            flat, grad_flat = p.view(-1), grad.view(-1)
            for i in range(flat.numel()):
                original = flat[i].clone()
                flat[i] = original + self.eps
                up = loss()
                flat[i] = original - self.eps
                down = loss()
                flat[i] = original
                grad_flat[i] = (up - down) / (2 * self.eps)
            p.grad = grad
        raise CancelBackwardException()
