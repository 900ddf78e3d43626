"""One self-contained HTML page per comparison, sweep or selection of runs: opened with a double click, mailed,
committed beside a notebook. No server and no network: everything it shows is inside the file.

The charts are plotly figures (a sweep's are Optuna's own plotly visualisations); only the page around them is
written here. plotly.js is 4.8 MB, so it is embedded once, gzip-compressed (about 1.4 MB), and unpacked by the
browser's own DecompressionStream before the figures are drawn: a page stays well under 5 MB. Pictures the
runs already drew (top losses, confusion matrix, weights) are embedded as PNGs.
"""

from __future__ import annotations

import base64
import functools
import gzip
import html
import json
from pathlib import Path
from typing import Any

from ..utils import atomic, tables

PAGE = "report.html"
REFRESH = 10  # seconds: a page written while its comparison or sweep runs reloads itself this often

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}td.differs{background:#fff3bf;font-weight:600}.verdict-better{color:#1b7f2a}
.verdict-worse{color:#b3261e}.note{color:#555;font-size:.9em;max-width:70em}.chart{min-height:420px}
.pictures{display:flex;flex-wrap:wrap;gap:1em}.pictures figure{margin:0}.pictures img{max-width:min(100%,640px)}
figcaption{font-size:.85em;color:#555}.live{background:#e7f0ff;padding:.4em .8em;border-radius:4px}.wide{overflow-x:auto}td{white-space:nowrap}
"""

LOADER = """
(async () => {
  const packed = Uint8Array.from(atob(document.getElementById("plotly-gz").textContent), c => c.charCodeAt(0));
  const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
  const script = document.createElement("script");
  script.text = await new Response(stream).text();
  document.head.appendChild(script);
  let drawn = 0;
  for (const el of document.querySelectorAll("[data-figure]")) {
    const spec = JSON.parse(document.getElementById(el.dataset.figure).textContent);
    await Plotly.newPlot(el, spec.data, spec.layout, {responsive: true, displaylogo: false});
    el.dataset.drawn = "yes";
    drawn += 1;
  }
  document.body.dataset.charts = String(drawn);
})();
"""


@functools.cache
def _plotly_js_packed() -> str:
    from plotly.offline import get_plotlyjs

    return base64.b64encode(gzip.compress(get_plotlyjs().encode(), 6, mtime=0)).decode()


class Page:
    """Sections of a page, in order; `write` puts them in one file with plotly.js and every figure's JSON."""

    def __init__(self, title: str, subtitle: str = "", live: str | None = None):
        self.title, self.subtitle, self.live = title, subtitle, live
        self.parts: list[str] = []
        self.figures: list[str] = []

    def heading(self, text: str) -> None:
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def table(self, rows: list[list[Any]], differs: set[tuple[int, int]] = frozenset(), id: str = "") -> None:
        """rows[0] is the header; `differs` holds (row, column) cells to highlight (1-based rows of data)."""
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in rows[0])
        body = []
        for i, row in enumerate(rows[1:], 1):
            cells = []
            for j, c in enumerate(row):
                classes = ["differs"] if (i, j) in differs else []
                text = str(c)
                word = text.split(maxsplit=1)[0] if text.strip() else ""
                if word in ("better", "worse"):  # the class is one of two fixed names, never the cell's text
                    classes.append(f"verdict-{word}")
                cls = f' class="{" ".join(classes)}"' if classes else ""
                cells.append(f"<td{cls}>{html.escape(text)}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
        ident = f' id="{id}"' if id else ""
        self.parts.append(  # a wide table scrolls inside its box; the page itself never scrolls sideways
            f'<div class="wide"><table{ident}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
        )

    def figure(self, fig) -> None:
        """A plotly figure, drawn in the browser from its JSON."""
        n = len(self.figures)
        self.figures.append(f'<script type="application/json" id="fig{n}">{_safe(fig.to_json())}</script>')
        self.parts.append(f'<div class="chart" data-figure="fig{n}"></div>')

    def pictures(self, pngs: list[tuple[str, Path]]) -> None:
        found = [(caption, p) for caption, p in pngs if Path(p).is_file()]
        if not found:
            return
        figures = [
            f'<figure><img alt="{html.escape(c)}" src="data:image/png;base64,'
            f'{base64.b64encode(Path(p).read_bytes()).decode()}"><figcaption>{html.escape(c)}</figcaption></figure>'
            for c, p in found
        ]
        self.parts.append(f'<div class="pictures">{"".join(figures)}</div>')

    def html(self) -> str:
        return (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            + (f'<meta http-equiv="refresh" content="{REFRESH}">' if self.live else "")
            + f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(self.title)}</h1><p class='note'>{html.escape(self.subtitle)}</p>"
            + (f'<p class="live" id="live">{html.escape(self.live)}</p>' if self.live else "")
            + "".join(self.parts)
            + "".join(self.figures)
            + f'<script type="application/octet-stream" id="plotly-gz">{_plotly_js_packed()}</script>'
            + f"<script>{LOADER}</script></body></html>"
        )

    def write(self, path: Path) -> Path:
        atomic.write_bytes(path, self.html().encode())  # a reader (or the browser reloading) sees it whole
        return path


def _json(file: Path) -> dict[str, Any]:
    from ..errors import UsageError

    try:
        found = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        found = None
    if not isinstance(found, dict):
        raise UsageError(f"{file} is damaged (not a JSON object); no page can be made from it")
    return found


def _inside(folder: Path, run_dir: str | None) -> str | None:
    """A run folder that a report's JSON names, if it is inside that report's folder (where comparisons and
    sweeps save their runs), found by its name when the folder was moved; else None. A received folder's
    JSON could name any folder on this machine, whose files the page would then embed."""
    if not run_dir:
        return None
    root = Path(folder).resolve()
    for candidate in (Path(run_dir), root / Path(run_dir).name):
        found = candidate.resolve()
        if found.is_relative_to(root) and found != root and found.is_dir():
            return str(found)
    return None


def _safe(text: str) -> str:
    """JSON inside a <script> element: `</` would end the element early."""
    return text.replace("</", "<\\/")


# --- a comparison ----------------------------------------------------------------------------------------


def comparison(
    report: Path, out: Path | None = None, summary: dict | None = None, live: str | None = None
) -> Path:
    """The page of a comparison's report folder, from its results.json (or `summary`, the same, while it runs:
    then the page says `live` and reloads itself) and its runs' folders."""
    from ..compare.report import Method, table

    summary = summary if summary is not None else _json(report / "results.json")
    methods = [Method.from_json(m) for m in summary["methods"]]
    results = [r | {"run_dir": _inside(report, r.get("run_dir"))} for r in summary["results"]]
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
    inside = _layers(methods, results)
    if inside is not None:
        page.heading("Inside steps 4 and 5")
        page.note("Each method's first seed, layer by layer (first to last): the gradient's norm, and how far each "
                  "step moved the weights relative to their size (around 1e-3 is the classic healthy figure). A "
                  "vanishing gradient shows as the first layers' norms far below the last's. From each run's "
                  "layers.csv.")  # fmt: skip
        page.figure(inside)
    page.heading("What each run was")
    _configs(
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


BASELINE_COLOUR = "#555555"


def colours(methods) -> dict[str, str]:
    """One colour per method on every chart of a page: the baseline grey, the others plotly's own, in order."""
    found = palette([m.method for m in methods if m.kind != "baseline"])
    return found | {m.method: BASELINE_COLOUR for m in methods if m.kind == "baseline"}


def palette(names: list[str]) -> dict[str, str]:
    """plotly's own colours, one a name, in order."""
    from plotly.colors import qualitative

    return {name: qualitative.Plotly[i % len(qualitative.Plotly)] for i, name in enumerate(names)}


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

    from . import layer_stats

    found = []
    for m in methods:
        first = next((r for r in results if r["method"] == m.method and r.get("run_dir")), None)
        rows = layer_stats.read(first["run_dir"]) if first else []
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


def _configs(page: Page, runs: list[tuple[str, str | None]]) -> None:
    """One row per run, one column per recipe key; the keys whose values differ between runs first, and
    highlighted."""
    import tomllib

    from ..recipe import flatten

    configs = []
    for label, folder in runs:
        file = Path(folder or "") / "recipe.toml"
        if file.is_file():
            configs.append((label, dict(flatten(tomllib.loads(file.read_text())))))
    if not configs:
        page.note("No run folder could be read.")
        return
    keys = sorted({k for _, c in configs for k in c if not k.startswith("plugin_sha256")})
    # a name and a seed differ between runs by design: what a reader looks for is the settings that differ
    differs = [k for k in keys if len({repr(c.get(k)) for _, c in configs}) > 1 and k not in ("name", "seed")]
    same = [k for k in keys if k not in differs and k not in ("name", "seed")]
    merged: dict[tuple, list[str]] = {}  # a method's seeds, alike but for the seed: one row
    for label, c in configs:
        row = (label.rsplit(" seed ", 1)[0], *(_toml(c.get(k, "-")) for k in differs))
        merged.setdefault(row, []).append(label.rsplit(" seed ", 1)[-1] if " seed " in label else "")
    rows = [["run", *(k.removeprefix("steps.") for k in differs)]]
    for (label, *values), seeds in merged.items():
        seeds = [s for s in seeds if s]
        rows.append(
            [f"{label} (seed{'s' * (len(seeds) > 1)} {', '.join(seeds)})" if seeds else label, *values]
        )
    cells = {(i, j + 1) for i in range(1, len(rows)) for j in range(len(differs))}
    page.note(f"{len(differs)} setting(s) differ between these runs: {', '.join(differs) or 'none'}.")
    if differs:
        page.table(rows, cells, id="configs")
    first = configs[0][1]
    page.note("The same in every run: " + ", ".join(f"{k} = {_toml(first[k])}" for k in same) + ".")


# --- a sweep ---------------------------------------------------------------------------------------------


def sweep(
    sweep_dir: Path,
    study=None,
    storage: str | None = None,
    out: Path | None = None,
    summary: dict | None = None,
    live: str | None = None,
) -> Path:
    """The page of a sweep's folder: its trials table and Optuna's own plotly figures (the study read from
    `storage`, by default the folder's journal, when none is given); `summary` and `live` as for a comparison."""
    import warnings

    import optuna
    import optuna.visualization as ov

    summary = summary if summary is not None else _json(sweep_dir / "trials.json")
    page = Page(f"Sweep: {summary['name']}", f"{summary['direction']} {summary['metric']}, sampler "
                f"{summary['sampler']}; folder {sweep_dir}", live)  # fmt: skip
    page.heading("Trials")
    trials = summary["trials"]
    if trials:
        from ..sweep.report import format_rows

        page.table(format_rows(trials), id="trials")
    best = summary.get("best")
    if best:
        header, row = format_rows([best])
        page.note(
            f"best: trial {best.get('trial')}, {summary['metric']} {row[header.index(summary['metric'])]}"
        )
    if study is None and (storage or (sweep_dir / "study.journal").is_file()):
        from ..sweep.study import storage_for

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=summary["name"], storage=storage_for(storage, sweep_dir))
    if study is not None:
        from optuna.trial import TrialState

        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        # an axis or a panel for a key that took one value shows nothing
        varied = sorted({k for t in done for k in t.params if len({repr(u.params.get(k)) for u in done}) > 1})
        baseline = summary.get("baseline_accuracy") if summary["metric"] == "accuracy" else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for title, draw in (("Optimisation history", ov.plot_optimization_history),
                                ("Parallel coordinates", functools.partial(ov.plot_parallel_coordinate, params=varied)),
                                ("The metric per value of each key", functools.partial(ov.plot_slice, params=varied)),
                                ("Which keys mattered (fANOVA importance)", ov.plot_param_importances)):  # fmt: skip
                if draw is not ov.plot_optimization_history and not varied:
                    page.heading(title)
                    page.note("not drawn: every swept key took one value")
                    continue
                try:
                    fig = draw(study, target_name=summary["metric"])
                except (ValueError, RuntimeError) as e:  # too few trials, or one value per key
                    page.heading(title)
                    page.note(f"not drawn: {e}")
                    continue
                page.heading(title)
                page.figure(_readable(fig, baseline, title.startswith(("Optimisation", "The metric"))))
    page.heading("What each trial was")
    folders = [(f"trial {t['trial']}", _inside(sweep_dir, t.get("run_dir"))) for t in trials]
    _configs(page, [(label, folder) for label, folder in folders if folder])
    return page.write(out or sweep_dir / PAGE)


def _readable(fig, baseline: float | None, with_baseline: bool):
    """Optuna's figure, its trials coloured on a scale whose first trial is not white on white, and the
    pixel-similarity baseline as a line where the metric is on the y axis."""
    fig.update_traces(selector=dict(type="scatter"), marker_colorscale="Viridis")
    if baseline is not None and with_baseline:
        fig.add_hline(y=baseline, line_dash="dash", line_color=BASELINE_COLOUR, annotation_text="baseline",
                      annotation_position="bottom right")  # fmt: skip
    return fig


def refresh(folder: Path, draw, every: float = REFRESH / 2) -> bool:
    """While a comparison or sweep runs, each worker calls this as a run ends: `draw()` writes the folder's
    page, unless it was written less than `every` seconds ago (N workers, fast runs). A page that cannot be
    drawn yet is left as it is: it is a view, and the work goes on."""
    import time

    file = folder / PAGE
    try:
        if file.exists() and time.time() - file.stat().st_mtime < every:
            return False
        draw()
    except Exception:  # noqa: BLE001 (the final page, written by the command at its end, says what is wrong)
        return False
    return True


def _toml(v: Any) -> str:
    """A recipe's value as its file writes it (true, not True)."""
    return str(v).lower() if isinstance(v, bool) else _cell(v) if isinstance(v, (float, list)) else str(v)


def _cell(v: Any) -> str:
    if v is None or v == "":
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return f"[{', '.join(_cell(x) for x in v)}]"
    return str(v)


# --- run folders -----------------------------------------------------------------------------------------


def runs(folders: list[Path], out: Path, live: str | None = None, results: list[dict] | None = None) -> Path:
    """A page for run folders chosen by hand, or for one run as it trains (`live`, with its `results` so far,
    since its result.json is written at the end): their results side by side, their curves, what differs."""
    import plotly.graph_objects as go

    page = Page(f"{len(folders)} run(s)" if len(folders) > 1 else f"Run: {folders[0].name}",
                ", ".join(str(f) for f in folders), live)  # fmt: skip
    results = (
        list(zip(folders, results))
        if results is not None
        else [(f, _json(f / "result.json")) for f in folders]
    )
    page.heading("Results")
    rows = [["run", "accuracy", "test", "epochs", "stop", "fit s"]]
    for f, r in results:
        test = r.get("test") or {}
        rows.append([f.name, tables.percent(r.get("accuracy")), tables.percent(test.get("accuracy")), len(r.get("epochs") or []),
                     r.get("stop_reason", "-"), _cell(r.get("fit_seconds"))])  # fmt: skip
    page.table(rows, id="results")
    page.note("Accuracy in percent, on the validation images; test: on the held-out test images, when the recipe "
              "has them.")  # fmt: skip
    page.heading("Learning curves")
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("validation accuracy", "loss: train (solid), validation (dashed)"))  # fmt: skip
    colour = palette([f.name for f, _ in results])
    for f, r in results:
        epochs = r.get("epochs") or []
        x = [e["epoch"] for e in epochs]
        c = colour[f.name]
        fig.add_trace(go.Scatter(x=x, y=[e["accuracy"] for e in epochs], name=f.name, line=dict(color=c),
                                 legendgroup=f.name), 1, 1)  # fmt: skip
        for key, dash in (("train_loss", "solid"), ("valid_loss", "dash")):
            fig.add_trace(go.Scatter(x=x, y=[e.get(key) for e in epochs], name=f"{f.name}: {key.replace('_', ' ')}",
                                     line=dict(color=c, dash=dash), legendgroup=f.name, showlegend=False), 2, 1)  # fmt: skip
    fig.update_layout(height=640, legend=dict(orientation="h", yanchor="top", y=-0.12, x=0))
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    page.figure(fig)
    page.heading("What each run was")
    _configs(page, [(f.name, str(f)) for f, _ in results])
    page.heading("Pictures")
    page.pictures([(f"{f.name}: {n.split('.')[0].replace('_', ' ')}", f / n) for f, _ in results
                   for n in ("top_losses.png", "confusion_matrix.png", "weights.png")])  # fmt: skip
    return page.write(out)


def kind_of(path: Path) -> str:
    """What a folder is: a comparison's report, a sweep's folder, or a run."""
    if (path / "results.json").is_file():
        return "comparison"
    if (path / "trials.json").is_file():
        return "sweep"
    if (path / "result.json").is_file():
        return "run"
    return "unknown"
