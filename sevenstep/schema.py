"""One checker for every table a user writes: a recipe and its [data] and [steps.*] tables, a comparison and
its [[runs]], a sweep file. A schema is a dict of key -> Field; a function's typed, defaulted keyword
parameters are one too (`fields_of`), which is how step options and the data options declare theirs. A choice
among names is a `Literal[...]` type: `activation: Literal["relu", "tanh"] = "relu"` is checked, and listed
by `sevenstep steps`, like any other type.

Every mistake is a UsageError naming where, the key, what was expected and what was got. Numbers must be
finite and integers fit in 64 bits: a NaN learning rate or an overflowing seed stops here, not mid-training.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from .errors import UsageError

REQUIRED = inspect.Parameter.empty
FLOAT32_MAX = 3.4028234663852886e38


@dataclass(frozen=True)
class Field:
    type: Any = Any
    default: Any = REQUIRED


class Names:
    """A choice among names that can grow after a schema is read (the metrics: a plugin may declare one):
    checked, and listed, as the `Literal` of the names there are at that moment."""

    def __init__(self, names):
        self.names = names

    def __repr__(self) -> str:
        return f"Names({', '.join(self.names())})"


def resolved(t: Any) -> Any:
    return typing.Literal[t.names()] if isinstance(t, Names) else t


def fields_of(func, skip: tuple[str, ...] = ()) -> dict[str, Field]:
    """The schema a function's signature declares: each parameter's annotation and default."""
    params = inspect.signature(func, eval_str=True).parameters
    return {k: Field(p.annotation, p.default) for k, p in params.items() if k not in skip}


def check(
    values: dict[str, Any],
    schema: dict[str, Field],
    where: str,
    prefix: str = "",
    owner: str | None = None,
    fill: bool = True,
) -> dict[str, Any]:
    """`values` checked against `schema`; with `fill`, missing keys take (copies of) their defaults.

    `prefix` is the keys' place in the file ("data.", "steps.step."); `owner` names what has the keys when
    they are parameters ("step option 'sgd'"), so an unknown one reads "... has no parameter 'lrate'"."""
    for key, value in values.items():
        if key not in schema:
            valid = ", ".join(schema) or "none"
            hint = did_you_mean(key, schema, "" if owner else prefix)
            if owner:
                raise UsageError(f"{where}: {owner} has no parameter {key!r}{hint}; its parameters: {valid}")
            raise UsageError(f"{where}: unknown key {prefix + key!r}{hint}; valid keys: {valid}")
        expected = resolved(schema[key].type)
        if typing.get_origin(expected) is typing.Literal and not fits(value, expected):
            choices = ", ".join(map(str, typing.get_args(expected)))
            hint = did_you_mean(str(value), typing.get_args(expected))
            raise UsageError(f"{where}: {prefix}{key} must be one of {choices}; got {value!r}{hint}")
        if not fits(value, expected):
            raise UsageError(
                f"{where}: {prefix}{key}: expected {type_name(expected)}, got {value!r} ({type(value).__name__})"
            )
        problem = _out_of_range(value)
        if problem:
            raise UsageError(f"{where}: {prefix}{key}: {problem}")
    if not fill:
        return dict(values)
    missing = [k for k, f in schema.items() if f.default is REQUIRED and k not in values]
    if missing:
        raise UsageError(f"{where}: missing key {prefix + missing[0]!r}")
    # copies: a recipe that changes its `hidden` list must not change the option's default
    return {k: values[k] if k in values else copy.deepcopy(f.default) for k, f in schema.items()}


# names people reach for from other tools (fastai's, Keras') that difflib cannot guess from spelling alone
SYNONYMS = {"batch_size": "bs", "batchsize": "bs", "learning_rate": "lr", "epochs": "n", "n_epochs": "n"}


def did_you_mean(word: str, choices, prefix: str = "") -> str:
    """' (did you mean 'data.bs'?)' for a close name among `choices` (difflib), `prefix` before it; or ''."""
    import difflib

    choices = [str(c) for c in choices]
    head, _, last = word.rpartition(".")
    synonym = SYNONYMS.get(last)
    same_place = [c for c in choices if synonym and c in (synonym, f"{head}.{synonym}")]
    guess = same_place[0] if same_place else None
    guess = guess or next((c for c in choices if c.lower() == word.lower()), None)  # SGD for sgd
    guess = guess or next(iter(difflib.get_close_matches(word, choices, n=1, cutoff=0.6)), None)
    return f" (did you mean {prefix + guess!r}?)" if guess else ""


def folder_name(value: str, key: str, where: str) -> str:
    """A name that becomes a folder under runs/: it must stay there, so no path separators and no '..'."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value) or ".." in value:
        raise UsageError(
            f"{where}: {key} {value!r} cannot name a folder inside the runs folder; use letters, digits, "
            "'-', '_' and '.' (starting with a letter or digit)"
        )
    return value


def _out_of_range(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"expected a finite number, got {value}"
    if isinstance(value, float) and abs(value) > FLOAT32_MAX:  # training computes in 32 bits
        return f"{value:g} does not fit in a 32-bit float (at most {FLOAT32_MAX:.4g}), which training computes in"
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return f"expected an integer that fits in 64 bits, got {value}"
    control = isinstance(value, str) and next((c for c in value if c not in "\n\t" and _is_control(c)), None)
    if control:
        return (
            f"{control!r}: control characters are not allowed (an escape sequence would reach the terminal)"
        )
    if isinstance(value, list):
        return next(filter(None, map(_out_of_range, value)), None)
    return None


def _is_control(c: str) -> bool:
    import unicodedata

    return unicodedata.category(c) == "Cc"


def fits(value: Any, expected: Any) -> bool:
    expected = resolved(expected)
    if expected is inspect.Parameter.empty or expected is Any:
        return True
    origin = typing.get_origin(expected)
    if origin is typing.Literal:
        return any(value == choice and type(value) is type(choice) for choice in typing.get_args(expected))
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
    t = resolved(t)
    if typing.get_origin(t) is typing.Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(t)))
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(t))
    if typing.get_origin(t) is list:
        return f"a list of {type_name(typing.get_args(t)[0])}"
    names = {float: "a number (float)", int: "an integer", bool: "true or false", str: "a string"}
    names |= {dict: "a table", list: "a list"}
    return names.get(t, "nothing" if t is type(None) else getattr(t, "__name__", str(t)))
