"""Baseline vs SGD: the pixel-similarity baseline and a list of recipes on one source, split and seed,
with one table and a report folder (CSV, Markdown, and plots)."""

from __future__ import annotations

import csv
import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import recipe as recipes
from . import registry
from .errors import UsageError

KEYS = {"name": str, "description": str, "source": str, "seed": int, "baseline": dict, "runs": list}
RUN_KEYS = {"recipe": str, "label": str, "set": dict}


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
    status: str  # "ok" or "failed"
    error: str | None = None
    run_dir: str | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "error" or v is not None}


def load(path: str | Path) -> Plan:
    """Read and check the whole comparison, every recipe included, before anything trains."""
    path = Path(path)
    d = recipes.read_toml(path)
    for key, value in d.items():
        if key not in KEYS:
            raise UsageError(f"{path}: unknown key {key!r}; valid keys: {', '.join(KEYS)}")
        if not registry.fits(value, KEYS[key]):
            raise UsageError(f"{path}: {key} should be a {KEYS[key].__name__}, got {value!r}")
    if not d.get("runs"):
        raise UsageError(f'{path}: lists no runs; add at least one [[runs]] table with recipe = "FILE.toml"')
    source, seed = d.get("source", "mnist5k-3v7"), d.get("seed", 42)
    baseline = d.get("baseline", {})
    unknown = set(baseline) - {"distance"}
    if unknown:
        raise UsageError(f"{path}: unknown key baseline.{unknown.pop()}; valid keys: distance")
    runs = []
    for i, run in enumerate(d["runs"], 1):
        where = f"{path}: runs #{i}"
        if not isinstance(run, dict) or "recipe" not in run:
            raise UsageError(f'{where} needs recipe = "FILE.toml" (a path relative to {path.parent})')
        for key in run:
            if key not in RUN_KEYS:
                raise UsageError(f"{where}: unknown key {key!r}; valid keys: {', '.join(RUN_KEYS)}")
        file = path.parent / run["recipe"]
        if not file.is_file():
            raise UsageError(f"{where}: recipe file {file} does not exist")
        sets = recipes.flatten(run.get("set", {})) + [("data.source", source), ("seed", seed)]
        r = recipes.from_dict(recipes.apply_sets(recipes.read_toml(file), sets), where=str(file))
        runs.append((run.get("label", r.name), r))
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        raise UsageError(f'{path}: two runs share a label; give each [[runs]] its own label = "..."')
    name = d.get("name", path.stem)
    return Plan(name, source, seed, baseline.get("distance", "l1"), runs)


def run(plan: Plan, runs_dir: str | Path = "runs", tracker=None, log=print) -> tuple[list[Result], Path]:
    """Baseline first, then each recipe; a recipe that fails is reported and the others still run.
    Ctrl-C ends the comparison after the run in progress has been saved, and the report is still written."""
    from . import baseline, data, plots, tracking, train

    report = train.unique_path(Path(runs_dir), f"compare-{plan.name}")
    report.mkdir(parents=True)
    tracker = tracker or tracking.Tracker(mode="disabled")
    tracker.group = report.name  # the runs of one comparison side by side in W&B
    dls = data.dataloaders(plan.source, bs=256, seed=plan.seed)
    base = baseline.fit(dls, plan.distance)
    tracking.log_baseline(tracker, plan.source, plan.seed, base)
    results = [
        Result(
            f"baseline ({plan.distance})",
            "baseline",
            base.accuracy,
            base.per_class,
            0,
            base.fit_seconds,
            "ok",
        )
    ]
    log(f"baseline: accuracy {base.accuracy:.4f}")
    plots.save(plots.ideal_digits(base.ideals, base.vocab), report / "ideal_digits.png")
    for label, r in plan.runs:
        log(f"\n{label}: {r.short()}")
        try:
            fitted = tracking.fit(r, tracker)
        except Exception as e:  # one broken run must not cost the others
            results.append(Result(label, "sgd", None, {}, 0, 0.0, "failed", f"{type(e).__name__}: {e}"))
            (report / f"error-{_slug(label)}.txt").write_text(traceback.format_exc())
            continue
        train.save(fitted, report)
        status = "ok" if fitted.stop_reason not in ("diverged", "interrupted") else "failed"
        results.append(
            Result(
                label,
                "sgd",
                fitted.accuracy,
                fitted.per_class,
                fitted.n_params,
                fitted.fit_seconds,
                status,
                None if status == "ok" else fitted.message,
                fitted.run_dir,
                fitted.epochs,
            )
        )
        if fitted.learn.step2_predict.pixels_to_weights and not fitted.failed:
            fig = plots.linear_weights(fitted.learn.model, fitted.learn.dls.vocab)
            plots.save(fig, report / f"weights-{_slug(label)}.png")
        if fitted.stop_reason == "interrupted":
            log("interrupted: the comparison stops here; the report covers the runs so far")
            break
    plots.save(plots.learning_curves(results, base.accuracy), report / "learning_curves.png")
    _write_tables(results, report)
    (report / "results.json").write_text(json.dumps(summary(plan, results, report), indent=2))
    return results, report


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
        status = r.status if r.status == "ok" else f"failed: {r.error}"
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
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
