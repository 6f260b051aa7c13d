"""HTML pages: landing, rater and admin. They hold no secrets; the scripts read the token
from the URL fragment (or a form) and call the API with it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from ..deps import StudyDep

router = APIRouter(tags=["pages"], include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))


@router.get("/", response_class=HTMLResponse)
def index(request: Request, study: StudyDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "index.html", {"title": study.title})


@router.get("/rate", response_class=HTMLResponse)
def rate_page(request: Request, study: StudyDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "rate.html", {"title": study.title, "dims": study.dims})


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, study: StudyDep) -> HTMLResponse:
    return templates.TemplateResponse(request, "admin.html", {"title": study.title})
