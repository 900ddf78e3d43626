"""Baseline vs SGD: the pixel-similarity baseline and a list of recipes on one source, split and seed,
with one table and a report folder (CSV, Markdown, and plots)."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import recipe as recipes
from . import schema, sources
from .errors import UsageError
from .schema import REQUIRED, Field

KEYS = {
    "name": Field(str, None),  # default: the file's name
    "description": Field(str, ""),
    "source": Field(str, "mnist5k-3v7"),
    "seed": Field(int, 42),
    "baseline": Field(dict, {}),
    "runs": Field(list, []),
}
BASELINE_KEYS = {"distance": Field(str, "l1")}
RUN_KEYS = {"recipe": Field(str, REQUIRED), "label": Field(str, None), "set": Field(dict, {})}


@dataclass
class Plan:
    name: str
    source: str
    seed: int
    distance: str
    runs: list[tuple[str, recipes.Recipe]]  # (label, recipe with source and seed applied)


@dataclass
class Result:
    method: str
    kind: str  # "baseline" or "sgd"
    accuracy: float | None
    per_class: dict[str, float]
    n_params: int
    fit_seconds: float
    status: str  # "ok", "failed" (diverged, or raised an error) or "interrupted"
    error: str | None = None
    run_dir: str | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def without_metrics(cls, method: str, kind: str, status: str, error: str) -> Result:
        """A method that ended before it had any: it raised, or was interrupted before it was saved."""
        return cls(method, kind, None, {}, 0, 0.0, status, error)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "error" or v is not None}


def load(path: str | Path) -> Plan:
    """Read and check the whole comparison, every recipe included, before anything trains."""
    path = Path(path)
    d = schema.check(recipes.read_toml(path), KEYS, str(path))
    if not d["runs"]:
        raise UsageError(f'{path}: lists no runs; add at least one [[runs]] table with recipe = "FILE.toml"')
    baseline = schema.check(d["baseline"], BASELINE_KEYS, str(path), prefix="baseline.")
    runs = []
    for i, entry in enumerate(d["runs"], 1):
        where = f"{path}: runs #{i}"
        if not isinstance(entry, dict) or "recipe" not in entry:
            raise UsageError(f'{where} needs recipe = "FILE.toml" (a path relative to {path.parent})')
        entry = schema.check(entry, RUN_KEYS, where)
        file = path.parent / entry["recipe"]
        if not file.is_file():
            raise UsageError(f"{where}: recipe file {file} does not exist")
        source = sources.relative_to(d["source"], path.parent)
        sets = recipes.flatten(entry["set"]) + [("data.source", source), ("seed", d["seed"])]
        r = recipes.from_dict(recipes.apply_sets(recipes.read(file), sets, f"{where}: set"), where=str(file))
        if entry["label"]:  # the run's folder and W&B name say which run of the comparison it is
            r = dataclasses.replace(r, name=_slug(entry["label"]) or r.name)
        runs.append((entry["label"] or r.name, r))
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        raise UsageError(f'{path}: two runs share a label; give each [[runs]] its own label = "..."')
    name = schema.folder_name(d["name"] or path.stem, "name", str(path))
    return Plan(name, d["source"], d["seed"], baseline["distance"], runs)


def run(plan: Plan, runs_dir: str | Path = "runs", cbs=(), log=print) -> tuple[list[Result], Path]:
    """Baseline first, then each recipe; a recipe that fails is reported and the others still run.
    Ctrl-C (at any moment) ends the comparison: the run in progress is saved if it can be, marked
    `interrupted`, and the report is written for what finished.

    `cbs` (classes or factories: each run gets fresh ones) go to every run, e.g. the loggers; all runs and
    the baseline share one group, the report folder's name, so W&B shows them side by side."""
    from . import signals, train

    report = train.new_folder(Path(runs_dir), f"compare-{plan.name}")
    results: list[Result] = []
    base_accuracy, current = None, (f"baseline ({plan.distance})", "baseline")
    try:
        base_accuracy = _baseline(plan, report, cbs, results, log)
        for label, r in plan.runs:
            log(f"\n{label}: {r.short()}")
            current = (label, "sgd")
            if _sgd(label, r, report, cbs, results) == "interrupted":
                break
    except KeyboardInterrupt:
        if not results or results[-1].method != current[0]:  # not already recorded by the step itself
            results.append(Result.without_metrics(*current, "interrupted", "interrupted"))
    if any(r.status == "interrupted" for r in results):
        log("interrupted: the comparison stops here; the report covers the runs so far")
    with signals.deferred():  # a report is small, and must not be half written
        _write_report(plan, results, report, base_accuracy)
    return results, report


