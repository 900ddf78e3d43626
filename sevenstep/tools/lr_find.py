"""`sevenstep lr-find`: fastai's learning-rate finder on a recipe's Learner, as fastbook's chapter 5 uses it.

The learning rate grows exponentially batch by batch from 1e-7 while the loss is recorded, until the loss
explodes; the weights are then put back. fastai's suggestions (valley, the default; minimum/10; steepest
slope; slide) are marked on the plot.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..recipe import Recipe

SUGGESTIONS = ("valley", "minimum", "steep", "slide")


def run(recipe: Recipe, out: Path) -> dict[str, float]:
    """Writes the plot to `out`; returns each suggestion's learning rate."""
    import matplotlib.pyplot as plt
    from fastai.callback.schedule import minimum, slide, steep, valley

    from ..loop import train
    from ..tracking import plots

    learn = train.build_learner(recipe)
    # the finder's own fit is not a run: no run log, no stop rule cutting it short
    learn.remove_cbs([learn.run_log, learn.step7_stop])
    with tempfile.TemporaryDirectory() as tmp, learn.no_bar():
        learn.path, learn.model_dir = Path(tmp), "."  # the finder saves and restores the weights here
        found = learn.lr_find(suggest_funcs=(valley, minimum, steep, slide), show_plot=True)
    fig = plt.gcf()
    legend = fig.axes[0].get_legend()
    for text in legend.get_texts() if legend else []:  # fastai labels minimum/10 by its function's name
        if text.get_text() == "minimum":
            text.set_text("minimum/10")
    fig.axes[0].set_title(f"{recipe.name}: loss against learning rate (fastai's lr_find)")
    plots.save(fig, out)
    return {name: float(getattr(found, name)) for name in SUGGESTIONS}
