"""A comparison as a grid of (method, seed) points, run by the sweep's own machinery (sevenstep/sweep/):
its Optuna study holds the queue, so the runs can go to several worker processes (`--workers N`) or machines
(`--storage`), and a comparison stopped by Ctrl-C continues where it stopped when the same command runs again.

`ComparisonGrid` offers what the sweep's workers ask of a sweep: the space, the recipe of a point, how its
run is named, logged and saved.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..callbacks import SparseCallback
from ..metrics import METRICS
from ..trials.space import Dimension
from .plan import Plan, slug
from .plan import load as load_plan


@dataclass
class ComparisonGrid:
    plan: Plan
    report: Path  # the comparison's report folder: its runs are saved in it

    kind = "comparison"
    metric = "accuracy"  # its paired tests count each image right or wrong
    direction = METRICS["accuracy"].direction
    sampler = "grid"
    pruner = {"name": "none"}  # a comparison runs every point to its end
    processes = 1
    repeats = 1
    job_type = "sgd"

    @property
    def name(self) -> str:
        return f"compare-{self.plan.name}"  # the study's name in its storage

    @property
    def group(self) -> str:
        return self.report.name  # the W&B group: the report folder's name, as the baseline's

    @property
    def labels(self) -> list[str]:
        return [label for label, _ in self.plan.runs]

    @property
    def space(self) -> list[Dimension]:
        return [
            Dimension("label", values=tuple(self.labels)),
            Dimension("seed", values=tuple(self.plan.seeds)),
        ]

    @property
    def trials(self) -> int:
        return len(self.labels) * len(self.plan.seeds)

    def grid(self) -> list[dict[str, Any]]:
        """Seed by seed, every method: a comparison stopped part-way has whole seeds to pair."""
        return [{"label": label, "seed": seed} for seed in self.plan.seeds for label in self.labels]

    def signature(self) -> str:
        """What must match for this command to continue a stored comparison: its methods, recipes and seeds."""
        runs = [[label, r.to_dict()] for label, r in self.plan.runs]
        return json.dumps({"runs": runs, "seeds": self.plan.seeds, "split": self.plan.split}, sort_keys=True)

    def recipe(self, params: dict[str, Any], name: str | None = None):
        return self.plan.recipe(params["label"], int(params["seed"]))

    def runs_folder(self, sweep_dir: Path) -> Path:
        return self.report

    def run_name(self, number: int, params: dict[str, Any]) -> str:
        return self.recipe(params).name

    def pictures(self, params: dict[str, Any]) -> bool:
        """Each method's first seed draws the pictures; every seed keeps its per-image outcomes (and drawing
        costs more than training a small model)."""
        return int(params["seed"]) == self.plan.seeds[0]

    def run_config(self, number: int, params: dict[str, Any]) -> dict[str, Any]:
        return {"compare.name": self.plan.name, "compare.label": params["label"]}

    def callbacks(self, session) -> list:
        """Each run's callbacks (factories) when the caller hands in none: a sweep's, and the weights picture."""
        import functools

        from ..loop.checkpoint import Checkpointer
        from ..tracking import CsvLogger, WandbLogger

        return [functools.partial(WandbLogger, session), CsvLogger, Checkpointer,
                functools.partial(WeightsPicture, self.report, self.plan.seeds[0])]  # fmt: skip

    def live_page(self, study, folder: Path) -> None:
        """The report folder's page for the runs ended so far (the baseline comes with the final report)."""
        from ..tracking import page
        from .page import comparison
        from .report import Result, methods, summary
        from .runner import _collect

        pending = f"baseline ({self.plan.distance})"
        baselines = {
            s: Result.without_metrics(pending, "baseline", "pending", "pending", s) for s in self.plan.seeds
        }
        results = [
            r for r in _collect(self.plan, self, study, baselines, "not run yet") if r.kind != "baseline"
        ]
        done = sum(
            1
            for t in study.get_trials(deepcopy=False)
            if t.params and t.state.name not in ("WAITING", "RUNNING")
        )
        rows = methods(self.plan, results)
        live = (f"Running: {done} of {self.trials} runs ended. This page reloads itself every {page.REFRESH} s "
                "until the comparison ends; then the baseline and the verdicts against it are added.")  # fmt: skip
        comparison(folder, summary=summary(self.plan, results, folder, rows), live=live)


def load(file: str, seeds: int | None, report: str) -> ComparisonGrid:
    """The grid a worker runs: the comparison file read again (its plugins loaded), into the same folder."""
    return ComparisonGrid(load_plan(file, seeds), Path(report))


class WeightsPicture(SparseCallback):
    """`weights-<label>.png` in the report: a linear model's weights as images (from the first seed's run)."""

    order = SparseCallback.order

    def __init__(self, report: Path, seed: int):
        self.report, self.seed = report, seed

    def after_run(self, run):
        learn = run.learn
        if run.diverged or not learn.step2_predict.pixels_to_weights or run.recipe["seed"] != self.seed:
            return
        from ..tracking import plots

        label = learn.run_info.config.get("compare.label", run.name)
        fig = plots.linear_weights(learn.model, learn.dls.vocab, tuple(learn.dls.valid.images.shape[1:]))
        plots.save(fig, self.report / f"weights-{slug(label)}.png")
