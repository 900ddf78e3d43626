"""A prototype measured for the issue "Five seeds for the price of one", and not part of sevenstep: several seeds
of one recipe trained in step in one process, the forward and backward passes of their training batches
computed as one vectorised pass, while everything else stays each seed's ordinary run.

Each seed is a whole `sevenstep.loop.train.run` (its own Learner and callbacks, folder, checkpoints, W&B run,
result) in a thread of its own. The threads take turns, one running at a time (a baton, `threading.Condition`),
each with its own random generators swapped in while it runs, so that each draws what it would alone. When
every seed that is training waits on a training batch's forward or backward pass, the one that arrived last
computes them all: the forwards as one `torch.func.vmap` over `functional_call` with the seeds' weights stacked
(PyTorch's model-ensembling recipe; the stack is part of the graph, so each seed's own weights get their
gradients), the backwards as one `torch.autograd.backward` of every seed's loss. Loss, optimizer step, metrics,
stop rule, logging and validation stay each seed's own Learner, event for event; a seed that stops leaves.

What it showed (`python -m benchmarks.seeds_in_step`): each seed's per-epoch metrics equal a lone run's to 2.4e-7 (20 epochs), but
5 seeds in step take 1.4-1.7x the time of 5 one after another on 2 CPU cores, because each seed still pays
fastai's per-batch events, its loss and its optimizer step (the Python overhead the issue hoped to share), and
vmap and the turns add their own. Sharing that overhead needs one Learner over stacked weights, with stack-aware
step options: a second training path, left to a decision (see docs/performance.md).
"""

from __future__ import annotations

import random
import threading
from functools import partial
from typing import Any

import numpy as np
import torch
from fastai.callback.progress import ProgressCallback
from torch.func import functional_call, vmap

from sevenstep.callbacks import SparseCallback

FORWARD, BACKWARD = "forward", "backward"


class SeedStack:
    """The seeds' meeting point. Every method is called by the thread holding the baton (`cv`'s lock)."""

    def __init__(self, n_seeds: int):
        self.cv = threading.Condition()
        self.starting = n_seeds  # threads that have neither begun training nor ended
        self.training: set[int] = set()  # threads in a fit
        self.begun: set[int] = set()
        self.waiting: dict[int, tuple[str, Any]] = {}  # thread -> (FORWARD or BACKWARD, its Learner)
        self.answers: dict[int, Any] = {}
        self.rng: dict[int, tuple] = {}
        # set by the main thread on Ctrl-C (a plain flag: it need not hold the baton)
        self.interrupted = False
        self.passes = self.items = 0  # vectorised passes, and the seeds' batches they computed

    # --- the baton, with each thread's random generators --------------------------------------------------
    def take(self) -> None:
        self.cv.acquire()
        self._restore()

    def give(self) -> None:
        self._save()
        self.cv.release()

    def _save(self) -> None:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
        self.rng[threading.get_ident()] = (
            torch.get_rng_state(),
            cuda,
            np.random.get_state(),
            random.getstate(),
        )

    def _restore(self) -> None:
        state = self.rng.get(threading.get_ident())
        if state is None:  # a thread's first turn: its run seeds the generators itself
            return
        cpu, cuda, numpy_state, python_state = state
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        np.random.set_state(numpy_state)
        random.setstate(python_state)

    def _wait(self) -> None:
        self._save()
        self.cv.wait(timeout=0.2)  # woken by an answer; the timeout to see a Ctrl-C
        self._restore()

    # --- membership -----------------------------------------------------------------------------------------
    def begin(self) -> None:
        me = threading.get_ident()
        if me not in self.begun:
            self.begun.add(me)
            self.starting -= 1
        self.training.add(me)

    def leave(self) -> None:
        """The thread's fit has ended (or its run has: `end`)."""
        self.training.discard(threading.get_ident())
        self._maybe_compute()

    def end(self) -> None:
        me = threading.get_ident()
        if me not in self.begun:  # its run failed before it began training
            self.begun.add(me)
            self.starting -= 1
        self.leave()

    # --- the passes --------------------------------------------------------------------------------------------
    def ask(self, kind: str, learn) -> Any:
        """The thread's forward (its predictions) or backward pass, once every seed training has asked."""
        me = threading.get_ident()
        if self.interrupted:
            raise KeyboardInterrupt
        self.waiting[me] = (kind, learn)
        self._maybe_compute()
        while me not in self.answers:
            self._wait()
            if self.interrupted and me not in self.answers:
                self.waiting.pop(me, None)
                raise KeyboardInterrupt
        answer = self.answers.pop(me)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _maybe_compute(self) -> None:
        if self.starting or not self.waiting or len(self.waiting) < len(self.training):
            return
        work, self.waiting = self.waiting, {}
        try:
            answers = _compute(work)
        except Exception as e:  # each seed waiting raises it, as it would alone
            answers = dict.fromkeys(work, e)
        self.passes += 1
        self.items += len(work)
        self.answers.update(answers)
        self.cv.notify_all()


