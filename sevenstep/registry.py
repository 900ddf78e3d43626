"""The registry of step options: each option is a function whose signature *is* its parameter schema.

`@option("loss")` on `def mnist_loss(...) -> Callback` registers it; `sevenstep steps` lists the registry,
and recipes are checked against it before anything trains.
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

STEPS = ("init", "predict", "loss", "gradient", "step", "repeat", "stop")
REGISTRY: dict[str, dict[str, Option]] = {s: {} for s in STEPS}


@dataclass
class Option:
    step: str
    name: str
    factory: Callable[..., Any]

    @property
    def doc(self) -> str:
        return (inspect.getdoc(self.factory) or "").splitlines()[0]

    @property
    def params(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.factory, eval_str=True).parameters)

    def defaults(self) -> dict[str, Any]:
        """Copies: a recipe that changes its `hidden` list must not change the option's default."""
        return {k: copy.deepcopy(p.default) for k, p in self.params.items()}

    def check(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        """Unknown keys and wrong types are errors that name the key and the expected type."""
        params = self.params
        for key, value in values.items():
            if key not in params:
                valid = ", ".join(params) or "none"
                raise UsageError(
                    f"{where}.{key}: {self.step} option {self.name!r} has no parameter {key!r}; "
                    f"its parameters: {valid}"
                )
            expected = params[key].annotation
            if not fits(value, expected):
                raise UsageError(
                    f"{where}.{key}: expected {type_name(expected)}, got {value!r} ({type(value).__name__})"
                )
        return {**self.defaults(), **values}

    def build(self, values: dict[str, Any]):
        return self.factory(**values)


def option(step: str):
    """Register a factory as an option of `step`; its keyword parameters, typed and defaulted, are the schema."""

    def register(factory):
        for name, p in inspect.signature(factory, eval_str=True).parameters.items():
            assert p.default is not inspect.Parameter.empty, f"{factory.__name__}.{name} needs a default"
        REGISTRY[step][factory.__name__] = Option(step, factory.__name__, factory)
        return factory

    return register


def get(step: str, name: str) -> Option:
    if step not in REGISTRY:
        raise UsageError(f"unknown step {step!r}; the seven steps are: {', '.join(STEPS)}")
    options = REGISTRY[step]
    if name not in options:
        raise UsageError(f"unknown {step} option {name!r}; valid options: {', '.join(options)}")
    return options[name]


def fits(value: Any, expected: Any) -> bool:
    if expected is inspect.Parameter.empty or expected is Any:
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, t) for t in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(expected) or (Any,)
        return isinstance(value, list) and all(fits(v, item) for v in value)
    if expected is float:  # TOML writes 1 for 1.0; an int is a fine float, a bool is not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def type_name(t: Any) -> str:
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(t))
    if typing.get_origin(t) is list:
        return f"a list of {type_name(typing.get_args(t)[0])}"
    names = {float: "a number (float)", int: "an integer", bool: "true or false", str: "a string"}
    return names.get(t, "nothing" if t is type(None) else getattr(t, "__name__", str(t)))
