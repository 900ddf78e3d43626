"""The seven steps of the SGD recipe, one module each; importing this package fills the registry."""

from . import gradient, init, loss, predict, repeat, step, stop  # noqa: F401
