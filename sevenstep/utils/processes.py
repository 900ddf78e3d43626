"""The Python processes sevenstep starts (torchrun's, the dashboard's) never import from the current folder.

`python -m` puts the current folder first on sys.path: a `fastprogress.py` or `optuna_dashboard.py` in a cloned
experiments folder would run instead of the library. `-P` (Python 3.11+) leaves it off for the process itself,
and PYTHONSAFEPATH for every process it starts in turn (torchrun's workers are started by torchrun).
"""

from __future__ import annotations

import os
import sys


def python_m(module: str, *args: str) -> list[str]:
    return [sys.executable, "-P", "-m", module, *args]


def safe_env(env: dict[str, str] | None = None) -> dict[str, str]:
    return dict(os.environ if env is None else env) | {"PYTHONSAFEPATH": "1"}


def quiet_warnings() -> None:
    """Libraries' deprecation notices are not the user's business: the CLI's process and every worker's."""
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="fastai")
