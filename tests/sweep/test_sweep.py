"""Sweeps on Optuna: real worker processes, real storages (a journal file, SQLite, a throwaway PostgreSQL),
interruption and continuation, failing trials; and the parallel-safety cases sweeps depend on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import SHIPPED_SWEEPS, wait_for
from sevenstep import sweep as sweeps
from sevenstep.cli import app
from sevenstep.cli.common import free_port
from sevenstep.errors import UsageError
from sevenstep.loop import run_folder
from sevenstep.sweep import spec
from sevenstep.tracking import local_runs
from sevenstep.trials import study as sweep_study

EXPERIMENTS = Path("experiments").resolve()
LINEAR = Path("tests/recipes/linear_20_epochs.toml").resolve()  # fastbook's linear recipe at 20 epochs
GRID = {"steps.init.name": ["zeros", "normal"], "steps.loss.name": ["mnist_loss", "bce"]}


def _sweep_file(tmp_path: Path, name="tiny", space=GRID, extra="", sets='"steps.repeat.n" = [1]') -> Path:
    def toml(v):  # JSON's lists, strings, numbers and booleans are TOML's; a range is an inline table
        return (
            "{ " + ", ".join(f"{k} = {toml(x)}" for k, x in v.items()) + " }"
            if isinstance(v, dict)
            else json.dumps(v)
        )

    file = tmp_path / f"{name}.toml"
    lines = [f'"{k}" = {toml(v)}' for k, v in space.items()]
    file.write_text(
        f'name = "{name}"\nrecipe = "{LINEAR}"\nmetric = "accuracy"\n{extra}\n[space]\n'
        + "\n".join(lines)
        + f"\n{sets}\n"
    )
    return file


def _sweep(file: Path, runs: Path, *args: str, wandb_dir: Path | None = None, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sevenstep", "sweep", str(file), "--runs-dir", str(runs), *args]
    cmd += ["--wandb-dir", str(wandb_dir)] if wandb_dir else ["--wandb", "disabled"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _finish(proc: subprocess.Popen, timeout=300) -> tuple[str, str]:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    return out, err


def _study(file: Path, storage: str):
    import optuna

    sweep = sweeps.load(file)
    return optuna.load_study(study_name=sweep.name, storage=sweep_study.storage_for(storage, file.parent))


def _points(study) -> Counter:
    from optuna.trial import TrialState

    return Counter(tuple(sorted(t.params.items())) for t in study.get_trials(states=(TrialState.COMPLETE,)))


def test_a_grid_on_two_workers_runs_each_point_once_and_its_best_recipe_reproduces(tmp_path):
    file = _sweep_file(tmp_path)
    out, err = _finish(_sweep(file, tmp_path / "runs", "--workers", "2", "--json", wandb_dir=tmp_path))
    summary = json.loads(out)
    trials = summary["trials"]
    assert summary["counts"] == {"complete": 4} and len(trials) == 4
    assert len({(t["steps.init.name"], t["steps.loss.name"]) for t in trials}) == 4  # four distinct points
    assert {"[worker 1]", "[worker 2]"} <= {
        line.split("]")[0] + "]" for line in err.splitlines() if "]" in line
    }
    accs = [t["accuracy"] for t in trials]
    assert accs == sorted(accs, reverse=True)  # sorted by the metric, best first
    for t in trials:  # each trial a full run, saved
        saved = json.loads((Path(t["run_dir"]) / "result.json").read_text())
        assert saved["accuracy"] == pytest.approx(t["accuracy"])
        assert saved["recipe"]["steps"]["init"]["name"] == t["steps.init.name"]
    listed = local_runs.list_runs(tmp_path / "wandb")
    assert len(listed) == 4 and {r["group"] for r in listed} == {"sweep-tiny"}
    assert {r["job_type"] for r in listed} == {"trial"} and {r["state"] for r in listed} == {"finished"}
    assert sorted(r["config"]["trial.number"] for r in listed) == sorted(t["trial"] for t in trials)
    sweep_dir = Path(summary["sweep_dir"])
    for name in ("trials.csv", "trials.md", "trials.json", "history.png", "per_key.png", "study.journal"):
        assert (sweep_dir / name).is_file(), name

    rerun = CliRunner().invoke(
        app, ["run", summary["best_recipe"], "--json", "--runs-dir", str(tmp_path / "r")]
    )
    assert rerun.exit_code == 0, rerun.output
    assert json.loads(rerun.stdout)["accuracy"] == pytest.approx(summary["best"]["accuracy"])


def _two_processes_share_one_storage(tmp_path: Path, storage: str) -> None:
    space = {"steps.init.name": ["zeros", "normal", "kaiming"], "steps.loss.name": ["mnist_loss", "bce"]}
    file = _sweep_file(tmp_path, space=space, sets='"steps.repeat.n" = [10]')  # long enough to overlap
    procs = [_sweep(file, tmp_path / f"machine{i}", "--storage", storage) for i in (1, 2)]
    for p in procs:
        _finish(p)
    points = _points(_study(file, storage))
    assert len(points) == 6 and set(points.values()) == {1}  # every point, none twice
    ran = [d for i in (1, 2) for d in (tmp_path / f"machine{i}" / "sweep-tiny" / "trials").glob("*")]
    assert len(ran) == 6


def test_two_sweep_processes_share_a_journal_file(tmp_path):
    _two_processes_share_one_storage(tmp_path, str(tmp_path / "shared" / "study.journal"))


def test_two_sweep_processes_share_a_sqlite_database(tmp_path):
    _two_processes_share_one_storage(tmp_path, f"sqlite:///{tmp_path / 'study.db'}")


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on a free loopback port, started with initdb/pg_ctl, removed after."""
    bin_dirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    initdb = shutil.which("initdb") or next(
        (str(d / "initdb") for d in bin_dirs if (d / "initdb").exists()), None
    )
    if not initdb:
        pytest.skip(
            "PostgreSQL is not installed (Debian package postgresql): the PostgreSQL storage test is skipped"
        )
    pytest.importorskip("psycopg", reason="psycopg is not installed: the PostgreSQL storage test is skipped")
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    root = Path(tempfile.mkdtemp(prefix="sevenstep-pg-", dir="/tmp"))
    root.chmod(0o755)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []  # PostgreSQL refuses root
    if as_user:
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"
    try:
        subprocess.run(
            [*as_user, initdb, "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [*as_user, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
            check=True,
            capture_output=True,
            timeout=120,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"could not start a PostgreSQL server here ({e}): the PostgreSQL storage test is skipped")
    yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(
        [*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60
    )
    shutil.rmtree(root, ignore_errors=True)


def test_two_sweep_processes_share_a_postgresql_server(tmp_path, postgres_url):
    _two_processes_share_one_storage(tmp_path, postgres_url)


def test_an_interrupted_sweep_continues_where_it_stopped(tmp_path):
    file = _sweep_file(tmp_path, sets='"steps.repeat.n" = [60]\n"data.bs" = [16]')
    runs = tmp_path / "runs"
    first = _sweep(file, runs, "--workers", "2")
    trials = runs / "sweep-tiny" / "trials"

    def training() -> bool:
        """A trial has ended, and another has checkpointed an epoch within its first second (60 epochs take
        ~3.5 s on a quiet machine: a Ctrl-C now finds it training, not saving, whose save it would wait for)."""
        folders = list(trials.glob("*/")) if trials.exists() else []
        ended = [f for f in folders if (f / "result.json").exists()]
        return bool(ended) and any(
            (f / "checkpoint.pt").exists()
            and f not in ended
            and time.time() - (f / "recipe.toml").stat().st_mtime < 1
            for f in folders
        )

    # (between two trials a worker draws the sweep's page: a Ctrl-C there finds no trial to stop)
    wait_for(training, timeout=180, what="a trial in training after one has ended")
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=180)
    assert first.returncode == 130, err
    assert "Traceback" not in err and "run the same command again" in err
    done_before = len(_points(_study(file, str(runs / "sweep-tiny" / "study.journal"))))
    assert 1 <= done_before < 4
    # each worker's trial in progress was stopped (saved as `interrupted` when it was training) and re-queued
    assert "it will run again" in err
    for saved in trials.glob("*/result.json"):
        assert json.loads(saved.read_text())["stop_reason"] in ("epochs_done", "interrupted")

    _finish(_sweep(file, runs, "--workers", "2"))
    points = _points(_study(file, str(runs / "sweep-tiny" / "study.journal")))
    assert len(points) == 4 and set(points.values()) == {1}  # the rest ran; nothing finished ran twice


def test_a_failing_trial_does_not_stop_the_sweep(tmp_path):
    space = {"steps.loss.name": ["mse"], "steps.step.lr": [1e12, 0.5]}
    file = _sweep_file(tmp_path, space=space, extra='[pruner]\nname = "none"')
    out, _ = _finish(_sweep(file, tmp_path / "runs", "--json"))
    summary = json.loads(out)
    assert summary["counts"] == {"complete": 1, "failed": 1}
    failed = next(t for t in summary["trials"] if t["state"] == "failed")
    assert failed["steps.step.lr"] == 1e12 and "diverged" in failed["error"]
    assert summary["best"]["steps.step.lr"] == 0.5


@pytest.mark.parametrize(
    "space, extra, expected",
    [
        ({"steps.init.nme": [0.5]}, "", "space steps.init.nme: init option 'normal' has no parameter 'nme'"),
        ({"steps.optim.name": ["adam"]}, "", "space steps.optim.name: no such key"),
        ({"steps.predict.hidden": [[30]]}, "", "predict option 'linear' has no parameter 'hidden'"),
        (
            {"steps.init.name": ["zeros", "normal"], "steps.init.std": [0.5]},
            "",
            "option 'zeros' has no parameter",
        ),
        ({"steps.step.lr": ["fast"]}, "", "steps.step.lr: expected a number (float), got 'fast'"),
        ({"steps.step.lr": {"low": 0.1, "high": 1.0}}, "", "a grid needs a list of values"),
        ({"steps.step.lr": {"low": 0, "high": 1.0, "log": True}}, 'sampler = "tpe"', "low > 0 with log"),
        ({"steps.step.lr": [0.1]}, 'sampler = "bayes"', "sampler must be one of grid, random, tpe"),
        ({"steps.step.lr": [0.1]}, 'metric = "f1"', "metric must be one of train_loss, valid_loss, accuracy"),
        (  # #24 item 15: a 10^6-point grid was checked in silence for 77 s, then enqueued for 25 minutes
            {f"steps.{s}": [0.1 * i for i in range(1, 11)] for s in ("step.lr", "init.std")}
            | {"seed": list(range(10_000))},
            "",
            "the grid has 1,000,000 points (10 x 10 x 10000); a sweep runs at most 10,000",
        ),
        (  # sampled, a space that large is checked value by value: a bad one is still found, at once
            {
                "steps.step.lr": [0.1 * i for i in range(1, 101)],
                "seed": list(range(100)),
                "steps.init.std": [1, "x"],
            },
            'sampler = "random"',
            "steps.init.std: expected a number (float), got 'x'",
        ),
    ],
)
def test_bad_sweep_files_exit_2_before_anything_trains(tmp_path, space, extra, expected):
    text = _sweep_file(tmp_path, space=space, sets="").read_text()
    if extra.startswith(("sampler", "metric")):
        key = extra.split(" ")[0]
        text = "\n".join(line for line in text.splitlines() if not line.startswith(f"{key} ="))
    (tmp_path / "bad.toml").write_text(f"{extra}\n{text}")
    with pytest.raises(UsageError) as e:
        sweeps.load(tmp_path / "bad.toml")
    assert expected in str(e.value)
    result = CliRunner().invoke(
        app, ["sweep", str(tmp_path / "bad.toml"), "--runs-dir", str(tmp_path / "runs")]
    )
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()


def test_shipped_sweeps_load():
    for f in (EXPERIMENTS / name for name in SHIPPED_SWEEPS):
        sweep = sweeps.load(f)
        assert sweep.space and sweep.sampler in typing.get_args(spec.SAMPLERS)


# --- running in parallel safely -------------------------------------------------------------------------


def test_two_processes_preparing_embedded_data_at_once_both_succeed(tmp_path):
    code = "from sevenstep.data import sources; print(len(sources.image_files(sources.resolve('mnist5k-3v7').path)))"
    for attempt in range(3):
        env = os.environ | {"SEVENSTEP_CACHE": str(tmp_path / f"cache{attempt}")}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], results
        assert [out.strip() for out, _ in results] == ["1000", "1000"]