def _compute(work: dict[int, tuple[str, Any]]) -> dict[int, Any]:
    answers: dict[int, Any] = {}
    backwards = [(k, learn) for k, (kind, learn) in work.items() if kind == BACKWARD]
    if backwards:
        torch.autograd.backward([learn.loss_grad for _, learn in backwards])
        answers |= dict.fromkeys((k for k, _ in backwards), None)
    groups: dict[tuple, list] = {}  # forwards whose models and inputs have the same shapes go together
    for k, (kind, learn) in work.items():
        if kind == FORWARD:
            shapes = tuple((tuple(x.shape), x.dtype, x.device) for x in learn.xb)
            groups.setdefault((type(learn.model), shapes), []).append((k, learn))
    for group in groups.values():
        preds = stacked_forward([learn.model for _, learn in group], [learn.xb for _, learn in group])
        answers |= {k: pred for (k, _), pred in zip(group, preds)}
    return answers


def stacked_forward(models: list[torch.nn.Module], xbs: list[tuple]) -> list[torch.Tensor]:
    """Each model's output on its own inputs, in one vectorised pass (a lone model: its own forward)."""
    with torch.enable_grad():
        if len(models) == 1:
            return [models[0](*xbs[0])]
        names = [name for name, _ in models[0].named_parameters()]
        weights = {name: torch.stack([dict(m.named_parameters())[name] for m in models]) for name in names}
        xs = [torch.stack(parts) for parts in zip(*xbs)]
        out = vmap(lambda w, *x: functional_call(models[0], w, tuple(x)))(weights, *xs)
        return list(out.unbind(0))


class StackedSeed(SparseCallback):
    """On each seed's Learner: its training batches' forward and backward passes go through the stack, and its
    per-epoch table becomes one line a seed (fastai's progress bars, one per thread, would overwrite each other)."""

    order = -20

    def __init__(self, stack: SeedStack, label: str):
        self.stack, self.label = stack, label

    def after_create(self):
        self.learn.remove_cb(ProgressCallback)
        self.learn.logger = self._line

    def _line(self, log) -> None:
        """fastai's Recorder row (epoch, metrics, time), said with the metrics' names, for one seed."""
        names = self.learn.recorder.metric_names
        if list(log) == list(names):  # the header a table would print
            return
        said = [f"{n} {v:.4f}" if isinstance(v, float) else f"{n} {v}" for n, v in zip(names, log)]
        print(f"{self.label}  " + "  ".join(said), flush=True)

    def before_fit(self):
        self.stack.begin()
        self.learn._do_one_batch = partial(_one_batch, self.learn, self.stack)
        self.learn._backward = partial(self.stack.ask, BACKWARD, self.learn)

    def after_fit(self):
        for name in ("_do_one_batch", "_backward"):
            self.learn.__dict__.pop(name, None)
        self.stack.leave()


