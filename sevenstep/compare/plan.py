"""A comparison file, read and checked whole (every recipe in it included) before anything trains.

Every recipe runs once per seed; a seed changes init, batch order and augmentation, and the split stays (the
source's own, or with split = "per_seed" one drawn per seed and shared by every method), so runs are paired
image by image."""

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
    "seed": Field(int, 42),  # the one seed, when `seeds` is not given
    "seeds": Field(list[int] | int | None, None),  # a list of seeds, or a count N: seeds 1 to N
    # per_seed: each seed draws its own split; kfold: the seeds are folds, every image validated once
    "split": Field(Literal["fixed", "per_seed", "kfold"], "fixed"),
    "baseline": Field(dict, {}),
    "runs": Field(list, []),
}
# the baseline's distance: fastbook's mean absolute difference (l1), or the mean squared difference (l2)
BASELINE_KEYS = {"distance": Field(Literal["l1", "l2"], "l1")}
RUN_KEYS = {"recipe": Field(str, REQUIRED), "label": Field(str, None), "set": Field(dict, {})}
VALID_PCT = 0.2  # a per-seed split's validation share: the embedded sources' own 80/20
# data options that decide which images, at which size, a run validates on: every run of a comparison, and
# its baseline, must share them to be paired image by image
SAME_IMAGES = ("size", "channels", "valid_pct", "split_seed", "test")


@dataclass
class Plan:
    name: str
    source: str  # as the runs read it: a folder: path resolved from the comparison file's folder
    seeds: list[int]
    distance: str
    runs: list[tuple[str, recipes.Recipe]]  # (label, recipe with the source applied)
    split: str = "fixed"
    file: Path | None = None  # the comparison file, which worker processes read again
    seeds_option: int | None = None  # --seeds N, when it replaced the file's seeds

    @property
    def seed(self) -> int:
        return self.seeds[0]

    def recipe(self, label: str, seed: int) -> recipes.Recipe:
        """The recipe `label` for one seed: its init, batch order and augmentation; with split = "per_seed"
        also its own random split of the source (the same for every method, so runs stay paired)."""
        r = dict(self.runs)[label]
        name = r.name if len(self.seeds) == 1 else f"{r.name}-seed{seed}"
        data = r.data | (self.split_options(seed) if self.split in ("per_seed", "kfold") else {})
        return dataclasses.replace(r, name=name, seed=seed, data=data)

    @property
    def one_split(self) -> bool:
        """Whether every seed validates on the same images (not: a per-seed split, or runs that draw a random
        split from their own seed)."""
        return self.split == "fixed" and sources.one_split(self.runs[0][1].data)

    def split_options(self, seed: int) -> dict:
        """The data options of the images a seed validates on, for the baseline: the runs' own (their size,
        channels, random split), with split = "per_seed" the seed's own split."""
        shared = {k: v for k, v in self.runs[0][1].data.items() if k in SAME_IMAGES and v is not None}
        if self.split == "kfold":  # one shuffle of the folds for every seed: seed i validates on fold i
            folds = {
                "folds": len(self.seeds),
                "fold": self.seeds.index(seed) + 1,
                "split_seed": self.seeds[0],
            }
            return shared | folds | {"valid_pct": None}
        if self.split == "per_seed" or (shared.get("valid_pct") and shared.get("split_seed") is None):
            shared |= {"valid_pct": shared.get("valid_pct") or VALID_PCT, "split_seed": seed}
        return shared


def seed_list(seeds, where: str) -> list[int]:
    """`seeds = [1, 2, 3]` or a count `seeds = 5` (seeds 1 to 5), checked: not empty, no seed twice."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise UsageError(f"{where}: seeds = {seeds}: give a count of at least 1, or a list of seeds")
        return list(range(1, seeds + 1))
    if not seeds:
        raise UsageError(f"{where}: seeds = []: list at least one seed, e.g. seeds = [1, 2, 3], or a count")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise UsageError(
            f"{where}: seeds lists {', '.join(map(str, twice))} more than once; each seed runs once, so list "
            "each once"
        )
    return list(seeds)


def load(path: str | Path, seeds: int | None = None) -> Plan:
    """Read and check the whole comparison, every recipe included, before anything trains. `seeds` (the
    command's --seeds N) replaces the file's seeds with 1 to N."""
    path = Path(path)
    d = schema.check(recipes.read_toml(path), KEYS, str(path))
    if not d["runs"]:
        raise UsageError(f'{path}: lists no runs; add at least one [[runs]] table with recipe = "FILE.toml"')
    baseline = schema.check(d["baseline"], BASELINE_KEYS, str(path), prefix="baseline.")
    if seeds is not None:
        seed_values = seed_list(seeds, "--seeds")
    else:
        seed_values = seed_list(d["seeds"], str(path)) if d["seeds"] is not None else [d["seed"]]
    source = sources.relative_to(d["source"], path.parent)
    if d["split"] != "fixed" and source.startswith("folder:"):
        raise UsageError(
            f'{path}: split = "{d["split"]}" draws a new split from an embedded source for each seed; a folder '
            f"source's split is its own train/ and valid/ folders. Remove split, or use an embedded source"
        )
    if d["split"] == "kfold" and len(seed_values) < 2:
        raise UsageError(f'{path}: split = "kfold" makes each seed a fold: give 2 seeds or more (seeds = 5)')
    runs = []
    for i, entry in enumerate(d["runs"], 1):
        where = f"{path}: runs #{i}"
        if not isinstance(entry, dict) or "recipe" not in entry:
            raise UsageError(f'{where} needs recipe = "FILE.toml" (a path relative to {path.parent})')
        entry = schema.check(entry, RUN_KEYS, where)
        file = path.parent / entry["recipe"]
        if not file.is_file():
            raise UsageError(f"{where}: recipe file {file} does not exist")
        sets = recipes.flatten(entry["set"]) + [("data.source", source), ("seed", seed_values[0])]
        r = recipes.from_dict(recipes.apply_sets(recipes.read(file), sets, f"{where}: set"), where=str(file))
        if entry["label"]:  # the run's folder and W&B name say which run of the comparison it is
            r = dataclasses.replace(r, name=slug(entry["label"]) or r.name)
        runs.append((entry["label"] or r.name, r))
    for key in SAME_IMAGES:
        values = {label: r.data.get(key) for label, r in runs}
        if len(set(map(repr, values.values()))) > 1:
            shown = ", ".join(f"{label}: {v}" for label, v in values.items())
            raise UsageError(
                f"{path}: the runs differ in data.{key} ({shown}); a comparison pairs its runs image by image, "
                f"so every run (and the baseline) validates on the same images: give them one data.{key}"
            )
    labels = [label for label, _ in runs]
    if len(set(labels)) != len(labels):
        raise UsageError(f'{path}: two runs share a label; give each [[runs]] its own label = "..."')
    name = schema.folder_name(d["name"] or path.stem, "name", str(path))
    return Plan(name, source, seed_values, baseline["distance"], runs, d["split"], path.resolve(), seeds)


def slug(text: str) -> str:
    """A label as a file or run name: "cnn (best)" -> "cnn-best"."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
