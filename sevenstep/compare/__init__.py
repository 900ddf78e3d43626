"""Comparisons: the pixel-similarity baseline and several recipes on one source and split, over one seed or
several, one table that says how sure it is, and one report folder.

    plan.py      a comparison file, read and checked whole before anything trains (load -> Plan)
    runner.py    run(plan): the baseline, then every recipe on every seed, into one report folder
    grid.py      the (method, seed) runs as a grid on the trials' workers (sevenstep/trials/): --workers,
                 Ctrl-C, continuing
    baseline.py  fastbook's pixel-similarity baseline: the mean image of each class, the nearest one wins
    report.py    one row per method (methods), the table (text, Markdown, CSV), results.json, the plots
    page.py      the comparison's report.html
    simulate.py  the paired verdicts' calibration (sevenstep/stats.py), by simulation
"""

from ..utils.lazy import exports

__all__ = ["Plan", "load", "run", "Result", "Method", "methods", "summary", "table", "legend"]
__getattr__ = exports(
    __name__, {"Plan": ".plan", "load": ".plan", "run": ".runner"} | {n: ".report" for n in __all__[3:]}
)
