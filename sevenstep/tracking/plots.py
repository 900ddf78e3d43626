"""Figures people would rather look at than read. Each function returns a matplotlib figure; `save` writes
it as a PNG and `to_image` hands it to W&B. In a notebook the figures show inline; the backend is never
chosen here (the CLI picks Agg, for files only, in sevenstep/cli/__init__.py)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.ticker import LogFormatter


def save(fig, out: Path) -> Path:
    """The figure as a PNG, written whole or not at all (a full disk leaves no half picture)."""
    from ..utils import atomic

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic.write_bytes(out, buf.getvalue())
    return out


def to_image(fig):
    """A PIL image of the figure (and the figure closed), for wandb.Image."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf)


def _imshow(ax, img) -> None:
    """A (C, H, W) image, uint8 or in [0, 1], as its pixels are: greyscale 0 black, the brightest white."""
    img = img.detach().cpu()
    if img.shape[0] == 1:
        ax.imshow(img[0].numpy(), cmap=GREY)
    else:
        ax.imshow(
            (img.float() / (255 if img.dtype == torch.uint8 else 1)).clamp(0, 1).permute(1, 2, 0).numpy()
        )


# fastai draws greyscale with matplotlib's "Greys", which inverts it (255 black): white shapes on black would
# look black on white, unlike the same images in colour. Every picture here draws pixels as they are.
GREY = "gray"


