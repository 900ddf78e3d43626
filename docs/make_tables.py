"""The comparison tables in README.md and docs/*.md, from real runs (#36 item 8: the hand-copied ones had
drifted from the output: other method names, missing columns, other p formats).

    .venv/bin/python docs/make_tables.py            # run each documented comparison, then rewrite the tables
    .venv/bin/python docs/make_tables.py --no-run   # rewrite the tables from docs/tables/*.json as they are

Each comparison's methods are kept in docs/tables/<name>.json, and each table in the docs follows a line
`<!-- table: docs/tables/<name>.json -->`; tests/test_docs.py checks that every such table is what sevenstep
prints for that file's methods.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPARISONS = {  # what the docs show: the comparison file, and the docs that show it
    "baseline_vs_sgd": "experiments/baseline_vs_sgd.toml",
    "baseline_vs_sgd_kfold": "experiments/baseline_vs_sgd_kfold.toml",
    "baseline_vs_sgd_10": "experiments/baseline_vs_sgd_10.toml",
}
MARKER = re.compile(r"^<!-- table: (docs/tables/[\w.-]+\.json) -->\n((?:\|.*\n)*)", re.M)


def rendered(json_file: Path) -> str:
    """The Markdown table `sevenstep compare` writes (results.md) for the methods a JSON file keeps."""
    from sevenstep.compare.report import Method, table
    from sevenstep.utils import tables

    kept = json.loads(json_file.read_text())
    return tables.markdown(table([Method.from_json(m) for m in kept["methods"]]))


def measure(name: str, file: str) -> None:
    done = subprocess.run([sys.executable, "-m", "sevenstep", "compare", file, "--workers", "2", "--json",
                           "--wandb", "disabled", "--runs-dir", str(ROOT / "runs")],
                          cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"{file} failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout)
    kept = {"command": f"sevenstep compare {file} --workers 2", "measured": time.strftime("%Y-%m-%d"),
            "methods": summary["methods"]}  # fmt: skip
    (ROOT / "docs" / "tables" / f"{name}.json").write_text(json.dumps(kept, indent=1) + "\n")
    print(f"{name}: measured", file=sys.stderr)


def rewrite(doc: Path) -> None:
    text = doc.read_text()
    new = MARKER.sub(lambda m: f"<!-- table: {m.group(1)} -->\n{rendered(ROOT / m.group(1))}", text)
    if new != text:
        doc.write_text(new)
        print(f"rewrote {doc.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    if "--no-run" not in sys.argv:
        for name, file in COMPARISONS.items():
            measure(name, file)
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        rewrite(doc)
