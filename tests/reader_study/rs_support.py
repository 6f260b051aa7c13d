"""Shared helpers and fixtures of the reader-study tests (imported by the test modules): tiny
studies, an app on a temporary database, a real uvicorn server on loopback, PostgreSQL and
Chromium (skipped locally when absent, failing in CI)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from uterosynth.reader_study.config import StudyConfig
from uterosynth.reader_study.create import CreatedStudy, create_study
from uterosynth.reader_study.main import create_app
from uterosynth.reader_study.settings import Settings


def _root_conftest():
    """tests/conftest.py loaded by path: robust even if other test folders add a conftest.py."""
    import importlib.util
    import sys

    name = "_uterosynth_tests_conftest"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / "conftest.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


make_prepared_dataset = _root_conftest().make_prepared_dataset
make_synthetic_set = _root_conftest().make_blob_synthetic_set

CHROMIUM = os.environ.get("UTEROSYNTH_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip locally; in CI (CI=true) a missing service is a failure, never a silent skip."""
    if in_ci():
        pytest.fail(f"CI requires this test to run: {reason}")
    pytest.skip(reason)


@dataclass
class Study:
    made: CreatedStudy
    root: Path

    @property
    def tokens(self) -> dict[str, str]:
        return {name: link.split("#t=", 1)[1] for name, link in self.made.links.items()}

    @property
    def admin(self) -> str:
        return self.made.admin_token


def build_study(tmp: Path, *, dims: int = 2, per_source: int = 4, raters: list[str] | None = None,
                class_by: list[str] | None = None, seed: int = 0, subjects: int = 8,
                n_synthetic: int = 8) -> Study:
    shape = (24, 24) if dims == 2 else (12, 12, 4)
    real = make_prepared_dataset(tmp / f"real{dims}", dims=dims, shape=shape, subjects=subjects,
                                 items_per_subject=2 if dims == 2 else 1)
    syn = make_synthetic_set(tmp / f"syn{dims}", dims=dims, shape=shape, n=n_synthetic)
    cfg = StudyConfig(per_source=per_source, raters=raters or ["alice", "bob"], size=32, seed=seed,
                      class_by=class_by)
    made = create_study(real, syn, tmp / f"study{dims}", cfg)
    return Study(made, made.root)


@pytest.fixture(scope="module")
def study2d(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return build_study(tmp_path_factory.mktemp("rs2d"), raters=["alice", "bob", "carol"])


@pytest.fixture(scope="module")
def study3d(tmp_path_factory: pytest.TempPathFactory) -> Study:
    return build_study(tmp_path_factory.mktemp("rs3d"), dims=3, per_source=2)


@pytest.fixture
def app_factory(tmp_path: Path):
    """Build an app for a study on a fresh temporary SQLite database (or a given URL)."""
    apps = []

    def make(study: Study, db_url: str | None = None, **kw):
        url = db_url or f"sqlite:///{tmp_path / f'db-{uuid.uuid4().hex[:8]}.sqlite'}"
        app = create_app(Settings(study_dir=study.root, db_url=url, **kw))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.state.engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh schema on the PostgreSQL server of ``UTEROSYNTH_TEST_POSTGRES_URL``."""
    base = os.environ.get("UTEROSYNTH_TEST_POSTGRES_URL")
    if not base:
        skip_or_fail("UTEROSYNTH_TEST_POSTGRES_URL is not set (see docs/guide/reader_study.md)")
    from sqlalchemy import create_engine, text

    from uterosynth.reader_study.db import normalise_url

    schema = f"rs_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as err:  # noqa: BLE001 - any connection problem
        admin.dispose()
        skip_or_fail(f"PostgreSQL at UTEROSYNTH_TEST_POSTGRES_URL is unreachable ({err})")
    sep = "&" if "?" in base else "?"
    yield f"{base}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'storage.sqlite'}"
    return request.getfixturevalue("postgres_url")


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 and a free port in a thread; yield its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture
def chromium():
    """A headless Debian Chromium driven by Playwright (never downloads a browser)."""
    if not (Path(CHROMIUM).exists() or shutil.which("chromium")):
        skip_or_fail(f"{CHROMIUM} not found (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install -e '.[test]')")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"),
                                    args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def run_cli(args: list[str]) -> int:
    """Run ``uterosynth ARGS`` in-process; return the exit code."""
    from uterosynth.cli import main

    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
