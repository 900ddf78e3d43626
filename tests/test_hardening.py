"""Nothing lost, nothing hangs: caches that check what they read, signals at awkward moments, values and
folders refused before training, the W&B fallback tried once. Each case was first reproduced by hand."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import make_folder
from sevenstep import data, loggers, recipe, signals, sources, train, wandb_runs
from sevenstep.cli import app
from sevenstep.errors import UsageError
from sevenstep.fastpath import decoded

LINEAR = str(Path("experiments/fastbook_linear.toml").resolve())


def _cli(*args: str, env=None, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sevenstep", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw)


def _wait_for(predicate, timeout=120.0, what="it"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


# 1. a corrupted decoded cache is noticed, said once, and rebuilt


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "wrong shape"])
def test_a_damaged_decoded_cache_is_rebuilt_and_said_once(tmp_path, monkeypatch, capsys, damage):
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path / "cache"))
    files = sorted(make_folder(tmp_path / "f").rglob("*.png"))
    good = decoded(files)
    (cached,) = (tmp_path / "cache" / "decoded").glob("*.u8")
    raw = cached.read_bytes()
    header, payload = raw.split(b"\n", 1)
    if damage == "truncate":
        cached.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        cached.write_bytes(os.urandom(len(raw)))
    elif damage == "empty":
        cached.write_bytes(b"")
    else:  # a well-formed file that claims a shape of other images
        h = json.loads(header) | {"shape": [len(files) // 2, 1, 28, 56]}
        cached.write_bytes(json.dumps(h).encode() + b"\n" + payload)
    capsys.readouterr()
    assert torch.equal(decoded(files), good)
    assert "unusable" in capsys.readouterr().err
    assert torch.equal(decoded(files), good)
    assert capsys.readouterr().err == ""  # rebuilt: said once


# 2. the prepared embedded data is checked against its manifest


def test_a_missing_embedded_image_means_preparing_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path))
    src = sources.resolve("mnist5k-3v7")
    next((src.path / "train" / "7").glob("*.png")).unlink()
    assert sources.counts(sources.resolve("mnist5k-3v7"))["train"] == {"3": 400, "7": 400}
    assert "train/7 has 399 of 400 images" in capsys.readouterr().err


def test_stale_temporary_folders_are_cleaned_at_the_next_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("SEVENSTEP_CACHE", str(tmp_path))
    (tmp_path / ".mnist5k.tmp-left-by-a-kill" / "train").mkdir(parents=True)
    (tmp_path / ".mnist5k-3v7.tmp-being-written").mkdir()  # another source's, under its own lock: not ours
    sources.resolve("mnist5k")
    assert sorted(p.name for p in tmp_path.glob(".mnist5k*") if p.is_dir()) == [
        ".mnist5k-3v7.tmp-being-written"
    ]


def test_data_show_stopped_by_sigterm_leaves_no_half_folder(tmp_path):
    env = os.environ | {"SEVENSTEP_CACHE": str(tmp_path / "cache")}
    proc = _cli("data", "show", "mnist5k", "--out", str(tmp_path / "grid.png"), env=env)
    _wait_for(lambda: any((tmp_path / "cache").glob(".mnist5k.tmp-*/*/*/*.png")), what="the prepare to start")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert (
        not list((tmp_path / "cache").glob(".mnist5k.tmp-*"))
        and not (tmp_path / "cache" / "mnist5k").exists()
    )


# 3. `sevenstep runs` lists a killed run, and an unreadable one, without crashing


def test_runs_lists_a_killed_run_and_an_unreadable_one(tmp_path):
    proc = _cli("run", LINEAR, "--set", "steps.repeat.n=100000", "--set", "data.bs=8",
                "--runs-dir", str(tmp_path / "runs"), "--wandb-dir", str(tmp_path))  # fmt: skip
    _wait_for(
        lambda: any(f.stat().st_size > 20_000 for f in (tmp_path / "wandb").rglob("*.wandb")), what="training"
    )
    proc.kill()
    proc.communicate(timeout=60)
    broken = tmp_path / "wandb" / "offline-run-20260101_000000-broken"
    broken.mkdir()
    (broken / "run-broken.wandb").write_bytes(b"\x00garbage" * 100)
    result = CliRunner().invoke(app, ["runs", str(tmp_path / "wandb")])
    assert result.exit_code == 0, result.output
    listed = {r["path"]: r for r in wandb_runs.list_runs(tmp_path / "wandb")}
    assert listed[str(broken)]["state"] == "unreadable"
    (killed,) = [r for p, r in listed.items() if p != str(broken)]
    assert killed["state"] != "finished" and killed["name"] == "fastbook-linear-3v7"


# 4. interrupting a comparison: exit 130, the report for what finished, W&B runs finished as interrupted


def _comparison(tmp_path: Path, tiny_folder: Path) -> Path:
    file = tmp_path / "cmp.toml"
    file.write_text(
        f'name = "stopped"\nsource = "folder:{tiny_folder}"\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "short"\nset = {{ "steps.repeat.n" = 1, "data.bs" = 8 }}\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "long"\nset = {{ "steps.repeat.n" = 100000, "data.bs" = 8 }}\n'
        f'[[runs]]\nrecipe = "{LINEAR}"\nlabel = "never"\nset = {{ "steps.repeat.n" = 1, "data.bs" = 8 }}\n'
    )
    return file


def test_ctrl_c_during_a_comparisons_training_exits_130_with_the_report(tmp_path, tiny_folder):
    proc = _cli("compare", str(_comparison(tmp_path, tiny_folder)), "--runs-dir", str(tmp_path / "runs"),
                "--wandb-dir", str(tmp_path))  # fmt: skip
    _wait_for(
        lambda: len(list((tmp_path / "wandb").glob("offline-run-*"))) >= 3, what="the long run to start"
    )
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    (report,) = (tmp_path / "runs").glob("compare-stopped-*")
    results = {r["method"]: r for r in json.loads((report / "results.json").read_text())["results"]}
    assert results["short"]["status"] == "ok" and results["long"]["status"] == "interrupted"
    assert "never" not in results and (report / "learning_curves.png").exists()
    runs = wandb_runs.list_runs(tmp_path / "wandb")
    assert len(runs) == 3 and {r["state"] for r in runs} == {"finished"}
    assert sorted(r["stop_reason"] for r in runs if r["job_type"] == "sgd") == ["epochs_done", "interrupted"]


@pytest.mark.parametrize("where", ["baseline", "build_learner"])
def test_ctrl_c_outside_training_still_writes_the_report(tmp_path, tiny_folder, monkeypatch, where):
    from sevenstep import baseline

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    if where == "baseline":
        monkeypatch.setattr(baseline, "run", interrupted)
    else:  # the second recipe is interrupted while its Learner is being built
        calls = []
        real = train.build_learner
        monkeypatch.setattr(train, "build_learner", lambda *a, **k: calls.append(1) or (interrupted() if len(calls) == 2 else real(*a, **k)))  # fmt: skip
    result = CliRunner().invoke(app, ["compare", str(_comparison(tmp_path, tiny_folder)), "--runs-dir",
                                      str(tmp_path / "runs"), "--wandb", "disabled"])  # fmt: skip
    assert result.exit_code == 130, result.output
    (report,) = (tmp_path / "runs").glob("compare-stopped-*")
    statuses = [
        (r["method"], r["status"]) for r in json.loads((report / "results.json").read_text())["results"]
    ]
    if where == "baseline":
        assert statuses == [("baseline (l1)", "interrupted")]
    else:
        assert statuses == [("baseline (l1)", "ok"), ("short", "ok"), ("long", "interrupted")]
    assert (report / "results.md").exists() and (report / "learning_curves.png").exists()


# 5. a second Ctrl-C, or one during saving, never loses a finished run


def test_signals_during_a_deferred_block_wait_for_it():
    with signals.deferred() as held:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler has run by now: nothing was raised
    assert held == [signal.SIGINT]
    with pytest.raises(KeyboardInterrupt):  # outside the block, Ctrl-C is Ctrl-C again
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)


def test_ctrl_c_while_saving_waits_for_the_save_then_stops(tmp_path, monkeypatch):
    real_save = train.save

    def save_interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return real_save(*a, **k)

    monkeypatch.setattr(train, "save", save_interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.run(recipe.load(LINEAR, ["steps.repeat.n=1"]), runs_dir=tmp_path)
    (saved,) = tmp_path.iterdir()
    assert json.loads((saved / "result.json").read_text())["stop_reason"] == "epochs_done"
    assert (saved / "model.pth").exists()


def test_two_quick_ctrl_cs_still_save_the_run(tmp_path):
    proc = _cli("run", LINEAR, "--set", "steps.repeat.n=100000", "--set", "data.bs=8",
                "--runs-dir", str(tmp_path / "runs"), "--wandb-dir", str(tmp_path))  # fmt: skip
    _wait_for(
        lambda: any(f.stat().st_size > 20_000 for f in (tmp_path / "wandb").rglob("*.wandb")), what="training"
    )
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    (saved,) = (tmp_path / "runs").iterdir()
    assert json.loads((saved / "result.json").read_text())["stop_reason"] == "interrupted"
    assert not list((tmp_path / "runs").glob(".tmp-*"))
    (info,) = wandb_runs.list_runs(tmp_path / "wandb")
    assert info["state"] == "finished" and info["stop_reason"] == "interrupted"


# 6. every number finite and in range, checked when the recipe is read; models that cannot fit refused


@pytest.mark.parametrize(
    "sets, expected",
    [
        (["seed=18446744073709551616"], "seed: expected an integer that fits in 64 bits"),
        (["steps.init.std=nan"], "steps.init.std: expected a finite number, got nan"),
        (["steps.step.lr=nan"], "steps.step.lr: expected a finite number, got nan"),
        (["steps.step.lr=inf"], "steps.step.lr: expected a finite number, got inf"),
        (
            ["steps.stop.name=time_budget", "steps.stop.seconds=nan"],
            "steps.stop.seconds: expected a finite number",
        ),
        (["steps.stop.name=target", "steps.stop.value=nan"], "steps.stop.value: expected a finite number"),
        (["steps.predict.name=resnet", "steps.predict.widen=1e-9"], "widen must be at least 1/64"),
        (["steps.predict.name=resnet", "steps.predict.layers=[]"], "layers needs at least one stage"),
        (["steps.predict.name=mlp", "steps.predict.hidden=[30, nan]"], "expected a list of an integer"),
    ],
)
def test_values_are_refused_when_the_recipe_is_read(sets, expected, tmp_path):
    with pytest.raises(UsageError, match=expected.replace("[", r"\[")):
        recipe.load(LINEAR, sets)
    result = CliRunner().invoke(app, ["run", LINEAR, *[a for s in sets for a in ("--set", s)],
                                      "--runs-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_a_model_beyond_this_machines_memory_is_refused_before_it_is_built(tmp_path):
    sets = [
        "steps.predict.name=mlp",
        "steps.predict.hidden=[100000, 100000]",
        "steps.loss.name=cross_entropy",
    ]
    result = CliRunner().invoke(app, ["run", LINEAR, *[a for s in sets for a in ("--set", s)],
                                      "--runs-dir", str(tmp_path / "runs"), "--wandb", "disabled"])  # fmt: skip
    assert result.exit_code == 2, result.output
    n = 784 * 100_000 + 100_000 + 100_000 * 100_000 + 100_000 + 100_000 * 2 + 2  # 784-100000-100000-2
    assert f"{n:,} parameters" in result.output and "GiB of memory" in result.output


# 7. output folders are created and written to before training


def test_a_runs_dir_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(app, ["run", LINEAR, "--runs-dir", str(tmp_path / "file" / "runs"),
                                      "--wandb-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code == 2 and "cannot write there" in result.output
    assert "epoch" not in result.output and not (tmp_path / "wandb").exists()  # nothing trained or logged


# 8. the W&B fallback is tried once per command, and leaves no empty run behind


def test_an_unreachable_wandb_server_is_tried_once(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # loopback, nothing listening
    monkeypatch.setattr(loggers, "ONLINE_INIT_TIMEOUT", 5)
    modes, real_init = [], wandb.init
    monkeypatch.setattr(wandb, "init", lambda **k: modes.append(k["mode"]) or real_init(**k))
    session = loggers.WandbSession.from_options("online", tmp_path)
    for name in ("first", "second"):
        session.start(name, "sgd", {}).finish()
    assert modes == ["online", "offline", "offline"]
    assert len(session.notes) == 1 and len(session.offline_runs) == 2
    assert not list((tmp_path / "wandb").glob("run-*"))  # the failed attempt's folder is gone


# 9. image errors name their file; 16-bit images are refused, not clipped


def test_a_truncated_image_is_named(tmp_path):
    folder = make_folder(tmp_path / "f")
    bad = folder / "train" / "a" / "broken.jpg"
    buf = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    Image.fromarray(noise, mode="L").save(buf, format="JPEG")
    bad.write_bytes(buf.getvalue()[:-50])  # its header is intact: PIL's verify() passes, decoding fails
    with pytest.raises(UsageError, match=f"{bad}: cannot read this image"):
        data.dataloaders(f"folder:{folder}", bs=4)


def test_16_bit_images_are_refused_with_their_names(tmp_path):
    folder = make_folder(tmp_path / "f")
    wide = folder / "valid" / "b" / "wide.png"
    Image.fromarray(np.full((28, 28), 40000, dtype=np.uint16)).save(wide)
    with pytest.raises(UsageError, match=f"16 or 32 bits per pixel.*\n  {wide}"):
        sources.resolve(f"folder:{folder}")


# 10. a typo is reported before torch or fastai is imported


def test_a_typo_is_found_without_importing_torch_or_fastai():
    code = (
        "import sys\nfrom sevenstep import recipe\nfrom sevenstep.errors import UsageError\n"
        f"try:\n    recipe.load({LINEAR!r}, ['steps.step.lrr=1'])\nexcept UsageError as e:\n    print(e)\n"
        "print('torch' in sys.modules, 'fastai' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "has no parameter 'lrr'" in out and out.strip().endswith("False False")


def test_the_registry_read_from_source_matches_the_imported_options():
    import sevenstep.steps  # noqa: F401
    from sevenstep import registry, schema

    for step, options in registry.REGISTRY.items():
        assert options, step
        for name, opt in options.items():
            assert opt.factory is not None and opt.params == schema.fields_of(opt.factory), (step, name)


def test_a_signal_in_a_nested_deferred_block_reaches_the_outer_one():
    with signals.deferred() as outer:
        with signals.deferred() as inner:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        assert inner is outer
    assert outer == [signal.SIGINT]