def _one_batch(learn, stack: SeedStack) -> None:
    """fastai's Learner._do_one_batch, with a training batch's predictions asked of the stack."""
    learn.pred = stack.ask(FORWARD, learn) if learn.training else learn.model(*learn.xb)
    learn("after_pred")
    if len(learn.yb):
        learn.loss_grad = learn.loss_func(learn.pred, *learn.yb)
        learn.loss = learn.loss_grad.clone()
    learn("after_loss")
    if not learn.training or not len(learn.yb):
        return
    learn._do_grad_opt()


def run(recipes, cbs=(), label=lambda recipe: f"seed {recipe.seed}", **kwargs) -> list:
    """Train `recipes` (one recipe's seeds) side by side: `train.run(recipe, cbs, **kwargs)` for each, in step.
    Returns each one's Run, or the exception its run raised; Ctrl-C stops and saves them all, then is raised."""
    from sevenstep.loop import train

    stack = SeedStack(len(recipes))
    results: list[Any] = [None] * len(recipes)

    def seed(k: int, recipe) -> None:
        stack.take()
        try:
            results[k] = train.run(recipe, [*cbs, partial(StackedSeed, stack, label(recipe))], **kwargs)
        except BaseException as e:
            results[k] = e
        finally:
            stack.end()
            stack.give()

    threads = [
        threading.Thread(target=seed, args=(k, r), name=label(r), daemon=True) for k, r in enumerate(recipes)
    ]
    for t in threads:
        t.start()
    interrupted = False
    for t in threads:
        while t.is_alive():
            try:
                t.join(0.1)
            except KeyboardInterrupt:  # signals reach the main thread only: each seed stops at its next batch
                stack.interrupted = interrupted = True
    if interrupted and not any(getattr(r, "stop_reason", None) == "interrupted" for r in results):
        raise KeyboardInterrupt
    return results


def measure(sets: list[str], repeats: int = 3, n: int = 5) -> dict[str, float]:
    """Seconds for 5 seeds of fastbook's simple net (10 classes) one after another and in step, interleaved
    (A, B, A, B, ...), medians; and the largest difference of any per-epoch metric between the two."""
    import contextlib
    import dataclasses
    import io
    import statistics
    import time

    from sevenstep import recipe as recipes
    from sevenstep.loop import train

    base = recipes.load("experiments/fastbook_simple_net.toml", sets)
    seeds = [dataclasses.replace(base, seed=s, name=f"{base.name}-seed{s}") for s in range(1, n + 1)]
    sides = {
        "one after another": lambda: [train.run(r, pictures=False) for r in seeds],
        "in step": lambda: run(seeds, pictures=False),
    }
    times: dict[str, list[float]] = {k: [] for k in sides}
    results = {}
    with contextlib.redirect_stdout(io.StringIO()):
        train.run(seeds[0], pictures=False)  # data prepared and cached, libraries warm
        for _ in range(repeats):
            for side, fn in sides.items():
                start = time.perf_counter()
                results[side] = fn()
                times[side].append(time.perf_counter() - start)
    drift = max(
        abs(a[k] - b[k])
        for x, y in zip(results["one after another"], results["in step"])
        for a, b in zip(x.epochs, y.epochs)
        for k in a
        if k not in ("epoch", "seconds")
    )
    return {k: statistics.median(v) for k, v in times.items()} | {"drift": drift}


def main() -> None:
    import warnings

    import fastprogress.fastprogress as fp

    warnings.filterwarnings("ignore")
    fp.NO_BAR = True
    common = ["data.source=mnist5k", "steps.loss.name=cross_entropy"]
    for what, sets in (("batches of 256, 20 epochs", ["steps.repeat.n=20"]),
                       ("batches of 16 (overhead-bound, as small kernels on a GPU), 3 epochs",
                        ["data.bs=16", "steps.repeat.n=3"])):  # fmt: skip
        m = measure(common + sets)
        print(f"5 seeds of the simple net 784-30-10 on mnist5k, {what}: one after another "
              f"{m['one after another']:.1f} s, in step {m['in step']:.1f} s "
              f"({m['in step'] / m['one after another']:.2f}x); per-epoch metrics differ by at most {m['drift']:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
