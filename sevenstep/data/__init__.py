"""The data: where images come from, and how they become batches on the model's device.

sources.py      the registry of sources (`sevenstep data list`): the embedded digits, fastai's downloads,
                your own folders, each resolved to a checked folder in one of fastai's MNIST layouts
loaders.py      dataloaders(...): fastbook's Datasets -> DataLoaders pipeline; its keywords are a recipe's [data]
decoded.py      the fast path: batches sliced from decoded images and augmented on the device (DecodedDL)
image_cache.py  images decoded once, cached on disk as raw bytes with a checksum
shuffle.py      one shuffle for both paths (torch's randperm from each DataLoader's own generator)
test_items.py   test_dl on folders and PIL images (predict, interpretation)
device.py       --device: where the model, the decoded images and the batch transforms live
"""

from ..utils.lazy import exports

__all__ = ["dataloaders", "OPTIONS", "check_options", "pad_for"]
__getattr__ = exports(__name__, {name: ".loaders" for name in __all__})
