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


def read_json(file: Path) -> dict[str, Any]:
    from ..errors import UsageError

    try:
        found = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        found = None
    if not isinstance(found, dict):
        raise UsageError(f"{file} is damaged (not a JSON object); no page can be made from it")
    return found


def inside(folder: Path, run_dir: str | None) -> str | None:
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


# --- parts that the comparison, sweep and run pages share ----------------------------------------------


BASELINE_COLOUR = "#555555"


def palette(names: list[str]) -> dict[str, str]:
    """plotly's own colours, one a name, in order."""
    from plotly.colors import qualitative

    return {name: qualitative.Plotly[i % len(qualitative.Plotly)] for i, name in enumerate(names)}


def configs(page: Page, runs: list[tuple[str, str | None]]) -> None:
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
        else [(f, read_json(f / "result.json")) for f in folders]
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
    configs(page, [(f.name, str(f)) for f, _ in results])
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
