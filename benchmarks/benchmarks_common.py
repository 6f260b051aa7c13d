"""Shared by the benchmark scripts: replace one ``## <heading>`` section of a Markdown file."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["update_section"]


def update_section(path: str | Path, heading: str, body: str) -> None:
    """Replace the section ``## heading`` (up to the next ``## ``) with ``body``, or append it."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"## {heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(lambda _: block + "\n", text, count=1) if pattern.search(text) else text.rstrip() + "\n\n" + block
    path.write_text(text.rstrip() + "\n")
