"""The reader-study web application: ``create_app(settings)`` builds it, nothing at import time.

Run it with ``uterosynth reader-study serve STUDY`` (binds 127.0.0.1 by default), or with
uvicorn directly: ``UTEROSYNTH_READER_STUDY=STUDY uvicorn --factory
uterosynth.reader_study.main:create_app``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles

from .db import init_db, make_engine, make_session_factory
from .handlers import validation_error
from .middleware import BodySizeLimit, SecurityHeaders
from .routes import admin, images, pages, rater
from .settings import Settings, get_settings
from .study import StudyFolder

__all__ = ["create_app"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for ``settings`` (default: :func:`get_settings` from the environment).

    Opens the study folder, connects to the database, creates the tables and loads the study
    into them on first use.

    Raises:
        DataError: the study folder is unusable or the database cannot be reached.
        ConfigError: the database URL is invalid.
    """
    settings = settings or get_settings()
    study = StudyFolder.load(settings.study_dir)
    engine = make_engine(settings.database_url)
    init_db(engine, study)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        engine.dispose()

    app = FastAPI(title=study.title, docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.settings = settings
    app.state.study = study
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(SecurityHeaders)  # outermost but for Starlette's error layer: also on 413 and 500
    app.add_exception_handler(RequestValidationError, validation_error)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    for module in (pages, rater, images, admin):
        app.include_router(module.router)
    return app
