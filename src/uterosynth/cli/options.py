"""The options commands share, spelled once, and :func:`stage_command`, which adds them to a stage's command.

A stage command only declares its own options and builds the stage's job from them;
:func:`stage_command` appends the shared ones (``--config``, ``--seed``, ``--set`` as the stage
takes them, then ``--overwrite`` and ``--json``) and runs the job with :func:`~.stages.show_stage`.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["AsJson", "Config", "Overrides", "Overwrite", "Seed", "stage_command"]

Config = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file (see configs/).")]
Seed = Annotated[int | None, typer.Option("--seed", help="Random seed (overrides the config).")]
Overrides = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config key: --set train.steps=100 (repeatable).")
]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace the output folder if it exists.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary as the last line.")]

_SHARED: dict[str, tuple[Any, Any]] = {
    "config": (Config, None),
    "seed": (Seed, None),
    "overrides": (Overrides, None),
    "overwrite": (Overwrite, False),
    "as_json": (AsJson, False),
}
"""Each shared option's parameter name, annotation and default."""

Build = Callable[..., Any]


def stage_command(register: Callable[[Build], Any], command: str, *,
                  shared: tuple[str, ...] = ("config", "seed", "overrides")) -> Callable[[Build], Build]:
    """Register ``build`` with ``register`` (``app.command("audit")``) as the command of stage ``command``.

    ``build`` takes the command's own options and ``**shared``, and returns the stage's job (``None``:
    nothing to run). The options named in ``shared``, ``--overwrite`` and ``--json`` follow its own on
    the command line; all but ``--json`` reach ``build`` as keywords, ``--set`` parsed into ``overrides``.
    """
    names = (*shared, "overwrite", "as_json")

    def decorate(build: Build) -> Build:
        own = [p for p in inspect.signature(build).parameters.values() if p.kind is not p.VAR_KEYWORD]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=_SHARED[name][0],
                                   default=_SHARED[name][1]) for name in names]

        @functools.wraps(build)
        def run(**options: Any) -> None:
            from ..core.config import parse_overrides
            from .stages import show_stage

            as_json = options.pop("as_json")
            if "overrides" in options:
                options["overrides"] = parse_overrides(options["overrides"] or [])
            job = build(**options)
            if job is not None:
                show_stage(command, job, as_json=as_json)

        run.__annotations__ = {p.name: p.annotation for p in (*own, *added) if p.annotation is not p.empty}
        hints = typing.get_type_hints(run, include_extras=True)  # own options' names resolve in build's module
        run.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(annotation=hints.get(p.name, p.annotation)) for p in (*own, *added)])
        register(run)
        return run

    return decorate
