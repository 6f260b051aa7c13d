"""``uterosynth reader-study create | serve | analyze | revoke | check``: the blinded expert reader study."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from . import app
from .common import console, emit_summary, err_console
from .options import AsJson, stage_command

if TYPE_CHECKING:
    from ..stages.base import Job

reader_app = typer.Typer(
    help="Blinded reader study: experts tell real from synthetic images and rate realism.",
    no_args_is_help=True,
)
app.add_typer(reader_app, name="reader-study")


@stage_command(reader_app.command("create"), "reader-study create")
def create(
    real: str = typer.Option(..., "--real", help="Prepared dataset, optionally DIR:split (e.g. data/prepared:test)."),
    synthetic: Path = typer.Option(..., "--synthetic", help="Synthetic set folder (from 'uterosynth sample')."),
    per_source: int = typer.Option(None, "--per-source", help="Images per source (real and synthetic)."),
    raters: str = typer.Option(None, "--raters", help="Comma-separated rater names, e.g. alice,bob,carol."),
    out: Path = typer.Option(..., "--out", help="Study folder to create."),
    size: int = typer.Option(None, "--size", help="Long side of every displayed image in pixels."),
    class_by: str = typer.Option(
        None, "--class-by", help="Attributes to balance on, comma-separated; 'none' to switch off (default: shared)."
    ),
    base_url: str = typer.Option(None, "--base-url", help="Where the server will be reachable (for the links)."),
    title: str = typer.Option(None, "--title", help="Title shown to raters."),
    **shared: Any,
) -> Job:
    """Build a balanced, randomised, blinded study and print one secret link per rater."""
    from ..stages.release import StudyJob

    return StudyJob(real=real, synthetic=synthetic, per_source=per_source, raters=raters, out=out, size=size,
                    class_by=class_by, base_url=base_url, title=title, **shared)


@reader_app.command("serve")
def serve(
    study: Path = typer.Argument(..., help="Study folder made by 'reader-study create'."),
    db_url: str = typer.Option(None, "--db-url", help="SQLAlchemy URL (default sqlite:///STUDY/study.db), "
                               "e.g. postgresql://user:pass@127.0.0.1/readers."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="TCP port."),
) -> None:
    """Serve the rater and admin pages (FastAPI + SQLAlchemy)."""
    import uvicorn

    from ..reader_study.db import safe_url
    from ..reader_study.main import create_app
    from ..reader_study.settings import Settings

    settings = Settings(study_dir=study, db_url=db_url)
    application = create_app(settings)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] binding {host}: the study is reachable from other machines; "
                          "put it behind an HTTPS reverse proxy.")
    err_console.print(f"serving {study} on http://{host}:{port} (database {safe_url(settings.database_url)})",
                      highlight=False)
    uvicorn.run(application, host=host, port=port, server_header=False, log_level="info")


@stage_command(reader_app.command("analyze"), "reader-study analyze", shared=())
def analyze(
    study: Path = typer.Argument(..., help="Study folder made by 'reader-study create'."),
    out: Path = typer.Option(..., "--out", help="Folder for results.json and report.html."),
    db_url: str = typer.Option(None, "--db-url", help="The database the server used (default: STUDY/study.db)."),
    **shared: Any,
) -> Job:
    """Accuracy, sensitivity, specificity, AUC, binomial test, κ, realism U-test, per class."""
    from ..stages.release import AnalyzeJob

    return AnalyzeJob(study=study, out=out, db_url=db_url, **shared)


@reader_app.command("revoke")
def revoke(
    study: Path = typer.Argument(..., help="Study folder made by 'reader-study create'."),
    rater: str = typer.Argument(..., help="Name of the rater whose link is replaced."),
    db_url: str = typer.Option(None, "--db-url", help="The database the server uses (default: STUDY/study.db)."),
    base_url: str = typer.Option(None, "--base-url", help="Where the server is reachable (default: as created)."),
    as_json: AsJson = False,
) -> None:
    """Replace a rater's secret link: the old one fails at once (no restart), the new one is printed."""
    from ..reader_study.revoke import revoke_rater

    res = revoke_rater(study, rater, db_url=db_url, base_url=base_url)
    if as_json:
        emit_summary({"rater": res.rater, "link": res.link}, as_json=True)
        return
    console.print(f"New secret link for {res.rater} (shown only now; the old link no longer works):")
    console.print(f"  {res.link}", soft_wrap=True, highlight=False)


@reader_app.command("check")
def check(
    study: Path = typer.Argument(..., help="Study folder made by 'reader-study create'."),
    out: Path = typer.Option(None, "--out", help="Where to write check.json (default: STUDY/check.json)."),
    as_json: AsJson = False,
) -> None:
    """Leak audit: can a trivial rule on position, PNG size or image statistics tell the sources apart?"""
    from rich.table import Table

    from ..reader_study.check import CHECK_FILE, check_study, write_check

    res = check_study(study)
    path = write_check(res, out or study / CHECK_FILE, study_dir=study)
    if as_json:
        emit_summary({"check": str(path), **res.to_dict()}, as_json=True)
        return
    table = Table(title=f"leak audit of {study} ({res.n_items} images, {res.n_raters} raters)", title_justify="left")
    for column in ("rule", "accuracy (CV)", "95 % CI", "n", "fitted on all", "verdict"):
        table.add_column(column)
    for r in res.rules:
        acc = "–" if r.accuracy is None else f"{r.accuracy:.3f}"
        ci = "–" if r.ci95 is None else f"{r.ci95[0]:.3f}–{r.ci95[1]:.3f}"
        table.add_row(r.rule, acc, ci, str(r.n), r.fitted, "[red]LEAKS[/]" if r.leaks else "[green]chance[/]")
    console.print(table)
    console.print(f"written {path}", highlight=False)
