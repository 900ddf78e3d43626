"""Files written whole or not at all: a temporary file beside the target, renamed onto it.

A reader (another process, a resumed run) sees the old file or the new one, never half of one; a crash or a
signal mid-write leaves the old file and no temporary behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp makes its file private (0600); the file it becomes is an ordinary one, readable as open() makes it
MODE = 0o666 & ~_umask()


def write_bytes(path: Path, data: bytes) -> None:
    """`data` as the whole of `path`. A failed write (a full disk) names `path`, not its temporary file."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        os.fchmod(fd, MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode())
