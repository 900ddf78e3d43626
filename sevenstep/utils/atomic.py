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
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        os.fchmod(fd, MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
