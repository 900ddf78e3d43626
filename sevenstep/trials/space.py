"""The points a job's trials take: each swept key a list of values or a range, as Optuna suggests them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Dimension:
    """One swept key: a list of values, or a numeric range (integers when both ends are)."""

    key: str
    values: tuple | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False

    def suggest(self, trial) -> Any:
        if self.values is not None:  # Optuna's choices are scalars: a list value travels as JSON
            return decode(trial.suggest_categorical(self.key, [encode(v) for v in self.values]))
        if isinstance(self.low, int) and isinstance(self.high, int):
            return trial.suggest_int(self.key, self.low, self.high, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, log=self.log)

    def ends(self) -> tuple:
        return self.values if self.values is not None else (self.low, self.high)


def encode(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list) else value


def decode(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) and value.startswith("[") else value


def show_params(params: dict[str, Any]) -> str:
    """`steps.step.lr=0.0316 seed=2`: numbers to 4 significant digits, not a float's 17."""
    shown = (decode(v) for v in params.values())
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in zip(params, shown))
