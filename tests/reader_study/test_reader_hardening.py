"""Hostile input: control characters, non-finite numbers, database refusals, errors, CSV export."""

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient
from rs_support import app_factory, db_url, postgres_url, study2d  # noqa: F401 - fixtures
from sqlalchemy import func, select
from sqlalchemy.exc import DataError as DBDataError
from sqlalchemy.orm import Session

from uterosynth.reader_study import models
from uterosynth.reader_study.deps import get_session
from uterosynth.reader_study.text import check_no_control, safe_cell, to_csv


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def n_ratings(app) -> int:
    with Session(app.state.engine) as s:
        return s.scalar(select(func.count()).select_from(models.Rating))


def first_assignment(client, token: str) -> str:
    return client.get("/api/rater/items", headers=bearer(token)).json()[0]["id"]


@pytest.mark.parametrize("comment", ["a\x00b", "bell\x07", "esc\x1b[31m", "cr\rlf", "c1\x9b", "del\x7f"])
def test_control_characters_are_422_and_nothing_is_stored(app_factory, study2d, db_url, comment):  # noqa: F811
    app = app_factory(study2d, db_url)
    token = study2d.tokens["alice"]
    with TestClient(app) as client:
        aid = first_assignment(client, token)
        body = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3, "comment": comment}
        res = client.post("/api/rater/ratings", json=body, headers=bearer(token))
        assert res.status_code == 422 and "control character" in res.text and n_ratings(app) == 0
        body["comment"] = "line one\nline\ttwo"  # line breaks and tabs are text
        assert client.post("/api/rater/ratings", json=body, headers=bearer(token)).status_code == 201


@pytest.mark.parametrize("field", ["confidence", "realism", "seconds"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_a_json_422_without_echo(app_factory, study2d, field, value):  # noqa: F811
    app = app_factory(study2d)
    token = study2d.tokens["alice"]
    with TestClient(app, raise_server_exceptions=False) as client:
        aid = first_assignment(client, token)
        base = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3, "seconds": 1}
        text = json.dumps(base).replace(f'"{field}": {base[field]}', f'"{field}": {value}')
        res = client.post("/api/rater/ratings", content=text.encode(),
                          headers={**bearer(token), "Content-Type": "application/json"})
        assert res.status_code == 422 and res.headers["content-type"] == "application/json"
        detail = res.json()["detail"]
        assert detail and all(set(e) == {"loc", "msg", "type"} for e in detail)
        assert "input" not in res.text and value.lower() not in res.text.lower()
        assert "content-security-policy" in res.headers and n_ratings(app) == 0


def test_a_database_refusal_is_422_and_stores_nothing(app_factory, study2d):  # noqa: F811
    app = app_factory(study2d)

    def refusing_session():
        with app.state.session_factory() as session:
            def commit():
                raise DBDataError("INSERT", {}, Exception("invalid byte sequence"))

            session.commit = commit
            yield session

    app.dependency_overrides[get_session] = refusing_session
    with TestClient(app) as client:
        token = study2d.tokens["alice"]
        aid = first_assignment(client, token)
        body = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3}
        res = client.post("/api/rater/ratings", json=body, headers=bearer(token))
    assert res.status_code == 422 and n_ratings(app) == 0


def test_500_answers_carry_the_security_headers(app_factory, study2d):  # noqa: F811
    app = app_factory(study2d)

    def broken_session():
        raise RuntimeError("database gone")
        yield  # pragma: no cover

    app.dependency_overrides[get_session] = broken_session
    with TestClient(app, raise_server_exceptions=False) as client:
        res = client.get("/api/rater/me", headers=bearer(study2d.tokens["alice"]))
    assert res.status_code == 500 and res.json() == {"detail": "internal server error"}
    assert "script-src 'self'" in res.headers["content-security-policy"]
    assert res.headers["x-content-type-options"] == "nosniff" and res.headers["cache-control"] == "no-store"
    assert "database gone" not in res.text


@pytest.mark.parametrize("text, expected", [
    ("=1+1", "'=1+1"), ("x;=1+1", "x;'=1+1"), ("a, @SUM(A1)", "a, '@SUM(A1)"), ("ok\n-2+3", "ok\n'-2+3"),
    ("a\x00b\x1bc", "abc"), ("\t=cmd", "'=cmd"), ("\r+1", "'+1"), ("a|+b", "a|'+b"),
    ("fine - really", "fine - really"), ("2024-01-01T10:00:00+00:00", "2024-01-01T10:00:00+00:00"),
])
def test_csv_cells_are_defused(text, expected):
    assert safe_cell(text) == expected


def test_csv_quotes_every_cell():
    out = to_csv([{"a": "x;=1+1", "b": 3, "c": None}], ["a", "b", "c"])
    assert out.splitlines() == ['"a","b","c"', '"x;\'=1+1","3",""']
    assert list(csv.DictReader(io.StringIO(out))) == [{"a": "x;'=1+1", "b": "3", "c": ""}]


def test_check_no_control_names_the_character():
    with pytest.raises(ValueError, match=r"U\+0000"):
        check_no_control("a\x00")


def test_export_of_a_stored_nul_is_clean(app_factory, study2d):  # noqa: F811
    app = app_factory(study2d)
    with TestClient(app) as client:
        token = study2d.tokens["alice"]
        aid = first_assignment(client, token)
        body = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3, "comment": "x"}
        assert client.post("/api/rater/ratings", json=body, headers=bearer(token)).status_code == 201
        with Session(app.state.engine) as s:  # a row written before comments were checked
            s.query(models.Rating).update({"comment": "x;=1+1\x00"})
            s.commit()
        res = client.get("/api/admin/export?format=csv", headers=bearer(study2d.admin))
    assert "\x00" not in res.text and '"x;\'=1+1"' in res.text
