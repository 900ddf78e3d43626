"""A comparison's report.html: its table, curves, seeds, classes, layers, configs and pictures (the page
itself, and what every page shares, is sevenstep/tracking/page.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..tracking.page import BASELINE_COLOUR, PAGE, Page, configs, inside, palette, read_json
from ..utils import tables
from .report import Method, table


def comparison(
    report: Path, out: Path | None = None, summary: dict | None = None, live: str | None = None
) -> Path:
    """The page of a comparison's report folder, from its results.json (or `summary`, the same, while it runs:
    then the page says `live` and reloads itself) and its runs' folders."""
    summary = summary if summary is not None else read_json(report / "results.json")
    methods = [Method.from_json(m) for m in summary["methods"]]
    results = [r | {"run_dir": inside(report, r.get("run_dir"))} for r in summary["results"]]
    seeds = ", ".join(map(str, summary["seeds"])) if isinstance(summary["seeds"], list) else summary["seeds"]
    page = Page(
        f"Comparison: {summary['name']}",
        f"data {summary['source']}, seeds {seeds}, split {summary['split']}; folder {report}",
        live,
    )
    page.heading("Is the difference real?")
    page.table(table(methods), id="verdicts")
    if summary.get("legend"):
        for line in summary["legend"].splitlines():
            page.note(line)
    colour = colours(methods)
    page.heading("Learning curves")
    page.note("Each method's mean over seeds, with a band from its lowest to its highest seed (accuracy); click a "
              "legend entry to show or hide it, or each seed's own curve. The learning rate is the one at each "
              "epoch's last batch.")  # fmt: skip
    page.figure(_curves(results, methods, colour))
    page.heading("Every seed")
    page.note("Each seed's accuracy (dots) and each method's mean with its 95% interval (bar).")
    page.figure(_seed_dots(methods, colour))
    page.heading("Per class")
    page.figure(_per_class(methods, colour))
    page.note("The mistakes each method made most often, over all its seeds (actual → predicted).")
    page.table(_most_confused(report, methods, results), id="confused")
    layers = _layers(methods, results)
    if layers is not None:
        page.heading("Inside steps 4 and 5")
        page.note("Each method's first seed, layer by layer (first to last): the gradient's norm, and how far each "
                  "step moved the weights relative to their size (around 1e-3 is the classic healthy figure). A "
                  "vanishing gradient shows as the first layers' norms far below the last's. From each run's "
                  "layers.csv.")  # fmt: skip
        page.figure(layers)
    page.heading("What each run was")
    configs(
        page, [(f"{r['method']} seed {r['seed']}", r.get("run_dir")) for r in results if r.get("run_dir")]
    )
    page.heading("Pictures")
    pngs = [("ideal digits (the baseline's model)", report / "ideal_digits.png")]
    pngs += [(f"weights: {p.stem.removeprefix('weights-')}", p) for p in sorted(report.glob("weights-*.png"))]
    for m in methods:
        first = next((r for r in results if r["method"] == m.method and r.get("run_dir")), None)
        if first:
            folder = Path(first["run_dir"])
            pngs += [(f"{m.method}, seed {first['seed']}: {name.split('.')[0].replace('_', ' ')}", folder / name)
                     for name in ("top_losses.png", "confusion_matrix.png")]  # fmt: skip
    page.pictures(pngs)
    return page.write(out or report / PAGE)


def colours(methods) -> dict[str, str]:
    """One colour per method on every chart of a page: the baseline grey, the others plotly's own, in order."""
    found = palette([m.method for m in methods if m.kind != "baseline"])
    return found | {m.method: BASELINE_COLOUR for m in methods if m.kind == "baseline"}


