"""Running a sweep: its study opened (or continued), its workers started, and its report written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from .spec import Sweep


def run(
    sweep: Sweep,
    runs_dir: str | Path = "runs",
    n_workers: int = 1,
    storage: str | None = None,
    wandb_mode: str = "offline",
    wandb_dir: str | Path = ".",
    log=print,
) -> dict[str, Any]:
    """Run the sweep's trials on `n_workers` processes until none is left, then write its report.
    The sweep's folder is runs_dir/sweep-<name>/: trials/, the report, and the default journal storage."""
    from .. import data
    from ..compare import baseline
    from ..data import sources
    from ..trials import workers
    from ..trials.study import open_study, recover_stale, storage_for
    from . import report

    if n_workers < 1:
        raise UsageError(f"--workers must be at least 1, got {n_workers}")
    sweep_dir = Path(runs_dir) / sweep.group
    sweep_dir.mkdir(parents=True, exist_ok=True)
    store = storage_for(storage, sweep_dir)
    study = open_study(sweep, store)
    if n := recover_stale(study, store):
        log(f"{n} trial(s) left unfinished by a stopped process will run again")
    if hasattr(store, "engine"):  # forked workers open their own connections, never the parent's
        store.engine.dispose()
    base = sweep.recipe({}, sweep.name)
    sources.resolve(base.data["source"])  # prepares embedded data once, before the workers start
    log(
        f"sweep {sweep.name}: {sweep.sampler} over {', '.join(d.key for d in sweep.space)}; "
        f"{sweep.metric} ({sweep.direction}); {n_workers} worker(s)"
    )
    log(f"page: {sweep_dir / 'report.html'} (written as trials end; it reloads itself until the sweep ends)")
    args = (
        ("sevenstep.sweep.spec:load", str(sweep.file)),
        storage,
        str(sweep_dir),
        wandb_mode,
        str(wandb_dir),
        None,
    )
    interrupted = workers.run_workers(args, n_workers)
    # the baseline only now: torch computes nothing in this process before the workers are forked
    reference = baseline.run(data.dataloaders(base.data["source"], seed=base.seed)).accuracy
    summary = report.write(study, sweep, sweep_dir, reference)
    return summary | {"interrupted": interrupted}
