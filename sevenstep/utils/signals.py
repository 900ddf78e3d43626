"""Ctrl-C and SIGTERM: both stop a run the same clean way, and neither may cut a save in half.

Python turns Ctrl-C into KeyboardInterrupt wherever the program is; `sigterm_as_ctrl_c` makes `kill` do the
same. `deferred()` holds both while a block that must not be half done runs (saving a run, finishing its W&B
run); the caller then decides what the held signal means.
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


_held: list[int] | None = None  # what the deferred block in progress holds, if one is
