"""What a trained run got wrong, as pictures: fastai's ClassificationInterpretation on the validation set.

Every SGD run of `sevenstep run` and `compare` saves `top_losses.png` (the validation images with the highest
loss, titled prediction/actual/loss/probability, as fastai's plot_top_losses draws them) and
`confusion_matrix.png` in its folder; the W&B logger sends the same two files.
"""

from __future__ import annotations

from pathlib import Path

from ..loop.callbacks import PICTURES_ORDER, SparseCallback

PICTURES = ("top_losses.png", "confusion_matrix.png")


class InterpretationPictures(SparseCallback):
    """Writes the pictures once the run is evaluated and saved (not for a diverged run: it has no metrics)."""

    order = PICTURES_ORDER

    def __init__(self, k: int = 9):
        self.k = k

    def after_run(self, run):
        if run.predictions is not None and run.run_dir and run.learn.run_info.pictures:
            write(run.learn, Path(run.run_dir), self.k)


def write(learn, folder: Path, k: int = 9) -> list[Path]:
    from fastai.interpret import ClassificationInterpretation

    from . import plots

    with learn.no_bar():
        interp = ClassificationInterpretation.from_learner(learn)
        return [
            plots.save(plots.top_losses(interp, k), folder / PICTURES[0]),
            plots.save(plots.confusion_matrix(interp), folder / PICTURES[1]),
        ]
