"""What the W&B runs of one command share: the mode, the folder, and what to tell the user.

Import-light on purpose (no torch, no wandb until a run starts): `--wandb ofline` is refused before the
libraries load.
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError

PROJECT = "sevenstep"
MODES = ("offline", "online", "disabled")
ONLINE_INIT_TIMEOUT = 20  # seconds; wandb's own default is 90, long to wait for a server that is not there


def _has_api_key() -> bool:
    netrc = Path.home() / ".netrc"
    return bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())


def run_id_for(name: str) -> str:
    """A W&B run id that starts with the run's name: offline runs are folders named
    offline-run-<time>-<id>, which is what `wandb leet` lists, so the name is what a learner sees there."""
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in name)[:48]
    return f"{safe}-{secrets.token_hex(3)}"


@dataclass
class WandbSession:
    """Starts the W&B runs of one command in one mode and folder, and remembers what to tell the user."""

    mode: str = "offline"
    dir: Path = Path(".")
    offline_runs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)  # when the command began: its runs are the newer ones

    @classmethod
    def from_options(cls, mode: str | None = None, dir: Path | None = None) -> WandbSession:
        """An explicit mode wins, then WANDB_MODE, then offline: wandb would prompt for a key with no mode set."""
        mode = (mode or os.environ.get("WANDB_MODE") or "offline").lower()
        mode = {"dryrun": "offline", "run": "online"}.get(mode, mode)
        if mode not in MODES:
            raise UsageError(f"W&B mode must be one of {', '.join(MODES)}; got {mode!r}")
        session = cls(mode, Path(dir or os.environ.get("WANDB_DIR") or "."))
        if mode == "online" and not _has_api_key():  # known now: the command says it before any training
            session._offline_instead("no W&B API key: set WANDB_API_KEY or run `wandb login`")
        return session

    def start(
        self,
        name: str,
        job_type: str,
        config: dict[str, Any],
        group: str | None = None,
        resume: str | None = None,
        tags: list[str] = (),
        notes: str = "",
    ):
        """A new W&B run (or the run `resume` continued), or None when disabled. Online with no key or no server
        falls back to offline."""
        if self.mode == "disabled":
            return None
        import wandb

        if self.mode == "online" and not _has_api_key():
            self._offline_instead("no W&B API key: set WANDB_API_KEY or run `wandb login`")
        kwargs = dict(
            project=PROJECT,
            name=name,
            group=group,
            job_type=job_type,
            config=config,
            dir=str(self.dir),
            reinit="create_new",
            tags=list(tags) or None,
            notes=notes or None,
        )
        if resume:  # online: the same run continues; offline: a second log of the same run id
            kwargs |= {"id": resume, "resume": "allow"}
        settings = dict(console="off", silent=True, x_disable_stats=True, save_code=False, disable_git=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        if self.mode == "online":
            # our own id when none is given, to find the folder a failed attempt leaves
            run_id = kwargs.pop("id", None) or run_id_for(name)
            try:
                timeout = wandb.Settings(init_timeout=ONLINE_INIT_TIMEOUT, **settings)
                return wandb.init(mode="online", id=run_id, settings=timeout, **kwargs)
            except Exception as e:
                # the failed attempt's own folder would list as a run with nothing in it
                for folder in (self.dir / "wandb").glob(f"run-*-{run_id}"):
                    shutil.rmtree(folder, ignore_errors=True)
                self._offline_instead(f"could not reach the W&B server ({type(e).__name__}: {str(e)[:100]})")
        kwargs["id"] = resume or run_id_for(name)
        run = wandb.init(mode="offline", settings=wandb.Settings(**settings), **kwargs)
        self.offline_runs.append(Path(run.dir).parent)
        return run

    def _offline_instead(self, why: str) -> None:
        """Offline for the rest of this command: one failed attempt is enough to wait for."""
        self.mode = "offline"
        note = f"W&B: {why}; logging offline instead, nothing is lost"
        if note not in self.notes:
            self.notes.append(note)

    def summary_lines(self) -> list[str]:
        """What to tell the user at the end: the notes, and where the offline runs are. Runs logged by worker
        processes (forked with a copy of this session) are counted from the folder: those begun since."""
        lines = list(self.notes)
        folder = self.dir / "wandb"
        if self.mode == "offline" and folder.is_dir():
            mine = {p.resolve() for p in self.offline_runs}
            since = [p for p in folder.glob("offline-run-*") if p.stat().st_mtime >= self.started]
            n = len(mine | {p.resolve() for p in since})
            if n:
                lines.append(
                    f"W&B: {n} run(s) logged offline in {folder}/ "
                    f"(browse: sevenstep leet {folder}; upload: wandb sync {folder}/offline-run-*)"
                )
        return lines
