"""Storage on SQLite and on a real PostgreSQL server (UTEROSYNTH_TEST_POSTGRES_URL)."""

import pytest
from fastapi.testclient import TestClient
from rs_support import app_factory, db_url, postgres_url, study2d  # noqa: F401 - fixtures
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from uterosynth.core.errors import ConfigError, DataError
from uterosynth.reader_study import models
from uterosynth.reader_study.db import init_db, make_engine, make_session_factory, normalise_url, safe_url
from uterosynth.reader_study.deps import get_session
from uterosynth.reader_study.study import StudyFolder


def test_schema_is_loaded_once_and_idempotently(db_url, study2d):  # noqa: F811
    study = StudyFolder.load(study2d.root)
    engine = make_engine(db_url)
    try:
        init_db(engine, study)
        init_db(engine, study)  # a second server process starting on the same database
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(models.Rater)) == 3
            assert s.scalar(select(func.count()).select_from(models.Item)) == 8
            assert s.scalar(select(func.count()).select_from(models.Assignment)) == 24
            sources = sorted(s.scalars(select(models.Item.source)))
            assert sources == ["real"] * 4 + ["synthetic"] * 4
    finally:
        engine.dispose()


def _rating(s: Session, rater_name: str, position: int, **kw) -> models.Rating:
    rater = s.scalar(select(models.Rater).where(models.Rater.name == rater_name))
    a = s.scalar(select(models.Assignment).where(models.Assignment.rater_id == rater.id,
                                                 models.Assignment.position == position))
    values = {"choice": "real", "confidence": 3, "realism": 3, **kw}
    return models.Rating(assignment_id=a.id, rater_id=rater.id, item_id=a.item_id, **values)


def test_database_enforces_one_answer_per_rater_and_item(db_url, study2d):  # noqa: F811
    engine = make_engine(db_url)
    try:
        init_db(engine, StudyFolder.load(study2d.root))
        with Session(engine) as s:
            s.add(_rating(s, "alice", 0))
            s.commit()
            s.add(_rating(s, "alice", 0, choice="synthetic"))
            with pytest.raises(IntegrityError):
                s.commit()
            s.rollback()
            assert s.scalar(select(func.count()).select_from(models.Rating)) == 1
    finally:
        engine.dispose()


def test_database_rejects_a_rating_for_another_raters_assignment(db_url, study2d):  # noqa: F811
    engine = make_engine(db_url)
    try:
        init_db(engine, StudyFolder.load(study2d.root))
        with Session(engine) as s:
            rating = _rating(s, "alice", 0)
            rating.rater_id = s.scalar(select(models.Rater.id).where(models.Rater.name == "bob"))
            s.add(rating)
            with pytest.raises(IntegrityError):
                s.commit()
    finally:
        engine.dispose()


@pytest.mark.parametrize("bad", [{"confidence": 0}, {"realism": 6}, {"choice": "maybe"}])
def test_database_checks_values(db_url, study2d, bad):  # noqa: F811
    engine = make_engine(db_url)
    try:
        init_db(engine, StudyFolder.load(study2d.root))
        with Session(engine) as s:
            s.add(_rating(s, "bob", 1, **bad))
            with pytest.raises(IntegrityError):
                s.commit()
    finally:
        engine.dispose()


def test_full_api_flow_on_each_backend(db_url, study2d, app_factory):  # noqa: F811
    app = app_factory(study2d, db_url=db_url)
    headers = {"Authorization": f"Bearer {study2d.tokens['bob']}"}
    with TestClient(app) as c:
        items = c.get("/api/rater/items", headers=headers).json()
        for k, item in enumerate(items[:3]):
            body = {"assignment_id": item["id"], "choice": "real" if k % 2 else "synthetic",
                    "confidence": k + 1, "realism": 5 - k, "comment": f"note {k}"}
            assert c.post("/api/rater/ratings", json=body, headers=headers).status_code == 201
        assert c.post("/api/rater/ratings", json={**body}, headers=headers).status_code == 409
        me = c.get("/api/rater/me", headers=headers).json()
        assert me["answered"] == 3 and me["next"]["id"] == items[3]["id"]
        assert c.post("/api/admin/close", headers={"Authorization": f"Bearer {study2d.admin}"}).status_code == 200
        progress = c.get("/api/admin/progress", headers={"Authorization": f"Bearer {study2d.admin}"}).json()
        assert progress["closed"] and progress["closed_at"].endswith(("Z", "+00:00"))
        rows = c.get("/api/admin/export", headers={"Authorization": f"Bearer {study2d.admin}"}).json()
        assert [(r["confidence"], r["realism"], r["comment"]) for r in rows] == [(1, 5, "note 0"), (2, 4, "note 1"),
                                                                                 (3, 3, "note 2")]


