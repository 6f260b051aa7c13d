"""Error answers that never echo what the client sent.

FastAPI's default 422 body repeats the rejected input; a ``NaN`` or ``1e400`` there cannot be
written as JSON and turns the answer into a plain-text 500. Here a 422 lists only where and
why (``loc``, ``msg``, ``type``), never the input or the constraint context.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = ["validation_error"]


async def validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with ``{"detail": [{"loc", "msg", "type"}, ...]}``; the input is not repeated."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [{"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in errors]
    return JSONResponse(jsonable_encoder({"detail": detail}), status_code=422)