def test_a_name_cannot_leave_the_runs_folder(tmp_path):
    runs = tmp_path / "a" / "runs"
    result = CliRunner().invoke(
        app, ["run", str(LINEAR), "--set", 'name="../../escaped"', "--runs-dir", str(runs)]
    )
    assert result.exit_code == 2 and "cannot name a folder inside the runs folder" in result.output
    assert not any(tmp_path.rglob("escaped*"))


def test_runs_finishing_in_the_same_second_never_share_a_folder(tmp_path):
    made, errors = [], []

    def claim():
        try:
            made.append(run_folder.new_folder(tmp_path, "same"))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=claim) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(made)) == 16 and all(p.is_dir() for p in made)


def test_a_sweeps_trials_can_each_train_on_two_processes(tmp_path):
    pytest.importorskip("accelerate")
    # one trial: each costs a torchrun launch of 2 processes (~20 s here); the trial loop is tested elsewhere
    file = _sweep_file(tmp_path, space={"steps.step.lr": [1.0]}, extra="processes = 2",
                       sets='"steps.repeat.n" = [2]')  # fmt: skip
    out, _ = _finish(_sweep(file, tmp_path / "runs", "--json", wandb_dir=tmp_path))
    summary = json.loads(out)
    assert summary["counts"] == {"complete": 1}
    for t in summary["trials"]:
        saved = json.loads((Path(t["run_dir"]) / "result.json").read_text())
        assert saved["processes"] == 2 and saved["accuracy"] == pytest.approx(t["accuracy"])
    listed = local_runs.list_runs(tmp_path / "wandb")
    assert len(listed) == 1 and {(r["group"], r["job_type"]) for r in listed} == {("sweep-tiny", "trial")}
    assert {r["config"]["data.effective_bs"] for r in listed} == {512}


