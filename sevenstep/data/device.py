"""Where the model, the decoded images and the batch transforms live: `--device cpu|cuda|cuda:N|mps`, or by
default fastai's choice (the GPU when there is one, else the CPU).

The choice travels in an environment variable, so the processes a command starts (data-parallel ranks,
sweep workers) use it too.
"""

from __future__ import annotations

import os

from ..errors import UsageError

ENV = "SEVENSTEP_DEVICE"


def choose(name: str | None, processes: int = 1) -> None:
    """Check `--device` against this machine and make it every later run's device."""
    if name is None:
        return
    check_name(name)
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(
            f"--device {name!r} is not a device; use cpu, cuda, cuda:N (N from 0) or mps"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(
                f"--device {name}: this machine has no CUDA GPU that torch can use; use --device cpu"
            )
        if device.index is not None and device.index >= count:
            raise UsageError(
                f"--device {name}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
            )
        if device.index is not None and processes > 1:
            raise UsageError(
                f"--device {name} with --processes {processes}: each process takes a GPU of its own; "
                "use --device cuda"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: Apple's MPS is not available here; use --device cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name!r}: sevenstep runs on cpu, cuda or mps")
    os.environ[ENV] = name


def check_name(name: str | None) -> None:
    """A device's name, without torch: cpu, cuda, cuda:N or mps (whether this machine has it, `choose` says)."""
    import re

    if name is not None and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", name):
        raise UsageError(f"--device {name!r} is not a device; use cpu, cuda, cuda:N (N from 0) or mps")


def default():
    """The device a run uses: the one chosen, else fastai's default_device()."""
    import torch
    from fastai.torch_core import default_device

    name = os.environ.get(ENV)
    if not name:
        return default_device()
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())  # a data-parallel rank's own GPU
    return device


def describe(device) -> str:
    """`cuda:0 (NVIDIA H100 80GB HBM3)`, `cpu`: for the line a run prints before training."""
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