def _baseline(plan: Plan, report: Path, cbs, results: list[Result], log) -> float:
    from . import baseline, data, plots, sources
    from .callbacks import instantiate, notify

    dls = data.dataloaders(plan.source, bs=256, seed=plan.seed)
    base = baseline.run(dls, plan.distance)
    config = {"data.source": plan.source, "seed": plan.seed, "data.split_seed": sources.SPLIT_SEED}
    notify(
        instantiate(cbs), "after_baseline", base, config | {"baseline.distance": base.distance}, report.name
    )
    method = f"baseline ({plan.distance})"
    results.append(Result(method, "baseline", base.accuracy, base.per_class, 0, base.fit_seconds, "ok"))
    log(f"baseline: accuracy {base.accuracy:.4f}")
    plots.save(plots.ideal_digits(base.ideals, base.vocab), report / "ideal_digits.png")
    return base.accuracy


def _sgd(label: str, r: recipes.Recipe, report: Path, cbs, results: list[Result]) -> str:
    """One recipe of the comparison, saved in the report folder; its status."""
    from . import plots, train

    try:
        fitted = train.run(r, cbs, runs_dir=report, group=report.name)
    except KeyboardInterrupt:
        results.append(Result.without_metrics(label, "sgd", "interrupted", "interrupted before it was saved"))
        raise
    except Exception as e:  # one broken run must not cost the others
        results.append(Result.without_metrics(label, "sgd", "failed", f"{type(e).__name__}: {e}"))
        (report / f"error-{_slug(label)}.txt").write_text(traceback.format_exc())
        return "failed"
    status = {"diverged": "failed", "interrupted": "interrupted"}.get(fitted.stop_reason, "ok")
    error = None if status == "ok" else fitted.message
    results.append(
        Result(
            label,
            "sgd",
            fitted.accuracy,
            fitted.per_class,
            fitted.n_params,
            fitted.fit_seconds,
            status,
            error,
            fitted.run_dir,
            fitted.epochs,
        )
    )
    if fitted.learn.step2_predict.pixels_to_weights and not fitted.diverged:
        dls = fitted.learn.dls
        fig = plots.linear_weights(fitted.learn.model, dls.vocab, tuple(dls.valid.images.shape[1:]))
        plots.save(fig, report / f"weights-{_slug(label)}.png")
    return status


def _write_report(plan: Plan, results: list[Result], report: Path, base_accuracy: float | None) -> None:
    from . import plots

    plots.save(plots.learning_curves(results, base_accuracy), report / "learning_curves.png")
    _write_tables(results, report)
    (report / "results.json").write_text(json.dumps(summary(plan, results, report), indent=2))


def summary(plan: Plan, results: list[Result], report: Path) -> dict[str, Any]:
    return {
        "name": plan.name,
        "source": plan.source,
        "seed": plan.seed,
        "report_dir": str(report),
        "results": [r.to_json() for r in results],
    }


def table(results: list[Result]) -> list[list[str]]:
    rows = [["method", "accuracy", "per class", "params", "fit s", "status"]]
    for r in results:
        acc = f"{r.accuracy:.4f}" if r.accuracy is not None else "-"
        per = " ".join(f"{k}:{v:.2f}" for k, v in r.per_class.items()) or "-"
        status = r.status if r.status == "ok" else f"{r.status}: {r.error}"
        rows.append([r.method, acc, per, f"{r.n_params:,}", f"{r.fit_seconds:.2f}", status])
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def _write_tables(results: list[Result], report: Path) -> None:
    rows = table(results)
    md = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    md += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows[1:]]
    (report / "results.md").write_text("\n".join(md) + "\n")
    classes = sorted({k for r in results for k in r.per_class}, key=lambda c: (len(c), c))
    with open(report / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "method",
                "kind",
                "accuracy",
                *[f"accuracy_{c}" for c in classes],
                "n_params",
                "fit_seconds",
                "status",
                "error",
            ]
        )
        for r in results:
            w.writerow(
                [
                    r.method,
                    r.kind,
                    r.accuracy,
                    *[r.per_class.get(c) for c in classes],
                    r.n_params,
                    r.fit_seconds,
                    r.status,
                    r.error or "",
                ]
            )


def _slug(text: str) -> str:
    """A label as a file or run name: "cnn (best)" -> "cnn-best"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
