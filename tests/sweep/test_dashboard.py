"""`sevenstep dashboard`: Optuna Dashboard served on loopback against a real journal, read back over HTTP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import optuna

from conftest import wait_for
from sevenstep.cli.common import free_port
from sevenstep.sweep.study import storage_for


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _demo_sweep(tmp_path, n_trials: int):
    """A sweep's folder with its journal: a study named demo of n_trials trials."""
    sweep_dir = tmp_path / "sweep-demo"
    study = optuna.create_study(study_name="demo", storage=storage_for(None, sweep_dir), direction="maximize")
    study.optimize(lambda t: t.suggest_float("lr", 0.01, 1.0, log=True), n_trials=n_trials)
    return sweep_dir, study


def test_the_dashboard_serves_a_sweeps_journal_over_http(tmp_path):
    sweep_dir, study = _demo_sweep(tmp_path, 3)
    port = free_port()
    err = tmp_path / "err.txt"  # a file, not a pipe: the server's request log can never fill it and block it
    server = subprocess.Popen(
        [sys.executable, "-m", "sevenstep", "dashboard", str(sweep_dir), "--port", str(port)],
        stderr=err.open("w"),
    )
    try:
        wait_for(lambda: err.read_text(), timeout=60, what="the dashboard's first line")
        assert err.read_text().startswith(f"Optuna Dashboard: http://127.0.0.1:{port}/dashboard"), (
            err.read_text()
        )
        deadline = time.time() + 60
        while True:
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "the dashboard did not start"
                time.sleep(0.2)
        (summary,) = studies
        assert summary["study_name"] == "demo"
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}")
        values = sorted(t["values"][0] for t in detail["trials"])
        assert values == sorted(t.value for t in study.trials)
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C, as from its terminal
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            raise AssertionError(
                f"the dashboard did not stop within 30 s of Ctrl-C: {err.read_text()[-2000:]}"
            ) from None


def test_the_dashboard_names_a_folder_without_a_study(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sevenstep", "dashboard", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2 and "no study here" in done.stderr and "Traceback" not in done.stderr


def test_the_dashboard_names_a_port_it_cannot_listen_on(tmp_path):
    sweep_dir, _ = _demo_sweep(tmp_path, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "sevenstep", "dashboard", str(sweep_dir), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and f"--port {port}: cannot listen there" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
