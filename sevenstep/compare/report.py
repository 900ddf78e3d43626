"""A comparison's report: one row per method with its mean accuracy, 95% interval, every seed's value and its
verdicts against the baseline and the best method (stats.py), as text, Markdown, CSV and results.json; the
learning curves (a mean line and a band per method) and a dot plot of every seed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..utils import atomic, tables
from .plan import VALID_PCT, Plan


@dataclass
class Result:
    """One method on one seed: a baseline, or an SGD run."""

    method: str
    kind: str  # "baseline" or "sgd"
    accuracy: float | None
    per_class: dict[str, float]
    n_params: int
    fit_seconds: float
    status: str  # "ok", "failed" (diverged, or raised an error), "interrupted" or "missing" (not run yet)
    error: str | None = None
    run_dir: str | None = None
    epochs: list[dict[str, Any]] = field(default_factory=list)
    seed: int | None = None
    n_valid: int = 0
    majority: float = 0.5  # the most common class's share of the validation images: accuracy at chance
    outcomes: dict[str, int] = field(default_factory=dict, repr=False)  # image -> 1 if right, else 0
    test: dict[str, Any] | None = None  # on the held-out test images: accuracy, n (never used to choose)

    @classmethod
    def without_metrics(cls, method: str, kind: str, status: str, error: str, seed=None) -> Result:
        """A method that ended before it had any: it raised, or was interrupted before it was saved."""
        return cls(method, kind, None, {}, 0, 0.0, status, error, seed=seed)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "outcomes" and (k != "error" or v is not None)}


@dataclass
class Method:
    """Every seed of one method, summarised: what a row of the table says."""

    method: str
    kind: str
    seeds: list[int]
    accuracies: list[float]  # one per seed that finished, in seed order
    mean: float | None
    interval: tuple[float, float] | None
    per_class: dict[str, float]
    n_params: int
    fit_seconds: float  # the mean over the seeds that finished
    status: str  # ok, or how many seeds failed or were interrupted
    at_chance: list[int] = field(default_factory=list)  # seeds that never left chance level
    vs_baseline: dict[str, Any] | None = None
    vs_best: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)
    test_mean: float | None = None  # the held-out test set's accuracy, mean over seeds (data.test)
    test_interval: tuple[float, float] | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Method:
        """A row as results.json keeps it (keys it does not know, from a later version, left out)."""
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for key in ("interval", "test_interval"):
            d[key] = tuple(d[key]) if d.get(key) else None
        return cls(**d)

    def to_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["interval"] = list(self.interval) if self.interval else None
        d["test_interval"] = list(self.test_interval) if self.test_interval else None
        return d


def methods(plan: Plan, results: list[Result]) -> list[Method]:
    """One Method per method, in the plan's order, with intervals and Holm-corrected verdicts."""
    from .. import stats

    order = list(dict.fromkeys(r.method for r in results))
    fixed = plan.one_split
    rows, by_method = [], {}
    for name in order:
        runs = [r for r in results if r.method == name]
        done = [r for r in runs if r.status == "ok" and r.accuracy is not None]
        accs = [r.accuracy for r in done]
        bad = [r for r in runs if r.status != "ok"]
        n = done[0].n_valid if done else 0
        classes = {k for r in done for k in r.per_class}
        row = Method(
            method=name,
            kind=runs[0].kind,
            seeds=[r.seed for r in done],
            accuracies=accs,
            mean=sum(accs) / len(accs) if accs else None,
            # the baseline learns nothing from a seed: on one shared split its noise is the images' alone
            interval=stats.interval(accs[:1] if fixed and runs[0].kind == "baseline" else accs, n, fixed)
            if n
            else None,
            per_class={c: sum(r.per_class.get(c, 0) for r in done) / len(done) for c in sorted(classes)},
            n_params=max((r.n_params for r in runs), default=0),
            fit_seconds=sum(r.fit_seconds for r in done or runs)
            / len(done or runs),  # as accuracy: finished seeds
            status="ok" if not bad else ", ".join(f"seed {r.seed} {r.status}" for r in bad),
            at_chance=[r.seed for r in done if stats.at_chance(r.accuracy, r.n_valid, r.majority)],
            errors=[r.error for r in bad if r.error],
        )
        tested = [r.test for r in done if r.test]
        if tested and len(tested) == len(done):
            test_accs = [t["accuracy"] for t in tested]
            row.test_mean = sum(test_accs) / len(test_accs)
            one = fixed and runs[0].kind == "baseline"
            row.test_interval = stats.interval(test_accs[:1] if one else test_accs, tested[0]["n"], True)
        rows.append(row)
        by_method[name] = done
    _verdicts(plan, rows, by_method)
    if unfinished(results):  # a smaller family, fewer seeds: the final verdicts may differ
        for row in rows:
            for v in (row.vs_baseline, row.vs_best):
                if v and v.get("verdict") != "best":
                    v["provisional"] = True
    return rows


