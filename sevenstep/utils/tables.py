"""The tables sevenstep prints and writes: rows of strings (a header first) as aligned text for the terminal,
and as Markdown for a report folder; rows of values (dicts) as CSV for a spreadsheet or pandas.

A table wider than the terminal is fitted to it by `rich` (installed with typer), which wraps cells at their
spaces; a pipe or a wide terminal gets one line a row, for grep and copy-paste. Markdown and CSV are written
here: pandas' to_markdown needs the extra `tabulate` package, and the CSV cells need spreadsheet_safe.
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


def percent(x: Any) -> str:
    """An accuracy as every table shows it: in percent, one decimal; "-" for none."""
    return f"{100 * x:.1f}" if isinstance(x, (int, float)) else "-"


def text(rows: list[list[str]], width: int | None = None) -> str:
    """Columns padded to their widest cell, a rule under the header; fitted to `width` (default: the
    terminal's, when the output is one) by wrapping cells between words, never inside one while it can."""
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    width = terminal_width() if width is None else width
    if width is None or sum(widths) + 2 * (len(widths) - 1) <= width:
        return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])
    return _wrapped(rows, width)


def paragraphs(said: str, width: int | None = None) -> str:
    """Lines of prose wrapped between words at `width` (default: the terminal's, when the output is one)."""
    import textwrap

    width = terminal_width() if width is None else width
    if width is None:
        return said
    return "\n".join(textwrap.fill(line, width, break_on_hyphens=False) or line for line in said.splitlines())


def terminal_width() -> int | None:
    """The terminal's width when standard output is one ($COLUMNS first, as shutil reads it); None for a pipe
    or a file, which get whole lines."""
    import shutil
    import sys

    return shutil.get_terminal_size().columns if sys.stdout.isatty() else None


def _wrapped(rows: list[list[str]], width: int) -> str:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # rich's own sharing-out folds words while other columns have room: the widest column gives up a
    # character at a time, down to its longest word; when the words cannot all fit, the longest ones (paths,
    # group names) are folded first
    n = len(rows[0])
    widths = [max(len(row[i]) for row in rows) for i in range(n)]
    words = [
        min(widths[i], max((len(w) for row in rows for w in row[i].split()), default=1)) for i in range(n)
    ]
    room = max(width - 2 * n + 1, n)  # each column has a space of padding, and a space between columns
    cap = max(words)
    while cap > 1 and sum(min(w, cap) for w in words) > room:
        cap -= 1
    floor = [min(w, cap) for w in words]
    while sum(widths) > room:
        i = max(range(n), key=lambda i: (widths[i] > floor[i], widths[i] - floor[i], widths[i]))
        widths[i] -= 1
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0))
    for header, w in zip(rows[0], widths):
        table.add_column(Text(header), width=w, overflow="fold")
    for row in rows[1:]:
        table.add_row(*(Text(c) for c in row))  # Text: a cell's [brackets] are not rich's markup
    console = Console(width=width, file=io.StringIO(), color_system=None, highlight=False)
    console.print(table)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines()).strip("\n")


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
