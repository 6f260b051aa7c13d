"""Shared pieces of the command line: consoles, progress bars, the ``--json`` summary."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..core.progress import LoggedProgress

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(*, transient: bool = False) -> Iterator[LoggedProgress]:
    """A rich progress display on stderr (stdout stays clean for ``--json``); plain lines in a log file."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with LoggedProgress(*columns, console=err_console, transient=transient) as progress:
        yield progress


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def emit_summary(summary: Mapping[str, Any], *, as_json: bool, title: str = "summary") -> None:
    """Print the command's summary: a table for people, or one JSON line (last line) for tools."""
    if as_json:
        typer.echo(json.dumps(_plain(summary), default=str))
        return
    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in summary.items():
        if isinstance(value, Mapping | list):
            value = json.dumps(_plain(value), default=str)
        table.add_row(str(key), str(value))
    console.print(table)
