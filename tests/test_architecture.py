"""The package's parts stand in layers: no import, at the top of a module or inside a function, goes from a
lower part to a higher one, so no two parts import each other (docs/architecture.md draws the same order)."""

from __future__ import annotations

import ast
from pathlib import Path

import sevenstep

ROOT = Path(sevenstep.__file__).parent

# lowest first: a part may import the parts before it in this list, never one after it
LAYERS = [
    "errors", "schema", "utils", "metrics", "stats", "registry", "plugins", "data", "callbacks", "steps",
    "recipe", "loop", "tracking", "trials", "compare", "sweep", "tools", "cli", "__main__", "__init__",
]  # fmt: skip


def _part(module: str) -> str:
    """sevenstep.loop.train -> loop; sevenstep.metrics -> metrics; sevenstep -> __init__."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> list[tuple[str, str, str]]:
    """(importing part, imported part, file:line) for every import of sevenstep's own modules."""
    found = []
    for file in sorted(ROOT.rglob("*.py")):
        module = ".".join(file.relative_to(ROOT.parent).with_suffix("").parts)
        package = module.removesuffix(".__init__") if file.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sevenstep"):
                targets = [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("sevenstep.")]
            else:
                continue
            for target in targets:
                if _part(module.removesuffix(".__init__")) != _part(target):
                    found.append((_part(module), _part(target), f"{file.relative_to(ROOT)}:{node.lineno}"))
    return found


def test_every_part_is_in_a_layer():
    parts = {
        p.stem if p.is_file() else p.name
        for p in ROOT.iterdir()
        if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    assert parts == set(LAYERS)


def test_no_import_goes_up_a_layer_so_no_two_parts_import_each_other():
    upward = [f"{where}: {a} imports {b}" for a, b, where in imports() if LAYERS.index(b) > LAYERS.index(a)]
    assert upward == []


def test_the_scan_sees_imports_inside_functions():
    """The scan is not blind to imports inside functions (most of sevenstep's are, to start quickly)."""
    lazy = [(a, b, w) for a, b, w in imports() if w.startswith("compare/page.py") and b == "tracking"]
    assert lazy, "compare/page.py imports from tracking, at the top and inside functions"
    inside = [w for a, b, w in imports() if w.startswith("trials/workers.py") and b == "loop"]
    assert inside, "trials/workers.py imports sevenstep.loop.train inside run_trial"


def test_a_sweep_and_a_comparisons_grid_are_both_what_the_trials_layer_asks_for(tmp_path):
    from sevenstep.compare import grid, plan
    from sevenstep.sweep import spec
    from sevenstep.trials import TrialSource, load_job

    experiments = ROOT.parent / "experiments"
    sweep = load_job(("sevenstep.sweep.spec:load", str(experiments / "sweep_init_x_loss_3v7.toml")))
    comparison = load_job(
        ("sevenstep.compare.grid:load", str(experiments / "baseline_vs_sgd.toml"), None, str(tmp_path))
    )
    assert isinstance(sweep, spec.Sweep) and isinstance(comparison, grid.ComparisonGrid)
    assert isinstance(comparison.plan, plan.Plan)
    for job in (sweep, comparison):
        assert isinstance(job, TrialSource), type(job)
        assert job.direction == "maximize" and job.sampler == "grid" and len(job.grid()) >= 2
