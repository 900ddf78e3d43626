"""Shared fixtures: an isolated cache for the embedded data, wandb offline in a temporary folder, small image
folders made on the spot."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

warnings.filterwarnings("ignore", category=FutureWarning)

LINEAR = str(
    Path("tests/recipes/linear_20_epochs.toml").resolve()
)  # fastbook's linear recipe at 20 epochs: quick

# The files that ship in experiments/, by name: a user's own recipes there (broken ones too) are not the suite's
# to test (#36 item 15). test_recipe.py checks this list against the files git tracks there.
SHIPPED_RECIPES = ["cnn_3v7.toml", "cnn_mnist5k.toml", "fastbook_linear.toml", "fastbook_simple_net.toml",
                   "finite_difference_3v7.toml", "hinge_3v7.toml"]  # fmt: skip
SHIPPED_COMPARISONS = ["baseline_vs_sgd.toml", "baseline_vs_sgd_10.toml", "baseline_vs_sgd_kfold.toml",
                       "dropout_overfitting.toml", "vanishing_gradients.toml"]  # fmt: skip
SHIPPED_SWEEPS = ["sweep_init_x_loss_3v7.toml", "sweep_mnist5k.toml", "sweep_simple_net_lr_epochs.toml"]
SHIPPED = [*SHIPPED_RECIPES, *SHIPPED_COMPARISONS, *SHIPPED_SWEEPS, "my_steps.py"]

# Ctrl-C as at a terminal, for this process and the sevenstep processes tests start: a shell that starts a job in
# the background (`cmd &` in a script) starts it with SIGINT ignored, and every Ctrl-C test would then hang
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def isolated_env(tmp_path_factory):
    """Embedded data is prepared once per test session in a temporary cache; nothing touches ~/."""
    root = tmp_path_factory.mktemp("env")
    os.environ["SEVENSTEP_CACHE"] = str(root / "cache")
    os.environ["FASTAI_HOME"] = str(root / "fastai")
    os.environ["WANDB_MODE"] = "offline"  # wandb reads these once per process: set before it is imported
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        os.environ[var] = str(root / var.lower())
    os.environ.pop("WANDB_API_KEY", None)
    # a checkpoint after every epoch, as the tests that stop runs at a given epoch expect (the default is every
    # 5 s: tests/loop/test_checkpoint.py tests that path with the seconds it gives)
    os.environ["SEVENSTEP_CHECKPOINT_EVERY"] = "0"
    import fastprogress.fastprogress as fp

    fp.NO_BAR = True
    return root


@pytest.fixture(autouse=True)
def wandb_teardown():
    """No W&B state leaks from one test to the next."""
    yield
    import sys

    if "wandb" in sys.modules:
        sys.modules["wandb"].teardown()


def make_folder(
    root: Path, classes=("a", "b"), n_train=12, n_valid=4, splits=("train", "valid"), size=28, seed=0
) -> Path:
    """A tiny image folder in fastai's layout; class k is a bright square at a class-specific place. Another
    split made into the same root needs another `seed`: the same seed draws the same images."""
    rng = np.random.default_rng(seed)
    for split, n in zip(splits, (n_train, n_valid)):
        for k, c in enumerate(classes):
            folder = root / split / c
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 40, (size, size), dtype=np.uint8)
                img[4 + 6 * k : 10 + 6 * k, 4:20] = 255
                Image.fromarray(img, mode="L").save(folder / f"{i}.png")
    return root


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    return make_folder(tmp_path / "tiny")


def start_cli(*args: str, env=None, **kw) -> subprocess.Popen:
    """`sevenstep ARGS` in a process of its own, as a terminal would start it (for signals and kills)."""
    cmd = [sys.executable, "-m", "sevenstep", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def in_tmux(command: str, columns: int = 80, timeout: float = 120) -> str:
    """What `command` prints in a tmux window `columns` wide, as a person sees it; the lines the terminal wrapped
    are joined back (capture-pane -J), so a line wider than the window reads as one long line."""
    import shutil

    tmux = shutil.which("tmux")
    if tmux is None:
        pytest.skip("tmux is not installed: no terminal to look at (.ci/run installs it)")
    session = f"t{os.getpid()}-{time.monotonic_ns()}"
    # env -u COLUMNS: the width must come from the terminal, as for a user, not from the tests' environment
    shell = f"cd {os.getcwd()} && env -u COLUMNS {command}; echo __ended__; sleep 600"
    subprocess.run(
        [tmux, "new-session", "-d", "-s", session, "-x", str(columns), "-y", "50", shell], check=True
    )

    def screen() -> str:
        cmd = [tmux, "capture-pane", "-p", "-J", "-S", "-", "-t", session]
        return subprocess.run(cmd, capture_output=True, text=True).stdout

    try:
        wait_for(lambda: "__ended__" in screen(), timeout, f"{command} in tmux")
        return screen().split("__ended__")[0]
    finally:
        subprocess.run([tmux, "kill-session", "-t", session], capture_output=True)


def wait_for(predicate, timeout=120.0, what="it"):
    """Poll (files, not sleeps of a guessed length) until `predicate()` holds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")
