"""The `sevenstep` command: a thin shell over the Python API (train.run, compare.run, sweep.run, ...).

Heavy libraries (fastai, torch) are imported inside commands, so --help is instant. The commands live in
experiments.py (run, resume, compare, sweep) and browse.py (data, steps, runs); common.py has what they share.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .common import app

# isort: off
from . import experiments, browse  # noqa: F401, E402  (they register their commands, in --help's order)
# isort: on

__all__ = ["app"]


@app.callback()
def main(
    cache_dir: Annotated[
        Path | None, typer.Option(help="Where embedded data is written [env: SEVENSTEP_CACHE]")
    ] = None,
):
    if cache_dir:
        os.environ["SEVENSTEP_CACHE"] = str(cache_dir)
    import warnings  # libraries' deprecation notices are not the user's business

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="fastai")
