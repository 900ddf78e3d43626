"""Recipes: the seven choices, the data options and a seed, read from TOML and checked before training.

Keys and types are checked against the registry without importing torch or fastai, so a typo is reported at
once; values (lr > 0, a known activation) are checked by each option's factory, which imports its step.
"""

from __future__ import annotations

import copy
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import data, plugins, registry, schema
from .data import sources
from .errors import UsageError
from .schema import Field

STEP_DEFAULTS = {
    "init": "default",
    "predict": "linear",
    "loss": "cross_entropy",
    "gradient": "autograd",
    "step": "sgd",
    "repeat": "epochs",
    "stop": "epochs_done",
}
TOP = {
    "name": Field(str, "recipe"),
    "description": Field(str, ""),  # also the W&B run's notes
    "tags": Field(list[str], []),  # the W&B run's tags (`sevenstep run --tag T` adds one)
    "seed": Field(int, 42),
    "data": Field(dict, {}),
    "steps": Field(dict, {}),
    "plugins": Field(list[str], []),  # your own step options: .py files (from the recipe's folder) or modules
    "plugin_sha256": Field(dict, {}),  # written with a saved run: what each plugin's source was
}


@dataclass
class Recipe:
    name: str
    seed: int
    data: dict[str, Any]  # the keyword arguments of data.dataloaders, every one filled in
    steps: dict[str, dict[str, Any]]  # step -> {"name": option, **params}, every parameter filled in
    description: str = ""
    plugin_sha256: dict[str, str] = field(default_factory=dict)  # plugin -> the hash of the source it ran
    tags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The resolved recipe, in the file's own layout (None, meaning "not set", is left out)."""
        steps = {s: {k: v for k, v in c.items() if v is not None} for s, c in self.steps.items()}
        options = {k: v for k, v in self.data.items() if v is not None}
        d = {"name": self.name, "seed": self.seed, "data": options, "steps": steps}
        if self.plugin_sha256:
            d = {"plugins": list(self.plugin_sha256), "plugin_sha256": dict(self.plugin_sha256), **d}
        d = {"tags": list(self.tags), **d} if self.tags else d
        return {"description": self.description, **d} if self.description else d

    def short(self) -> str:
        return " ".join(f"{s}={self.steps[s]['name']}" for s in registry.STEPS)

    def build_steps(self) -> dict[str, Any]:
        """One fastai Callback per step, from the registry; each checked to be that step's kind."""
        from .steps.base import checked

        built = {}
        for step, choice in self.steps.items():
            params = {k: v for k, v in choice.items() if k != "name"}
            built[step] = checked(registry.get(step, choice["name"]).build(params), step, choice["name"])
        return built


def from_dict(d: dict[str, Any], where: str = "recipe", build: bool = True) -> Recipe:
    """Check every key, type and value against the schemas and the registry; fill in defaults. `build=False`
    skips the factories' own checks, which import the steps (and torch): only what the schemas say."""
    top = schema.check(d, TOP, where)
    hashes = plugins.load(top["plugins"], where, top["plugin_sha256"] or None)
    options = schema.check(top["data"], data.OPTIONS, where, prefix="data.")
    data.check_options(**options)
    steps, given = {}, top["steps"]
    for step in given:
        if step not in registry.STEPS:
            raise UsageError(
                f"{where}: unknown step steps.{step}{schema.did_you_mean(step, registry.STEPS)}; the seven steps "
                f"are: {', '.join(registry.STEPS)}"
            )
    for step in registry.STEPS:
        if not isinstance(given.get(step, {}), dict):
            raise UsageError(f"{where}: steps.{step} must be a table with a 'name' key, e.g. [steps.{step}]")
        choice = dict(given.get(step, {}))
        name = choice.pop("name", STEP_DEFAULTS[step])
        if not isinstance(name, str):
            raise UsageError(f"{where}: steps.{step}.name: expected a string, got {name!r}")
        try:
            option = registry.get(step, name)
        except UsageError as e:  # which file, and which key of it
            raise UsageError(f"{where}: steps.{step}.name: {e}") from None
        steps[step] = {"name": name, **option.check(choice, where)}
    name = schema.folder_name(top["name"], "name", where)
    recipe = Recipe(name, top["seed"], options, steps, top["description"], hashes, top["tags"])
    if build:
        recipe.build_steps()  # the factories' own checks (a model's shape, ...); the steps import torch
    return recipe


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file") from None


def parse_sets(sets: list[str]) -> list[tuple[str, Any]]:
    """`KEY=VALUE` with a dotted key; the value is a TOML literal, or a bare string when it is not one."""
    out = []
    for item in sets:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. steps.step.lr=0.1")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out.append((key.strip(), value))
    return out


def named_for_sets(recipe: Recipe, sets: list[str] | None) -> Recipe:
    """The recipe named after what `--set` changed (`fastbook-linear_lr-0.3_loss-mse`), so that its run folder,
    its W&B run and `sevenstep runs` tell it from the file's own run; a `--set name=...` is kept as given."""
    import dataclasses

    changed = parse_sets(sets or [])
    if not changed or any(k == "name" for k, _ in changed):
        return recipe
    parts = []
    for key, value in changed:
        *_, step, param = ["", *key.split(".")]
        word = (
            step if param == "name" else param
        )  # steps.loss.name=mse -> loss-mse; steps.step.lr=0.3 -> lr-0.3
        if isinstance(value, str) and "/" in value:  # data.source=folder:/a/b/digits -> source-digits
            value = Path(value).name
        parts.append(re.sub(r"[^A-Za-z0-9.-]+", "-", f"{word}-{value}").strip("-."))
    return dataclasses.replace(recipe, name="_".join([recipe.name, *parts])[:120])


