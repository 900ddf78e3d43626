"""fastai's own inference and interpretation tools keep their meaning on a sevenstep Learner (fast data path):
each is checked against a manual forward pass and against fastai's per-item path (fast=False)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.interpret import ClassificationInterpretation
from fastai.learner import Learner
from PIL import Image

from sevenstep import data, recipe
from sevenstep.data.sources import image_files, resolve
from sevenstep.loop import train
from sevenstep.metrics import predicted_class
from sevenstep.registry import REGISTRY

EXPERIMENTS = "experiments"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A short simple-net run (one output, mnist_loss, normalised pixels), saved and loaded back."""
    r = recipe.load(f"{EXPERIMENTS}/fastbook_simple_net.toml", ["steps.repeat.n=3", "data.normalize=true"])
    run = train.run(r, runs_dir=tmp_path_factory.mktemp("runs"))
    learn = train.load_learner(run.run_dir)
    valid = image_files(resolve("mnist5k-3v7").path / "valid")
    return run, learn, valid[::20]  # 10 files, both classes


def _manual_probs(learn, files):
    """PIL -> [0, 1] -> the run's Normalize -> model -> P(class): nothing of fastai's data path."""
    norm = next(t for t in learn.dls.after_batch.fs if type(t).__name__ == "Normalize")
    x = torch.stack([torch.tensor(np.array(Image.open(f).convert("L")), dtype=torch.float32) for f in files])
    x = (x[:, None] / 255 - norm.mean.cpu()) / norm.std.cpu()
    with torch.no_grad():
        return learn.loss_func.activation(learn.model(x))


def test_predict_and_test_dl_read_new_images_not_the_validation_set(trained):
    _, learn, files = trained
    manual = _manual_probs(learn, files)
    labels = [f.parent.name for f in files]
    assert len(set(labels)) == 2
    preds, _ = learn.get_preds(dl=learn.dls.test_dl(files))
    torch.testing.assert_close(preds, manual, atol=1e-5, rtol=1e-4)
    for f, probs in zip(files, manual):
        label, index, p = learn.predict(f)
        assert label == learn.dls.vocab[probs.argmax()] and index == probs.argmax()
        torch.testing.assert_close(p, probs, atol=1e-5, rtol=1e-4)
    # a folder stands for its images; PIL images and uint8 tensors are items as well
    assert learn.dls.test_dl([files[0].parent]).n == len(image_files(files[0].parent))
    as_pil = [Image.open(f) for f in files[:3]]
    torch.testing.assert_close(
        learn.get_preds(dl=learn.dls.test_dl(as_pil))[0], manual[:3], atol=1e-5, rtol=1e-4
    )
    as_tensor = [torch.tensor(np.array(Image.open(f))) for f in files[:3]]
    torch.testing.assert_close(learn.predict(as_tensor[1])[2], manual[1], atol=1e-5, rtol=1e-4)


def test_fast_path_equals_fastais_per_item_path(trained):
    run, learn, _ = trained
    r = recipe.load(f"{run.run_dir}/recipe.toml")
    slow_dls = data.dataloaders(**r.data, seed=r.seed, fast=False)
    fast_norm = next(t for t in learn.dls.after_batch.fs if type(t).__name__ == "Normalize")
    slow_norm = next(t for t in slow_dls.after_batch.fs if type(t).__name__ == "Normalize")
    slow_norm.mean, slow_norm.std = fast_norm.mean, fast_norm.std  # stats are drawn from one training batch
    slow = Learner(slow_dls, learn.model, loss_func=learn.loss_func)
    x_fast, p_fast, y_fast = learn.get_preds(with_input=True)
    x_slow, p_slow, y_slow = slow.get_preds(with_input=True)
    torch.testing.assert_close(x_fast, x_slow)
    torch.testing.assert_close(p_fast, p_slow)
    assert torch.equal(y_fast, y_slow)
    # and the run's own saved evaluation agrees with the reloaded Learner
    assert (predicted_class(p_fast) == y_fast).float().mean().item() == pytest.approx(run.accuracy)


def test_classification_interpretation(trained):
    import matplotlib.pyplot as plt

    _, learn, _ = trained
    interp = ClassificationInterpretation.from_learner(learn)
    x, probs, targs = learn.get_preds(with_input=True)
    with torch.no_grad():
        losses = learn.loss_func.per_item(learn.model(x), targs)
    torch.testing.assert_close(interp.losses, losses, atol=1e-6, rtol=1e-5)
    top, idx = interp.top_losses(5)
    torch.testing.assert_close(top, losses.topk(5).values, atol=1e-6, rtol=1e-5)
    classes, vocab = probs.argmax(1), learn.dls.vocab
    expected = {
        (vocab[a], vocab[p]): int(((targs == a) & (classes == p)).sum())
        for a in range(2)
        for p in range(2)
        if a != p
    }
    assert {(a, p): int(n) for a, p, n in interp.most_confused()} == {k: n for k, n in expected.items() if n}
    assert interp.confusion_matrix().sum() == len(targs)
    interp.plot_top_losses(4)
    interp.plot_confusion_matrix()
    learn.show_results(max_n=4)
    learn.dls.show_batch(max_n=4)
    assert plt.get_fignums()
    plt.close("all")


def test_sevenstep_callbacks_sit_out_while_fastai_gathers_predictions(trained, tmp_path):
    r = recipe.load(f"{EXPERIMENTS}/fastbook_simple_net.toml", ["steps.repeat.n=2"])
    run = train.run(r, runs_dir=tmp_path)
    learn, log = run.learn, [dict(e) for e in run.learn.run_log.epochs]
    weights = [p.detach().clone() for p in learn.model.parameters()]
    learn.get_preds()
    learn.predict(trained[2][0])
    assert learn.run_log.epochs == log and learn.run_info.stop_reason == "epochs_done"
    assert all(torch.equal(a, b) for a, b in zip(weights, learn.model.parameters()))


@pytest.mark.parametrize("name", sorted(REGISTRY["loss"]))
def test_each_loss_is_a_fastai_loss(name):
    """Mean of per-item losses; reduction='none' (top losses); activation gives probabilities whose argmax is
    the class the metrics count."""
    loss = REGISTRY["loss"][name].build({})
    n_out = loss.n_out(2)
    pred, targ = torch.randn(16, n_out), torch.randint(0, 2, (16,))
    f = loss.func
    per_item = f.per_item(pred, targ)
    assert per_item.shape == (16,)
    torch.testing.assert_close(f(pred, targ), per_item.mean())
    f.reduction = "none"
    torch.testing.assert_close(f(pred, targ), per_item)
    f.reduction = "mean"
    probs = f.activation(pred)
    assert probs.shape == (16, max(n_out, 2))
    torch.testing.assert_close(probs.sum(1), torch.ones(16))
    assert torch.equal(f.decodes(probs), predicted_class(pred))
