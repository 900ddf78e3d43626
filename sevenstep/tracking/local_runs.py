"""`sevenstep runs`: the W&B runs logged on this machine (not the run folders under runs/), newest first, read
with wandb's own reader (`wandb leet inspect`)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from .. import metrics
from ..errors import UsageError
from ..loop import run_folder
from ..registry import STEPS


def _leet_inspect() -> list[str]:
    """The command for wandb's log reader. `wandb leet inspect` is a Python CLI that starts wandb-core's Go
    reader; called directly (as that CLI does) it skips Python's start-up, most of the command's time."""
    import importlib.util

    spec = importlib.util.find_spec("wandb")  # found, not imported: importing wandb takes a second
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("wandb is not installed; install it with: pip install wandb")
    core = Path(spec.submodule_search_locations[0]) / "bin" / "wandb-core"
    if not core.exists():
        raise UsageError(f"wandb's log reader {core} is missing; reinstall wandb (pip install --force wandb)")
    return [str(core), "leet", "inspect", "--no-observability"]


def _command(file: Path, *args: str) -> list[str]:
    return [*_leet_inspect(), *args, "--run-file", str(file), str(file.parent.parent)]


def _inspect(file: Path, *args: str) -> str:
    try:
        done = subprocess.run(_command(file, *args), capture_output=True, text=True, timeout=60)
    except OSError:
        return ""
    return done.stdout if done.returncode == 0 else ""


def _run_record(file: Path) -> dict[str, Any]:
    """The run record (group, job type) sits near the start of the log: stop reading once it is found."""
    try:
        proc = subprocess.Popen(
            _command(file, "--json"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
    except OSError:
        return {}
    with proc:
        try:
            for line in proc.stdout:
                if '"type":"run"' in line:
                    return json.loads(line).get("run") or {}
            return {}
        except (json.JSONDecodeError, AttributeError):
            return {}
        finally:
            proc.kill()


def read(file: Path) -> dict[str, Any]:
    """One run: name, group, job type, config, summary and state; `state: unreadable` for a broken log.

    A run whose process was killed has a partial log: any field may be missing or null."""
    try:
        info = json.loads(_inspect(file, "--summary", "--json") or "{}")
    except (json.JSONDecodeError, subprocess.TimeoutExpired):
        info = {}
    info = info if isinstance(info, dict) else {}
    run = _run_record(file) if info else {}
    config, summary = info.get("config") or {}, info.get("summary") or {}
    if run.get("job_type") == "baseline":
        steps = f"baseline ({config.get('baseline.distance', '?')})"
    else:
        steps = " ".join(str(config.get(f"steps.{s}.name", "?")) for s in STEPS)
    state = info.get("state") if info else "unreadable"
    run_dir = config.get("run_dir")
    moved = config.get("run_dir_from_wandb")
    if run_dir and moved and not Path(run_dir).is_dir():  # the project moved: found from the W&B folder
        candidate = (file.parent.parent.parent / moved).resolve()  # <wandb-dir>/wandb/<run>/run-x.wandb
        run_dir = str(candidate) if candidate.is_dir() else run_dir
    if info and state not in ENDED:  # its log never ended (wandb says running, or unknown when cut early)
        alive = run_dir and Path(run_dir).is_dir() and run_folder.being_trained(Path(run_dir))
        state = "running" if alive else "killed"  # no process trains its folder: it was killed
    return {
        "id": info.get("run_id") or file.parent.name,
        "name": info.get("name") or file.parent.name,
        "group": run.get("run_group") or "",
        "job_type": run.get("job_type") or "",
        "tags": list(run.get("tags") or []),
        "notes": run.get("notes") or "",
        "started": str(info.get("start_time") or ""),
        "state": state,
        "steps": steps,
        "source": config.get("data.source", ""),
        "accuracy": summary.get("accuracy"),
        "stop_reason": summary.get("stop_reason") or "",
        "path": str(run_dir or file.parent),  # the run's own folder; else its W&B folder
        "wandb_dir": str(file.parent),
        "config": config,
        "summary": {k: v for k, v in summary.items() if not isinstance(v, dict)},
    }


ENDED = ("finished", "failed", "crashed")  # the states of a log whose run ended; any other one never did


def logged_epochs(run_folder: Path) -> set[int]:
    """The epochs whose validation row a run's log holds (empty for a log that cannot be read)."""
    epochs = set()
    for file in run_folder.glob("*.wandb"):
        for line in _inspect(file, "--json").splitlines():
            try:
                item = json.loads(line).get("history", {}).get("item", {})
            except (json.JSONDecodeError, AttributeError):
                continue
            if "valid/accuracy" in item and "epoch" in item:
                epochs.add(int(item["epoch"]))
    return epochs