def unfinished(results: list[Result]) -> list[str]:
    """The runs a table still lacks (interrupted, or not finished by any process): it is partial."""
    return [f"{r.method} seed {r.seed}" for r in results if r.status in ("interrupted", "missing")]


def _verdicts(plan: Plan, rows: list[Method], by_method: dict[str, list[Result]]) -> None:
    """Each method against the baseline and against the best method (the baseline included), as one
    Holm-corrected family; only
    methods whose every seed finished are tested, on the seeds both sides have."""
    from .. import stats

    complete = [m for m in rows if m.mean is not None and m.status == "ok"]
    baseline = next((m for m in complete if m.kind == "baseline"), None)
    sgd = [m for m in complete if m.kind == "sgd"]
    best = max(complete, key=lambda m: m.mean, default=None)  # the baseline too: it may beat every recipe
    pairs = [(m, baseline, "vs_baseline") for m in sgd if baseline is not None]
    pairs += [(m, best, "vs_best") for m in sgd if m is not best and best is not baseline]
    ratio = _valid_to_train(plan)
    tests = []
    for a, b, _ in pairs:
        ra, rb = {r.seed: r for r in by_method[a.method]}, {r.seed: r for r in by_method[b.method]}
        common = [s for s in ra if s in rb]
        outcomes_a, outcomes_b = [ra[s].outcomes for s in common], [rb[s].outcomes for s in common]
        tests.append(stats.paired(a.method, b.method, outcomes_a, outcomes_b, ratio))
    stats.decide(tests)
    for (a, _, key), t in zip(pairs, tests):
        setattr(a, key, t.to_json())
    if best is not None:
        best.vs_best = {"against": best.method, "verdict": "best", "p": None}
    if best is not None and best is baseline:  # each recipe against the best is its test against the baseline
        for m in sgd:
            m.vs_best = m.vs_baseline
    elif baseline is not None and best is not None:
        # the baseline's test against the best method is the best method's against the baseline, turned round
        t = best.vs_baseline
        flip = {"better": "worse", "worse": "better"}.get(t["verdict"], t["verdict"])
        baseline.vs_best = t | {"against": best.method, "verdict": flip, "difference": -t["difference"]}


def _valid_to_train(plan: Plan) -> float:
    """n_valid / n_train of a split drawn per seed (or per fold): the resampled test's correction."""
    if plan.split == "kfold":
        return 1 / (len(plan.seeds) - 1)
    share = plan.split_options(plan.seeds[0]).get("valid_pct") or VALID_PCT
    return share / (1 - share)


def write(plan: Plan, results: list[Result], report: Path) -> list[Method]:
    """results.md, .csv and .json, the pictures, and the page (report.html) that shows them all."""
    from ..tracking import plots
    from .page import comparison

    rows = methods(plan, results)
    baseline = next((m for m in rows if m.kind == "baseline" and m.mean is not None), None)
    base_mean = baseline.mean if baseline else None
    plots.save(plots.learning_curves(results, base_mean), report / "learning_curves.png")
    plots.save(plots.seed_dots(rows, baseline), report / "seeds.png")
    atomic.write_text(
        report / "results.md", tables.markdown(table(rows)) + "\n" + legend(plan, rows, results) + "\n"
    )
    _write_csv(rows, report)
    atomic.write_text(report / "results.json", json.dumps(summary(plan, results, report, rows), indent=2))
    comparison(report)
    return rows


