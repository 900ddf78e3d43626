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
from datetime import timedelta

import torch
from fastai.callback.core import Callback
from fastai.distributed import DistributedDL, DistributedTrainer

from ..errors import TrainingFailed


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


TIMEOUT_ENV, TIMEOUT = "SEVENSTEP_PARALLEL_TIMEOUT", 120.0  # seconds a process waits for the others' batch


def setup() -> None:
    """Before anything is built: each process's own GPU, when there are GPUs; and a process whose launcher
    dies gets SIGTERM, as from a Ctrl-C, instead of training on as an orphan."""
    from ..data.device import ENV

    if world_size() <= 1:
        return
    stop_with_parent()
    if torch.cuda.is_available() and os.environ.get(ENV, "cuda").startswith("cuda"):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))


def stop_with_parent() -> None:
    """Linux's PR_SET_PDEATHSIG: SIGTERM when the process that started this one ends (killed with -9 too).
    By hand through ctypes: neither torch nor the standard library offers it. Elsewhere, nothing."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


@contextmanager
def context(learn):
    """fastai's distrib_ctx when this process is one of several, else nothing."""
    if world_size() <= 1:
        yield
        return
    from accelerate.utils import InitProcessGroupKwargs

    learn.add_cb(WholeValidation())
    wait = float(os.environ.get(TIMEOUT_ENV) or TIMEOUT)
    try:
        gpu = learn.dls.device.type == "cuda"  # SyncBatchNorm needs GPUs; on CPUs each process keeps its own
        handlers = [InitProcessGroupKwargs(timeout=timedelta(seconds=wait))]
        with learn.distrib_ctx(sync_bn=gpu, cpu=not gpu, kwargs_handlers=handlers):
            yield
    except RuntimeError as e:  # torch's DistBackendError is one
        if not any(sign in str(e) for sign in LOST):
            raise
        others = ", ".join(str(r) for r in range(world_size()) if r != rank())
        folder = learn.run_info.run_dir or "RUN_FOLDER"
        raise TrainingFailed(
            f"process {rank()} of {world_size()} lost the others (rank {others}): {_first_line(e)}. One of them "
            f"stopped, hangs or died; a process waits {wait:.0f} s for the others ({TIMEOUT_ENV} sets it). "
            f"The run's last complete epoch is kept: `sevenstep resume {folder} --processes {world_size()}`"
        ) from None
    finally:
        learn.remove_cb(WholeValidation)


LOST = ("Timed out", "timed out", "Connection closed by peer", "Connection reset by peer")  # gloo's words


def _first_line(e: Exception) -> str:
    line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    # gloo leads with its own source file: `[../gloo/...cc:81] Timed out`
    return line.split("] ", 1)[-1][:200]


def teardown() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def launch_env(processes: int) -> dict[str, str]:
    """The launched processes' environment: each its share of the cores. (torchrun sets OMP_NUM_THREADS=1 and
    prints a banner saying so when it is not set; a choice made here says nothing.)"""
    from ..utils.processes import safe_env

    threads = str(max(1, (os.cpu_count() or 1) // processes))
    return safe_env() | {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads)}


def launch(args: list[str], processes: int) -> int:
    """`sevenstep ARGS` on `processes` processes started by torchrun; the exit code (130 when stopped).

    torchrun runs in a session of its own, so that a terminal's Ctrl-C reaches it once, through this process:
    SIGINT and SIGTERM sent here (from a terminal or a `kill`) are passed on to it, and torchrun to each
    process, which saves its run as after a Ctrl-C; this launcher waits for them. If this launcher dies,
    torchrun gets SIGTERM (stop_with_parent), and so on down."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen(launch_command(args, processes), env=launch_env(processes), start_new_session=True,
                            preexec_fn=stop_with_parent)  # fmt: skip
    stopped: list[int] = []

    def pass_on(signum, frame):
        if not stopped:  # once: a second signal to torchrun would cut the processes' save short
            proc.send_signal(signum)
        stopped.append(signum)

    previous = {s: signal.signal(s, pass_on) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if stopped:
        return 130
    if code < 0:  # torchrun itself was killed: its processes had SIGTERM (stop_with_parent) and saved
        print(f"torchrun was stopped by {signal.Signals(-code).name}; each process was told to stop and save its "
              "run", file=sys.stderr)  # fmt: skip
        return 128 - code
    return code


def launch_command(args: list[str], processes: int) -> list[str]:
    """The torchrun command that runs `sevenstep ARGS` on `processes` processes of this machine."""
    from ..utils.processes import python_m

    return python_m("sevenstep.loop.torchrun", "--standalone", f"--nproc-per-node={processes}", "-m",
                    "sevenstep", *args)  # fmt: skip
