"""Admin API: progress per rater, closing the study, exporting every answer with its truth."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from sqlalchemy import func, select

from .. import models
from ..deps import AdminDep, SessionDep
from ..schemas import CloseResult, ExportRow, RaterProgress, StudyProgress
from ..text import to_csv

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/progress", response_model=StudyProgress)
def read_progress(session: SessionDep, study: AdminDep) -> StudyProgress:
    counts = dict(
        session.execute(
            select(models.Assignment.rater_id, func.count()).group_by(models.Assignment.rater_id)
        ).all()
    )
    answered = {
        rid: (n, last)
        for rid, n, last in session.execute(
            select(models.Rating.rater_id, func.count(), func.max(models.Rating.created_at))
            .group_by(models.Rating.rater_id)
        ).all()
    }
    raters = [
        RaterProgress(name=r.name, total=counts.get(r.id, 0), answered=answered.get(r.id, (0, None))[0],
                      last_answer_at=answered.get(r.id, (0, None))[1])
        for r in session.scalars(select(models.Rater).where(models.Rater.study_id == study.id)
                                 .order_by(models.Rater.id))
    ]
    return StudyProgress(title=study.title, closed=study.closed_at is not None, closed_at=study.closed_at,
                         total_answers=sum(r.answered for r in raters), raters=raters)


@router.post("/close", response_model=CloseResult)
def close_study(session: SessionDep, study: AdminDep) -> CloseResult:
    """Close the study (idempotent): raters can no longer submit."""
    if study.closed_at is None:
        study.closed_at = models.utcnow()
        session.commit()
    return CloseResult(closed=True, closed_at=study.closed_at)


def export_rows(session: SessionDep, study_id: str) -> list[ExportRow]:
    """Every stored answer joined with its rater, position and ground truth."""
    q = (
        select(models.Rating, models.Assignment, models.Item, models.Rater)
        .join(models.Assignment, models.Rating.assignment_id == models.Assignment.id)
        .join(models.Item, models.Rating.item_id == models.Item.id)
        .join(models.Rater, models.Rating.rater_id == models.Rater.id)
        .where(models.Rater.study_id == study_id)
        .order_by(models.Rater.id, models.Assignment.position)
    )
    return [
        ExportRow(rater=rater.name, position=a.position, assignment_id=a.id, item_id=item.id,
                  source=item.source, class_label=item.class_label, origin=item.origin, choice=r.choice,
                  correct=r.choice == item.source, confidence=r.confidence, realism=r.realism,
                  comment=r.comment, seconds=r.seconds, display=r.display, created_at=r.created_at)
        for r, a, item, rater in session.execute(q).all()
    ]


@router.get("/export")
def export(session: SessionDep, study: AdminDep, format: Literal["csv", "json"] = "json") -> Response:
    rows = export_rows(session, study.id)
    if format == "json":
        body = "[" + ",".join(r.model_dump_json() for r in rows) + "]"
        return Response(body, media_type="application/json",
                        headers={"Content-Disposition": 'attachment; filename="answers.json"'})
    body = to_csv((r.model_dump(mode="json") for r in rows), list(ExportRow.model_fields))
    return Response(body, media_type="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="answers.csv"'})
