"""Ctrl-C and SIGTERM: both stop a run the same clean way, and neither may cut a save in half.

Python turns Ctrl-C into KeyboardInterrupt wherever the program is; `sigterm_as_ctrl_c` makes `kill` do the
same. `deferred()` holds both while a block that must not be half done runs (saving a run, finishing its W&B
run); the caller then decides what the held signal means. `whole()` holds them the same way, then sends the
first again once the block is done (an epoch's bookkeeping: its row, the loggers, the stop rule, the checkpoint).
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
        if held:
            signal.raise_signal(held[0])


_held: list[int] | None = None  # what the deferred block in progress holds, if one is