def test_session_dependency_can_be_swapped(study2d, app_factory, tmp_path):  # noqa: F811
    """Tests (and deployments) may point the session dependency at another database."""
    app = app_factory(study2d)
    other = make_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    init_db(other, StudyFolder.load(study2d.root))
    factory = make_session_factory(other)

    def override():
        with factory() as session:
            yield session

    app.dependency_overrides[get_session] = override
    headers = {"Authorization": f"Bearer {study2d.tokens['carol']}"}
    try:
        with TestClient(app) as c:
            item = c.get("/api/rater/me", headers=headers).json()["next"]
            body = {"assignment_id": item["id"], "choice": "real", "confidence": 2, "realism": 2}
            assert c.post("/api/rater/ratings", json=body, headers=headers).status_code == 201
        with Session(other) as s:
            assert s.scalar(select(func.count()).select_from(models.Rating)) == 1
        with Session(app.state.engine) as s:
            assert s.scalar(select(func.count()).select_from(models.Rating)) == 0
    finally:
        other.dispose()


def test_study_mismatch_in_database_is_a_data_error(study2d, tmp_path):  # noqa: F811
    study = StudyFolder.load(study2d.root)
    engine = make_engine(f"sqlite:///{tmp_path / 'x.sqlite'}")
    try:
        init_db(engine, study)
        with Session(engine) as s:
            s.delete(s.scalar(select(models.Rater).where(models.Rater.name == "carol")))
            s.commit()
        with pytest.raises(DataError, match="lists 3"):
            init_db(engine, study)
    finally:
        engine.dispose()


def test_unreachable_database_is_a_data_error(study2d):  # noqa: F811
    engine = make_engine("sqlite:////nonexistent-dir/readers/x.sqlite")
    with pytest.raises(DataError, match="cannot connect"):
        init_db(engine, StudyFolder.load(study2d.root))


def test_urls():
    assert normalise_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    assert "secret" not in safe_url("postgresql://u:secret@h/db")
    with pytest.raises(ConfigError, match="db_url"):
        make_engine("not a url")


def test_settings_from_environment(monkeypatch, study2d, tmp_path):  # noqa: F811
    from uterosynth.reader_study.main import create_app
    from uterosynth.reader_study.settings import get_settings

    get_settings.cache_clear()
    monkeypatch.delenv("UTEROSYNTH_READER_STUDY", raising=False)
    with pytest.raises(ConfigError, match="UTEROSYNTH_READER_STUDY"):
        get_settings()
    monkeypatch.setenv("UTEROSYNTH_READER_STUDY", str(study2d.root))
    monkeypatch.setenv("UTEROSYNTH_READER_DB_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
    monkeypatch.setenv("UTEROSYNTH_READER_MAX_BODY", "4096")
    try:
        settings = get_settings()
        assert settings.study_dir == study2d.root and settings.max_body_bytes == 4096
        assert get_settings() is settings  # read once
        app = create_app()  # the uvicorn --factory entry point
        assert app.state.settings is settings and (tmp_path / "env.sqlite").exists()
        app.state.engine.dispose()
        monkeypatch.setenv("UTEROSYNTH_READER_MAX_BODY", "lots")
        get_settings.cache_clear()
        with pytest.raises(ConfigError, match="MAX_BODY"):
            get_settings()
    finally:
        get_settings.cache_clear()


def test_default_database_is_sqlite_in_the_study(study2d):  # noqa: F811
    from uterosynth.reader_study.settings import Settings

    url = Settings(study_dir=study2d.root).database_url
    assert url.startswith("sqlite:///") and url.endswith("study.db")