def list_runs(folder: Path, group: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
    """The runs under a wandb folder, the most recently started first; `group` and `name` keep those whose group or name
    contains that text (case aside)."""
    if not folder.exists():
        raise UsageError(
            f"{folder} does not exist; W&B runs are logged to ./wandb unless --wandb-dir says otherwise"
        )
    runs = _one_row_a_run([read(f) for f in folder.rglob("*.wandb")])
    runs.sort(key=lambda r: r["started"], reverse=True)  # by when each began, not when it was last written
    for key, wanted in (("group", group), ("name", name)):
        if wanted:
            runs = [r for r in runs if wanted.lower() in r[key].lower()]
    return runs


def _one_row_a_run(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A resumed run has a log per process that trained it, all with the run's id: one row, the latest log's
    state and summary, the first one's start, and every log in `wandb_dirs`."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in logs:
        by_id.setdefault(r["id"], []).append(r)
    rows = []
    for same in by_id.values():
        same.sort(key=lambda r: r["started"])
        rows.append(same[-1] | {"started": same[0]["started"], "wandb_dirs": [r["wandb_dir"] for r in same]})
    return rows


SUMMARY_RUNS = {"comparison": "comparison table", "seeds": "seeds summary"}  # job type -> steps cell
SAME_EVERYWHERE = (
    "name",
    "seed",
    "run_dir",
    "run_dir_from_wandb",
    "compare.",
    "versions.",
    "trial.",
    "data.split",
)


def differing(found: list[dict[str, Any]]) -> list[str]:
    """The config keys whose value differs between the runs that have one (lr, epochs, a --set): what tells
    a sweep's trials or a comparison's recipes apart. Step names are in the steps column; names, seeds,
    folders and versions are not settings."""
    values: dict[str, set[str]] = {}
    for r in found:
        for k, v in r["config"].items():
            if not k.startswith(SAME_EVERYWHERE) and not k.endswith(".name"):
                values.setdefault(k, set()).add(json.dumps(v, sort_keys=True))
    return sorted(k for k, v in values.items() if len(v) > 1)


def table(found: list[dict[str, Any]]) -> list[list[str]]:
    """Rows for `sevenstep runs`: a header, then one row a run; `settings` holds what differs between them."""
    header = ["started", "name", "group", "steps (init predict loss gradient step repeat stop)", "settings"]
    # a column a declared final metric (sevenstep/metrics.py) that some run has; test: where a run had a test set
    names = [m.name for m in metrics.finals() if any(m.name in r["summary"] for r in found)] or ["accuracy"]
    tested = any("test/accuracy" in r["summary"] for r in found)
    rows = [header + [*names, *(["test"] if tested else []), "stop", "path"]]
    keys = differing(found)
    for r in found:
        accs = [_number(r["summary"].get(name)) for name in names]
        if tested:
            accs.append(_number(r["summary"].get("test/accuracy")))
        stop = r["stop_reason"] or ("-" if r["state"] == "finished" else r["state"])
        if r["summary"].get("resumed_from"):
            stop += f" (resumed after epoch {r['summary']['resumed_from']})"
        started = r["started"][:19].replace("T", " ") or "-"
        steps = SUMMARY_RUNS.get(r["job_type"], r["steps"])
        settings = " ".join(f"{_short(k)}={r['config'][k]}" for k in keys if k in r["config"]) or "-"
        rows.append([started, r["name"], r["group"] or "-", steps, settings, *accs, stop, _shown(r["path"])])
    return rows


def _number(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def _short(key: str) -> str:
    return key.removeprefix("steps.").removeprefix("data.")


def _shown(path: str) -> str:
    """A path under the current folder as a relative one: shorter, and as a user would type it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return path


def leet_view(found: list[dict[str, Any]], view: Path) -> list[str]:
    """A folder per run in `view`, as `wandb leet` reads them: named `run-<date>_<time>-<id>` and holding
    `run-<id>.wandb`, a link to the run's log. leet shows a run's data only under a name of that pattern whose
    <id> names the log inside (a link to the run's own folder, renamed, was listed with no data); its list
    shows the name's first ~35 columns, so <id> is what tells the runs apart: the comparison's label or the
    sweep's trial, then the seed. Returns the names, in `found`'s order."""
    names: list[str] = []
    for r in found:
        config = r["config"]
        lead = config.get("compare.label") or (
            f"trial{config['trial.number']}" if "trial.number" in config else r["name"]
        )
        seed = f"-s{config['seed']}" if "seed" in config else ""
        ident = re.sub(r"[^A-Za-z0-9]+", "-", f"{lead}{seed}").strip("-") or "run"
        started = re.sub(r"\D", "", r["started"])[:14].ljust(
            14, "0"
        )  # 2026-12-02T07:08:34Z -> 20261202070834
        for i, folder in enumerate(r.get("wandb_dirs") or [r["wandb_dir"]], 1):
            logs = sorted(Path(folder).glob("*.wandb"))
            if not logs:
                continue
            part = ident if i == 1 else f"{ident}-part{i}"  # a resumed run: one log a part
            while f"run-{started[:8]}_{started[8:]}-{part}" in names:
                part += "-2"
            name = f"run-{started[:8]}_{started[8:]}-{part}"
            (view / name).mkdir()
            (view / name / f"run-{part}.wandb").symlink_to(logs[0].resolve())
            names.append(name)
    return names