def sample_grid(dl, n: int = 24):
    """Images of one split (validation: never augmented) with their labels, drawn by fastai's own show_batch."""
    n = max(1, min(n, len(dl.dataset)))
    cols = min(n, 12)
    rows = -(-n // cols)
    dl.new(shuffle=True, bs=min(n, len(dl.dataset))).show_batch(
        max_n=n, nrows=rows, ncols=cols, figsize=(max(cols, 2), 1.2 * rows), show=True, cmap=GREY
    )
    return plt.gcf()


def predictions_grid(images, classes, targets, vocab, n: int = 32):
    """Validation digits titled predicted/true; mistakes in red, and shown first. One image of tiles with a
    label above each, not a subplot per digit: 32 subplots took about a second to draw."""
    order = sorted(range(len(targets)), key=lambda i: bool(classes[i] == targets[i]))[:n]
    cols = min(8, len(order))
    rows = -(-len(order) // cols)
    c, h, w = images.shape[1:]
    top, gap = h // 2, 2  # room for each tile's label above it, and between tiles
    canvas = torch.ones(c, rows * (h + top + gap), cols * (w + gap))  # white between the tiles
    fig, ax = plt.subplots(figsize=(cols * 1.1, 1.3 * rows))
    for k, i in enumerate(order):
        y, x = (k // cols) * (h + top + gap) + top, (k % cols) * (w + gap)
        img = images[i].detach().cpu().float()
        canvas[:, y : y + h, x : x + w] = img / 255 if images.dtype == torch.uint8 else img.clamp(0, 1)
        right = classes[i] == targets[i]
        ax.text(x + w / 2, y - 1, f"{vocab[classes[i]]}/{vocab[targets[i]]}", ha="center", va="bottom",
                color="black" if right else "red", fontsize=9)  # fmt: skip
    if c == 1:
        ax.imshow(canvas[0].numpy(), cmap=GREY, vmin=0, vmax=1)
    else:
        ax.imshow(canvas.permute(1, 2, 0).numpy())
    ax.axis("off")
    fig.suptitle("predicted/true (mistakes in red)", fontsize=10)
    return fig


def top_losses(interp, k: int = 9):
    """The validation images the model got most wrong, drawn by fastai's plot_top_losses, titled in words:
    what it predicted, what the image is, its loss and the probability it gave the true class. fastai's
    titles give the predicted class's probability, which a two-class loss such as mnist_loss makes equal
    to the loss on every mistake: two numbers that read as one."""
    k = min(k, len(interp.losses))
    losses, idx = interp.top_losses(k)
    _, probs, targs, decoded, _ = interp[idx]
    rows = (k + 2) // 3
    interp.plot_top_losses(k, nrows=rows, figsize=(7.5, 2.9 * rows), cmap=GREY)
    fig = plt.gcf()
    vocab = interp.vocab
    for ax, loss, p, t, d in zip(fig.axes, losses.tolist(), probs, targs.tolist(), decoded.tolist()):
        # fastai turns the axes off, but a tight bounding box still measured their ticks: hidden, the same
        # pixels are drawn in two thirds of the time
        ax.xaxis.set_visible(False)
        ax.yaxis.set_visible(False)
        wrong = t != d
        ax.set_title(f"predicted {vocab[d]}, is {vocab[t]}\nloss {loss:.2f}, p({vocab[t]}) = {float(p[t]):.2f}",
                     fontsize=10, color="#b3261e" if wrong else "black")  # fmt: skip
    fig.suptitle("The highest losses, mistakes in red; p(c): the probability the model gave c, the true class",
                 fontsize=10)  # fmt: skip
    return fig


def confusion_matrix(interp):
    """Counts of actual (rows) against predicted (columns) classes, drawn by fastai."""
    n = len(interp.vocab)
    interp.plot_confusion_matrix(figsize=(2 + 0.5 * n, 2 + 0.5 * n))
    return plt.gcf()


def ideal_digits(ideals, vocab):
    """The baseline's whole model: one mean image per class."""
    n = len(vocab)
    fig, axes = plt.subplots(1, n, figsize=(1.4 * n, 1.8), squeeze=False)
    for ax, img, label in zip(axes[0], ideals, vocab):
        _imshow(ax, img)
        ax.set_title(f"ideal {label}")
        ax.axis("off")
    return fig


def linear_weights(model, vocab, shape=None):
    """A linear model's weights drawn as images: red pixels push towards the class, blue away from it.
    One colour scale for all classes (symmetric around zero, so white is a weight of 0). `shape` is the
    images' (C, H, W); a colour model's weights are summed over the channels."""
    layer = next(m for m in model.modules() if hasattr(m, "weight") and m.weight.dim() == 2)
    w = layer.weight.detach().cpu()
    if shape is None:
        side = int(w.shape[1] ** 0.5)
        shape = (1, side, side)
    w = w.view(-1, *shape).sum(1)
    titles = [f"weights -> {vocab[-1]}"] if w.shape[0] == 1 else [f"weights -> {v}" for v in vocab]
    cols = min(len(titles), 5)
    rows = (len(titles) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 1.4, 2.7 * rows), squeeze=False)
    lim = w.abs().max().item() or 1.0
    for ax in axes.flat:
        ax.axis("off")
    for ax, row, title in zip(axes.flat, w, titles):
        im = ax.imshow(row.numpy(), cmap="seismic", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=11)
    bar = fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.9)
    bar.set_label("weight: red pushes towards the class,\nblue away from it, white does nothing", fontsize=9)
    return fig


def learning_curves(results, baseline_accuracy: float | None):
    """Validation accuracy and loss per epoch: for each method the mean over its seeds as a line, the band
    from the lowest to the highest seed around it (one seed: just its line); the baseline as a dotted line."""
    import numpy as np

    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    methods = list(dict.fromkeys(r.method for r in results if r.kind == "sgd" and r.epochs))
    for i, method in enumerate(methods):
        runs = [r for r in results if r.method == method and r.epochs]
        color = f"C{i % 10}"
        style = "-" if all(r.status == "ok" for r in runs) else "--"
        n = len(runs)
        for ax, key in ((acc_ax, "accuracy"), (loss_ax, "valid_loss")):
            longest = max(len(r.epochs) for r in runs)
            values = np.full((n, longest), np.nan)
            for j, r in enumerate(runs):
                values[j, : len(r.epochs)] = [e[key] for e in r.epochs]
            epochs = np.arange(1, longest + 1)
            with np.errstate(all="ignore"):
                mean = np.nanmean(values, 0)
            label = f"{method} ({n} seed{'s' if n > 1 else ''})" if ax is acc_ax else None
            ax.plot(epochs, mean, style, color=color, marker="." if longest < 30 else None, label=label)
            if n > 1:
                ax.fill_between(epochs, np.nanmin(values, 0), np.nanmax(values, 0), color=color, alpha=0.2)
    if baseline_accuracy is not None:  # None: interrupted before the baseline was done
        acc_ax.axhline(
            baseline_accuracy, color="black", linestyle=":", label=f"baseline {baseline_accuracy:.3f}"
        )
    band = (
        " (line: mean over seeds; band: lowest to highest seed)"
        if any(sum(r.method == m and bool(r.epochs) for r in results) > 1 for m in methods)
        else ""
    )
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy", title="accuracy" + band)
    loss_ax.set(xlabel="epoch", ylabel="validation loss (each run's own loss)", title="loss")
    losses = [e["valid_loss"] for r in results if r.kind == "sgd" for e in r.epochs]
    if losses and min(losses) > 0:  # a hinge loss can reach 0, which a log scale cannot show
        loss_ax.set_yscale("log")
    if acc_ax.get_legend_handles_labels()[0]:
        acc_ax.legend(fontsize=8)
    for ax in (acc_ax, loss_ax):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    fig.tight_layout()
    return fig


def seed_dots(methods, baseline=None):
    """Every seed's accuracy as a dot, each method's 95% interval as a bar around its mean, the baseline's mean
    as a dotted line: where the methods overlap, their difference is within the noise."""
    fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(methods) + 2), 4))
    for i, m in enumerate(methods):
        if m.mean is None:
            continue
        chance = set(m.at_chance)
        xs = [i + 0.08 * (j - (len(m.accuracies) - 1) / 2) for j in range(len(m.accuracies))]
        for x, s, a in zip(xs, m.seeds, m.accuracies):
            marker, color = ("X", "black") if s in chance else ("o", f"C{i % 10}")
            ax.scatter([x], [100 * a], c=color, marker=marker, s=30 if s in chance else 22, zorder=3)
        low, high = m.interval
        ax.errorbar(i + 0.3, 100 * m.mean, yerr=[[100 * (m.mean - low)], [100 * (high - m.mean)]], fmt="D",
                    color="black", capsize=4, markersize=4)  # fmt: skip
    if baseline is not None and baseline.mean is not None:
        ax.axhline(
            100 * baseline.mean, color="grey", linestyle=":", label=f"baseline {100 * baseline.mean:.1f}%"
        )
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xticks(range(len(methods)), [m.method for m in methods], rotation=20, ha="right", fontsize=9)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("each seed (dots; X: at chance level), mean and 95% interval (black)", fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


def layer_curves(rows):
    """What steps 4 and 5 did to each layer over training: its gradient's norm and the step's size relative to
    its weights (log scales: a vanishing gradient falls by orders of magnitude from the last layer to the first),
    and the share of dead units of each ReLU-like layer."""
    layers = [r["layer"] for r in rows if r.get("grad_norm") is not None]
    layers = list(dict.fromkeys(layers))
    acts = list(dict.fromkeys(r["layer"] for r in rows if r.get("dead_share") is not None))
    panels = [("grad_norm", "gradient norm", True), ("update_ratio", "update / weight (step 5)", True)]
    panels += [("dead_share", "dead units (share)", False)] if acts else []
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    colours = plt.get_cmap("viridis")
    for ax, (key, title, log) in zip(axes[0], panels):
        names = acts if key == "dead_share" else layers
        for i, name in enumerate(names):
            mine = [r for r in rows if r["layer"] == name and r.get(key) is not None]
            ax.plot([r["epoch"] for r in mine], [r[key] for r in mine], marker=".", label=name,
                    color=colours(i / max(1, len(names) - 1)))  # fmt: skip
        if log and any(r.get(key, 0) > 0 for r in rows):
            ax.set_yscale("log")
            # plain "0.001" labels (minor ones too, where the range spans less than a decade): matplotlib's
            # default 10^-3 is mathtext, whose parsing was most of this figure's time
            ax.yaxis.set_major_formatter(LogFormatter())
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
    fig.tight_layout()
    handles, labels = axes[0][0].get_legend_handles_labels()  # beside the panels, where it covers no line
    fig.legend(handles, labels, title="layer (first\nto last)", fontsize=7, title_fontsize=7, loc="center left",
               bbox_to_anchor=(1.0, 0.5))  # fmt: skip
    return fig
