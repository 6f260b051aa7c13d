"""API schemas, one per direction: ``*Create`` comes in, ``*Public`` goes out.

Nothing sent to a rater carries the source, the class or the origin of an item.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StringConstraints

from .study import ASSIGNMENT_ID_PATTERN
from .text import check_no_control

__all__ = [
    "AssignmentId",
    "RatingCreate",
    "RatingPublic",
    "AssignmentPublic",
    "AssignmentDetail",
    "RaterStatus",
    "RaterProgress",
    "StudyProgress",
    "CloseResult",
    "ExportRow",
    "MAX_COMMENT",
]

MAX_COMMENT = 2000
AssignmentId = Annotated[str, StringConstraints(pattern=ASSIGNMENT_ID_PATTERN)]
Score = Annotated[StrictInt, Field(ge=1, le=5)]
Comment = Annotated[str, StringConstraints(max_length=MAX_COMMENT, strip_whitespace=True),
                    AfterValidator(check_no_control)]


class RatingCreate(BaseModel):
    """A rater's answer for one of their assignments."""

    model_config = ConfigDict(extra="forbid")

    assignment_id: AssignmentId
    choice: Literal["real", "synthetic"]
    confidence: Score
    realism: Score
    comment: Comment | None = None
    seconds: Annotated[StrictFloat | StrictInt, Field(ge=0, le=86_400, allow_inf_nan=False)] | None = None


class RatingPublic(BaseModel):
    """A stored answer, as its own rater sees it (no ground truth)."""

    model_config = ConfigDict(from_attributes=True)

    assignment_id: str
    choice: str
    confidence: int
    realism: int
    comment: str | None
    created_at: dt.datetime


class AssignmentPublic(BaseModel):
    """One image of a rater's list: opaque id, position, slice count, answered or not."""

    id: str
    position: int
    n_slices: int
    answered: bool


class RaterStatus(BaseModel):
    """The rater's own progress and the next image to rate (``None`` when done)."""

    name: str
    title: str
    total: int
    answered: int
    closed: bool
    next: AssignmentPublic | None


class RaterProgress(BaseModel):
    name: str
    answered: int
    total: int
    last_answer_at: dt.datetime | None


class StudyProgress(BaseModel):
    """Admin view of the study."""

    title: str
    closed: bool
    closed_at: dt.datetime | None
    total_answers: int
    raters: list[RaterProgress]


class CloseResult(BaseModel):
    closed: bool
    closed_at: dt.datetime


class ExportRow(BaseModel):
    """One answer with its ground truth (admin export only)."""

    rater: str
    position: int
    assignment_id: str
    item_id: str
    source: str
    class_label: str
    origin: str
    choice: str
    correct: bool
    confidence: int
    realism: int
    comment: str | None
    seconds: float | None
    created_at: dt.datetime


class AssignmentDetail(AssignmentPublic):
    """One of the rater's own assignments with their own answer, if any."""

    answer: RatingPublic | None
