"""Figures people would rather look at than read. matplotlib's Agg backend: files, never windows."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def sample_grid(dls, out: Path, n: int = 24) -> Path:
    """Validation digits (never augmented) with their labels, drawn by fastai's own show_batch."""
    dls.valid.new(shuffle=True).show_batch(max_n=n, nrows=3, ncols=n // 3, figsize=(n // 3, 3.6), show=True)
    return _save(plt.gcf(), out)


def _save(fig, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
