"""The comparison tables in README.md and docs/ are sevenstep's own output for real runs of the shipped
comparison files (#36 item 8: copied by hand, they had drifted: other method names, missing columns, other p
formats). docs/make_tables.py runs the comparisons and writes them."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from sevenstep import compare

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_spec = importlib.util.spec_from_file_location("make_tables", ROOT / "docs" / "make_tables.py")
make_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_tables)


def test_every_comparison_table_in_the_docs_is_the_output_for_its_runs():
    marked = [(doc, m) for doc in DOCS for m in make_tables.MARKER.finditer(doc.read_text())]
    assert {m.group(1) for _, m in marked} == {f"docs/tables/{n}.json" for n in make_tables.COMPARISONS}
    for doc, m in marked:
        assert m.group(2) == make_tables.rendered(ROOT / m.group(1)), (
            f"{doc.name}: its table differs from {m.group(1)}; run: python docs/make_tables.py --no-run"
        )
    # and no comparison table in the docs without its runs
    for doc in DOCS:
        for table in re.finditer(r"(^.*\n)(\| method \| accuracy \|)", doc.read_text(), re.M):
            assert table.group(1).startswith("<!-- table: "), (
                f"{doc.name}: a comparison table with no runs kept"
            )


def test_the_kept_runs_are_those_of_the_shipped_comparisons():
    for name, file in make_tables.COMPARISONS.items():
        plan = compare.load(ROOT / file)
        kept = json.loads((ROOT / "docs" / "tables" / f"{name}.json").read_text())
        methods = kept["methods"]
        assert [m["method"] for m in methods] == [
            f"baseline ({plan.distance})",
            *(label for label, _ in plan.runs),
        ]
        for m in methods:
            assert m["status"] == "ok" and m["seeds"] == plan.seeds, (name, m["method"])
        assert kept["command"] == f"sevenstep compare {file} --workers 2"


def test_the_readmes_table_of_steps_lists_every_option_of_the_registry_in_its_order():
    """The README's "seven steps" table is written by hand: it names each step's options as `sevenstep steps`
    does (a new option, or a renamed one, fails here until the table says it)."""
    from sevenstep.registry import STEPS, _declared

    shipped = _declared()  # the built-in options, read from sevenstep/steps/ (not a test's plugins)

    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\d) (\w+) \| `sevenstep/steps/(\w+)\.py` \| (.*) \|$", readme, re.M)
    assert [(int(n), step, module) for n, step, module, _ in rows] == [
        (i + 1, s, s) for i, s in enumerate(STEPS)
    ]
    for _, step, _, options in rows:
        listed = re.findall(r"`(\w+)`(?: \(([\w, ]+)\))?", options.split(";")[0])
        assert [name for name, _ in listed] == list(shipped[step]), step
        for name, params in listed:  # a parenthesis of bare names is the option's parameters, all of them
            if params and all(p.strip().isidentifier() for p in params.split(",")):
                assert [p.strip() for p in params.split(",")] == list(shipped[step][name].params), (
                    step,
                    name,
                )
