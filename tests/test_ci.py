"""CI runs `.ci/run` on a clean clone: a script bash cannot parse lands nothing (it happened twice)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash to parse .ci/run with")
def test_ci_script_parses_and_runs_the_readmes_test_command():
    script = ROOT / ".ci" / "run"
    parsed = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    commands = [
        ln.strip() for ln in script.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert commands[-1] == "make test"
    assert re.search(r"^make test\b", (ROOT / "README.md").read_text(), re.M)
