"""The tables sevenstep prints and writes: rows of strings (a header first) as aligned text for the terminal,
and as Markdown for a report folder; rows of values (dicts) as CSV for a spreadsheet or pandas.

Written here because the libraries at hand do not do it for plain rows: `rich` (through typer) draws boxes and
wraps cells, which breaks copy-paste and pipes; pandas' to_markdown needs the extra `tabulate` package.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any


def text(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def markdown(rows: list[list[str]]) -> str:
    md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    md += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows[1:]]
    return "\n".join(md) + "\n"


def write_csv(path: Path, records: list[dict[str, Any]], fieldnames: list[str] | None = None) -> None:
    """One row per record; `fieldnames` (default: the first record's keys) fixes the columns' order."""
    from . import atomic

    f = io.StringIO(newline="")
    writer = csv.DictWriter(f, fieldnames=fieldnames or list(records[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(records)
    atomic.write_text(path, f.getvalue())
