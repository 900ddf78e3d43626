"""A part's public names, imported from their modules on first use (PEP 562's module `__getattr__`).

Each subpackage's `__init__` says what the part offers (`from sevenstep.loop import run`) without importing
it: `sevenstep runs` or a recipe's typo check must not pay the seconds torch and fastai take to import.
"""

from __future__ import annotations

import importlib


def exports(package: str, names: dict[str, str]):
    """`__getattr__` for `package`: each of `names` (name -> its module, relative to the package)."""

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(names[name], package), name)

    return __getattr__
