"""Request dependencies as ``Annotated`` aliases: session, study, current rater, admin.

Authentication is a bearer token in the ``Authorization`` header (the rater page reads it from
the link's fragment; it is never in a URL the server sees, so it never lands in access logs).
No cookies are used, so cross-site requests carry no credentials (no CSRF surface).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import models
from .security import MAX_TOKEN_LENGTH, hash_token, token_matches
from .settings import Settings
from .study import StudyFolder

__all__ = ["SessionDep", "SettingsDep", "StudyDep", "CurrentRater", "AdminDep", "get_session"]

_bearer = HTTPBearer(auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_study(request: Request) -> StudyFolder:
    return request.app.state.study


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
StudyDep = Annotated[StudyFolder, Depends(get_study)]
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def _unauthorised() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, "missing or invalid token", headers={"WWW-Authenticate": "Bearer"}
    )


def get_current_rater(session: SessionDep, study: StudyDep, credentials: Credentials) -> models.Rater:
    """The rater whose token is presented; 401 otherwise."""
    token = credentials.credentials if credentials else None
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise _unauthorised()
    rater = session.scalar(
        select(models.Rater).where(models.Rater.token_hash == hash_token(token),
                                   models.Rater.study_id == study.study_id)
    )
    if rater is None or not token_matches(token, rater.token_hash):
        raise _unauthorised()
    return rater


def require_admin(session: SessionDep, study: StudyDep, credentials: Credentials) -> models.Study:
    """The study row, if the admin token is presented; 401 otherwise."""
    row = session.get(models.Study, study.study_id)
    token = credentials.credentials if credentials else None
    if row is None or not token_matches(token, row.admin_token_hash):
        raise _unauthorised()
    return row


CurrentRater = Annotated[models.Rater, Depends(get_current_rater)]
AdminDep = Annotated[models.Study, Depends(require_admin)]
