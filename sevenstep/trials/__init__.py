"""Trials: what comparisons and sweeps share. A job (a sweep, or a comparison's grid of methods and seeds) is
a set of points in a space; each point is a full sevenstep run. Optuna's study holds the queue, so the runs
go to several worker processes or machines, and a job stopped part-way continues where it stopped.

    space.py    the swept keys (Dimension), and how their values travel through Optuna (encode, decode)
    study.py    the Optuna study: storage, the grid's queue, trials left unfinished by a stopped process
    workers.py  worker processes taking trials one after another; TrialReporter tells Optuna each epoch

sevenstep/sweep/ and sevenstep/compare/ sit above this package: each offers a `TrialSource`.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from .space import Dimension


@runtime_checkable
class TrialSource(Protocol):
    """What the workers and the study ask of a job (sevenstep.sweep.spec.Sweep, compare.grid.ComparisonGrid)."""

    kind: str  # what a person calls it: "sweep", "comparison"
    name: str  # the study's name in its storage
    metric: str  # a declared metric each epoch's row has (sevenstep/metrics.py)
    direction: str  # "minimize" or "maximize"
    sampler: str  # grid, random or tpe
    trials: int  # how many trials to run (a grid: its points)
    pruner: dict[str, Any]
    processes: int  # data-parallel processes per trial
    repeats: int  # seeds per trial
    job_type: str  # the W&B job type of its runs
    group: str  # the W&B group of its runs
    space: list[Dimension]

    def grid(self) -> list[dict[str, Any]]: ...
    def signature(self) -> str: ...  # what must match to continue a stored study of the same name
    def recipe(self, params: dict[str, Any], name: str): ...
    def runs_folder(self, job_dir: Path) -> Path: ...
    def run_name(self, number: int, params: dict[str, Any]) -> str: ...
    def run_config(self, number: int, params: dict[str, Any]) -> dict[str, Any]: ...
    def pictures(self, params: dict[str, Any]) -> bool: ...
    def live_page(self, study, folder: Path) -> None: ...
    def callbacks(self, session) -> list: ...  # each run's (factories), unless the caller hands in its own


def load_job(job: tuple) -> TrialSource:
    """What a worker runs, from what its parent hands it: ("package.module:function", *args), the function
    that reads the job's file again. A file, not an object: a worker of another machine, or a spawned one,
    starts from files; and this package names no job of the packages above it."""
    where, *args = job
    module, function = where.split(":")
    return getattr(importlib.import_module(module), function)(*args)
