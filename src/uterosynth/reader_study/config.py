"""Options for building a reader study (``uterosynth reader-study create``)."""

from __future__ import annotations

import re

from pydantic import Field, field_validator, model_validator

from ..core.config import StrictModel, repeated

__all__ = ["StudyConfig", "RATER_NAME_PATTERN"]

RATER_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9 ._@+-]{0,63}"  # whole name: re.fullmatch


class StudyConfig(StrictModel):
    """How a study is built.

    Attributes:
        per_source: images drawn from each source (real and synthetic); every rater rates all
            ``2 * per_source`` images, each rater in their own random order.
        raters: rater names (unique; letters, digits, space and ``._@+-``; at most 64 chars).
        seed: fixes which items are drawn, nothing else: the orders raters see (and the
            order images are written in) come from a cryptographic source and are stored in
            the study, so they cannot be recomputed from the seed.
        size: long side, in pixels, of every displayed image (both sources resampled to it).
        low_pct, high_pct: per-image percentile window mapped to grey levels 0–255.
        class_by: condition attributes to balance on (per class, equal numbers from each
            source). ``None`` balances on every attribute present in both the prepared
            dataset and every synthetic item's ``condition``; ``[]`` turns balancing off.
        base_url: where the server will be reachable; used to print the rater links.
        title: shown on the rater and admin pages.
    """

    per_source: int = Field(20, ge=1, le=100_000)
    raters: list[str] = Field(default_factory=list, validate_default=True)
    seed: int = 0
    size: int = Field(384, ge=16, le=2048)
    low_pct: float = Field(0.5, ge=0.0, le=100.0)
    high_pct: float = Field(99.5, ge=0.0, le=100.0)
    class_by: list[str] | None = None
    base_url: str = "http://127.0.0.1:8000"
    title: str = Field("Reader study", min_length=1, max_length=200)

    @field_validator("raters")
    @classmethod
    def _check_raters(cls, raters: list[str]) -> list[str]:
        if not raters:
            raise ValueError("at least one rater name is needed, e.g. raters: [alice, bob]")
        for name in raters:
            if not re.fullmatch(RATER_NAME_PATTERN, name):
                raise ValueError(
                    f"rater name {name!r} is not allowed (letters, digits, space and ._@+-, 1-64 characters)"
                )
        if dupes := repeated(raters):
            raise ValueError(f"rater names must be unique; repeated: {', '.join(dupes)}")
        return raters

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, url: str) -> str:
        if not re.fullmatch(r"https?://[^\s#?]+", url):
            raise ValueError(f"expected an http(s) URL without query or fragment, got {url!r}")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _check_window(self) -> StudyConfig:
        if self.low_pct >= self.high_pct:
            raise ValueError(f"low_pct ({self.low_pct}) must be below high_pct ({self.high_pct})")
        return self
