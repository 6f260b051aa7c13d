"""API tests: every endpoint and every security property, on a temporary SQLite database."""

import csv
import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rs_support import app_factory, study2d, study3d  # noqa: F401 - fixtures
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from uterosynth.reader_study import models
from uterosynth.reader_study.render import png_chunks
from uterosynth.reader_study.security import hash_token
from uterosynth.reader_study.study import StudyFolder


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def client(app_factory, study2d):  # noqa: F811
    app = app_factory(study2d)
    with TestClient(app) as c:
        c.study = study2d
        c.app_ = app
        yield c


def n_ratings(client) -> int:
    with Session(client.app_.state.engine) as s:
        return s.scalar(select(func.count()).select_from(models.Rating))


def items_of(client, name):
    res = client.get("/api/rater/items", headers=bearer(client.study.tokens[name]))
    assert res.status_code == 200
    return res.json()


def answer(client, name, assignment_id, **kw):
    body = {"assignment_id": assignment_id, "choice": "synthetic", "confidence": 4, "realism": 2, **kw}
    return client.post("/api/rater/ratings", json=body, headers=bearer(client.study.tokens[name]))


def item_statuses(client, name, assignment_id) -> tuple[int, int, int]:
    """Status codes of the item, its first image and a rating of it, asked with ``name``'s token."""
    token = bearer(client.study.tokens[name])
    return (client.get(f"/api/rater/items/{assignment_id}", headers=token).status_code,
            client.get(f"/api/images/{assignment_id}/0", headers=token).status_code,
            answer(client, name, assignment_id).status_code)


# ---------------------------------------------------------------- pages and static files

@pytest.mark.parametrize("path", ["/", "/rate", "/admin"])
def test_pages_are_served_without_secrets(client, path):
    res = client.get(path)
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    assert client.study.admin not in res.text and "synthetic" not in res.text.split("<main")[0]
    assert "http://" not in res.text and "https://" not in res.text  # no CDN, works offline
    assert "script-src 'self'" in res.headers["content-security-policy"]
    assert res.headers["x-content-type-options"] == "nosniff" and res.headers["referrer-policy"] == "no-referrer"


@pytest.mark.parametrize("asset", ["app.css", "common.js", "viewer.js", "rate.js", "admin.js"])
def test_static_assets(client, asset):
    res = client.get(f"/static/{asset}")
    assert res.status_code == 200 and len(res.content) > 200


def test_api_docs_are_not_exposed(client):
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


# ---------------------------------------------------------------- rater endpoints

def test_me_reports_progress_and_next_item(client):
    res = client.get("/api/rater/me", headers=bearer(client.study.tokens["alice"]))
    assert res.status_code == 200
    me = res.json()
    assert me["name"] == "alice" and me["total"] == 8 and me["answered"] == 0 and not me["closed"]
    assert me["next"]["position"] == 0 and set(me["next"]) == {"id", "position", "n_slices", "answered"}


def test_items_lists_only_own_assignments_in_own_order(client):
    alice, bob = items_of(client, "alice"), items_of(client, "bob")
    assert [a["position"] for a in alice] == list(range(8))
    assert not {a["id"] for a in alice} & {b["id"] for b in bob}


def test_item_detail_and_resume_where_left_off(client):
    items = items_of(client, "alice")
    assert answer(client, "alice", items[0]["id"], comment="  edges too smooth ").status_code == 201
    assert answer(client, "alice", items[1]["id"], choice="real").status_code == 201
    me = client.get("/api/rater/me", headers=bearer(client.study.tokens["alice"])).json()
    assert me["answered"] == 2 and me["next"]["id"] == items[2]["id"]
    detail = client.get(f"/api/rater/items/{items[0]['id']}", headers=bearer(client.study.tokens["alice"])).json()
    assert detail["answered"] and detail["answer"]["comment"] == "edges too smooth"
    assert detail["answer"]["confidence"] == 4
    fresh = client.get(f"/api/rater/items/{items[5]['id']}", headers=bearer(client.study.tokens["alice"])).json()
    assert fresh["answer"] is None and not fresh["answered"]


def test_done_rater_has_no_next(client):
    for item in items_of(client, "carol"):
        assert answer(client, "carol", item["id"]).status_code == 201
    me = client.get("/api/rater/me", headers=bearer(client.study.tokens["carol"])).json()
    assert me["answered"] == me["total"] == 8 and me["next"] is None


