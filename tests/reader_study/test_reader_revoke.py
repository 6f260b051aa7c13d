"""Revoking a link: the old token fails at once on a running app, the new one works."""

import json

from fastapi.testclient import TestClient
from rs_support import build_study, run_cli

from uterosynth.reader_study.main import create_app
from uterosynth.reader_study.security import hash_token
from uterosynth.reader_study.settings import Settings


def me(client, token: str) -> int:
    return client.get("/api/rater/me", headers={"Authorization": f"Bearer {token}"}).status_code


def test_revoke_replaces_the_link_without_a_restart(tmp_path, capsys):
    study = build_study(tmp_path, per_source=2, raters=["alice", "bob"])
    url = f"sqlite:///{tmp_path / 'live.sqlite'}"
    app = create_app(Settings(study_dir=study.root, db_url=url))
    old = study.tokens["alice"]
    with TestClient(app) as client:
        assert me(client, old) == 200
        assert run_cli(["reader-study", "revoke", str(study.root), "alice", "--db-url", url, "--json"]) == 0
        link = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["link"]
        new = link.split("#t=", 1)[1]
        assert link.startswith("http://127.0.0.1:8000/rate#t=") and new != old
        assert me(client, old) == 401  # the very next request, same running app
        assert me(client, new) == 200
        assert me(client, study.tokens["bob"]) == 200  # other raters keep their links
    app.state.engine.dispose()
    info = json.loads((study.root / "study.json").read_text())
    hashes = {r["name"]: r["token_sha256"] for r in info["raters"]}
    assert hashes["alice"] == hash_token(new) and old not in (study.root / "study.json").read_text()
    # a restart keeps the revocation
    app = create_app(Settings(study_dir=study.root, db_url=url))
    with TestClient(app) as client:
        assert me(client, old) == 401 and me(client, new) == 200
    app.state.engine.dispose()


def test_a_hash_changed_in_study_json_applies_to_an_existing_database(tmp_path):
    study = build_study(tmp_path, per_source=2, raters=["alice"])
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    create_app(Settings(study_dir=study.root, db_url=url)).state.engine.dispose()  # database exists
    info = json.loads((study.root / "study.json").read_text())
    info["raters"][0]["token_sha256"] = hash_token("replacement-token")
    (study.root / "study.json").write_text(json.dumps(info))
    app = create_app(Settings(study_dir=study.root, db_url=url))
    with TestClient(app) as client:
        assert me(client, study.tokens["alice"]) == 401 and me(client, "replacement-token") == 200
    app.state.engine.dispose()


def test_revoking_an_unknown_rater_exits_2(tmp_path, capsys):
    study = build_study(tmp_path, per_source=2, raters=["alice"])
    before = (study.root / "study.json").read_text()
    assert run_cli(["reader-study", "revoke", str(study.root), "mallory"]) == 2
    err = capsys.readouterr().err
    assert "study.json: no rater 'mallory'" in err and "alice" in err
    assert (study.root / "study.json").read_text() == before