FOLDER_KEYS = ("source", "test")  # data keys that may name a folder:PATH


def absolute(sets: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A --set's `folder:PATH` is from the current folder, and kept so: the saved recipe.toml then works from
    any folder (resume, predict, run RUN/recipe.toml)."""
    keys = {f"data.{k}" for k in FOLDER_KEYS}
    return [
        (k, sources.relative_to(v, Path.cwd()) if k in keys and isinstance(v, str) else v) for k, v in sets
    ]


def apply_sets(d: dict[str, Any], sets: list[tuple[str, Any]], where: str = "--set") -> dict[str, Any]:
    """Override keys of a recipe dict. Changing a step's name drops that step's old parameters.
    `where` says where the keys came from, for messages: --set, a comparison's `set`, a sweep's [space]."""
    d = copy.deepcopy(d)
    names = [(k, v) for k, v in sets if k.endswith(".name") and k.startswith("steps.")]
    for key, value in names + [(k, v) for k, v in sets if (k, v) not in names]:
        parts = key.split(".")
        if len(parts) == 1 and parts[0] in TOP and TOP[parts[0]].type is not dict:
            d[parts[0]] = value
        elif parts[0] == "data" and len(parts) == 2 and parts[1] in data.OPTIONS:
            d.setdefault("data", {})[parts[1]] = value
        elif parts[0] == "steps" and len(parts) == 3 and parts[1] in registry.STEPS:
            step, param = parts[1], parts[2]
            choice = d.setdefault("steps", {}).setdefault(step, {})
            if param == "name":
                if value != choice.get("name", STEP_DEFAULTS[step]):
                    choice.clear()
                choice["name"] = value
                continue
            option = registry.get(step, choice.get("name", STEP_DEFAULTS[step]))
            if param not in option.params:  # its type is checked with the rest of the recipe
                option.check({param: value}, f"{where} {key}")
            choice[param] = value
        else:
            known = ["name", "seed", *(f"data.{k}" for k in data.OPTIONS)]
            known += [f"steps.{s}.{p}" for s in registry.STEPS for p in ("name", *_params(d, s))]
            hint = schema.did_you_mean(key, known)
            raise UsageError(
                f"{where} {key}: no such key{hint}; keys are name, seed, data.{{{','.join(data.OPTIONS)}}}, "
                f"steps.<step>.name and steps.<step>.<parameter> (see `sevenstep steps`)"
            )
    return d


def _params(d: dict[str, Any], step: str) -> list[str]:
    """The parameters of the option a recipe dict chose for `step` (for suggestions)."""
    choice = d.get("steps", {}).get(step, {})
    name = choice.get("name", STEP_DEFAULTS[step]) if isinstance(choice, dict) else STEP_DEFAULTS[step]
    options = registry.REGISTRY.get(step, {})
    return list(options[name].params) if name in options else []


def dumps(d: dict[str, Any]) -> str:
    """A recipe (its dict) as its TOML file: a run folder's recipe.toml, a sweep's best.toml."""
    import tomli_w

    return tomli_w.dumps(d)


def flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """Nested tables as dotted keys: {"steps": {"step": {"lr": 0.1}}} -> [("steps.step.lr", 0.1)]."""
    out = []
    for k, v in d.items():
        out += flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else [(f"{prefix}{k}", v)]
    return out


def read(path: str | Path, saved_run: bool = False) -> dict[str, Any]:
    """A recipe file as a dict, its `data.source = "folder:PATH"` and plugin files read from the file's folder;
    its plugins are loaded, so that --set can name their options. A `saved_run`'s plugins must be the sources
    it recorded (plugin_sha256): one with no recorded hash is refused, since loading it would run its code."""
    d = read_toml(path)
    folder = Path(path).parent
    options = d.get("data")
    for key in FOLDER_KEYS:
        if isinstance(options, dict) and isinstance(options.get(key), str):
            options[key] = sources.relative_to(options[key], folder)
    if "plugins" in d:
        given = schema.check({"plugins": d["plugins"]}, {"plugins": TOP["plugins"]}, str(path))["plugins"]
        d["plugins"] = [plugins.relative_to(p, folder) for p in given]
        saved = d.get("plugin_sha256")  # a run folder's recipe: the sources it ran, checked before importing
        saved = saved if isinstance(saved, dict) else {} if saved_run else None
        plugins.load(d["plugins"], str(path), saved)
    return d


def load(path: str | Path, sets: list[str] | None = None, saved_run: bool = False) -> Recipe:
    """A recipe file with `--set KEY=VALUE` overrides (whose folder: paths are from the current folder). A
    mistake in a --set names the --set, not the file: when the file alone is fine, the --set is what is not."""
    file = read(path, saved_run)
    try:
        return from_dict(apply_sets(file, absolute(parse_sets(sets or []))), where=str(path))
    except UsageError as e:
        if not sets:
            raise
        try:
            from_dict(file, where=str(path), build=False)
        except UsageError:
            raise e from None  # the file's own mistake
        message = str(e).removeprefix(f"{path}: ")
        if message.startswith("--set "):  # it names its --set already
            raise UsageError(message) from None
        raise UsageError(f"--set {' --set '.join(sets)}: {message}") from None