def _curves(results: list[dict[str, Any]], methods, colour: dict[str, str]) -> Any:
    """Accuracy, loss (train solid, validation dashed) and learning rate per epoch, one row each, sharing the
    epoch axis; the legend below the charts, where it wraps instead of scrolling."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    lengths = [len(r["epochs"]) for r in results if r.get("epochs")]
    longest = max(lengths, default=0)
    with_lr = any("lr" in e for r in results for e in r.get("epochs") or [])  # older runs did not record it
    titles = ["validation accuracy", "loss: train (solid), validation (dashed)"] + ["learning rate"] * with_lr
    fig = make_subplots(
        rows=len(titles), cols=1, shared_xaxes=True, vertical_spacing=0.06, subplot_titles=titles
    )
    for m in [m for m in methods if m.kind == "sgd"]:
        c, group = colour[m.method], m.method
        runs = [r for r in results if r["method"] == m.method and r.get("epochs")]
        if not runs:
            continue
        n = min(len(r["epochs"]) for r in runs)  # the epochs every seed reached
        epochs = list(range(1, n + 1))

        def per_epoch(key, runs=runs, n=n):
            if not all(key in r["epochs"][e] for r in runs for e in range(n)):
                return None
            return [[r["epochs"][e][key] for r in runs] for e in range(n)]

        def mean(values):
            return [sum(a) / len(a) for a in values]

        acc = per_epoch("accuracy")
        low, high = [min(a) for a in acc], [max(a) for a in acc]
        fig.add_trace(go.Scatter(x=epochs + epochs[::-1], y=high + low[::-1], fill="toself", opacity=0.2,
                                 line=dict(width=0), fillcolor=c, hoverinfo="skip", showlegend=False,
                                 legendgroup=group), 1, 1)  # fmt: skip
        fig.add_trace(go.Scatter(x=epochs, y=mean(acc), name=f"{m.method} (mean of {len(runs)})",
                                 mode="lines+markers" if n <= 40 else "lines", line=dict(color=c, width=3),
                                 legendgroup=group), 1, 1)  # fmt: skip
        for key, dash, row in (("train_loss", "solid", 2), ("valid_loss", "dash", 2), ("lr", "solid", 3)):
            values = per_epoch(key)
            if values:
                fig.add_trace(go.Scatter(x=epochs, y=mean(values), name=f"{m.method}: {key.replace('_', ' ')}",
                                         line=dict(color=c, width=2, dash=dash), legendgroup=group,
                                         showlegend=False), row, 1)  # fmt: skip
        for r in runs:
            fig.add_trace(go.Scatter(x=[e["epoch"] for e in r["epochs"]], y=[e["accuracy"] for e in r["epochs"]],
                                     name=f"{m.method} seed {r['seed']}", visible="legendonly",
                                     line=dict(color=c, width=1, dash="dot")), 1, 1)  # fmt: skip
    base = next((m for m in methods if m.kind == "baseline" and m.mean is not None), None)
    if base and longest:  # a line in the legend, not a label over the curves
        fig.add_trace(go.Scatter(x=[1, longest], y=[base.mean] * 2, mode="lines", name=f"{base.method}: "
                                 f"{tables.percent(base.mean)}", line=dict(color=colour[base.method], dash="dash")), 1, 1)  # fmt: skip
    fig.update_layout(height=300 * len(titles), legend=dict(orientation="h", yanchor="top", y=-0.1, x=0),
                      margin=dict(t=40, r=20))  # fmt: skip
    # recipes of 5 and of 300 epochs side by side: a log axis shows both
    spread = lengths and max(lengths) >= 10 * min(lengths)
    fig.update_xaxes(type="log" if spread else None, dtick=1 if longest <= 20 else None)
    fig.update_xaxes(title_text="epoch" + " (log scale)" * bool(spread), row=len(titles), col=1)
    if with_lr:
        fig.update_yaxes(type="log", row=3, col=1)
    return fig


def _seed_dots(methods, colour: dict[str, str]) -> Any:
    """Each method's seeds and its mean with the 95% interval, in its colour, on an axis that spans the data
    (not 0.5 to 1, where two close methods were one blob); the baseline also as a line across."""
    import plotly.graph_objects as go

    fig = go.Figure()
    shown = [m for m in methods if m.mean is not None]
    for m in shown:
        c = colour[m.method]
        error = None
        if m.interval:
            error = dict(type="data", symmetric=False, array=[m.interval[1] - m.mean],
                         arrayminus=[m.mean - m.interval[0]], thickness=2, width=14, color=c)  # fmt: skip
        fig.add_trace(go.Scatter(x=[m.method], y=[m.mean], error_y=error, mode="markers", legendgroup=m.method,
                                 marker=dict(size=18, symbol="line-ew-open", color=c, line=dict(width=3)),
                                 name=f"{m.method}: mean {tables.percent(m.mean)}", hovertemplate="mean %{y:.3f}"))  # fmt: skip
        fig.add_trace(go.Scatter(x=[m.method] * len(m.accuracies), y=m.accuracies, mode="markers",
                                 text=[f"seed {s}" for s in m.seeds], hovertemplate="%{text}: %{y:.3f}",
                                 marker=dict(size=9, opacity=0.75, color=c), legendgroup=m.method,
                                 showlegend=False, name=f"{m.method}: each seed"))  # fmt: skip
    base = next((m for m in shown if m.kind == "baseline"), None)
    if base:
        fig.add_hline(y=base.mean, line_dash="dash", line_color=colour[base.method], opacity=0.6)
    values = [a for m in shown for a in [*m.accuracies, *(m.interval or ())]]
    if values:
        pad = max(0.005, (max(values) - min(values)) * 0.1)
        fig.update_yaxes(range=[min(values) - pad, min(1.0, max(values)) + pad])
    fig.update_layout(yaxis_title="validation accuracy", height=440, showlegend=True,
                      legend=dict(orientation="h", yanchor="top", y=-0.15, x=0))  # fmt: skip
    return fig


def _per_class(methods, colour: dict[str, str]) -> Any:
    """Each method's accuracy on each class (the mean over its seeds), side by side."""
    import plotly.graph_objects as go

    fig = go.Figure()
    shown = [m for m in methods if m.per_class]
    classes = sorted({c for m in shown for c in m.per_class}, key=lambda c: (len(c), c))
    for m in shown:
        fig.add_trace(go.Bar(x=classes, y=[m.per_class.get(c) for c in classes], name=m.method,
                             marker_color=colour[m.method], hovertemplate="%{x}: %{y:.3f}"))  # fmt: skip
    values = [v for m in shown for v in m.per_class.values()]
    low = max(0.0, min(values) - 0.05) if values else 0
    fig.update_layout(barmode="group", yaxis=dict(title="accuracy on the class", range=[low, 1.0]), height=380,
                      xaxis_title="class", legend=dict(orientation="h", yanchor="top", y=-0.2, x=0))  # fmt: skip
    return fig


