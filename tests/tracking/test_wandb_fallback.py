"""The W&B fallback is tried once per command, and leaves no empty run behind."""

from __future__ import annotations

from sevenstep import tracking
from sevenstep.tracking import wandb_session

# 8. the W&B fallback is tried once per command, and leaves no empty run behind


def test_an_unreachable_wandb_server_is_tried_once(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # loopback, nothing listening
    monkeypatch.setattr(wandb_session, "ONLINE_INIT_TIMEOUT", 5)
    modes, real_init = [], wandb.init
    monkeypatch.setattr(wandb, "init", lambda **k: modes.append(k["mode"]) or real_init(**k))
    session = tracking.WandbSession.from_options("online", tmp_path)
    for name in ("first", "second"):
        session.start(name, "sgd", {}).finish()
    assert modes == ["online", "offline", "offline"]
    assert len(session.notes) == 1 and len(session.offline_runs) == 2
    assert not list((tmp_path / "wandb").glob("run-*"))  # the failed attempt's folder is gone


def test_online_without_a_key_is_said_before_training_not_after(tmp_path, monkeypatch, tiny_folder):
    """#36 item 14: `--wandb online` with no key warned only once training had ended."""
    from typer.testing import CliRunner

    from conftest import LINEAR
    from sevenstep.cli import app

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no key anywhere
    result = CliRunner().invoke(app, ["run", LINEAR, "--set", f"data.source=folder:{tiny_folder}", "--set",
                                      "steps.repeat.n=1", "--wandb", "online", "--wandb-dir", str(tmp_path),
                                      "--runs-dir", str(tmp_path / "runs")])  # fmt: skip
    assert result.exit_code == 0, result.output
    said = result.output.index("W&B: no W&B API key: set WANDB_API_KEY or run `wandb login`")
    assert said < result.output.index("train_loss")  # before the epoch table
