"""Revoking a rater's link: a new token replaces the old one in ``study.json`` and the database.

The server checks every request's token against the database, so the old link fails from the
next request on, without a restart; ``study.json`` is written first because every later
start copies its hashes into the database (:func:`.db.init_db`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.artifacts import write_json
from ..core.errors import DataError
from .create import rater_link
from .db import init_db, make_engine
from .security import hash_token, new_token
from .settings import Settings
from .study import StudyFolder

__all__ = ["Revoked", "revoke_rater"]


@dataclass(frozen=True)
class Revoked:
    """The rater whose link was replaced and their new secret link (shown once)."""

    rater: str
    link: str


def revoke_rater(study_dir: str | Path, rater: str, *, db_url: str | None = None,
                 base_url: str | None = None) -> Revoked:
    """Give ``rater`` a new token; their old link answers 401 from now on.

    Args:
        study_dir: study folder made by ``reader-study create``.
        rater: the rater's name as in ``study.json``.
        db_url: the database the server uses (default: ``STUDY/study.db``).
        base_url: where the server is reachable (default: the one the study was created with).

    Raises:
        DataError: unknown rater, unusable study folder or unreachable database.
    """
    study = StudyFolder.load(study_dir)
    names = [spec.name for spec in study.raters]
    if rater not in names:
        raise DataError(f"{study.root}/study.json: no rater {rater!r} (raters: {', '.join(names)})")
    token = new_token()
    info = dict(study.info)
    info["raters"] = [{**r, "token_sha256": hash_token(token)} if r["name"] == rater else r for r in info["raters"]]
    write_json(study.root / "study.json", info)
    engine = make_engine(Settings(study_dir=study.root, db_url=db_url).database_url)
    try:
        init_db(engine, StudyFolder.load(study.root))
    finally:
        engine.dispose()
    base = base_url or (info.get("provenance", {}).get("config") or {}).get("base_url") or "http://127.0.0.1:8000"
    return Revoked(rater, rater_link(base, token))