def test_a_pruner_with_data_parallel_trials_is_refused(tmp_path):
    file = _sweep_file(
        tmp_path, space={"steps.step.lr": [0.5]}, extra='processes = 2\n[pruner]\nname = "median"'
    )
    with pytest.raises(UsageError, match="a pruner needs each trial in one process"):
        sweeps.load(file)


def test_the_median_pruner_stops_a_trial_that_lags_after_an_epoch(tmp_path):
    # zero init: lr 1.0 is far ahead after one epoch; lr 1e-6 has learnt nothing and is pruned there
    space = {"steps.init.name": ["zeros"], "steps.step.lr": [1.0, 1e-6]}
    extra = '[pruner]\nname = "median"\nn_startup_trials = 1\nn_warmup_steps = 0'
    file = _sweep_file(tmp_path, space=space, extra=extra, sets='"steps.repeat.n" = [3]')
    out, err = _finish(_sweep(file, tmp_path / "runs", "--json"))
    trials = {t["steps.step.lr"]: t for t in json.loads(out)["trials"]}
    assert trials[1.0]["state"] == "complete" and trials[1e-6]["state"] == "pruned"
    saved = json.loads((Path(trials[1e-6]["run_dir"]) / "result.json").read_text())
    assert saved["stop_reason"] == "pruned" and len(saved["epochs"]) == 1
    assert "pruned after 1 epoch(s)" in err


