"""Storage: SQLAlchemy 2.0 typed ORM models of a served study.

Integrity lives in the database, not only in the code: one rating per rater and item
(``uq_rating_rater_item``) and per assignment, a rating's rater and item must be those of its
assignment (composite foreign key), scores checked to 1–5, the choice checked to
``real``/``synthetic``. Concurrent duplicate submissions therefore fail in the database and the
API answers 409.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = ["Base", "Study", "Rater", "Item", "Assignment", "Rating", "utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset; this restores it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc)
        return value

    def process_result_value(self, value: dt.datetime | None, dialect):  # noqa: ANN001, ANN201
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Study(Base):
    __tablename__ = "rs_study"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    admin_token_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    raters: Mapped[list[Rater]] = relationship(back_populates="study", order_by="Rater.id")


class Rater(Base):
    __tablename__ = "rs_rater"
    __table_args__ = (UniqueConstraint("study_id", "name", name="uq_rater_study_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("rs_study.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)

    study: Mapped[Study] = relationship(back_populates="raters")


class Item(Base):
    __tablename__ = "rs_item"
    __table_args__ = (CheckConstraint("source IN ('real', 'synthetic')", name="ck_item_source"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    study_id: Mapped[str] = mapped_column(ForeignKey("rs_study.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    class_label: Mapped[str] = mapped_column(String(500), default="")
    origin: Mapped[str] = mapped_column(String(1000), default="")
    n_slices: Mapped[int] = mapped_column(Integer, default=1)


class Assignment(Base):
    __tablename__ = "rs_assignment"
    __table_args__ = (
        UniqueConstraint("rater_id", "position", name="uq_assignment_rater_position"),
        UniqueConstraint("rater_id", "item_id", name="uq_assignment_rater_item"),
        UniqueConstraint("id", "rater_id", "item_id", name="uq_assignment_triple"),
    )

    id: Mapped[str] = mapped_column(String(24), primary_key=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("rs_rater.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("rs_item.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)

    item: Mapped[Item] = relationship()


class Rating(Base):
    __tablename__ = "rs_rating"
    __table_args__ = (
        UniqueConstraint("rater_id", "item_id", name="uq_rating_rater_item"),
        # a rating must match its assignment's rater and item: no answer for another rater's image
        ForeignKeyConstraint(
            ["assignment_id", "rater_id", "item_id"],
            ["rs_assignment.id", "rs_assignment.rater_id", "rs_assignment.item_id"],
            name="fk_rating_assignment_triple", ondelete="CASCADE",
        ),
        CheckConstraint("choice IN ('real', 'synthetic')", name="ck_rating_choice"),
        CheckConstraint("confidence BETWEEN 1 AND 5", name="ck_rating_confidence"),
        CheckConstraint("realism BETWEEN 1 AND 5", name="ck_rating_realism"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    assignment_id: Mapped[str] = mapped_column(ForeignKey("rs_assignment.id", ondelete="CASCADE"), unique=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("rs_rater.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("rs_item.id", ondelete="CASCADE"))
    choice: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[int] = mapped_column(Integer)
    realism: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text, default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    # viewer state at submission (window, zoom, pan); NULL for answers from before it existed
    display: Mapped[dict | None] = mapped_column(JSON, default=None)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
