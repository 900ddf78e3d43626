"""What a trained run got wrong, as pictures: fastai's ClassificationInterpretation on the validation set.

Every SGD run of `sevenstep run` and `compare` saves `top_losses.png` (the validation images with the highest
loss, titled prediction/actual/loss/probability, as fastai's plot_top_losses draws them) and
`confusion_matrix.png` in its folder (and a linear model's `weights.png`); the W&B logger sends the same.
"""

from __future__ import annotations

from pathlib import Path

from ..callbacks import PICTURES_ORDER, SparseCallback
from ..loop.run_folder import PICTURES, WEIGHTS


class InterpretationPictures(SparseCallback):
    """Writes the pictures once the run is evaluated and saved (not for a diverged run: it has no metrics)."""

    order = PICTURES_ORDER

    def __init__(self, k: int = 9):
        self.k = k

    def after_run(self, run):
        if run.predictions is not None and run.run_dir and run.learn.run_info.pictures:
            write(run.learn, Path(run.run_dir), self.k)


def write(learn, folder: Path, k: int = 9) -> list[Path]:
    """The two interpretation pictures, and for a linear model `weights.png`: its weights drawn as images."""
    from fastai.interpret import ClassificationInterpretation

    from . import plots

    with learn.no_bar():
        interp = ClassificationInterpretation.from_learner(learn)
        written = [
            plots.save(plots.top_losses(interp, k), folder / PICTURES[0]),
            plots.save(plots.confusion_matrix(interp), folder / PICTURES[1]),
        ]
    if learn.step2_predict.pixels_to_weights:
        shape = tuple(learn.dls.valid.images.shape[1:])
        written.append(
            plots.save(plots.linear_weights(learn.model, learn.dls.vocab, shape), folder / WEIGHTS)
        )
    return written
