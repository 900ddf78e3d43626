"""Data-parallel training on several processes, GPUs or machines, through fastai's own `Learner.distrib_ctx`
(PyTorch's DistributedDataParallel, set up by Hugging Face accelerate): NCCL on GPUs, gloo on CPUs.

`sevenstep run FILE --processes N` starts N copies of itself with `torchrun --standalone`; on several
machines, users start the same `sevenstep run FILE` with torchrun's (or `accelerate launch`'s) own rendezvous
options. Each process trains on its share of every training batch (`data.bs` per process); rank 0 alone
writes the run folder, its checkpoints and its W&B run.

Validation is not sharded: every process evaluates the whole validation set, so the metrics count each
image exactly once (fastai's DistributedDL pads the last batch across ranks) and equal a single-process
evaluation of the same weights; every rank also takes the same stop decision from them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from fastai.callback.core import Callback
from fastai.distributed import DistributedDL, DistributedTrainer


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    """This process's rank in a data-parallel run (0 alone writes the run folder); 0 when there is one process."""
    return int(os.environ.get("RANK", 0))


def _broadcast(self, t, rank):
    """fastai 2.8's DistributedDL._broadcast moves the batch order to CUDA ("nccl only works with cuda
    tensors"), which fails on a CPU (gloo) run: here the tensor lives where the backend wants it."""
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    t = torch.tensor(t, dtype=torch.long, device=device)
    torch.distributed.broadcast(t, rank)
    return t.cpu().tolist()


DistributedDL._broadcast = _broadcast


class WholeValidation(Callback):
    """Keeps validation on the whole, unsharded validation set in every process, and its values ungathered
    (`gather`, which the fast path's DataLoader keeps through fastai's `new`, as get_preds uses it)."""

    order = DistributedTrainer.order + 1

    def before_fit(self):
        loaders = self.learn.dls.loaders
        loaders[1:] = [dl.dl if isinstance(dl, DistributedDL) else dl for dl in loaders[1:]]
        for dl in loaders[1:]:  # every process has the whole set: nothing to gather from the others
            dl.gather = False

    def before_validate(self):
        if isinstance(self.learn.dl, DistributedDL):
            self.learn.dl = self.learn.dl.dl


def setup() -> None:
    """Before anything is built: each process's own GPU, when there are GPUs."""
    from ..data.device import ENV

    if world_size() > 1 and torch.cuda.is_available() and os.environ.get(ENV, "cuda").startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


@contextmanager
def context(learn):
    """fastai's distrib_ctx when this process is one of several, else nothing."""
    if world_size() <= 1:
        yield
        return
    learn.add_cb(WholeValidation())
    try:
        gpu = learn.dls.device.type == "cuda"  # SyncBatchNorm needs GPUs; on CPUs each process keeps its own
        with learn.distrib_ctx(sync_bn=gpu, cpu=not gpu):
            yield
    finally:
        learn.remove_cb(WholeValidation)


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def launch_env(processes: int) -> dict[str, str]:
    """The launched processes' environment: each its share of the cores. (torchrun sets OMP_NUM_THREADS=1 and
    prints a banner saying so when it is not set; a choice made here says nothing.)"""
    threads = str(max(1, (os.cpu_count() or 1) // processes))
    return os.environ | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}


def launch_command(args: list[str], processes: int) -> list[str]:
    """The torchrun command that runs `sevenstep ARGS` on `processes` processes of this machine."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "-m", "sevenstep", *args]  # fmt: skip
