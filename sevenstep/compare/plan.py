"""A comparison file, read and checked whole (every recipe in it included) before anything trains."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .. import recipe as recipes
from .. import schema
from ..data import sources
from ..errors import UsageError
from ..schema import REQUIRED, Field

KEYS = {
    "name": Field(str, None),  # default: the file's name
    "description": Field(str, ""),
    "source": Field(str, "mnist5k-3v7"),
    "seed": Field(int, 42),
    "baseline": Field(dict, {}),
    "runs": Field(list, []),
}
# the baseline's distance: fastbook's mean absolute difference (l1), or the mean squared difference (l2)
BASELINE_KEYS = {"distance": Field(Literal["l1", "l2"], "l1")}
RUN_KEYS = {"recipe": Field(str, REQUIRED), "label": Field(str, None), "set": Field(dict, {})}


@dataclass
class Plan:
    name: str
    source: str
    seed: int
    distance: str
    runs: list[tuple[str, recipes.Recipe]]  # (label, recipe with source and seed applied)


def load(path: str | Path) -> Plan:
    """Read and check the whole comparison, every recipe included, before anything trains."""
    path = Path(path)
    d = schema.check(recipes.read_toml(path), KEYS, str(path))
    if not d["runs"]:
        raise UsageError(f'{path}: lists no runs; add at least one [[runs]] table with recipe = "FILE.toml"')
    baseline = schema.check(d["baseline"], BASELINE_KEYS, str(path), prefix="baseline.")
    runs = []
    for i, entry in enumerate(d["runs"], 1):
        where = f"{path}: runs #{i}"
        if not isinstance(entry, dict) or "recipe" not in entry:
            raise UsageError(f'{where} needs recipe = "FILE.toml" (a path relative to {path.parent})')
        entry = schema.check(entry, RUN_KEYS, where)
        file = path.parent / entry["recipe"]
        if not file.is_file():
            raise UsageError(f"{where}: recipe file {file} does not exist")
        source = sources.relative_to(d["source"], path.parent)
        sets = recipes.flatten(entry["set"]) + [("data.source", source), ("seed", d["seed"])]
        r = recipes.from_dict(recipes.apply_sets(recipes.read(file), sets, f"{where}: set"), where=str(file))
        if entry["label"]:  # the run's folder and W&B name say which run of the comparison it is
            r = dataclasses.replace(r, name=slug(entry["label"]) or r.name)
        runs.append((entry["label"] or r.name, r))
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        raise UsageError(f'{path}: two runs share a label; give each [[runs]] its own label = "..."')
    name = schema.folder_name(d["name"] or path.stem, "name", str(path))
    return Plan(name, d["source"], d["seed"], baseline["distance"], runs)


def slug(text: str) -> str:
    """A label as a file or run name: "cnn (best)" -> "cnn-best"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
