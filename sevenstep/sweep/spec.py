"""A sweep file: a base recipe, a metric, a sampler (grid, random or tpe) and a [space] of dotted recipe keys,
read and checked (every grid point, both ends of every range) before anything trains."""

from __future__ import annotations

import functools
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .. import recipe as recipes
from .. import schema
from ..errors import UsageError
from ..metrics import METRICS, MetricName
from ..schema import REQUIRED, Field
from ..trials.space import Dimension, decode, encode, show_params

SAMPLERS = Literal["grid", "random", "tpe"]
PRUNERS = Literal["none", "median"]
KEYS = {
    "name": Field(str, None),  # default: the file's name
    "description": Field(str, ""),
    "recipe": Field(str, REQUIRED),
    "metric": Field(MetricName, "accuracy"),  # any metric each epoch's row has (sevenstep/metrics.py)
    "sampler": Field(SAMPLERS, "grid"),
    "trials": Field(int, 20),
    "space": Field(dict, REQUIRED),
    "pruner": Field(dict, {}),
    "repeats": Field(int, 1),  # each trial the mean over seeds 1 to K, with its interval
    "processes": Field(int, 1),  # each trial data-parallel on this many processes (loop/distributed.py)
}
PRUNER_KEYS = {
    "name": Field(PRUNERS, "none"),
    "n_startup_trials": Field(int, 5),
    "n_warmup_steps": Field(int, 0),
}
RANGE_KEYS = {"low": Field(float, REQUIRED), "high": Field(float, REQUIRED), "log": Field(bool, False)}


@dataclass
class Sweep:
    name: str
    file: Path
    base: dict[str, Any]  # the base recipe as read from its file
    metric: str
    sampler: str
    trials: int
    space: list[Dimension]
    pruner: dict[str, Any]
    processes: int = 1
    repeats: int = 1

    kind = "sweep"
    job_type = "trial"  # the W&B job type of its runs

    def runs_folder(self, sweep_dir: Path) -> Path:
        return Path(sweep_dir) / "trials"

    def run_name(self, number: int, params: dict[str, Any]) -> str:
        return f"{self.name}-trial-{number:04d}"

    def run_config(self, number: int, params: dict[str, Any]) -> dict[str, Any]:
        """What W&B records of the trial beside the recipe."""
        return {"trial.number": number} | {f"trial.{k}": decode(v) for k, v in params.items()}

    def pictures(self, params: dict[str, Any]) -> bool:
        """Whether the trial's runs draw their pictures (W&B's prediction and weights images)."""
        return True

    def live_page(self, study, folder: Path) -> None:
        """The sweep folder's page for the trials ended so far."""
        from ..tracking import page
        from .page import sweep as sweep_page
        from .report import trial_rows

        rows = trial_rows(study, self)
        ended = sum(1 for r in rows if r["state"] not in ("running", "waiting"))
        total = len(rows) if self.sampler == "grid" else self.trials  # a grid's points are all queued
        summary = {"name": self.name, "metric": self.metric, "direction": self.direction, "sampler": self.sampler,
                   "trials": rows, "best": next((r for r in rows if r["state"] == "complete"), None)}  # fmt: skip
        live = (f"Running: {ended} of {total} trials ended. This page reloads itself every {page.REFRESH} s "
                "until the sweep ends.")  # fmt: skip
        sweep_page(folder, study, summary=summary, live=live)

    def callbacks(self, session) -> list:
        """Each trial run's callbacks (factories), besides the trial's reporter."""
        from ..loop.checkpoint import Checkpointer
        from ..tracking import CsvLogger, WandbLogger

        return [functools.partial(WandbLogger, session), CsvLogger, Checkpointer]

    @property
    def direction(self) -> str:
        return METRICS[self.metric].direction

    @property
    def group(self) -> str:
        return f"sweep-{self.name}"

    def recipe(self, params: dict[str, Any], name: str) -> recipes.Recipe:
        sets = [("name", name), *((k, decode(v)) for k, v in params.items())]
        return recipes.from_dict(
            recipes.apply_sets(self.base, sets, f"{self.file}: space"),
            where=f"{self.file}: {show_params(params)}",
        )

    def grid(self) -> list[dict[str, Any]]:
        keys = [d.key for d in self.space]
        return [dict(zip(keys, map(encode, p))) for p in itertools.product(*(d.values for d in self.space))]

    def signature(self) -> str:
        """What must match for a run of this file to continue a stored study of the same name."""
        space = [[d.key, d.values, d.low, d.high, d.log] for d in self.space]
        d = {"metric": self.metric, "sampler": self.sampler, "space": space, "base": self.base}
        return json.dumps(d | ({"repeats": self.repeats} if self.repeats > 1 else {}))