def test_repeats_make_each_trial_the_mean_over_seeds_with_its_interval(tmp_path):
    space = {"steps.init.name": ["zeros", "normal"]}
    file = _sweep_file(tmp_path, space=space, extra="repeats = 3", sets='"steps.repeat.n" = [2]')
    out, _ = _finish(_sweep(file, tmp_path / "runs", "--json"))
    trials = json.loads(out)["trials"]
    assert len(trials) == 2 and {t["state"] for t in trials} == {"complete"}
    for t in trials:
        values = [float(v) for v in t["values"].split()]
        assert len(values) == 3 and len(t["run_dirs"]) == 3
        seeds = [json.loads((Path(d) / "result.json").read_text())["recipe"]["seed"] for d in t["run_dirs"]]
        saved = [json.loads((Path(d) / "result.json").read_text())["accuracy"] for d in t["run_dirs"]]
        assert seeds == [1, 2, 3] and saved == pytest.approx(values)
        assert t["accuracy"] == pytest.approx(sum(values) / 3)
        assert t["interval"][0] <= t["accuracy"] <= t["interval"][1]
    assert trials[0]["vs_best"] == "best"
    assert trials[1]["vs_best"].split(" (p=")[0] in ("within noise", "worse")
    table = (tmp_path / "runs" / "sweep-tiny" / "trials.md").read_text()
    assert "| vs_best |" in table and "| interval |" in table
    # #36 item 4: best.toml said `sevenstep run` it, whose one seed gave another number: it says --seeds 3,
    # and that gives the trial's value
    best = tmp_path / "runs" / "sweep-tiny" / "best.toml"
    assert f"reproduce it with: sevenstep run {best} --seeds 3" in best.read_text()
    again = CliRunner().invoke(app, ["run", str(best), "--seeds", "3", "--json", "--wandb", "disabled",
                                     "--runs-dir", str(tmp_path / "again")])  # fmt: skip
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1])["mean"] == pytest.approx(trials[0]["accuracy"])


