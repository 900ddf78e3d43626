"""The pages of `make run`'s comparison (5 seeds, four methods) and of a small sweep, opened in Debian's headless
Chromium: their size, and how long they take to open with every chart drawn (median of several opens).

    python -m benchmarks.pages                 # the figures (also part of `make bench`)
    python -m benchmarks.pages --screenshots   # and the screenshots under docs/ that the docs show
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENTS = Path("experiments").resolve()
DOCS = Path("docs").resolve()


def browser(width: int = 1300, height: int = 900):
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(arg)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(shutil.which("chromedriver")))


def open_seconds(b, page: Path) -> float:
    """From navigation until every chart is drawn."""
    start = time.perf_counter()
    b.get(page.resolve().as_uri())
    n = str(len(b.find_elements("css selector", "[data-figure]")))
    while b.execute_script("return document.body.dataset.charts") != n:
        time.sleep(0.01)
    return time.perf_counter() - start


def screenshot(b, page: Path, out: Path) -> None:
    open_seconds(b, page)
    height = b.execute_script("return document.body.scrollHeight")
    b.set_window_size(1300, min(height + 100, 6000))
    open_seconds(b, page)  # drawn again at the new width
    b.save_screenshot(str(out))
    b.set_window_size(1300, 900)


def _pages(tmp: Path) -> dict[str, Path]:
    exe = str(Path(sys.executable).parent / "sevenstep")
    runs = tmp / "runs"
    subprocess.run([exe, "compare", str(EXPERIMENTS / "baseline_vs_sgd.toml"), "--workers", "2", "--runs-dir",
                    str(runs), "--wandb", "disabled"], check=True, capture_output=True)  # fmt: skip
    subprocess.run([exe, "sweep", str(EXPERIMENTS / "sweep_init_x_loss_3v7.toml"), "--workers", "2", "--runs-dir",
                    str(runs), "--wandb", "disabled"], check=True, capture_output=True)  # fmt: skip
    return {
        "comparison (make run: 5 seeds, 4 methods)": next(runs.glob("compare-*/report.html")),
        "sweep (init x loss, 6 points, 3 repeats)": next(runs.glob("sweep-*/report.html")),
    }


def bench_pages(repeats: int = 5, screenshots: bool = False) -> dict[str, tuple[float, float]]:
    """{page: (MB, median seconds to open)}."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        pages = _pages(Path(tmp))
        b = browser()
        try:
            out = {}
            for name, page in pages.items():
                times = [open_seconds(b, page) for _ in range(repeats)]
                out[name] = (page.stat().st_size / 1e6, statistics.median(times))
            if screenshots:
                for name, page in pages.items():
                    screenshot(b, page, DOCS / f"report-{name.split()[0]}.png")
        finally:
            b.quit()
    return out


if __name__ == "__main__":
    found = bench_pages(screenshots="--screenshots" in sys.argv)
    if not found:
        print("no headless chromium here (Debian's chromium and chromium-driver): nothing measured")
    for name, (mb, seconds) in found.items():
        print(
            f"   {name:<45} {mb:.1f} MB, opens with every chart drawn in {seconds:.2f} s (target: < 5 MB, < 2 s)"
        )
