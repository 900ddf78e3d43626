"""A run's own page while it trains: report.html in its folder, drawn again as epochs end (a few seconds
apart at most) and reloading itself, as a comparison's page does; the whole page once the run is saved.
A run over in less than `after` seconds gets none (a page costs about as much as fastbook's linear model's
whole fit): `sevenstep report RUN_FOLDER` draws one."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..callbacks import LOGGER_ORDER, SparseCallback


class LivePage(SparseCallback):
    """report.html in the run's folder: `sevenstep run` says where, to open in a browser while it trains."""

    order = LOGGER_ORDER  # after InterpretationPictures: the final page shows the pictures of the run's end
    after = 3.0  # seconds of training before the first page

    def before_fit(self):
        self.started, self.shown = time.monotonic(), False

    def after_epoch(self):
        from . import page

        info, learn = self.learn.run_info, self.learn
        if info.run_dir is None or not learn.run_log.epochs or time.monotonic() - self.started < self.after:
            return
        folder = Path(info.run_dir)
        if not self.shown:
            print(f"live page: {folder / page.PAGE} (reloads itself while the run trains)", file=sys.stderr)
            self.shown = True
        live = (f"Training: epoch {learn.epoch + 1} of at most {learn.n_epoch} ended. This page reloads itself "
                f"every {page.REFRESH} s.")  # fmt: skip
        epochs = list(learn.run_log.epochs)
        partial = {"accuracy": epochs[-1].get("accuracy"), "epochs": epochs, "stop_reason": "training"}
        page.refresh(folder, lambda: page.runs([folder], folder / page.PAGE, live, [partial]))

    def after_run(self, run):
        from . import page

        folder = Path(run.run_dir) if run.run_dir else None
        if folder is not None and (folder / page.PAGE).is_file() and (folder / "result.json").is_file():
            page.runs([folder], folder / page.PAGE)

    def after_error(self, error: BaseException):
        """A page that would reload for ever, saying it trains: now says how it ended."""
        from . import page

        folder = self.learn.run_info.run_dir
        if folder is None or not (Path(folder) / page.PAGE).is_file():
            return
        epochs = list(self.learn.run_log.epochs)
        ended = {"accuracy": epochs[-1].get("accuracy") if epochs else None, "epochs": epochs,
                 "stop_reason": f"error: {type(error).__name__}"}  # fmt: skip
        try:
            page.runs([Path(folder)], Path(folder) / page.PAGE, None, [ended])
        except Exception:  # noqa: BLE001 (the error itself is what the user must see)
            pass