def test_submission_is_stored_with_all_fields(client):
    item = items_of(client, "bob")[3]
    res = answer(client, "bob", item["id"], choice="real", confidence=1, realism=5, comment="ok", seconds=12.5)
    assert res.status_code == 201
    body = res.json()
    assert body == {**body, "choice": "real", "confidence": 1, "realism": 5, "comment": "ok"}
    assert "correct" not in body and "source" not in body  # no feedback while the study is open
    with Session(client.app_.state.engine) as s:
        r = s.scalar(select(models.Rating))
        assert (r.choice, r.confidence, r.realism, r.comment, r.seconds) == ("real", 1, 5, "ok", 12.5)


# ---------------------------------------------------------------- images

def test_images_of_own_assignments(client):
    item = items_of(client, "alice")[0]
    res = client.get(f"/api/images/{item['id']}/0", headers=bearer(client.study.tokens["alice"]))
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    assert png_chunks(res.content) == ["IHDR", "IDAT", "IEND"]
    assert "last-modified" not in res.headers and "etag" not in res.headers  # no timing tells
    assert res.headers["cache-control"] == "no-store"
    assert client.get(f"/api/images/{item['id']}/1", headers=bearer(client.study.tokens["alice"])).status_code == 404


def test_3d_slices(app_factory, study3d):  # noqa: F811
    with TestClient(app_factory(study3d)) as c:
        token = study3d.tokens["alice"]
        item = c.get("/api/rater/me", headers=bearer(token)).json()["next"]
        assert item["n_slices"] == 4
        pngs = [c.get(f"/api/images/{item['id']}/{k}", headers=bearer(token)) for k in range(4)]
        assert all(p.status_code == 200 for p in pngs)
        assert len({p.content for p in pngs}) > 1  # different slices
        assert c.get(f"/api/images/{item['id']}/4", headers=bearer(token)).status_code == 404


# ---------------------------------------------------------------- admin endpoints

def test_admin_progress(client):
    answer(client, "alice", items_of(client, "alice")[0]["id"])
    res = client.get("/api/admin/progress", headers=bearer(client.study.admin))
    assert res.status_code == 200
    p = res.json()
    assert p["total_answers"] == 1 and not p["closed"]
    rows = {r["name"]: r for r in p["raters"]}
    assert rows["alice"]["answered"] == 1 and rows["bob"]["answered"] == 0 and rows["alice"]["total"] == 8
    assert rows["alice"]["last_answer_at"] is not None and rows["bob"]["last_answer_at"] is None


def test_admin_close_blocks_submissions_and_is_idempotent(client):
    items = items_of(client, "alice")
    assert answer(client, "alice", items[0]["id"]).status_code == 201
    res = client.post("/api/admin/close", headers=bearer(client.study.admin))
    assert res.status_code == 200 and res.json()["closed"]
    again = client.post("/api/admin/close", headers=bearer(client.study.admin)).json()
    assert again["closed_at"] == res.json()["closed_at"]
    before = n_ratings(client)
    late = answer(client, "alice", items[1]["id"])
    assert late.status_code == 403 and n_ratings(client) == before
    assert client.get("/api/rater/me", headers=bearer(client.study.tokens["alice"])).json()["closed"]
    assert client.get("/api/admin/progress", headers=bearer(client.study.admin)).json()["closed"]


def test_admin_export_json_and_csv_with_ground_truth(client):
    items = items_of(client, "bob")
    answer(client, "bob", items[0]["id"], comment="=HYPERLINK(\"http://x\")")
    answer(client, "bob", items[1]["id"], choice="real")
    js = client.get("/api/admin/export?format=json", headers=bearer(client.study.admin))
    assert js.status_code == 200 and "attachment" in js.headers["content-disposition"]
    rows = js.json()
    assert [r["position"] for r in rows] == [0, 1] and {r["rater"] for r in rows} == {"bob"}
    truth = {k: v.source for k, v in StudyFolder.load(client.study.root).key.items()}
    for r in rows:
        assert r["source"] == truth[r["item_id"]] and r["correct"] == (r["choice"] == r["source"])
    res = client.get("/api/admin/export?format=csv", headers=bearer(client.study.admin))
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(res.text)))
    assert len(table) == 2 and table[0]["comment"].startswith("'=")  # formula injection neutralised
    assert client.get("/api/admin/export?format=xml", headers=bearer(client.study.admin)).status_code == 422


