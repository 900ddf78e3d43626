"""A docstring's first paragraph as one line: what `sevenstep steps` and the command list show. Here, not in
registry.py, so that the CLI's --help reads it without the registry's scan of the step modules."""

from __future__ import annotations


def summary(docstring: str | None) -> str:
    """Its first line alone was cut mid-sentence; rich keeps a docstring's source line breaks."""
    return " ".join((docstring or "").split("\n\n")[0].split())
