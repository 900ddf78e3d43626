"""A sweep's Optuna study: its storage (a journal file, or any Optuna URL several machines share), the queue
of a grid's points, and the trials left unfinished by a stopped process.

What Optuna does not do, and is written here: a grid's points are enqueued once, by whichever process
creates the study, and workers only take enqueued trials (Optuna's GridSampler may give a running point to
a second worker); a trial stopped by Ctrl-C or a killed process is put back in the queue to run again.
"""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path

from ..errors import UsageError
from ..utils import signals

READY = "sevenstep.ready"  # a study attribute: the study's space, written once its grid is enqueued


def storage_for(url: str | None, sweep_dir: Path):
    """An Optuna storage: a URL (postgresql+psycopg://, mysql://, sqlite:///) or a journal file path."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    if url and "://" in url:
        for _ in range(5):  # two processes creating the tables at once: the loser finds them next time
            try:
                return optuna.storages.RDBStorage(url)
            except Exception as e:
                error = e
                time.sleep(0.2 + random.random())
        said = str(error)[:200]
        raise UsageError(
            f"--storage {masked(url)}: cannot open it ({type(error).__name__}: {masked(said, url)})"
        )
    path = Path(url) if url else sweep_dir / "study.journal"
    path.parent.mkdir(parents=True, exist_ok=True)
    # the open lock (O_EXCL on a lock file) works on network filesystems, where links may not
    try:  # reading the journal: Optuna skips a torn last line (what a kill leaves), not a damaged one
        return optuna.storages.JournalStorage(
            JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        )
    except (
        ValueError,
        UnicodeDecodeError,
        AttributeError,
        KeyError,
        TypeError,
    ):  # JSONDecodeError is a ValueError
        raise UsageError(_damaged(path)) from None


def _damaged(path: Path) -> str:
    """Which line of a journal is not one of Optuna's records."""
    import json

    with open(path, "rb") as f:
        for n, line in enumerate(f, 1):
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if line.endswith(b"\n") and not (isinstance(record, dict) and "op_code" in record):
                return (f"{path} is not an Optuna journal, or is damaged at line {n} (not one of Optuna's "
                        f"records); remove that line, or the file to start the sweep afresh")  # fmt: skip
    return f"{path} is not an Optuna journal that this Optuna can read; remove it to start the sweep afresh"


def masked(text: str, url: str | None = None) -> str:
    """`text` with the password of storage URL `url` (by default, `text` is the URL) as ***: an error message
    is printed, pasted into issues and kept in CI logs."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        password = make_url(url or text).password
    except (ArgumentError, ValueError):
        return text
    if not password:
        return text
    from urllib.parse import quote

    return text.replace(quote(str(password), safe=""), "***").replace(str(password), "***")


def _sampler(sweep):
    import optuna

    return optuna.samplers.TPESampler() if sweep.sampler == "tpe" else optuna.samplers.RandomSampler()


def _pruner(sweep):
    import optuna

    p = sweep.pruner
    if p["name"] == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=p["n_startup_trials"], n_warmup_steps=p["n_warmup_steps"]
        )
    return optuna.pruners.NopPruner()


def open_study(sweep, storage):
    """Create the study, or load the one of this name; whoever creates it enqueues a grid's points, once."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # sevenstep says what happens, one line a trial
    kwargs = dict(study_name=sweep.name, storage=storage, sampler=_sampler(sweep), pruner=_pruner(sweep))
    try:
        study = optuna.create_study(direction=sweep.direction, **kwargs)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(**kwargs)
        _wait_until_ready(study, sweep)
        return study
    if sweep.sampler == "grid":
        for point in sweep.grid():
            study.enqueue_trial(point)
    study.set_user_attr(READY, sweep.signature())
    return study


def _wait_until_ready(study, sweep, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while READY not in study.user_attrs:
        if time.monotonic() > deadline:  # its creator died before enqueueing: finish its job
            for point in sweep.grid() if sweep.sampler == "grid" else []:
                study.enqueue_trial(point, skip_if_exists=True)
            study.set_user_attr(READY, sweep.signature())
            return
        time.sleep(0.5)
    if study.user_attrs[READY] != sweep.signature():
        kind = getattr(sweep, "kind", "sweep")
        what = "methods, recipes or seeds" if kind == "comparison" else "space, metric or base recipe"
        raise UsageError(
            f"the storage already holds a {kind} named {sweep.name!r} with other {what}; give this {kind} "
            "another name (name = ... in its file), or use another --storage"
        )


UNMARKED_AFTER = 60.0  # seconds: a claimed trial is marked with its process at once; unmarked, it was killed


def recover_stale(study, storage, unmarked_after: float = UNMARKED_AFTER) -> int:
    """Trials left running by a process of this machine that no longer exists go back in the queue, and so do
    trials that no process marked as its own (one killed between claiming a trial and marking it)."""
    import datetime

    from optuna.trial import TrialState

    n, now = 0, datetime.datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if "pid" not in t.user_attrs:  # `next_trial` marks the host, then the pid: half-marked is unmarked
            started = t.datetime_start or now
            if (now - started).total_seconds() >= unmarked_after:
                n += requeue(study, storage, t)
        elif t.user_attrs.get("host") == socket.gethostname() and not _alive(t.user_attrs.get("pid", 0)):
            n += requeue(study, storage, t)
    return n


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return pid > 0


def requeue(study, storage, trial) -> int:
    """Mark an unfinished trial interrupted and enqueue its point again; 0 if another process beat us to it."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    with signals.deferred():  # marked interrupted but not queued again, its point would be lost
        # the point it was given (a grid's, enqueued) and what it had drawn itself: read from the storage, as
        # a trial stopped while it was claimed has no values filled in yet (its `params` are empty)
        point = storage.get_trial_system_attrs(trial._trial_id).get("fixed_params", {})
        point = {**point, **storage.get_trial_params(trial._trial_id)}
        try:
            storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
            study.tell(trial.number, state=TrialState.FAIL)
        except (UpdateFinishedTrialError, ValueError, RuntimeError):
            return 0
        if point:  # nothing given or drawn yet: a new trial draws its own, nothing to put back
            study.enqueue_trial(point)
    return 1


def interrupted(trial) -> bool:
    """A trial stopped before it ended, whose point was queued again (`requeue`)."""
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get("interrupted"))


def counted(study) -> int:
    """Trials that count toward `trials`: finished ones (not interrupted) and running ones."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return sum(1 for t in trials if t.state != TrialState.WAITING and not interrupted(t))


def next_trial(study, storage, sweep):
    """The next trial for this worker, or None when the sweep is done; marked with this host and process, so
    that `recover_stale` can put it back if this process dies.

    Optuna's ask() takes an enqueued trial the same way (set_trial_state_values to RUNNING succeeds for one
    process only, in every storage), but makes a new trial when none is waiting: a grid must not, so for a
    grid an empty queue means done. `_trial_id` is Optuna's own handle for a trial in its storage."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    trial = None
    if sweep.sampler != "grid":
        trial = study.ask() if counted(study) < sweep.trials else None
    for t in (
        study.get_trials(deepcopy=False, states=(TrialState.WAITING,)) if sweep.sampler == "grid" else []
    ):
        try:
            if storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):
                trial = optuna.Trial(study, t._trial_id)
                break
        except UpdateFinishedTrialError:
            continue
    if trial is not None:
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", os.getpid())
    return trial
