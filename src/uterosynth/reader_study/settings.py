"""Server settings: built by the CLI, or read once from the environment by :func:`get_settings`.

Environment (for ``uvicorn --factory uterosynth.reader_study.main:create_app``):
``UTEROSYNTH_READER_STUDY`` (study folder, required), ``UTEROSYNTH_READER_DB_URL`` (optional,
default ``sqlite:///STUDY/study.db``), ``UTEROSYNTH_READER_MAX_BODY`` (bytes, default 16384).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field

from ..core.config import StrictModel
from ..core.errors import ConfigError

__all__ = ["Settings", "get_settings"]


class Settings(StrictModel):
    """What a running server needs to know."""

    study_dir: Path
    db_url: str | None = None
    max_body_bytes: int = Field(16_384, ge=1024, le=1_048_576)

    @property
    def database_url(self) -> str:
        """``db_url``, or a SQLite file inside the study folder."""
        return self.db_url or f"sqlite:///{(self.study_dir / 'study.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    """Settings from the environment, read once per process."""
    study = os.environ.get("UTEROSYNTH_READER_STUDY")
    if not study:
        raise ConfigError("UTEROSYNTH_READER_STUDY: not set; point it at a study folder made by 'reader-study create'")
    max_body = os.environ.get("UTEROSYNTH_READER_MAX_BODY", "16384")
    if not max_body.isdigit():
        raise ConfigError(f"UTEROSYNTH_READER_MAX_BODY: expected a number of bytes, got {max_body!r}")
    return Settings(
        study_dir=Path(study),
        db_url=os.environ.get("UTEROSYNTH_READER_DB_URL") or None,
        max_body_bytes=int(max_body),
    )
