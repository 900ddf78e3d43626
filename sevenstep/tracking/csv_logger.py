"""`epochs.csv` in a run's folder: its per-epoch metrics, for a spreadsheet or pandas."""

from __future__ import annotations

from pathlib import Path

from ..loop.callbacks import LOGGER_ORDER, SparseCallback
from ..loop.run_folder import EPOCHS
from ..utils import tables


class CsvLogger(SparseCallback):
    """The run's per-epoch metrics as `epochs.csv` in its run folder, for a spreadsheet or pandas."""

    order = LOGGER_ORDER

    def after_run(self, run):
        if run.run_dir and run.epochs:
            tables.write_csv(Path(run.run_dir) / EPOCHS, run.epochs)
