"""The ``uterosynth`` command line: one typer app; each command lives in its own module.

Commands are thin: parse options, build the stage's config, call the library. Heavy imports
(torch, MONAI) happen inside the command bodies so ``--help`` stays instant.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import typer
from rich.markup import escape

from .. import __version__
from ..core.errors import UserError
from .common import err_console

app = typer.Typer(
    name="uterosynth",
    help="Synthesise sagittal T2-weighted female pelvic MRI with diffusion models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Each module registers its commands on ``app`` when imported.
COMMAND_MODULES: list[str] = [
    "prepare",
    "reader_study",
    "train",
    "encode",
    "sample",
    "phantom",
    "downstream",
    "audit",
    "release",
    "demo",
    "run",
    "evaluate",
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"uterosynth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
) -> None:
    """Synthesise sagittal T2-weighted female pelvic MRI with diffusion models."""


for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning :class:`UserError` into one line and exit code 2.

    Usage errors (unknown command or option) are typer's own and also exit with code 2.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("UTEROSYNTH_DEBUG") == "1"
    try:
        app(args=args, prog_name="uterosynth")
    except UserError as err:
        if debug:
            traceback.print_exc()
        err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
