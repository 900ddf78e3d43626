"""Ctrl-C and SIGTERM: both stop a run the same clean way, and neither may cut a save in half.

Python turns Ctrl-C into KeyboardInterrupt wherever the program is; `sigterm_as_ctrl_c` makes `kill` do the
same. `deferred()` holds both while a block that must not be half done runs (saving a run, finishing its W&B
run); the caller then decides what the held signal means. `whole()` holds them the same way, then sends the
first again once the block is done (an epoch's bookkeeping: its row, the loggers, the stop rule, the checkpoint).
A worker process stops on SIGTERM (`stop_on_sigterm`), and stays stopping: see `check`.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


def sigterm_as_ctrl_c() -> None:
    """`kill` ends a run the way Ctrl-C does: it stops, is saved, and its W&B run is finished cleanly."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


stop_requested = False  # a worker was told to stop: every later safe point (`check`) stops it again


def stop_on_sigterm() -> None:
    """A worker's SIGTERM (its parent passing Ctrl-C on): KeyboardInterrupt at once, and at every later safe
    point. Python drops an exception raised while it runs a weakref callback or __del__ during garbage
    collection ("Exception ignored in ..."): a worker told to stop then trained every remaining run."""

    def stop(signum, frame):
        global stop_requested
        first, stop_requested = not stop_requested, True
        if (
            first
        ):  # a second signal (the terminal's, then the parent's) must not cut the first one's save short
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


def check() -> None:
    """A safe point (a training batch, the next trial): stop here if a stop was asked for and got lost."""
    if stop_requested:
        raise KeyboardInterrupt


@contextmanager
def deferred():
    """Yield a list that collects the Ctrl-C/SIGTERM signals that arrive during the block, instead of them
    interrupting it. (Only the main thread receives signals; elsewhere this holds nothing.) Inside another
    deferred block, the outer block's list collects them, so that none is lost to the inner one."""
    global _held
    if _held is not None:
        yield _held
        return
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    old = {
        s: signal.signal(s, lambda signum, frame: held.append(signum))
        for s in (signal.SIGINT, signal.SIGTERM)
    }
    _held = held
    try:
        yield held
    finally:
        _held = None
        for s, handler in old.items():
            signal.signal(s, handler)


@contextmanager
def whole():
    """The block is done whole: a Ctrl-C or SIGTERM that comes during it is held, then sent again once the block
    is done, to whatever handles it here (a run's handler: it stops and is saved; a sweep worker's). Inside a
    deferred block, that block holds it and decides."""
    if _held is not None:
        yield
        return
    held: list[int] = []
    try:
        with deferred() as held:
            yield
    finally:
        # the first held signal this process does not ignore: a worker ignores the terminal's SIGINT and
        # stops on its parent's SIGTERM, and both may come during one block
        wanted = [s for s in held if signal.getsignal(s) is not signal.SIG_IGN]
        if wanted:
            signal.raise_signal(wanted[0])


_held: list[int] | None = None  # what the deferred block in progress holds, if one is
