"""A comparison's report: its table (text, Markdown, CSV), results.json, and the learning curves."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils import tables
from .plan import Plan


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


def write(plan: Plan, results: list[Result], report: Path, base_accuracy: float | None) -> None:
    from ..tracking import plots

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


def _write_tables(results: list[Result], report: Path) -> None:
    (report / "results.md").write_text(tables.markdown(table(results)))
    classes = sorted({k for r in results for k in r.per_class}, key=lambda c: (len(c), c))
    columns = ["method", "kind", "accuracy", *[f"accuracy_{c}" for c in classes], "n_params", "fit_seconds"]
    records = [
        {
            "method": r.method,
            "kind": r.kind,
            "accuracy": r.accuracy,
            **{f"accuracy_{c}": r.per_class.get(c) for c in classes},
            "n_params": r.n_params,
            "fit_seconds": r.fit_seconds,
            "status": r.status,
            "error": r.error or "",
        }
        for r in results
    ]
    tables.write_csv(report / "results.csv", records, columns + ["status", "error"])
