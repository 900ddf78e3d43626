"""The `sevenstep` command: a thin shell over the Python API (train.run, compare.run, sweep.run, ...).

Heavy libraries (fastai, torch) are imported inside commands, so --help is instant. The commands live in
experiments.py (run, resume, compare, sweep), tools.py (predict, lr-find) and browse.py (data, steps, runs); common.py has what they share.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..utils.processes import quiet_warnings
from .common import app

# isort: off
from . import experiments, tools, browse  # noqa: F401, E402  (they register their commands, in --help's order)
# isort: on

__all__ = ["app"]


def _one_line_summaries() -> None:
    """The command list shows each docstring's first paragraph; rich kept its source line breaks, which cut
    sentences in the middle at any width: the paragraph is given as one line, for rich to wrap."""
    from ..utils.docstrings import summary

    for command in app.registered_commands:
        if command.short_help is None and command.callback is not None:
            command.short_help = summary(
                command.callback.__doc__ and __import__("inspect").cleandoc(command.callback.__doc__)
            )


_one_line_summaries()


class PipeSafe:
    """stdout (or stderr) that outlives its reader: with `sevenstep run ... | head`, `head` exits early and every later
    write would raise BrokenPipeError in the middle of training. Once the pipe is closed, output goes to
    /dev/null instead and the run goes on, to be saved as usual (the standard library has no such switch)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self._stream.fileno())  # the stream's unsent buffer now drains into /dev/null
        os.close(devnull)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _version(shown: bool) -> None:
    if shown:
        from importlib.metadata import version

        typer.echo(f"sevenstep {version('sevenstep')}")
        raise typer.Exit()


@app.callback()
def main(
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where embedded data is written \\[env: SEVENSTEP_CACHE]")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit")
    ] = False,
):
    if cache_dir:
        os.environ["SEVENSTEP_CACHE"] = str(cache_dir)
    # the CLI writes figures to files and never opens a window; a notebook keeps its own (inline) backend
    os.environ["MPLBACKEND"] = "Agg"
    if not isinstance(sys.stdout, PipeSafe):
        sys.stdout, sys.stderr = PipeSafe(sys.stdout), PipeSafe(sys.stderr)
    quiet_warnings()