def summary(plan: Plan, results: list[Result], report: Path, rows: list[Method] | None = None) -> dict:
    rows = methods(plan, results) if rows is None else rows
    return {
        "name": plan.name,
        "source": plan.source,
        "seed": plan.seed,
        "seeds": plan.seeds,
        "split": plan.split,
        "report_dir": str(report),
        "methods": [m.to_json() for m in rows],
        "results": [r.to_json() for r in results],
        "legend": legend(plan, rows, results),
        "partial": unfinished(results),
        "table": table(rows),  # as people read it: W&B's copy of the table is this one
    }


def _verdict(v: dict[str, Any] | None) -> str:
    if not v:
        return "-"
    if v["verdict"] == "best":
        return "best"
    return f"{v['verdict']} (p={v['p']:.2g}{', provisional' if v.get('provisional') else ''})"


def _interval(low_high) -> str:
    return f"[{tables.percent(low_high[0])}, {tables.percent(low_high[1])}]" if low_high else "-"


def _seeds(m: Method) -> str:
    if m.kind == "baseline" and len(set(m.accuracies)) == 1 and len(m.accuracies) > 1:
        return f"{tables.percent(m.accuracies[0])} (every seed: one split)"
    return " ".join(
        tables.percent(a) + ("*" if s in m.at_chance else "") for s, a in zip(m.seeds, m.accuracies)
    )


def _test(m: Method) -> str:
    shown = "-" if m.test_mean is None else tables.percent(m.test_mean)
    return shown + (f" {_interval(m.test_interval)}" if m.test_interval else "")


@dataclass(frozen=True)
class Column:
    """One column of a comparison's table, declared once: its header and cell as people read them (the
    terminal's, results.md's, the page's and W&B's table), its values in results.csv, and whether a table
    shows it (a test column only where there was a test set)."""

    header: str
    cell: Callable[[Method], str]
    csv: Callable[[Method], dict[str, Any]]
    shown: Callable[[list[Method]], bool] = lambda rows: True


COLUMNS: list[Column] = [
    Column("method", lambda m: m.method, lambda m: {"method": m.method, "kind": m.kind}),
    Column("accuracy", lambda m: tables.percent(m.mean), lambda m: {"accuracy": m.mean}),
    Column(
        "95% interval",
        lambda m: _interval(m.interval),
        lambda m: {
            "interval_low": m.interval[0] if m.interval else None,
            "interval_high": m.interval[1] if m.interval else None,
        },
    ),  # fmt: skip
    Column(
        "seeds",
        lambda m: _seeds(m) or "-",
        lambda m: {
            "seeds": " ".join(map(str, m.seeds)),
            "accuracies": " ".join(f"{a:.4f}" for a in m.accuracies),
            "at_chance": " ".join(map(str, m.at_chance)),
        },
    ),  # fmt: skip
    Column(
        "vs baseline",
        lambda m: "-" if m.kind == "baseline" else _verdict(m.vs_baseline),
        lambda m: {
            "vs_baseline": (m.vs_baseline or {}).get("verdict", ""),
            "p_vs_baseline": (m.vs_baseline or {}).get("p"),
        },
    ),  # fmt: skip
    Column(
        "vs best",
        lambda m: _verdict(m.vs_best),
        lambda m: {"vs_best": (m.vs_best or {}).get("verdict", ""), "p_vs_best": (m.vs_best or {}).get("p")},
    ),  # fmt: skip
    Column(
        "test (held out)",
        _test,
        lambda m: {"test_accuracy": m.test_mean},
        shown=lambda rows: any(m.test_mean is not None for m in rows),
    ),  # fmt: skip
    Column("params", lambda m: f"{m.n_params:,}", lambda m: {"n_params": m.n_params}),
    Column("fit s", lambda m: f"{m.fit_seconds:.2f}", lambda m: {"fit_seconds": m.fit_seconds}),
    # a column of "ok" says nothing (the CSV keeps it)
    Column(
        "status",
        lambda m: m.status if m.status == "ok" else f"{m.status}: {'; '.join(m.errors)}",
        lambda m: {"status": m.status, "error": "; ".join(m.errors)},
        shown=lambda rows: any(m.status != "ok" for m in rows),
    ),  # fmt: skip
]


