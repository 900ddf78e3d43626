"""`epochs.csv` in a run's folder: its per-epoch metrics, for a spreadsheet or pandas; written again as epochs
end (at most once a second: a run of 3 ms epochs would spend more on the file than on training), so a long run
can be watched (`tail -f`, a spreadsheet that reloads), and whole when the run ends."""

from __future__ import annotations

import time
from pathlib import Path

from ..callbacks import LOGGER_ORDER, SparseCallback
from ..loop.run_folder import EPOCHS


class CsvLogger(SparseCallback):
    """The run's per-epoch metrics as `epochs.csv` in its run folder, for a spreadsheet or pandas."""

    order = LOGGER_ORDER
    every = 1.0  # seconds between writes while the run trains

    def before_fit(self):
        self.written_at = -self.every

    def after_epoch(self):
        run_dir, epochs = self.learn.run_info.run_dir, self.learn.run_log.epochs
        if run_dir is not None and epochs and time.monotonic() - self.written_at >= self.every:
            _write(Path(run_dir), epochs)
            self.written_at = time.monotonic()

    def after_run(self, run):
        if run.run_dir and run.epochs:
            _write(Path(run.run_dir), run.epochs)


def _write(run_dir: Path, epochs: list[dict]) -> None:
    """The whole file each time, renamed into place: a reader sees every epoch so far, never half a row."""
    from ..utils import atomic, tables

    atomic.write_bytes(run_dir / EPOCHS, tables.csv_text(epochs).encode())
