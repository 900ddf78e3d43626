"""What every step option shares: it is a fastai Callback, named after its place in the recipe."""

from __future__ import annotations

from ..callbacks import SparseCallback
from ..errors import UsageError
from ..registry import STEPS


class StepCallback(SparseCallback):
    """fastai attaches a callback to the Learner under its `name`: ours read `learn.step1_init` ... `learn.step7_stop`,
    so the seven steps are easy to find and never shadow Learner attributes such as `learn.loss`."""

    step = ""
    option = ""  # the registry's name for it ("mnist_loss"), set when the registry builds it

    @property
    def name(self):
        return f"step{STEPS.index(self.step) + 1}_{self.step}"

    def check(self, model, dls) -> None:
        """Refuse, before training, a choice that cannot work with this model or data."""


def checked(cb, step: str, option: str):
    """What `option`'s factory returned, if it is a `step` step (named after the option); a plugin's mistake
    gets one clear line."""
    if not (isinstance(cb, StepCallback) and cb.step == step):
        raise UsageError(
            f"{step} option {option!r} returned {type(cb).__name__}; a {step} option returns a {step} step "
            "(e.g. `return Loss(per_item, binary=True)`: see experiments/my_steps.py)"
        )
    cb.option = option
    return cb


def positive(key: str, value, allow_zero: bool = False):
    if value is not None and (value < 0 or (value == 0 and not allow_zero)):
        raise UsageError(
            f"{key} must be {'zero or more' if allow_zero else 'greater than zero'}, got {value}"
        )
    return value