MAX_GRID = 10_000  # grid points a sweep runs (Optuna's queue holds each, and each is checked as a recipe)


def load(path: str | Path) -> Sweep:
    """Read and check the sweep file; every grid point, and both ends of every range, is checked as a recipe."""
    path = Path(path)
    d = schema.check(recipes.read_toml(path), KEYS, str(path))
    name = schema.folder_name(d["name"] or path.stem, "name", str(path))
    if d["trials"] < 1:
        raise UsageError(f"{path}: trials must be at least 1, got {d['trials']}")
    pruner = schema.check(d["pruner"], PRUNER_KEYS, str(path), prefix="pruner.")
    if d["processes"] < 1:
        raise UsageError(f"{path}: processes must be at least 1, got {d['processes']}")
    if d["repeats"] < 1:
        raise UsageError(f"{path}: repeats must be at least 1 (seeds per trial), got {d['repeats']}")
    if d["repeats"] > 1 and pruner["name"] != "none":
        raise UsageError(
            f"{path}: a pruner stops a trial between epochs; with repeats = {d['repeats']} a trial is several "
            'runs, one a seed. Use [pruner] name = "none", or repeats = 1'
        )
    if d["repeats"] > 1 and d["processes"] > 1:
        raise UsageError(f"{path}: repeats and processes cannot be combined yet; choose one of them")
    if d["processes"] > 1 and pruner["name"] != "none":
        raise UsageError(
            f"{path}: a pruner needs each trial in one process (it stops a trial between epochs); "
            'with processes > 1 use [pruner] name = "none"'
        )
    base_file = path.parent / d["recipe"]
    if not base_file.is_file():
        raise UsageError(
            f"{path}: recipe file {base_file} does not exist (paths are relative to {path.parent})"
        )
    if not d["space"]:
        raise UsageError(f'{path}: [space] is empty; add a key, e.g. "steps.step.lr" = [0.1, 1.0]')
    space = [_dimension(key, value, d["sampler"], path) for key, value in d["space"].items()]
    sweep = Sweep(
        name,
        path,
        recipes.read(base_file),
        d["metric"],
        d["sampler"],
        d["trials"],
        space,
        pruner,
        d["processes"],
        d["repeats"],
    )
    points = math.prod(len(dim.ends()) for dim in space)
    if d["sampler"] == "grid" and points > MAX_GRID:
        sizes = " x ".join(str(len(dim.values)) for dim in space)
        raise UsageError(
            f"{path}: the grid has {points:,} points ({sizes}); a sweep runs at most {MAX_GRID:,}. Use fewer "
            'values, or sampler = "random" or "tpe" with trials = N to sample the space instead'
        )
    if points <= MAX_GRID:  # every point (and both ends of every range) checked as a recipe
        combinations = itertools.product(*(dim.ends() for dim in space))
    else:  # a sampled space too large to check whole: each value on its own, against the base recipe
        combinations = ([*(None,) * i, v] for i, dim in enumerate(space) for v in dim.ends())
    for point in combinations:
        sweep.recipe({dim.key: encode(v) for dim, v in zip(space, point) if v is not None}, name)
    return sweep


def _dimension(key: str, value: Any, sampler: str, path: Path) -> Dimension:
    where = f"{path}: space.{key}"
    if isinstance(value, list):
        if not value:
            raise UsageError(f"{where}: the list of values is empty")
        return Dimension(key, values=tuple(value))
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a list of values or a range {{ low = ..., high = ... }}")
    if sampler == "grid":
        raise UsageError(f"{where}: a grid needs a list of values; ranges are for sampler = random or tpe")
    r = schema.check(value, RANGE_KEYS, where)
    if not r["low"] < r["high"] or (r["log"] and r["low"] <= 0):
        raise UsageError(f"{where}: needs low < high (and low > 0 with log = true); got {value}")
    return Dimension(key, low=r["low"], high=r["high"], log=r["log"])
