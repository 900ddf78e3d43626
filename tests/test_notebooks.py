"""Every notebook in nbs/ runs top to bottom, offline, and shows its plots; a cell that raises fails the test.
The notebooks are committed with their outputs (`make notebooks`), so a reader on a code host sees the lesson
with its pictures."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted(Path("nbs").glob("*.ipynb"))


def plot_cells(nb) -> list:
    """The cells that draw: matplotlib, sevenstep's plots, or an image displayed."""
    marks = ("plt.", "plots.", "display(Image")
    return [c for c in nb.cells if c.cell_type == "code" and any(m in c.source for m in marks)]


def has_png(cell) -> bool:
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_and_shows_its_plots(path, tmp_path, monkeypatch):
    # the CLI, invoked in this test process by other tests, sets MPLBACKEND=Agg for its own files; a kernel
    # started from a fresh shell has no such variable
    monkeypatch.delenv("MPLBACKEND", raising=False)
    # a scratch copy of the repository's shape: the notebook's runs/ and wandb/ land in tmp_path
    (tmp_path / "experiments").symlink_to(Path("experiments").resolve())
    (tmp_path / "nbs").mkdir()
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "elsewhere"))  # the kernel inherits it, as from a shell
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path / "nbs")}}
    ).execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert not errors
    drawing = plot_cells(nb)
    assert drawing, f"{path} has no plot"
    assert [c.source.splitlines()[0] for c in drawing if not has_png(c)] == []
    for c in drawing:  # a figure drawn, then shown again as the cell's value, is one picture twice
        pngs = [o["data"]["image/png"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
        assert len(pngs) == len(set(pngs)), f"a picture shown twice by: {c.source.splitlines()[0]}"
    # W&B runs go where WANDB_DIR says, never into the repository's wandb/
    assert not (tmp_path / "wandb").exists()
    if "WandbSession" in "".join(c.source for c in nb.cells):
        assert list((tmp_path / "elsewhere" / "wandb").glob("offline-run-*"))


def test_notebooks_are_committed_with_their_pictures():
    assert len(NOTEBOOKS) == 4
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        assert all(has_png(c) for c in plot_cells(nb)), f"{path}: run `make notebooks` to store its outputs"
        assert path.stat().st_size < 1_500_000, f"{path} is {path.stat().st_size:,} bytes; keep outputs small"