def _layers(methods, results: list[dict[str, Any]]) -> Any:
    """Per method (a column each), each weighted layer's gradient norm and update ratio over epochs, from its
    first seed's layers.csv; None when no run has one."""
    import plotly.graph_objects as go
    from plotly.colors import sample_colorscale
    from plotly.subplots import make_subplots

    from ..loop.run_folder import read_layers

    found = []
    for m in methods:
        first = next((r for r in results if r["method"] == m.method and r.get("run_dir")), None)
        rows = read_layers(first["run_dir"]) if first else []
        if any("grad_norm" in r for r in rows):
            found.append((f"{m.method} (seed {first['seed']})", rows))
    if not found:
        return None
    fig = make_subplots(rows=2, cols=len(found), shared_yaxes=True, subplot_titles=[t for t, _ in found],
                        vertical_spacing=0.12, horizontal_spacing=0.04)  # fmt: skip
    for col, (_, rows) in enumerate(found, 1):
        names = list(dict.fromkeys(r["layer"] for r in rows if "grad_norm" in r))
        colours = sample_colorscale("Viridis", [i / max(1, len(names) - 1) for i in range(len(names))])
        for name, c in zip(names, colours):
            mine = [r for r in rows if r["layer"] == name and "grad_norm" in r]
            x = [r["epoch"] for r in mine]
            for row, key in ((1, "grad_norm"), (2, "update_ratio")):
                fig.add_trace(go.Scatter(x=x, y=[r[key] for r in mine], name=f"layer {name}", legendgroup=name,
                                         showlegend=col == 1 and row == 1, line=dict(color=c)), row, col)  # fmt: skip
    fig.update_yaxes(type="log")
    fig.update_yaxes(title_text="gradient norm", row=1, col=1)
    fig.update_yaxes(title_text="update / weight", row=2, col=1)
    fig.update_xaxes(title_text="epoch", row=2)
    fig.update_layout(height=620, legend=dict(orientation="h", yanchor="top", y=-0.12, x=0))
    return fig


def _most_confused(report: Path, methods, results: list[dict[str, Any]], top: int = 5) -> list[list[str]]:
    """Rows of (method, actual → predicted, mistakes per seed), the commonest first, from the runs' own
    per-image outcomes (valid_outcomes.csv) and the baseline's (baseline_outcomes.csv)."""
    from collections import Counter

    from ..loop import run_folder

    rows = [["method", "actual → predicted", "mistakes per seed", "seeds"]]
    for m in methods:
        files = [Path(r["run_dir"]) / run_folder.OUTCOMES for r in results
                 if r["method"] == m.method and r.get("run_dir") and r.get("status") == "ok"]  # fmt: skip
        if m.kind == "baseline":
            files = [report / "baseline_outcomes.csv"]
        counts, seeds = Counter(), 0
        for file in files:
            try:
                outcomes = tables.read_csv(file)
                counts.update((o["label"], o["predicted"]) for o in outcomes if o["label"] != o["predicted"])
            except (
                OSError,
                KeyError,
                UnicodeDecodeError,
            ):  # a run folder moved or damaged: its seed is left out
                continue
            seeds += len(
                {o.get("split", "") for o in outcomes}
            )  # the baseline's file: one split a seed or fold
        for (actual, predicted), n in counts.most_common(top):
            rows.append([m.method, f"{actual} → {predicted}", f"{n / seeds:.1f}", str(seeds)])
    return rows
