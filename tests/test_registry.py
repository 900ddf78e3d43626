"""The registry: read from the steps' source (no torch, no fastai), and the same as the imported options."""

from __future__ import annotations

import subprocess
import sys

from conftest import LINEAR

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


def test_the_cli_refuses_mistyped_names_and_ranges_before_importing_torch():
    """`--wandb ofline`, `--device gpu`, a negative lr and a source typo: one line, exit 2, torch never loaded."""
    mistakes = (
        ["--wandb", "ofline"],
        ["--device", "gpu"],
        ["--set", "steps.step.lr=-1"],
        ["--set", "steps.repeat.n=0"],
        ["--set", "data.source=mnist5k3v7"],
    )
    for extra in mistakes:
        code = (
            "import sys\nfrom sevenstep.cli import app\n"
            f"sys.argv = ['sevenstep', 'run', {LINEAR!r}, *{extra!r}]\n"
            "try:\n    app()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
            "print('torch' in sys.modules)"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.stdout.split()[-3:] == ["exit", "2", "False"], (extra, done.stdout, done.stderr)
        assert done.stderr.startswith("error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "device:" not in done.stdout  # nothing printed as if training began
