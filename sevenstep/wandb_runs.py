"""`sevenstep runs`: the W&B runs logged on this machine (not the run folders under runs/), newest first, read
with wandb's own reader (`wandb leet inspect`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .errors import UsageError
from .registry import STEPS


def _wandb_cli() -> str:
    beside = Path(sys.executable).with_name("wandb")  # the wandb installed with sevenstep, venv or not
    found = str(beside) if beside.exists() else shutil.which("wandb")
    if not found:
        raise UsageError("the `wandb` command was not found; install wandb (pip install wandb)")
    return found


def _inspect(file: Path, *args: str) -> str:
    done = subprocess.run(
        [_wandb_cli(), "leet", "inspect", *args, str(file)], capture_output=True, text=True, timeout=60
    )
    return done.stdout if done.returncode == 0 else ""


def _run_record(file: Path) -> dict[str, Any]:
    """The run record (group, job type) sits near the start of the log: stop reading once it is found."""
    with subprocess.Popen(
        [_wandb_cli(), "leet", "inspect", "--json", str(file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            for line in proc.stdout:
                record = json.loads(line)
                if isinstance(record, dict) and record.get("type") == "run":
                    return record.get("run") or {}
            return {}
        except json.JSONDecodeError:
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
    return {
        "name": info.get("name") or file.parent.name,
        "group": run.get("run_group") or "",
        "job_type": run.get("job_type") or "",
        "started": str(info.get("start_time") or ""),
        "state": info.get("state") or ("unreadable" if not info else "unfinished"),
        "steps": steps,
        "source": config.get("data.source", ""),
        "accuracy": summary.get("accuracy"),
        "stop_reason": summary.get("stop_reason") or "",
        "path": str(file.parent),
        "config": config,
        "summary": {k: v for k, v in summary.items() if not isinstance(v, dict)},
    }


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


def list_runs(folder: Path) -> list[dict[str, Any]]:
    if not folder.exists():
        raise UsageError(
            f"{folder} does not exist; W&B runs are logged to ./wandb unless --wandb-dir says otherwise"
        )
    files = sorted(folder.rglob("*.wandb"), key=lambda f: f.stat().st_mtime, reverse=True)
    return [read(f) for f in files]


def table(found: list[dict[str, Any]]) -> list[list[str]]:
    """Rows for `sevenstep runs`: a header, then one row a run."""
    header = ["started", "name", "group", "steps (init predict loss gradient step repeat stop)"]
    rows = [header + ["accuracy", "stop", "path"]]
    for r in found:
        acc = f"{r['accuracy']:.4f}" if isinstance(r["accuracy"], (int, float)) else "-"
        stop = r["stop_reason"] or ("-" if r["state"] == "finished" else r["state"])
        if r["summary"].get("resumed_from"):
            stop += f" (resumed after epoch {r['summary']['resumed_from']})"
        started = r["started"][:19].replace("T", " ") or "-"
        rows.append([started, r["name"], r["group"] or "-", r["steps"], acc, stop, r["path"]])
    return rows