# ---------------------------------------------------------------- security: authorisation everywhere

API = [
    ("GET", "/api/rater/me", "rater"),
    ("GET", "/api/rater/items", "rater"),
    ("GET", "/api/rater/items/{aid}", "rater"),
    ("POST", "/api/rater/ratings", "rater"),
    ("GET", "/api/images/{aid}/0", "rater"),
    ("GET", "/api/admin/progress", "admin"),
    ("POST", "/api/admin/close", "admin"),
    ("GET", "/api/admin/export", "admin"),
]


@pytest.mark.parametrize("method, path, role", API)
def test_every_endpoint_checks_authorisation(client, method, path, role):
    aid = items_of(client, "alice")[0]["id"]
    tokens = {"rater": client.study.tokens["alice"], "admin": client.study.admin}
    credentials = {
        "none": {},
        "garbage": bearer("x" * 43),
        "wrong-role": bearer(tokens["admin" if role == "rater" else "rater"]),
        "other-scheme": {"Authorization": f"Basic {tokens[role]}"},
        "huge": bearer("y" * 5000),
        "empty": {"Authorization": "Bearer "},
    }
    body = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3}
    for name, headers in credentials.items():
        res = client.request(method, path.format(aid=aid), headers=headers, json=body if method == "POST" else None)
        assert res.status_code == 401, name
        assert res.headers.get("www-authenticate") == "Bearer", name
    # nothing changed: no answer stored, study still open
    assert n_ratings(client) == 0
    assert client.get("/api/admin/progress", headers=bearer(client.study.admin)).json()["closed"] is False
    ok = client.request(method, path.format(aid=aid), headers=bearer(tokens[role]),
                        json=body if method == "POST" else None)
    assert ok.status_code in (200, 201)  # the right token works on the same request


def test_tokens_are_stored_hashed(client):
    with Session(client.app_.state.engine) as s:
        hashes = set(s.scalars(select(models.Rater.token_hash)))
        admin_hash = s.scalar(select(models.Study.admin_token_hash))
    assert hashes == {hash_token(t) for t in client.study.tokens.values()}
    assert admin_hash == hash_token(client.study.admin)
    files = [p for p in client.study.root.rglob("*") if p.is_file()]
    db = Path(client.app_.state.engine.url.database)
    files += list(db.parent.glob(db.name + "*"))  # the SQLite database with its WAL
    assert len(files) > 10
    dumped = b"".join(p.read_bytes() for p in files)
    for token in [*client.study.tokens.values(), client.study.admin]:
        assert token.encode() not in dumped


# ---------------------------------------------------------------- security: isolation and blinding

def test_rater_cannot_touch_another_raters_items(client):
    bob_item = items_of(client, "bob")[0]["id"]
    assert item_statuses(client, "alice", bob_item) == (404, 404, 404)
    assert n_ratings(client) == 0


def test_rater_never_receives_ground_truth(client):
    study = StudyFolder.load(client.study.root)
    secrets = set(study.key) | {k.origin for k in study.key.values()} | {k.class_label for k in study.key.values()}
    token = bearer(client.study.tokens["alice"])
    items = items_of(client, "alice")
    seen = [client.get("/api/rater/me", headers=token).text, json.dumps(items),
            answer(client, "alice", items[0]["id"]).text,
            client.get(f"/api/rater/items/{items[0]['id']}", headers=token).text]
    for text in seen:
        assert not any(s and s in text for s in secrets)
        for word in ("source", "correct", "truth", "class", "origin"):
            assert word not in text


# ---------------------------------------------------------------- security: bad input changes nothing

TRAVERSAL = [
    "/api/images/../../study.json", "/api/images/..%2F..%2Fkey.json/0", "/api/images/%2e%2e/0",
    "/static/../key.json", "/static/..%2F..%2Fkey.json", "/static/%2e%2e/%2e%2e/study.json",
    "/static/..%2f..%2f..%2fstudy.json", "/api/images/0123456789abcdef01234567/-1",
    "/api/images/0123456789abcdef01234567/..", "/api/images/0123456789abcdef01234567/..%2F..%2Fkey.json",
]


def test_path_traversal_is_refused(client):
    for path in TRAVERSAL:
        res = client.get(path, headers=bearer(client.study.tokens["alice"]))
        assert 400 <= res.status_code < 500, path
        assert b"admin_token_sha256" not in res.content and b'"source"' not in res.content, path


