"""Images: one PNG slice of one of the rater's own assignments.

The URL names an opaque assignment id and an integer slice, both validated; the file path is
built from the item id stored in the database, never from request text, and checked to stay
inside ``images/``. Responses carry no file name, date or ETag.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from .. import models
from ..deps import CurrentRater, SessionDep, StudyDep
from ..study import ASSIGNMENT_ID_PATTERN

router = APIRouter(prefix="/api/images", tags=["images"])


@router.get("/{assignment_id}/{slice_index}", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
def read_image(
    assignment_id: Annotated[str, Path(pattern=ASSIGNMENT_ID_PATTERN)],
    slice_index: Annotated[int, Path(ge=0, le=9999)],
    session: SessionDep,
    rater: CurrentRater,
    study: StudyDep,
) -> Response:
    a = session.get(models.Assignment, assignment_id)
    if a is None or a.rater_id != rater.id or slice_index >= study.n_slices:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown image")
    root = (study.root / "images").resolve()
    path = study.image_path(a.item_id, slice_index).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "unknown image")
    return Response(path.read_bytes(), media_type="image/png")
