"""Display settings (window/level, zoom, pan) stored with each answer, migrated and analysed."""

import csv
import io
import json

import pytest
from fastapi.testclient import TestClient
from rs_support import app_factory, build_study, study2d  # noqa: F401 - fixtures
from sqlalchemy import create_engine, inspect, text

from uterosynth.reader_study.analysis import Answer, display_summary
from uterosynth.reader_study.main import create_app
from uterosynth.reader_study.settings import Settings

VIEW = {"window_center": 100.0, "window_width": 80.0, "zoom": 2.5, "pan_x": -12.0, "pan_y": 4.0}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_display_settings_are_stored_and_exported(app_factory, study2d):  # noqa: F811
    app = app_factory(study2d)
    token = study2d.tokens["alice"]
    with TestClient(app) as client:
        items = client.get("/api/rater/items", headers=bearer(token)).json()
        body = {"assignment_id": items[0]["id"], "choice": "real", "confidence": 3, "realism": 3, "display": VIEW}
        assert client.post("/api/rater/ratings", json=body, headers=bearer(token)).status_code == 201
        body = {**body, "assignment_id": items[1]["id"]}
        del body["display"]  # older pages send none
        assert client.post("/api/rater/ratings", json=body, headers=bearer(token)).status_code == 201
        rows = client.get("/api/admin/export?format=json", headers=bearer(study2d.admin)).json()
        assert [r["display"] for r in rows] == [VIEW, None]
        table = list(csv.DictReader(io.StringIO(client.get("/api/admin/export?format=csv",
                                                           headers=bearer(study2d.admin)).text)))
        assert json.loads(table[0]["display"]) == VIEW and table[1]["display"] == ""


@pytest.mark.parametrize("change", [{"zoom": 0}, {"zoom": "2"}, {"window_width": 0}, {"window_center": 1e9},
                                   {"gamma": 2}, {"zoom": None}])
def test_bad_display_settings_are_422(app_factory, study2d, change):  # noqa: F811
    app = app_factory(study2d)
    token = study2d.tokens["alice"]
    with TestClient(app) as client:
        aid = client.get("/api/rater/items", headers=bearer(token)).json()[0]["id"]
        body = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3, "display": {**VIEW, **change}}
        assert client.post("/api/rater/ratings", json=body, headers=bearer(token)).status_code == 422


def test_an_older_database_gains_the_display_column(tmp_path):
    study = build_study(tmp_path, per_source=2, raters=["alice"])
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    app = create_app(Settings(study_dir=study.root, db_url=url))
    with TestClient(app) as client:
        aid = client.get("/api/rater/items", headers=bearer(study.tokens["alice"])).json()[0]["id"]
        body = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3}
        assert client.post("/api/rater/ratings", json=body, headers=bearer(study.tokens["alice"])).status_code == 201
    app.state.engine.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:  # the schema before display settings existed
        conn.execute(text("ALTER TABLE rs_rating DROP COLUMN display"))
    engine.dispose()
    app = create_app(Settings(study_dir=study.root, db_url=url))
    assert "display" in {c["name"] for c in inspect(app.state.engine).get_columns("rs_rating")}
    with TestClient(app) as client:
        rows = client.get("/api/admin/export", headers=bearer(study.admin)).json()
    assert len(rows) == 1 and rows[0]["display"] is None  # old answers kept, without settings
    app.state.engine.dispose()


def test_display_summary_shares_and_medians():
    default = {"window_center": 127.5, "window_width": 255.0, "zoom": 1.0, "pan_x": 0.0, "pan_y": 0.0}
    answers = [Answer("a", "i1", "real", "real", 3, 3, display=VIEW),
               Answer("a", "i2", "real", "real", 3, 3, display=default),
               Answer("a", "i3", "real", "real", 3, 3, display={**default, "zoom": 2.0}),
               Answer("a", "i4", "real", "real", 3, 3)]
    s = display_summary(answers)
    assert s["n_with"] == 3 and s["n_without"] == 1
    assert s["window_changed"] == pytest.approx(1 / 3) and s["zoomed"] == pytest.approx(2 / 3)
    assert s["panned"] == pytest.approx(1 / 3) and s["median_zoom"] == 2.0 and s["median_window_width"] == 255.0
    assert display_summary([])["window_changed"] is None