@pytest.mark.parametrize("aid", ["0123456789abcdef01234567", "ffffffffffffffffffffffff"])
def test_unknown_ids_are_404(client, aid):
    assert item_statuses(client, "alice", aid) == (404, 404, 404)
    assert n_ratings(client) == 0


def test_malformed_ids_are_422(client):
    for aid in ["short", "0123456789ABCDEF01234567", "x" * 300, "0123456789abcdef0123456;"]:
        assert item_statuses(client, "alice", aid) == (422, 422, 422), aid
    assert n_ratings(client) == 0


INVALID = [
    {"choice": "maybe"}, {"choice": None}, {"confidence": 0}, {"confidence": 6}, {"confidence": "3"},
    {"confidence": 3.5}, {"confidence": True}, {"realism": -1}, {"realism": 99}, {"seconds": -1},
    {"seconds": "fast"}, {"comment": "x" * 2001}, {"comment": 5}, {"extra": "field"}, {"is_correct": True},
]


def test_invalid_submissions_are_422_and_change_nothing(client):
    aid = items_of(client, "alice")[0]["id"]
    for change in INVALID:
        body = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3, **change}
        res = client.post("/api/rater/ratings", json=body, headers=bearer(client.study.tokens["alice"]))
        assert res.status_code == 422, change
    for missing in ["assignment_id", "choice", "confidence", "realism"]:
        body = {"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3}
        del body[missing]
        res = client.post("/api/rater/ratings", json=body, headers=bearer(client.study.tokens["alice"]))
        assert res.status_code == 422, missing
    assert n_ratings(client) == 0
    # the same image can still be answered correctly afterwards
    assert answer(client, "alice", aid).status_code == 201


def test_non_json_body_is_422(client):
    res = client.post("/api/rater/ratings", content=b"choice=real", headers={
        **bearer(client.study.tokens["alice"]), "Content-Type": "application/x-www-form-urlencoded"})
    assert res.status_code == 422 and n_ratings(client) == 0


def test_oversized_body_is_413_and_changes_nothing(client):
    aid = items_of(client, "alice")[0]["id"]
    big = json.dumps({"assignment_id": aid, "choice": "real", "confidence": 3, "realism": 3,
                      "comment": "a" * 1000, "pad": "b" * 40_000}).encode()
    headers = {**bearer(client.study.tokens["alice"]), "Content-Type": "application/json"}
    assert client.post("/api/rater/ratings", content=big, headers=headers).status_code == 413

    def chunks():  # streamed without Content-Length
        for i in range(0, len(big), 4096):
            yield big[i:i + 4096]

    assert client.post("/api/rater/ratings", content=chunks(), headers=headers).status_code == 413
    assert n_ratings(client) == 0


def test_one_answer_per_rater_and_item(client):
    aid = items_of(client, "alice")[0]["id"]
    assert answer(client, "alice", aid, choice="synthetic").status_code == 201
    again = answer(client, "alice", aid, choice="real")
    assert again.status_code == 409 and n_ratings(client) == 1
    detail = client.get(f"/api/rater/items/{aid}", headers=bearer(client.study.tokens["alice"])).json()
    assert detail["answer"]["choice"] == "synthetic"  # the first answer stands


def test_serve_binds_loopback_by_default(study2d, monkeypatch, tmp_path):  # noqa: F811
    import uvicorn
    from rs_support import run_cli

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(kw))
    assert run_cli(["reader-study", "serve", str(study2d.root), "--db-url", f"sqlite:///{tmp_path / 'x.db'}"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000


def test_serve_bad_study_exits_2(tmp_path, capsys):
    from rs_support import run_cli

    assert run_cli(["reader-study", "serve", str(tmp_path)]) == 2
    assert "not a reader study" in capsys.readouterr().err


def test_serve_bad_db_url_exits_2(study2d, capsys):  # noqa: F811
    from rs_support import run_cli

    assert run_cli(["reader-study", "serve", str(study2d.root), "--db-url", "not a url"]) == 2
    assert "--db-url" in capsys.readouterr().err


def test_413_answers_also_carry_security_headers(client):
    res = client.post("/api/rater/ratings", content=b"x" * 20_000,
                      headers={**bearer(client.study.tokens["alice"]), "Content-Type": "application/json"})
    assert res.status_code == 413 and "content-security-policy" in res.headers
