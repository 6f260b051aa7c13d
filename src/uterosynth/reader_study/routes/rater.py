"""Rater API: own status, own assignments, submitting one answer per image.

Every route needs the rater's token; a rater can reach only their own assignments (others'
ids answer 404, exactly like unknown ids) and never receives the source of an image.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, status
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError

from .. import models
from ..deps import CurrentRater, SessionDep, StudyDep
from ..schemas import AssignmentDetail, AssignmentPublic, RaterStatus, RatingCreate, RatingPublic
from ..study import ASSIGNMENT_ID_PATTERN

router = APIRouter(prefix="/api/rater", tags=["rater"])

AssignmentPath = Annotated[str, Path(pattern=ASSIGNMENT_ID_PATTERN)]


def _own_assignments(session: SessionDep, rater: models.Rater) -> list[tuple[models.Assignment, bool]]:
    rows = session.execute(
        select(models.Assignment, models.Rating.id)
        .outerjoin(models.Rating, models.Rating.assignment_id == models.Assignment.id)
        .where(models.Assignment.rater_id == rater.id)
        .order_by(models.Assignment.position)
    ).all()
    return [(a, rating_id is not None) for a, rating_id in rows]


def _public(a: models.Assignment, answered: bool, n_slices: int) -> AssignmentPublic:
    return AssignmentPublic(id=a.id, position=a.position, n_slices=n_slices, answered=answered)


def _own(session: SessionDep, rater: models.Rater, assignment_id: str) -> models.Assignment:
    a = session.get(models.Assignment, assignment_id)
    if a is None or a.rater_id != rater.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown assignment")
    return a


@router.get("/me", response_model=RaterStatus)
def read_status(session: SessionDep, rater: CurrentRater, study: StudyDep) -> RaterStatus:
    """Progress and the first unanswered image (resume where the rater left off)."""
    items = _own_assignments(session, rater)
    pending = next((a for a, done in items if not done), None)
    row = session.get(models.Study, rater.study_id)
    return RaterStatus(
        name=rater.name,
        title=study.title,
        total=len(items),
        answered=sum(done for _, done in items),
        closed=row is not None and row.closed_at is not None,
        next=_public(pending, False, study.n_slices) if pending else None,
    )


@router.get("/items", response_model=list[AssignmentPublic])
def list_items(session: SessionDep, rater: CurrentRater, study: StudyDep) -> list[AssignmentPublic]:
    return [_public(a, done, study.n_slices) for a, done in _own_assignments(session, rater)]


@router.get("/items/{assignment_id}", response_model=AssignmentDetail)
def read_item(assignment_id: AssignmentPath, session: SessionDep, rater: CurrentRater,
              study: StudyDep) -> AssignmentDetail:
    a = _own(session, rater, assignment_id)
    rating = session.scalar(select(models.Rating).where(models.Rating.assignment_id == a.id))
    return AssignmentDetail(
        id=a.id, position=a.position, n_slices=study.n_slices, answered=rating is not None,
        answer=RatingPublic.model_validate(rating) if rating else None,
    )


@router.post("/ratings", response_model=RatingPublic, status_code=status.HTTP_201_CREATED)
def create_rating(body: RatingCreate, session: SessionDep, rater: CurrentRater) -> RatingPublic:
    """Store one answer. 403 once the study is closed, 404 for ids not the rater's own,
    409 when the image already has an answer (enforced by the database, so also under races),
    422 when the database refuses a value the schema let through; nothing is stored then."""
    row = session.get(models.Study, rater.study_id)
    if row is None or row.closed_at is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the study is closed")
    a = _own(session, rater, body.assignment_id)
    rating = models.Rating(
        assignment_id=a.id, rater_id=rater.id, item_id=a.item_id, choice=body.choice,
        confidence=body.confidence, realism=body.realism, comment=body.comment or None,
        seconds=float(body.seconds) if body.seconds is not None else None,
        display=body.display.model_dump() if body.display is not None else None,
    )
    session.add(rating)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "this image already has an answer") from None
    except DataError:
        session.rollback()
        raise HTTPException(422, "the database refused a value") from None
    return RatingPublic.model_validate(rating)
