"""The data sources, their split and layout on disk, the pipeline's batches, and bad folders."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import make_folder
from sevenstep import data
from sevenstep.cli import app
from sevenstep.data import sources
from sevenstep.errors import UsageError


def _digest(folder):
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*.png")):
        h.update(str(f.relative_to(folder)).encode() + f.read_bytes())
    return h.hexdigest()


def test_mnist5k_counts_and_layout():
    src = sources.resolve("mnist5k")
    assert (src.train, src.valid) == ("train", "valid")
    assert src.classes == [str(i) for i in range(10)]
    counts = sources.counts(src)
    assert counts["train"] == {str(i): 400 for i in range(10)}  # stratified: 20% of 500 per class to valid
    assert counts["valid"] == {str(i): 100 for i in range(10)}
    png = next((src.path / "valid" / "7").glob("*.png"))
    with Image.open(png) as im:
        assert (im.size, im.mode) == ((28, 28), "L")


def test_3v7_is_exactly_the_3s_and_7s_of_mnist5k():
    full, sub = sources.resolve("mnist5k"), sources.resolve("mnist5k-3v7")
    assert sub.classes == ["3", "7"]
    assert sources.counts(sub) == {"train": {"3": 400, "7": 400}, "valid": {"3": 100, "7": 100}}
    for split in ("train", "valid"):
        for c in ("3", "7"):
            assert _digest(sub.path / split / c) == _digest(full.path / split / c)


def test_split_is_deterministic_across_caches(tmp_path, monkeypatch):
    first = _digest(sources.resolve("mnist5k-3v7").path)
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path / "other-cache"))
    second_src = sources.resolve("mnist5k-3v7")
    assert second_src.path.parent == tmp_path / "other-cache"
    assert _digest(second_src.path) == first


def test_interrupted_prepare_leaves_nothing_trusted(tmp_path, monkeypatch):
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path))

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        sources.resolve("mnist5k-3v7")
    left = [p for p in tmp_path.iterdir() if p.suffix != ".lock"]  # the lock file that serialises prepares
    assert left == []  # no half-written folder, no temporary left behind


def test_batch_shape_dtype_and_normalisation():
    dls = data.dataloaders("mnist5k-3v7", bs=128, seed=0)
    xb, yb = dls.one_batch()
    assert xb.shape == (128, 1, 28, 28) and xb.dtype == torch.float32
    assert yb.dtype == torch.int64 and set(yb.tolist()) <= {0, 1}
    assert dls.vocab == ["3", "7"]
    assert abs(xb.mean().item()) < 0.1 and abs(xb.std().item() - 1) < 0.1
    raw = data.dataloaders("mnist5k-3v7", bs=128, seed=0, normalize=False).one_batch()[0]
    assert raw.min() >= 0 and raw.max() <= 1 and raw.max() > 0.9


def test_augmentation_touches_training_batches_only():
    plain = data.dataloaders("mnist5k-3v7", bs=200, seed=0, normalize=False)
    aug = data.dataloaders("mnist5k-3v7", bs=200, seed=0, normalize=False, augment=True)
    assert torch.equal(plain.valid.one_batch()[0], aug.valid.one_batch()[0])
    xp, yp = plain.train.new(shuffle=False).one_batch()
    xa, ya = aug.train.new(shuffle=False).one_batch()
    assert torch.equal(yp, ya)
    moved = (xp != xa).flatten(1).any(1).float().mean().item()
    assert moved > 0.5  # most images shifted by the random crop
    # a shift moves ink, it does not change much of it: the crop keeps nearly all of a centred digit
    assert torch.allclose(xa.sum((1, 2, 3)), xp.sum((1, 2, 3)), rtol=0.25)


def test_folder_source_in_both_layouts(tmp_path):
    a = sources.resolve(f"folder:{make_folder(tmp_path / 'a')}")
    b = sources.resolve(f"folder:{make_folder(tmp_path / 'b', splits=('training', 'testing'))}")
    assert (a.train, a.valid, b.train, b.valid) == ("train", "valid", "training", "testing")
    dls = data.dataloaders(b, bs=8)
    assert dls.vocab == ["a", "b"] and len(dls.train_ds) == 24 and len(dls.valid_ds) == 8


def test_untar_data_path_uses_fastai_on_a_local_mnist_sample(monkeypatch, tmp_path):
    # untar_data returns an already-extracted dataset without touching the network
    monkeypatch.setenv("FASTAI_HOME", str(tmp_path / "fastai"))
    make_folder(tmp_path / "fastai" / "data" / "mnist_sample", classes=("3", "7"))
    src = sources.resolve("mnist-sample")
    assert src.path == tmp_path / "fastai" / "data" / "mnist_sample"
    assert data.dataloaders(src, bs=4).vocab == ["3", "7"]


def _bad_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    one = make_folder(tmp_path / "one", classes=("a",))
    novalid = make_folder(tmp_path / "novalid")
    for f in (novalid / "valid").rglob("*"):
        if f.is_file():
            f.unlink()
    for d in sorted((novalid / "valid").rglob("*"), reverse=True):
        d.rmdir()
    (novalid / "valid").rmdir()
    corrupt = make_folder(tmp_path / "corrupt")
    (corrupt / "train" / "a" / "3.png").write_bytes(b"not a png at all")
    (corrupt / "valid" / "b" / "notes.jpg").write_text("hello")
    return {
        "missing": (tmp_path / "nope", "does not exist"),
        "empty": (empty, "no train/ or training/"),
        "one class": (one, "at least 2 class folders"),
        "no valid": (novalid, "no valid/"),
        "corrupt": (corrupt, "2 file(s)"),
    }


def test_bad_folders_give_clear_errors(tmp_path):
    for case, (path, expected) in _bad_folders(tmp_path).items():
        with pytest.raises(UsageError, match=expected.replace("(", r"\(").replace(")", r"\)")) as e:
            sources.resolve(f"folder:{path}")
        assert str(path) in str(e.value), case
    with pytest.raises(UsageError, match="3.png"):
        sources.resolve(f"folder:{tmp_path / 'corrupt'}")


def test_bad_input_through_the_cli(tmp_path):
    runner = CliRunner()
    cases = {f"folder:{p}": msg for p, msg in _bad_folders(tmp_path).values()} | {
        "mnist6k": "unknown data source"
    }
    for source, expected in cases.items():
        result = runner.invoke(app, ["data", "show", source, "--out", str(tmp_path / "x.png")])
        assert result.exit_code == 2, (source, result.output)
        assert expected in result.output and "Traceback" not in result.output
        assert not (tmp_path / "x.png").exists()


def test_download_failure_points_to_embedded_sources(monkeypatch, tmp_path):
    import fastai.data.external as external

    def offline(*a, **k):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(external, "untar_data", offline)
    with pytest.raises(UsageError, match="mnist5k"):
        sources.resolve("mnist")


def test_data_show_writes_a_grid_png(tmp_path, tiny_folder):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(app, ["data", "show", f"folder:{tiny_folder}", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "train" in result.output and "12" in result.output
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 200
        assert np.asarray(im.convert("L")).std() > 10  # not a blank canvas


def test_data_show_draws_the_split_and_number_asked_at_the_size_asked(tmp_path):
    folder = make_folder(tmp_path / "mixed", n_train=6, n_valid=3)
    make_folder(folder, n_train=2, n_valid=0, splits=("test", "unused"), seed=1)
    Image.open(folder / "train" / "a" / "0.png").resize((40, 30)).save(folder / "train" / "a" / "0.png")
    show = ["data", "show", f"folder:{folder}"]
    refused = CliRunner().invoke(app, [*show, "--out", str(tmp_path / "no.png")])
    assert refused.exit_code == 2 and "data show --size N" in refused.output
    for split, n, drawn in (("train", 5, 5), ("test", 9, 4)):
        out = tmp_path / f"{split}.png"
        result = CliRunner().invoke(
            app, [*show, "--split", split, "--n", str(n), "--size", "16", "--out", str(out)]
        )
        assert result.exit_code == 0, result.output
        assert f"{drawn} {split} image(s) drawn in {out}" in result.output
        assert re.search(r"^test\s+2\s+2\s+4$", result.output, re.M), result.output
        # white shapes on a dark background stay so: pixels drawn as they are, not fastai's inverted "Greys"
        with Image.open(out) as im:
            pixels = np.asarray(im.convert("L"))
        assert (pixels < 60).mean() > 0.15, "the images' dark backgrounds are drawn dark"
    no_test = CliRunner().invoke(app, ["data", "show", "mnist5k-3v7", "--split", "test"])
    assert no_test.exit_code == 2 and "has no test/ folder" in no_test.output


def test_cli_module_does_not_import_torch_or_fastai():
    import subprocess
    import sys

    code = "import sys, sevenstep.cli; print('torch' in sys.modules, 'fastai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_a_plain_folder_of_class_folders_trains_on_a_random_split(tmp_path):
    """fastai's ImageDataLoaders.from_folder(valid_pct=0.2) layout: shapes/<class>/*.png, no train/ or valid/."""
    from conftest import LINEAR, make_folder
    from sevenstep import recipe
    from sevenstep.loop import train

    made = make_folder(tmp_path / "made", n_train=10, n_valid=0, splits=("all", "none"))
    shapes = made / "all"  # shapes/a/*.png, shapes/b/*.png
    with pytest.raises(UsageError, match="no train/ and valid/ split; set data.valid_pct = 0.2"):
        data.dataloaders(f"folder:{shapes}", bs=4)
    dls = data.dataloaders(f"folder:{shapes}", bs=4, valid_pct=0.2, seed=3)
    assert len(dls.train.items) == 16 and len(dls.valid.items) == 4 and set(dls.vocab) == {"a", "b"}
    assert {str(p) for p in dls.valid.items} != {str(p) for p in data.dataloaders(f"folder:{shapes}", bs=4, valid_pct=0.2, seed=4).valid.items}  # fmt: skip
    r = recipe.load(
        LINEAR, [f"data.source=folder:{shapes}", "data.valid_pct=0.2", "data.bs=4", "steps.repeat.n=1"]
    )
    run = train.run(r, runs_dir=tmp_path / "runs")
    learn = train.load_learner(run.run_dir)  # the saved run rebuilds the same split from its recipe
    assert [str(p) for p in learn.dls.valid.items] == [str(p) for p in run.learn.dls.valid.items]
    assert sources.counts(sources.resolve(f"folder:{shapes}")) == {"all": {"a": 10, "b": 10}}
    result = CliRunner().invoke(app, ["data", "show", f"folder:{shapes}", "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 0 and "all" in result.output and (tmp_path / "g.png").exists()


def test_images_that_would_not_fit_in_memory_are_refused_before_decoding(tiny_folder, monkeypatch, tmp_path):
    from sevenstep.data import image_cache

    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(image_cache, "_available_bytes", lambda: 1_000_000)  # a machine with 1 MB free
    decoded, real = [], image_cache._decode
    monkeypatch.setattr(image_cache, "_decode", lambda *a: decoded.append(a) or real(*a))
    with pytest.raises(
        UsageError,
        match=r"32 images at 256x256 need 0.0 GB .* choose a smaller data.size \(at most about 102\)",
    ):
        data.dataloaders(f"folder:{tiny_folder}", size=256)
    assert not decoded  # refused before a single image was decoded
    data.dataloaders(f"folder:{tiny_folder}", size=28)  # 32 x 28 x 28 bytes fit


@pytest.mark.parametrize(
    "pct, said",
    [
        (0.999, "leaves class(es) b with no training images"),
        (0.001, "leaves no validation images"),
        (1e-300, "leaves no validation images"),
    ],  # fmt: skip
)
def test_a_random_split_that_empties_a_class_or_a_side_is_one_line_with_the_counts(tmp_path, pct, said):
    """#38 item 14: valid_pct 0.999, 0.001 or 1e-320 gave a KeyError or fastai's "does not contain any batches"."""
    shapes = make_folder(tmp_path / "made", n_train=10, n_valid=0, splits=("all", "none")) / "all"
    with pytest.raises(UsageError, match=re.escape(f"data.valid_pct = {pct} {said}")) as refused:
        data.dataloaders(f"folder:{shapes}", bs=4, valid_pct=pct, seed=0)
    assert re.search(r"a: \d+ train, \d+ valid; b: \d+ train, \d+ valid", str(refused.value))


def test_an_image_in_two_splits_is_refused_naming_it(tmp_path):
    """#38 item 11: 80 training images copied into test/ gave "test accuracy 1.0000"; validation images that
    duplicate training images passed silently."""
    import shutil

    root = make_folder(tmp_path / "leak", splits=("train", "valid"))
    shutil.copy(root / "train" / "a" / "3.png", root / "valid" / "a" / "copied.png")
    with pytest.raises(UsageError, match=r"1 image\(s\) under .* are in more than one of train, valid") as e:
        sources.resolve(f"folder:{root}")
    assert "train/a/3.png = " in str(e.value) and "valid/a/copied.png" in str(e.value)
    (root / "valid" / "a" / "copied.png").unlink()
    sources.resolve(f"folder:{root}")  # clean again
    test = make_folder(tmp_path / "held", n_train=2, splits=("t",), seed=1) / "t"
    shutil.copy(root / "train" / "b" / "0.png", test / "b" / "0.png")
    with pytest.raises(UsageError, match=r"in more than one of data.test, source"):
        data.dataloaders(f"folder:{root}", bs=4, test=f"folder:{test}")
