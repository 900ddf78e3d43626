"""Tracking: what a run leaves behind to look at, beside its folder.

wandb_logger.py  WandbLogger (a callback): every run in W&B, offline by default
wandb_session.py WandbSession: the mode and folder the runs of one command share (no torch: checked first)
csv_logger.py    CsvLogger: epochs.csv in the run folder
pictures.py      InterpretationPictures: top_losses.png and confusion_matrix.png, from fastai's interpretation
plots.py         the figures (learning curves, ideal digits, a linear model's weights, ...)
local_runs.py    `sevenstep runs`: the W&B runs logged on this machine, read with wandb's own reader
page.py          report.html: one self-contained page per comparison, sweep or selection of runs (plotly)
live_page.py     LivePage: a run's own report.html while it trains, reloading itself
layer_stats.py   LayerStats: inside steps 4 and 5 per layer (gradient, weights, update, activations)
"""

from ..utils.lazy import exports

__all__ = ["WandbLogger", "WandbSession", "CsvLogger", "InterpretationPictures", "LivePage", "LayerStats"]
__getattr__ = exports(
    __name__,
    {
        "WandbLogger": ".wandb_logger",
        "WandbSession": ".wandb_session",
        "CsvLogger": ".csv_logger",
        "InterpretationPictures": ".pictures",
        "LivePage": ".live_page",
        "LayerStats": ".layer_stats",
    },
)
