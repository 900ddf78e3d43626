"""New items for a trained Learner (fastai's `test_dl`, which `predict`, `get_preds` and
ClassificationInterpretation use): files and tensors as fastai takes them, and also folders and PIL images."""

from __future__ import annotations

from pathlib import Path

from fastai.data.core import DataLoaders

from .sources import image_files


class SevenstepDataLoaders(DataLoaders):
    """fastai's DataLoaders, whose `test_dl` also takes a folder for the images in it (recursively, sorted):
    `learn.dls.test_dl(["my_digits/"])`. (Not fastai's ImageDataLoaders, whose factories it does not have.) A PIL image is converted to the training images' mode first, as
    PILImageBW.create does for files (fastai wraps an open image as it is); files and tensors go as they are."""

    mode = "L"

    def test_dl(self, test_items, rm_type_tfms=None, with_labels=False, **kwargs):
        from PIL import Image

        items = []
        for item in test_items:
            if isinstance(item, (str, Path)) and Path(item).is_dir():
                items.extend(image_files(Path(item)))
            else:
                items.append(item.convert(self.mode) if isinstance(item, Image.Image) else item)
        return super().test_dl(items, rm_type_tfms=rm_type_tfms, with_labels=with_labels, **kwargs)
