"""The registry of step options: each option is a function whose signature *is* its parameter schema.

`@option("loss")` on `def mnist_loss(...) -> Callback` in sevenstep/steps/ declares it; `sevenstep steps`
lists the registry, and recipes are checked against it (through sevenstep/schema.py) before anything trains.

The registry is read from the step modules' source, without importing them: they import fastai, which
takes seconds, and a typo in a recipe should be reported at once. A step module is imported when one of
its options is built; its `@option` decorators then attach the factories to the options read here.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import metrics, schema
from .errors import UsageError
from .utils.docstrings import summary

STEPS = ("init", "predict", "loss", "gradient", "step", "repeat", "stop")
STEPS_DIR = Path(__file__).parent / "steps"
TYPES = {
    "MetricName": metrics.MetricName,
    "list": list,
    "float": float,
    "int": int,
    "bool": bool,
    "str": str,
    "None": None,
    "Literal": Literal,
}


@dataclass
class Option:
    step: str
    name: str
    params: dict[str, schema.Field]
    doc: str = ""
    module: str = ""  # where its factory is defined, imported when it is first built
    factory: Callable[..., Any] | None = field(default=None, repr=False)
    plugin: str = ""  # the user's file or module that defined it (sevenstep/plugins.py); "" for built-ins
    # parameter -> whether zero is allowed, for the factory's own `positive(...)` checks, read from its source
    # so that a negative learning rate is refused before the step's module (and torch) is imported
    minimums: dict[str, bool] = field(default_factory=dict)

    def check(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        """The option's parameters, checked and with every default filled in."""
        owner = f"{self.step} option {self.name!r}"
        checked = schema.check(values, self.params, where, prefix=f"steps.{self.step}.", owner=owner)
        for param, allow_zero in self.minimums.items():
            value = checked.get(param)
            for v in value if isinstance(value, list) else [value]:
                if (
                    isinstance(v, (int, float))
                    and not isinstance(v, bool)
                    and (v < 0 or (v == 0 and not allow_zero))
                ):
                    must = "zero or more" if allow_zero else "greater than zero"
                    raise UsageError(f"steps.{self.step}.{param} must be {must}, got {v}")
        return checked

    def build(self, values: dict[str, Any]):
        """What the factory returns: the step's Callback (recipe.build_steps checks that it is one); value
        checks (lr > 0, a known activation) happen in the factory."""
        if self.factory is None:
            importlib.import_module(self.module)  # its @option fills in self.factory
        if not self.plugin:  # a built-in: its errors are sevenstep's own
            return self.factory(**values)
        try:  # a plugin's factory: its own mistakes are named, with the file and line
            return self.factory(**values)
        except UsageError:
            raise
        except Exception as e:
            import traceback

            file = getattr(self.factory, "__code__", None) and self.factory.__code__.co_filename
            frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == file]
            line = f", line {frames[-1].lineno}" if frames else ""
            raise UsageError(f"{file}{line}: option {self.name!r} failed: {type(e).__name__}: {e}") from None


def _declared() -> dict[str, dict[str, Option]]:
    """Every `@option("step")` function of sevenstep/steps/*.py, with its typed, defaulted parameters."""
    found: dict[str, dict[str, Option]] = {s: {} for s in STEPS}
    for path in sorted(STEPS_DIR.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            step = _option_step(node)
            if step is None:
                continue
            args = node.args.args
            defaults = [None] * (len(args) - len(node.args.defaults)) + node.args.defaults
            params = {
                a.arg: schema.Field(
                    eval(ast.unparse(a.annotation), {"__builtins__": {}}, TYPES) if a.annotation else Any,
                    ast.literal_eval(d) if d is not None else schema.REQUIRED,
                )
                for a, d in zip(args, defaults)
            }
            doc = summary(ast.get_docstring(node))
            option = Option(step, node.name, params, doc, f"sevenstep.steps.{path.stem}")
            option.minimums = _minimums(node, set(params))
            found[step][node.name] = option
    return found


def _minimums(factory: ast.FunctionDef, params: set[str]) -> dict[str, bool]:
    """`positive("steps.step.lr", lr)` (or `allow_zero=True`) in a factory's body: which parameters it checks."""
    # `for h in hidden: positive(..., h)` checks every item of the list parameter `hidden`
    loops = {
        n.target.id: n.iter.id
        for n in ast.walk(factory)
        if isinstance(n, ast.For) and isinstance(n.target, ast.Name) and isinstance(n.iter, ast.Name)
    }
    found = {}
    for call in ast.walk(factory):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "positive" and len(call.args) >= 2:
            target = call.args[1]
            name = loops.get(target.id, target.id) if isinstance(target, ast.Name) else None
            if name in params:
                zero = any(k.arg == "allow_zero" and getattr(k.value, "value", False) for k in call.keywords)
                found[name] = zero
    return found


def _option_step(node) -> str | None:
    for d in getattr(node, "decorator_list", []):
        if isinstance(d, ast.Call) and getattr(d.func, "id", "") == "option":
            return d.args[0].value
    return None


REGISTRY: dict[str, dict[str, Option]] = _declared()


class OptionError(TypeError):
    """An option that cannot be registered: a parameter without a type or default, a name already taken."""


current_plugin: str | None = None  # set by sevenstep/plugins.py while a user's file is imported


def option(step: str):
    """Register a factory as an option of `step`; its keyword parameters, typed and defaulted, are the schema."""

    def register(factory):
        name = factory.__name__
        if step not in REGISTRY:
            raise OptionError(
                f"@option({step!r}) on {name}: unknown step; the seven steps are {', '.join(STEPS)}"
            )
        try:
            params = schema.fields_of(factory)
        except NameError as e:
            raise OptionError(f"{step} option {name!r}: a parameter's type is not defined ({e})") from None
        for param, f in params.items():
            example = f"e.g. `{param}: float = 1.0`"
            if f.type is inspect.Parameter.empty:
                raise OptionError(f"{step} option {name!r}: parameter {param!r} needs a type ({example})")
            if f.default is schema.REQUIRED:
                raise OptionError(f"{step} option {name!r}: parameter {param!r} needs a default ({example})")
        declared = REGISTRY[step].get(name)
        # a plugin's own options, not the built-ins its imports (sevenstep.steps.loss, ...) register meanwhile
        plugin = current_plugin if not factory.__module__.startswith("sevenstep.") else None
        if plugin and declared is not None and declared.plugin != plugin:
            owner = f"defined by {declared.plugin}" if declared.plugin else "a built-in option"
            raise OptionError(f"{step} option {name!r} is already {owner}; give yours another name")
        if (
            plugin or declared is None
        ):  # a plugin's, or an option outside sevenstep/steps/ (not read from source)
            doc = summary(inspect.getdoc(factory))
            declared = REGISTRY[step][name] = Option(step, name, params, doc, plugin=plugin or "")
        declared.factory = factory
        return factory

    return register


def get(step: str, name: str) -> Option:
    if step not in REGISTRY:
        raise UsageError(
            f"unknown step {step!r}{schema.did_you_mean(step, STEPS)}; the seven steps are: {', '.join(STEPS)}"
        )
    options = REGISTRY[step]
    if name not in options:
        raise UsageError(
            f"unknown {step} option {name!r}{schema.did_you_mean(name, options)}; valid options: "
            f"{', '.join(options)} "
            '(your own options come from a recipe\'s plugins = ["my_steps.py"])'
        )
    return options[name]
