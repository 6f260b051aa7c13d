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
    "DisplaySettings",
    "DEFAULT_DISPLAY",
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


Finite = Annotated[StrictFloat | StrictInt, Field(allow_inf_nan=False)]


class DisplaySettings(BaseModel):
    """How the rater looked at the image when answering (the viewer's state at submission).

    The window maps grey levels ``center ± width / 2`` of the served 8-bit image to black–white
    (the default, 127.5 / 255, shows it as rendered); ``zoom`` is a magnification and
    ``pan_x``/``pan_y`` a shift in screen pixels.
    """

    model_config = ConfigDict(extra="forbid")

    window_center: Annotated[Finite, Field(ge=-255, le=510)]
    window_width: Annotated[Finite, Field(ge=1, le=1020)]
    zoom: Annotated[Finite, Field(ge=0.1, le=32)]
    pan_x: Annotated[Finite, Field(ge=-100_000, le=100_000)] = 0
    pan_y: Annotated[Finite, Field(ge=-100_000, le=100_000)] = 0


DEFAULT_DISPLAY = DisplaySettings(window_center=127.5, window_width=255, zoom=1)


class RatingCreate(BaseModel):
    """A rater's answer for one of their assignments."""

    model_config = ConfigDict(extra="forbid")

    assignment_id: AssignmentId
    choice: Literal["real", "synthetic"]
    confidence: Score
    realism: Score
    comment: Comment | None = None
    seconds: Annotated[Finite, Field(ge=0, le=86_400)] | None = None
    display: DisplaySettings | None = None


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
    display: dict[str, float] | None
    created_at: dt.datetime


class AssignmentDetail(AssignmentPublic):
    """One of the rater's own assignments with their own answer, if any."""

    answer: RatingPublic | None
