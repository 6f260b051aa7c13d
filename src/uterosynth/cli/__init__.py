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
    "distill",
    "sample",
    "phantom",
    "downstream",
    "audit",
    "release",
    "demo",
    "run",
    "study",
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


def _command_flags(args: list[str]) -> set[str]:
    """Every flag of the (sub)command that ``args`` invoke (groups are told apart by their ``commands``)."""
    command = typer.main.get_command(app)
    for token in args:
        commands = getattr(command, "commands", None)
        if commands is None:
            break
        if token.startswith("-"):
            continue
        if token not in commands:
            break
        command = commands[token]
    return {flag for p in command.params for flag in [*getattr(p, "opts", ()), *getattr(p, "secondary_opts", ())]}


_FLAG_ALIASES = {"extractor.path": "--extractor", "extractor.kind": "--extractor-kind"}
"""Config keys whose option is not named after them."""


def flag_hint(keys: tuple[str, ...], args: list[str]) -> str:
    """The flags of the command in ``args`` that set ``keys`` (an error's parameters or config keys).

    A key is the option of the same name (``allow_overlap`` -> ``--allow-overlap``), of its
    last dotted part (``sampler.steps`` -> ``--steps``) or, for a repeatable option, of that
    part in the singular (``baselines`` -> ``--baseline``); else ``--set KEY=...`` where the
    command takes ``--set``. ``""`` when no key has a flag; else `` (command line: --a, --b)``.
    """
    if not keys:
        return ""
    known = _command_flags(args)
    flags: list[str] = []
    for key in keys:
        tail = key.rsplit(".", 1)[-1]
        names = (key, tail, tail.removesuffix("s"))
        spelled = [_FLAG_ALIASES.get(key, ""), *("--" + name.replace("_", "-") for name in names)]
        found = [flag for flag in spelled if flag in known]
        if found:
            flags.append(found[0])
        elif "--set" in known:
            flags.append(f"--set {key}=...")
    flags = list(dict.fromkeys(flags))
    return f" (command line: {', '.join(flags)})" if flags else ""


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning :class:`UserError` into one line and exit code 2.

    The library's message names files and config keys; the flags that set the error's ``keys``
    are added here (:func:`flag_hint`). Usage errors (unknown command or option) are typer's
    own and also exit with code 2.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("UTEROSYNTH_DEBUG") == "1"
    try:
        app(args=args, prog_name="uterosynth")
    except UserError as err:
        if debug:
            traceback.print_exc()
        message = str(err) + flag_hint(getattr(err, "keys", ()), args)
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
