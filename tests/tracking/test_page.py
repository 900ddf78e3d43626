"""The pages of a comparison, a sweep and run folders: one HTML file each, opened in a real browser (Debian's
headless Chromium through Selenium) from the file itself, with no server and no network."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import LINEAR, start_cli, wait_for
from sevenstep import compare
from sevenstep.cli import app
from sevenstep.tracking.layer_stats import LayerStats

QUICK = '{ "steps.repeat.n" = 2, "data.bs" = 8 }'


@pytest.fixture(scope="module")
def browser():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "no headless browser: Debian's chromium and chromium-driver are not installed (.ci/run installs them)"
        )
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        b = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))
    except Exception as e:  # a browser that cannot start here is said, not faked
        pytest.skip(f"headless chromium could not start: {str(e).splitlines()[0]}")
    yield b
    b.quit()


def _open(browser, page: Path, timeout: float = 30) -> float:
    """Load the file, wait until every chart is drawn; the seconds it took. A script error fails the test."""
    start = time.perf_counter()
    browser.get(page.resolve().as_uri())
    n = len(browser.find_elements("css selector", "[data-figure]"))
    deadline = time.time() + timeout
    while browser.execute_script("return document.body.dataset.charts") != str(n):
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, errors
        assert time.time() < deadline, f"charts not drawn in {timeout} s"
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    drawn = browser.execute_script(
        "return [...document.querySelectorAll('[data-figure]')].map(el => el.querySelectorAll('svg.main-svg').length)"
    )
    assert drawn and all(k > 0 for k in drawn), drawn  # plotly drew an SVG in every chart
    return seconds


@contextmanager
def _pages_seen(root: Path):
    """Each version of the report.html under `root` seen while the block runs (the file polled, as a browser
    reloading it would read it)."""
    seen: list[str] = []
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            for file in root.glob("**/report.html"):
                text = file.read_text()
                if not seen or seen[-1] != text:
                    seen.append(text)
            time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        stop.set()
        thread.join()


def _live(browser, seen: list[str], folder: Path, expected: str) -> None:
    """#27 item 2: while the work ran, its page said so and reloaded itself; it drew what had ended so far.
    The final page does not reload."""
    live = [text for text in seen if 'http-equiv="refresh"' in text]
    assert live, f"no live page among {len(seen)} seen"
    assert expected in live[0], live[0][:2000]
    (folder / "live.html").write_text(live[0])
    _open(browser, folder / "live.html")
    assert 'http-equiv="refresh"' not in (folder / "report.html").read_text()


def _rows(browser, table_id: str) -> list[list[str]]:
    return browser.execute_script(
        f"return [...document.querySelectorAll('#{table_id} tr')].map(r => [...r.cells].map(c => c.textContent))"
    )


def test_a_comparisons_page_shows_every_method_seed_and_verdict(tmp_path, tiny_folder, browser):
    file = tmp_path / "cmp.toml"
    file.write_text(
        f'source = "folder:{tiny_folder}"\nseeds = [1, 2, 3]\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "linear"\nset = {QUICK}\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "linear lr 0.1"\nset = {{ "steps.repeat.n" = 2, "data.bs" = 8, '
        '"steps.step.lr" = 0.1 }\n'
    )
    with _pages_seen(tmp_path / "runs") as seen:
        results, report = compare.run(
            compare.load(file), tmp_path / "runs", cbs=[LayerStats], log=lambda *a: None
        )
    page = report / "report.html"
    assert page.is_file() and page.stat().st_size < 5_000_000
    _live(browser, seen, report, "Running: 1 of 6 runs ended. This page reloads itself every 10 s")
    # #36 item 3: a live page labels what it shows as partial, and no verdict on it reads as final
    for text in (t for t in seen if 'http-equiv="refresh"' in t):
        assert (
            "PARTIAL: " in text
            and "have not finished" in text
            and "the mean over the seeds that finished" in text
        )
        assert not re.search(r"(better|worse) \(p=[0-9.e-]+\)", text)  # only `..., provisional)` ones
    _open(browser, page)
    summary = json.loads((report / "results.json").read_text())
    rows = _rows(browser, "verdicts")
    assert rows[0][:6] == ["method", "accuracy", "95% interval", "seeds", "vs baseline", "vs best"]
    by_method = {r[0]: r for r in rows[1:]}
    for m in summary["methods"]:
        row = by_method[m["method"]]
        if m["kind"] == "sgd":
            assert row[3].replace("*", "").split() == [f"{100 * a:.1f}" for a in m["accuracies"]]  # each seed
            assert row[4].startswith(m["vs_baseline"]["verdict"])
    # the configs table (#36 item 10): a row per method (its seeds alike), only what differs (a name and a seed
    # differ by design), highlighted; the page itself never scrolls sideways
    configs = _rows(browser, "configs")
    assert configs == [
        ["run", "step.lr"],
        ["linear (seeds 1, 2, 3)", "1"],
        ["linear lr 0.1 (seeds 1, 2, 3)", "0.1"],
    ]
    assert browser.execute_script("return document.querySelectorAll('#configs td.differs').length") == 2
    assert "1 setting(s) differ between these runs: steps.step.lr." in browser.page_source
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    figures = browser.execute_script(
        "return [...document.querySelectorAll('[data-figure]')].map(el => ({data: el.data.map(t => ({name: t.name,"
        " visible: t.visible, yaxis: t.yaxis, type: t.type, colour: (t.line || {}).color || (t.marker || {}).color,"
        " y: t.y})), layout: {legend: el.layout.legend, yaxis: el.layout.yaxis, shapes: el.layout.shapes}}))"
    )
    curves, dots, per_class, inside = figures[:4]
    # #37: each method's layers side by side, from its first seed's layers.csv
    assert "Inside steps 4 and 5" in browser.execute_script(
        "return [...document.querySelectorAll('h2')].map(h => h.textContent)"
    )
    assert {t["name"] for t in inside["data"]} == {"layer 1"} and len(inside["data"]) == 2 * 2 * 1
    names = [(t["name"], t["visible"]) for t in curves["data"]]
    # each seed's own curve is in the chart, hidden until asked for
    assert ("linear seed 2", "legendonly") in names and any(n and "mean of 3" in n for n, _ in names)
    # accuracy, loss (train and validation) and the learning rate, each on its own axis
    by_axis = {}
    for t in curves["data"]:
        by_axis.setdefault(t["yaxis"], set()).add(t["name"])
    assert {"linear: train loss", "linear: valid loss"} <= by_axis["y2"] and "linear: lr" in by_axis["y3"]
    lr = next(t for t in curves["data"] if t["name"] == "linear lr 0.1: lr")
    assert lr["y"] == pytest.approx([0.1, 0.1])  # the recipe's constant rate, as recorded each epoch
    # the legend wraps below the charts (it scrolled, hiding methods); the baseline is a legend entry, not a
    # label over the curves
    assert curves["layout"]["legend"]["orientation"] == "h"
    assert browser.execute_script(
        "const el = document.querySelector('[data-figure]'); const bg = el.querySelector('.legend .bg')"
        ".getBoundingClientRect(); const items = [...el.querySelectorAll('.legend .traces')]; return items.length"
        " > 3 && items.every(t => t.getBoundingClientRect().bottom <= bg.bottom + 1)"
    )  # every entry inside the legend's box: none scrolled out of sight
    base = summary["methods"][0]
    assert any(n == f"baseline (l1): {100 * base['mean']:.1f}" for n, _ in names)
    # one colour per method on every chart
    colour = {
        t["name"].split(" (mean")[0]: t["colour"] for t in curves["data"] if "mean of" in (t["name"] or "")
    }
    for m in ("linear", "linear lr 0.1"):
        assert {t["colour"] for t in dots["data"] if t["name"].startswith(m + ":")} == {colour[m]}
        assert next(t["colour"] for t in per_class["data"] if t["name"] == m) == colour[m]
    # every seed on an axis that spans the values (not 0.5 to 1), with the baseline as a line
    values = [a for m in summary["methods"] for a in [*m["accuracies"], *(m["interval"] or [])]]
    low, high = dots["layout"]["yaxis"]["range"]
    assert (
        low <= min(values)
        and high >= min(1.0, max(values))
        and high - low <= (max(values) - min(values)) * 1.25 + 0.011
    )
    assert [s["y0"] for s in dots["layout"]["shapes"]] == [pytest.approx(base["mean"])]
    # per class, and the commonest mistakes, from the runs' own outcomes
    assert {t["name"] for t in per_class["data"]} == {m["method"] for m in summary["methods"]}
    confused = _rows(browser, "confused")
    assert confused[0] == ["method", "actual → predicted", "mistakes per seed", "seeds"]
    assert {r[0] for r in confused[1:]} <= {m["method"] for m in summary["methods"]} and len(confused) > 1
    for row in confused[1:]:
        assert row[1] in ("a → b", "b → a") and float(row[2]) > 0 and row[3] in ("1", "3")
    # #34: drawing the page again, layers included, imports neither torch nor fastai (5-9 s of `sevenstep report`)
    code = (
        "import sys; from sevenstep.cli import app\ntry: app(['report', sys.argv[1]])\nexcept SystemExit as e: "
        "assert not e.code, e.code\nprint('torch' in sys.modules, 'fastai' in sys.modules)"
    )
    before = page.stat().st_mtime_ns
    out = subprocess.run(
        [sys.executable, "-c", code, str(report)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["False", "False"] and page.stat().st_mtime_ns > before
    assert "Inside steps 4 and 5" in page.read_text()


def test_a_sweeps_page_has_its_trials_and_optunas_figures(tmp_path, browser):
    file = tmp_path / "sw.toml"
    file.write_text(
        f'name = "page"\nrecipe = "{LINEAR}"\nmetric = "accuracy"\nsampler = "grid"\n[space]\n'
        '"steps.init.name" = ["zeros", "normal"]\n"steps.step.lr" = [0.1, 1.0]\n"steps.repeat.n" = [1]\n'
    )
    with _pages_seen(tmp_path / "runs") as seen:
        result = CliRunner().invoke(
            app, ["sweep", str(file), "--runs-dir", str(tmp_path / "runs"), "--wandb", "disabled"]
        )
    assert result.exit_code == 0, result.output
    page = Path(re.search(r"^page:\s+(\S+)", result.output, re.M).group(1))
    _live(browser, seen, page.parent, "Running: 1 of 4 trials ended.")
    _open(browser, page)
    trials = _rows(browser, "trials")
    assert len(trials) == 1 + 4 and {r[0] for r in trials[1:]} == {"0", "1", "2", "3"}
    # #36 item 11: no column that is "-" in every row; the accuracy in percent, as a comparison's
    assert all(any(r[i] != "-" for r in trials[1:]) for i in range(len(trials[0])))
    summary = json.loads((page.parent / "trials.json").read_text())
    by_trial = {str(t["trial"]): t for t in summary["trials"]}
    for row in trials[1:]:
        assert row[2] == f"{100 * by_trial[row[0]]['accuracy']:.1f}"
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    headings = browser.execute_script("return [...document.querySelectorAll('h2')].map(h => h.textContent)")
    for title in ("Optimisation history", "Parallel coordinates", "The metric per value of each key"):
        assert title in headings
    figures = browser.execute_script(
        "return [...document.querySelectorAll('[data-figure]')].map(el => ({data: el.data, shapes: el.layout.shapes, "
        "xaxis: el.layout.xaxis}))"
    )
    history, parallel, per_key = figures[:3]
    # steps.repeat.n took one value: no axis for it
    axes = parallel["xaxis"]["ticktext"]  # Optuna draws its axes as an x axis's ticks
    assert "steps.repeat.n" not in axes and {"steps.init.name", "steps.step.lr"} <= set(axes)
    # trial 0 is not white on white; the baseline is a line on the charts whose y axis is the accuracy
    scales = [t["marker"]["colorscale"] for t in per_key["data"] if (t.get("marker") or {}).get("colorscale")]
    assert scales and all(scale[0][1] != "rgb(247,251,255)" and "255" not in scale[0][1] for scale in scales)
    for fig in (history, per_key):  # one line in each panel
        assert fig["shapes"] and all(
            s["y0"] == pytest.approx(summary["baseline_accuracy"]) for s in fig["shapes"]
        )


def test_report_makes_a_page_for_run_folders_and_refuses_what_is_not_one(tmp_path, tiny_folder, browser):
    folders = []
    for lr in ("0.1", "1.0", "0.5"):
        out = CliRunner().invoke(app, ["run", LINEAR, "--set", f"data.source=folder:{tiny_folder}", "--set",
                                       "steps.repeat.n=2", "--set", f"steps.step.lr={lr}", "--json", "--wandb",
                                       "offline", "--wandb-dir", str(tmp_path), "--group",
                                       "lr-pair" if lr != "0.5" else "other", "--runs-dir",
                                       str(tmp_path / "runs")])  # fmt: skip
        folders.append(json.loads(out.stdout.strip().splitlines()[-1])["run_dir"])
    folders = folders[:2]  # the third is in another group
    page, picked = tmp_path / "two.html", tmp_path / "picked.html"
    result = CliRunner().invoke(app, ["report", *folders, "--out", str(page)])
    assert result.exit_code == 0, result.output
    # the same two, picked as `sevenstep runs --group lr-pair` lists them (#27 item 1)
    result = CliRunner().invoke(
        app, ["report", "--group", "pair", "--wandb-dir", str(tmp_path), "--out", str(picked)]
    )
    assert result.exit_code == 0, result.output
    for file in (page, picked):
        _open(browser, file)
        assert [r[0] for r in _rows(browser, "results")[1:]] == [Path(f).name for f in folders]
        assert _rows(browser, "configs")[0] == ["run", "step.lr"]
    nothing = CliRunner().invoke(app, ["report", "--group", "nope", "--wandb-dir", str(tmp_path)])
    assert nothing.exit_code == 2 and "no W&B runs with group containing 'nope' under" in nothing.output
    refused = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert refused.exit_code == 2 and "not a comparison (results.json), a sweep" in refused.output
    (Path(folders[0]) / "result.json").write_text('{"accur')
    damaged = CliRunner().invoke(app, ["report", folders[0]])
    assert damaged.exit_code == 2 and "result.json is damaged (not a JSON object)" in damaged.output


def test_a_single_run_has_a_live_page_while_it_trains(tmp_path, tiny_folder, browser):
    """#36's wish: a live view of one run, as a comparison has: report.html in its folder, reloading itself,
    with the epochs so far; once the run ends (here by Ctrl-C), the whole page, which no longer reloads."""
    proc = start_cli("run", LINEAR, "--set", f"data.source=folder:{tiny_folder}", "--set", "steps.repeat.n=100000",
                     "--set", "data.bs=8", "--runs-dir", str(tmp_path / "runs"), "--wandb", "disabled")  # fmt: skip
    try:
        wait_for(lambda: any((tmp_path / "runs").glob("*/report.html")), 90, "a live page")
        (page,) = (tmp_path / "runs").glob("*/report.html")
        live = page.read_text()
        assert 'http-equiv="refresh"' in live and "Training: epoch " in live
        (tmp_path / "live.html").write_text(live)
        _open(browser, tmp_path / "live.html")
        (row,) = _rows(browser, "results")[1:]
        assert row[0] == page.parent.name and row[4] == "training" and int(row[3]) >= 1
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as at its terminal
        _, err = proc.communicate(timeout=120)
    assert f"live page: {page}" in err
    final = page.read_text()
    assert 'http-equiv="refresh"' not in final
    _open(browser, page)
    (row,) = _rows(browser, "results")[1:]
    saved = json.loads((page.parent / "result.json").read_text())
    assert row[4] == "interrupted" and row[1] == f"{100 * saved['accuracy']:.1f}"
    assert int(row[3]) == len(saved["epochs"])


@pytest.mark.parametrize(
    "cell",
    ['better"><img/src="x"/onerror="alert(1)">', "worse'><script>alert(1)</script>", "<b>better</b>"],
)
def test_a_hostile_cell_is_text_never_markup_nor_an_attribute(cell):
    from sevenstep.tracking.page import Page

    page = Page("t")
    page.table([["method", "vs baseline"], [cell, cell], ["ok", "better (p=0.01)"]])
    html = "".join(page.parts)
    assert "<img" not in html and "<script" not in html and "<b>" not in html
    # the verdict's colour is one of two fixed class names, given to a real verdict only
    assert re.findall(r'class="([^"]*)"', html) == ["wide", "verdict-better"]  # the table's box, one verdict


HOSTILE = 'better"><img src="x" onerror="window.owned=1">'  # the hostile tester's payload, in every field


def _unharmed(browser, page: Path) -> None:
    _open(browser, page)
    assert browser.execute_script("return window.owned") is None  # no script of the payload ran
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    assert HOSTILE in browser.execute_script("return document.body.innerText")  # shown, as text


def test_hostile_strings_in_every_field_stay_text_and_a_received_folder_embeds_nothing_from_elsewhere(
    tmp_path, tiny_folder, browser
):
    """#38 items 1 and 5: a comparison's label, a sweep's space value, a received run's stop_reason and its
    recipe's description ran script in Chromium; a received comparison's run_dir embedded another folder's
    recipe.toml and PNG in the page."""
    cmp_file = tmp_path / "cmp.toml"
    cmp_file.write_text(f'name = "hostile"\nsource = "folder:{tiny_folder}"\n[[runs]]\nrecipe = "{LINEAR}"\n'
                        f"label = '{HOSTILE}'\nset = {QUICK}\n")  # fmt: skip
    _, report = compare.run(compare.load(cmp_file), tmp_path / "runs", log=lambda *a: None)
    (run_dir,) = [p for p in report.iterdir() if (p / "result.json").is_file()]
    received = json.loads((run_dir / "result.json").read_text()) | {"stop_reason": HOSTILE}
    (run_dir / "result.json").write_text(json.dumps(received))
    recipe_toml = run_dir / "recipe.toml"
    recipe_toml.write_text(f"description = '{HOSTILE}'\n" + recipe_toml.read_text())
    elsewhere = tmp_path / "elsewhere"  # another folder of this machine, named by a received results.json
    elsewhere.mkdir()
    (elsewhere / "recipe.toml").write_text('description = "SECRET-4521"\n')
    shutil.copy(report / "seeds.png", elsewhere / "top_losses.png")
    summary = json.loads((report / "results.json").read_text())
    for r in summary["results"]:
        if r.get("run_dir"):
            r["run_dir"] = str(elsewhere)
    (report / "results.json").write_text(json.dumps(summary))
    assert CliRunner().invoke(app, ["report", str(report)]).exit_code == 0
    assert "SECRET-4521" not in (report / "report.html").read_text()
    _unharmed(browser, report / "report.html")
    assert (
        CliRunner().invoke(app, ["report", str(run_dir), "--out", str(tmp_path / "run.html")]).exit_code == 0
    )
    _unharmed(browser, tmp_path / "run.html")

    sweep_file = tmp_path / "sw.toml"
    sweep_file.write_text(f'name = "hostile"\nrecipe = "{LINEAR}"\nsampler = "grid"\n[space]\n'
                          f"description = ['{HOSTILE}', 'plain']\n\"steps.repeat.n\" = [1]\n"
                          f'"data.source" = ["folder:{tiny_folder}"]\n')  # fmt: skip
    result = CliRunner().invoke(app, ["sweep", str(sweep_file), "--runs-dir", str(tmp_path / "runs"), "--wandb",
                                      "disabled"])  # fmt: skip
    assert result.exit_code == 0, result.output
    _unharmed(browser, Path(re.search(r"^page:\s+(\S+)", result.output, re.M).group(1)))