@pytest.mark.parametrize(
    "extra, expected",
    [
        ("repeats = 0", "repeats must be at least 1"),
        ('repeats = 2\n[pruner]\nname = "median"', "with repeats = 2 a trial is several runs"),
    ],
)
def test_bad_repeats_are_refused(tmp_path, extra, expected):
    file = _sweep_file(tmp_path, extra=extra)
    result = CliRunner().invoke(app, ["sweep", str(file), "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_a_trial_stopped_or_killed_while_it_is_claimed_keeps_its_point(tmp_path):
    """#24 item 5: Ctrl-C while a worker claims a grid trial put back `{}` (its values are filled in only when
    it runs): a point was lost and another ran twice. A worker killed in that moment left the trial unmarked
    (no host, no pid), running for ever. Both moments are made here in order, then the sweep is run."""
    file, journal = _sweep_file(tmp_path), tmp_path / "study.journal"
    sweep = sweeps.load(file)
    storage = sweep_study.storage_for(str(journal), tmp_path)
    study = sweep_study.open_study(sweep, storage)
    stopped = sweep_study.next_trial(study, storage, sweep)  # claimed; then the Ctrl-C the worker holds
    assert stopped.params == {} and sweep_study.requeue(study, storage, stopped) == 1
    from optuna.trial import TrialState

    (waiting, *_) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING)  # killed: not marked
    assert sweep_study.recover_stale(study, storage) == 0  # it may be a live worker about to mark it
    storage.set_trial_user_attr(waiting._trial_id, "host", socket.gethostname())  # half-marked: no pid yet
    assert sweep_study.recover_stale(study, storage) == 0  # (CI: a live worker's trial was taken here)
    assert sweep_study.recover_stale(study, storage, unmarked_after=0) == 1

    out, _ = _finish(_sweep(file, tmp_path / "runs", "--storage", str(journal), "--json"))
    assert json.loads(out)["counts"] == {"complete": 4}
    points = _points(_study(file, str(journal)))
    assert sorted(points.values()) == [1, 1, 1, 1] and len(points) == 4  # every grid point, once


def test_a_worker_killed_outright_is_said_and_its_trial_runs_again(tmp_path):
    """SIGKILL to a worker mid-trial (the worker kills itself, once, from a step of its own): the command says
    so and exits 1 (not 0 with a trial `running` for ever); run again, that trial runs and the sweep completes."""
    marker = tmp_path / "killed-once"
    (tmp_path / "killer.py").write_text(
        "import os, signal\nfrom pathlib import Path\nfrom sevenstep.registry import option\n"
        "from sevenstep.steps.stop import Stop\n\n"
        "class KillOnce(Stop):\n    def after_epoch(self):\n"
        f"        if not Path({str(marker)!r}).exists():\n"
        f"            Path({str(marker)!r}).touch()\n            os.kill(os.getpid(), signal.SIGKILL)\n\n"
        "@option('stop')\ndef kill_once() -> Stop:\n    return KillOnce()\n"
    )
    (tmp_path / "base.toml").write_text(
        'plugins = ["killer.py"]\n[data]\nbs = 64\n[steps.repeat]\nname = "epochs"\nn = 1\n'
        '[steps.stop]\nname = "kill_once"\n'
    )
    file = tmp_path / "kill.toml"
    file.write_text('name = "kill"\nrecipe = "base.toml"\nmetric = "accuracy"\n[space]\n'
                    '"steps.init.name" = ["zeros", "normal"]\n')  # fmt: skip
    proc = _sweep(file, tmp_path / "runs", "--workers", "2")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "1 trial(s) were left running by a worker process that was killed" in err
    assert "Traceback" not in err
    out, err = _finish(_sweep(file, tmp_path / "runs", "--workers", "2", "--json"))
    assert json.loads(out)["counts"] == {"complete": 2}
