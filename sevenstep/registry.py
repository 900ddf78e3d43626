"""The registry of step options: each option is a function whose signature *is* its parameter schema.

`@option("loss")` on `def mnist_loss(...) -> Callback` registers it; `sevenstep steps` lists the registry,
and recipes are checked against it (through sevenstep/schema.py) before anything trains.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import schema
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
    def params(self) -> dict[str, schema.Field]:
        return schema.fields_of(self.factory)

    def check(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        """The option's parameters, checked and with every default filled in."""
        owner = f"{self.step} option {self.name!r}"
        return schema.check(values, self.params, where, prefix=f"steps.{self.step}.", owner=owner)

    def build(self, values: dict[str, Any]):
        """The step's Callback; value checks (lr > 0, a known activation) happen in the factory."""
        cb = self.factory(**values)
        cb.option = self.name
        return cb


def option(step: str):
    """Register a factory as an option of `step`; its keyword parameters, typed and defaulted, are the schema."""

    def register(factory):
        for name, field in schema.fields_of(factory).items():
            if field.default is schema.REQUIRED:
                raise TypeError(f"step option {factory.__name__}: parameter {name!r} needs a default")
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
