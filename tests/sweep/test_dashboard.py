"""`sevenstep dashboard`: Optuna Dashboard served on loopback against a real journal, read back over HTTP."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import optuna
import pytest

from conftest import wait_for
from sevenstep.cli.common import free_port
from sevenstep.trials.study import storage_for


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
        first = err.read_text()
        assert first.startswith(f"Optuna Dashboard: http://127.0.0.1:{port}/dashboard?token="), first
        token = first.split("token=")[1].split()[0]
        deadline = time.time() + 60
        while True:
            try:
                studies = _get(f"http://127.0.0.1:{port}/api/studies?token={token}")["study_summaries"]
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "the dashboard did not start"
                time.sleep(0.2)
        # #38 item 4: another local user (no token) is refused, and nobody can delete: it is read-only
        for url, method, status in (("/api/studies", "GET", 403), (f"/api/studies/0?token={token}", "DELETE", 405),
                                    ("/api/studies/0?token=guessed", "DELETE", 403)):  # fmt: skip
            request = urllib.request.Request(f"http://127.0.0.1:{port}{url}", method=method)
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=5)
            assert refused.value.code == status, (url, method)
        # the page's own requests carry the token as a cookie, given with the first page
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard?token={token}", timeout=5)
        cookie = page.headers["Set-Cookie"].split(";")[0]
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/studies", headers={"Cookie": cookie})
        assert json.loads(urllib.request.urlopen(request, timeout=5).read())["study_summaries"]
        assert len(optuna.load_study(study_name="demo", storage=storage_for(None, sweep_dir)).trials) == 3
        (summary,) = studies
        assert summary["study_name"] == "demo"
        detail = _get(f"http://127.0.0.1:{port}/api/studies/{summary['study_id']}?token={token}")
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


def test_a_damaged_journal_or_a_file_that_is_no_journal_is_one_line_and_a_torn_last_line_is_read(tmp_path):
    """#38 item 17: a garbage line and /etc/passwd gave a JSONDecodeError traceback. A torn last line, what a
    kill leaves, is read up to it (Optuna's journal reader skips it)."""
    from typer.testing import CliRunner

    from sevenstep.cli import app

    sweep_dir, _ = _demo_sweep(tmp_path, 1)
    journal = sweep_dir / "study.journal"
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 5, "worker_id": "a", "tri')
    assert len(storage_for(None, sweep_dir).get_all_studies()) == 1
    lines = whole.count(b"\n")
    journal.write_bytes(whole + b"\x00garbage\n" + whole.splitlines(keepends=True)[-1])
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")  # one line: Optuna takes it for a torn last one
    for where, said in ((sweep_dir, f"damaged at line {lines + 1}"), (passwd, "holds no Optuna study")):
        result = CliRunner().invoke(app, ["dashboard", str(where)])
        assert result.exit_code == 2 and said in result.output and "Traceback" not in result.output, (
            result.output
        )
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/bin/false\n")
    result = CliRunner().invoke(app, ["dashboard", str(passwd)])
    assert result.exit_code == 2 and "damaged at line 1" in result.output, result.output


def test_a_storage_urls_password_is_never_printed():
    """#38 item 7: `hunter2` was printed in the error of a storage that could not be opened."""
    from typer.testing import CliRunner

    from sevenstep.cli import app

    result = CliRunner().invoke(app, ["dashboard", "postgresql+psycopg://me:hunter2@127.0.0.1:1/db"])
    assert result.exit_code == 2 and "cannot open it" in result.output, result.output
    assert "hunter2" not in result.output and "me:***@127.0.0.1:1/db" in result.output
