"""Execute every notebook here in place and keep its outputs: `make notebooks`.

They run from nbs/, so their runs/ and wandb/ folders land in the repository root (both git-ignored).
Timing metadata is left out, so that re-running changes only what the lesson shows.
"""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent

for path in sorted(HERE.glob("*.ipynb")):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(HERE)}}).execute()  # fmt: skip
    nbformat.write(nb, path)
    print(f"{path}: {path.stat().st_size:,} bytes")
