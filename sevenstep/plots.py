"""Figures people would rather look at than read. Each function returns a matplotlib figure; `save` writes
it as a PNG and `to_image` hands it to W&B. matplotlib's Agg backend: files, never windows."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def save(fig, out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


def to_image(fig):
    """A PIL image of the figure (and the figure closed), for wandb.Image."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    return Image.open(buf)


def sample_grid(dls, n: int = 24):
    """Validation digits (never augmented) with their labels, drawn by fastai's own show_batch."""
    dls.valid.new(shuffle=True).show_batch(max_n=n, nrows=3, ncols=n // 3, figsize=(n // 3, 3.6), show=True)
    return plt.gcf()


def predictions_grid(images, classes, targets, vocab, n: int = 32):
    """Validation digits titled predicted/true; mistakes in red, and shown first."""
    order = sorted(range(len(targets)), key=lambda i: bool(classes[i] == targets[i]))[:n]
    cols = 8
    fig, axes = plt.subplots(
        (len(order) + cols - 1) // cols, cols, figsize=(cols * 1.1, 1.3 * ((len(order) + cols - 1) // cols))
    )
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order):
        ax.imshow(images[i][0].cpu().numpy(), cmap="Greys")
        right = classes[i] == targets[i]
        ax.set_title(
            f"{vocab[classes[i]]}/{vocab[targets[i]]}", color="black" if right else "red", fontsize=9
        )
    fig.suptitle("predicted/true (mistakes in red)", fontsize=10)
    return fig


def ideal_digits(ideals, vocab):
    """The baseline's whole model: one mean image per class."""
    n = len(vocab)
    fig, axes = plt.subplots(1, n, figsize=(1.4 * n, 1.8), squeeze=False)
    for ax, img, label in zip(axes[0], ideals, vocab):
        ax.imshow(img[0].numpy(), cmap="Greys")
        ax.set_title(f"ideal {label}")
        ax.axis("off")
    return fig


def linear_weights(model, vocab):
    """A linear model's weights drawn as images: red pixels push towards the class, blue away from it."""
    layer = next(m for m in model.modules() if hasattr(m, "weight") and m.weight.dim() == 2)
    w = layer.weight.detach().cpu()
    side = int(w.shape[1] ** 0.5)
    titles = [f"weights -> {vocab[-1]}"] if w.shape[0] == 1 else [f"weights -> {v}" for v in vocab]
    fig, axes = plt.subplots(1, w.shape[0], figsize=(1.8 * w.shape[0] + 0.6, 2.0), squeeze=False)
    for ax, row, title in zip(axes[0], w, titles):
        lim = row.abs().max().item() or 1.0
        im = ax.imshow(row.view(side, side).numpy(), cmap="seismic", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    return fig


def learning_curves(results, baseline_accuracy: float | None):
    """Validation accuracy and loss per epoch for every SGD run, the baseline's accuracy as a dotted line."""
    fig, (acc_ax, loss_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for r in results:
        if r.kind != "sgd" or not r.epochs:
            continue
        epochs = [e["epoch"] for e in r.epochs]
        style = "--" if r.status != "ok" else "-"
        acc_ax.plot(epochs, [e["accuracy"] for e in r.epochs], style, marker=".", label=r.method)
        loss_ax.plot(epochs, [e["valid_loss"] for e in r.epochs], style, marker=".", label=r.method)
    if baseline_accuracy is not None:  # None: interrupted before the baseline was done
        acc_ax.axhline(
            baseline_accuracy, color="black", linestyle=":", label=f"baseline {baseline_accuracy:.3f}"
        )
    acc_ax.set(xlabel="epoch", ylabel="validation accuracy", title="accuracy")
    loss_ax.set(xlabel="epoch", ylabel="validation loss (each run's own loss)", title="loss", yscale="log")
    if acc_ax.get_legend_handles_labels()[0]:
        acc_ax.legend(fontsize=8)
    acc_ax.grid(alpha=0.3)
    loss_ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