def table(rows: list[Method]) -> list[list[str]]:
    """The table people read (COLUMNS): accuracies in percent, the interval, every seed (* at chance), the
    verdicts, a test column where there was a test set, a status column when a seed did not finish."""
    columns = [c for c in COLUMNS if c.shown(rows)]
    return [[c.header for c in columns]] + [[c.cell(m) for c in columns] for m in rows]


def legend(plan: Plan, rows: list[Method], results: list[Result] = ()) -> str:
    """What the table's numbers mean, in the words a learner reads them in; first, that it is partial."""
    n = len(plan.seeds)
    partial = unfinished(list(results))
    said = []
    if partial:
        said.append(f"PARTIAL: {len(partial)} run(s) have not finished ({', '.join(partial[:6])}"
                    f"{', ...' if len(partial) > 6 else ''}); a method that lacks a seed has no verdict, and the "
                    "verdicts shown are provisional. Run the same command again to finish it.")  # fmt: skip
    split = (
        "the same validation images for every seed"
        if plan.one_split
        else f"{n} folds, seed i validating on fold i: every image once"
        if plan.split == "kfold"
        else "one split drawn per seed"
    )
    over = f"the seeds that finished, of {n}" if partial else f"{n} seed(s)"
    lines = said + [
        f"Accuracy: the mean over {over} ({', '.join(map(str, plan.seeds))}), {split}. 95% interval: "
        + (
            (
                "Student's t across seeds with the validation images' own noise added (seeds that agree still "
                "leave it); the baseline's: Wilson's, over the images."
                if plan.one_split
                else "Student's t across seeds, never narrower than Wilson's over all the seeds' images."
            )
            if n > 1
            else "Wilson's, over the validation images (one seed)."
        ),
        "Verdicts: paired by seed and by image, one test for both: "
        + (
            "McNemar's exact test on the images the two disagree on (one seed: its own noise is not measured)"
            if n == 1
            else "the differences as an images x seeds table, Student's t on its two-way variance (would other "
            "images, or other seeds, change it?)"
            if plan.one_split
            else "the per-seed differences, Nadeau and Bengio's corrected resampled t (each seed has its own split)"
        )
        + "; 'better' or 'worse' at 5%, Holm-corrected for the comparisons in this table. 'not shown' means "
        "this data cannot tell, not that the two are equal: what would settle it is said below.",
    ]
    if any(m.test_mean is not None for m in rows):
        lines.append(
            "Test (held out): accuracy on the test images, with each run's final weights; nothing stopped, "
            "chose or was tested on them, so it is the figure to quote, not to choose by."
        )
    if n == 1:
        lines.append("With one seed, the seed's own noise is not measured: run more seeds (--seeds 5).")
    for m in rows:
        for key, against in (("vs_baseline", "the baseline"), ("vs_best", "the best")):
            v = getattr(m, key) or {}
            if v.get("settle") and not (key == "vs_best" and (m.kind == "baseline" or v is m.vs_baseline)):
                lines.append(f"{m.method} against {against}: not shown (p={v['p']:.2g}); {v['settle']}.")
    chance = [f"{m.method} seed {s}" for m in rows for s in m.at_chance]
    if chance:
        lines.append(f"* at chance level (no better than the most common class): {', '.join(chance)}.")
    return "\n".join(lines)


def _write_csv(rows: list[Method], report: Path) -> None:
    """results.csv: every column's values (COLUMNS), shown or not, and each class's accuracy."""
    classes = sorted({c for m in rows for c in m.per_class}, key=lambda c: (len(c), c))
    records = []
    for m in rows:
        record: dict[str, Any] = {}
        for column in COLUMNS:
            record |= column.csv(m)
        records.append(record | {f"accuracy_{c}": m.per_class.get(c) for c in classes})
    tables.write_csv(report / "results.csv", records)
