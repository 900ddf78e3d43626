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


def printable(cell: str) -> str:
    """A cell for the terminal: control characters (an escape sequence in a label or a class folder's name
    would retitle the terminal or move its cursor) shown as their escapes, `\\x1b`, never sent raw."""
    import unicodedata

    return "".join(repr(c)[1:-1] if unicodedata.category(c) == "Cc" else c for c in str(cell))


def text(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, a rule under the header."""
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def markdown(rows: list[list[str]]) -> str:
    md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    md += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows[1:]]
    return "\n".join(md) + "\n"


FORMULA = tuple("=+-@\t\r")  # what a spreadsheet takes for a formula at the start of a cell (OWASP)


def spreadsheet_safe(v: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula (`=HYPERLINK(...)` from a label or a class
    name), prefixed with ' as OWASP advises; numbers, and text that is a number, stay as they are."""
    if not isinstance(v, str) or not v.startswith(FORMULA):
        return v
    try:
        float(v)
        return v
    except ValueError:
        return "'" + v


def unprefixed(v: str) -> str:
    """A cell as it was before `spreadsheet_safe`, for sevenstep reading its own CSV back."""
    return v[1:] if v.startswith("'") and v[1:].startswith(FORMULA) else v


def csv_text(records: list[dict[str, Any]], fieldnames: list[str] | None = None) -> str:
    """One row per record, each text cell spreadsheet-safe; `fieldnames` (default: the first record's keys)
    fixes the columns' order."""
    f = io.StringIO(newline="")
    writer = csv.DictWriter(f, fieldnames=fieldnames or list(records[0]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in r.items()} for r in records)
    return f.getvalue()


def read_csv(file: Path) -> list[dict[str, str]]:
    with open(file, newline="") as f:
        return [{k: unprefixed(v) for k, v in r.items()} for r in csv.DictReader(f)]


def write_csv(path: Path, records: list[dict[str, Any]], fieldnames: list[str] | None = None) -> None:
    from . import atomic

    atomic.write_text(path, csv_text(records, fieldnames))
