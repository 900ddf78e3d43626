"""Sweeps: one recipe run over a space of values, on Optuna's studies, samplers, pruners and storages.

Every trial is a full sevenstep run (sevenstep.loop.train.run) with its own run folder and W&B run in the
sweep's group. The study lives in an Optuna storage: a journal file in the sweep's folder by default, or any
URL that several machines share; the same command run again continues it.

    spec.py      a sweep file, read and checked whole (load -> Sweep; its space, grid and recipes)
    runner.py    run(sweep): open the study, start the workers (sevenstep/trials/), write the report
    report.py    the trials table (best first), best.toml, and Optuna's plots with the baseline
    page.py      the sweep's report.html: its trials and Optuna's own figures
    dashboard.py Optuna Dashboard on the sweep's study, read-only and behind a token
"""

from ..utils.lazy import exports

__all__ = ["Sweep", "load", "run"]
__getattr__ = exports(__name__, {name: ".runner" if name == "run" else ".spec" for name in __all__})
