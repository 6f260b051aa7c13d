"""Engine and session factory for any SQLAlchemy URL, and loading a study folder into it.

Nothing is created at import time: :func:`make_engine` is called by ``create_app`` (and by
``analyze``). SQLite gets WAL mode, a busy timeout and foreign keys so concurrent requests
queue instead of failing; ``postgresql://`` URLs use the psycopg 3 driver.
"""

from __future__ import annotations

from sqlalchemy import Engine, create_engine, event, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from ..core.errors import ConfigError, DataError
from .models import Assignment, Base, Item, Rater, Study
from .study import StudyFolder

__all__ = ["normalise_url", "safe_url", "make_engine", "make_session_factory", "init_db"]


def normalise_url(url: str) -> str:
    """``postgresql://`` and ``postgres://`` → ``postgresql+psycopg://`` (psycopg 3); others unchanged."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def safe_url(url: str) -> str:
    """The URL with its password masked, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; raises :class:`ConfigError` for an unusable URL.

    SQLite connections are shared across the server's worker threads, wait up to 30 s for a
    lock and use write-ahead logging.
    """
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError(f"db_url: not a database URL ({err}); e.g. sqlite:///study.db or "
                          "postgresql://user:pass@127.0.0.1/db", keys=("db_url",)) from err
    try:
        if parsed.get_backend_name() == "sqlite":
            connect_args = {"check_same_thread": False, "timeout": 30}
            if parsed.database in (None, "", ":memory:"):  # one shared in-memory database
                engine = create_engine(url, connect_args=connect_args, poolclass=StaticPool)
            else:  # as many connections as the server has worker threads
                engine = create_engine(url, connect_args=connect_args, pool_size=20, max_overflow=30)

            @event.listens_for(engine, "connect")
            def _sqlite_pragmas(dbapi_conn, _record):  # noqa: ANN001 - DB-API objects
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            return engine
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (ArgumentError, ImportError) as err:
        raise ConfigError(f"db_url {safe_url(url)}: cannot create an engine ({err})", keys=("db_url",)) from err


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def init_db(engine: Engine, study: StudyFolder) -> None:
    """Create the tables and load ``study`` (raters, items, assignments) once; idempotent.

    Several server processes may start at once: a lost race (IntegrityError) is ignored and
    the study loaded by the winner is checked instead. Token hashes are then copied from
    ``study.json`` on every call, so ``study.json`` stays the one place that says which links
    are valid (``reader-study revoke`` relies on this).

    Raises:
        DataError: the database holds a study with this id whose raters differ.
    """
    import time

    from sqlalchemy.exc import OperationalError, ProgrammingError

    for attempt in range(3):
        try:
            Base.metadata.create_all(engine)
            _add_new_columns(engine)
            break
        except OperationalError as err:
            raise DataError(
                f"database {safe_url(str(engine.url))}: cannot connect or create tables ({err.orig})"
            ) from err
        except (IntegrityError, ProgrammingError) as err:  # e.g. another process creating them at once
            if attempt == 2:
                raise DataError(
                    f"database {safe_url(str(engine.url))}: cannot create tables ({err.orig}); "
                    "check the user's permissions"
                ) from err
            time.sleep(0.5)
    with Session(engine) as session:
        if session.get(Study, study.study_id) is None:
            try:
                _load(session, study)
                session.commit()
            except IntegrityError:
                session.rollback()
        n_raters = session.scalar(select(func.count()).select_from(Rater).where(Rater.study_id == study.study_id))
        if n_raters != len(study.raters):
            raise DataError(
                f"database {safe_url(str(engine.url))} holds study {study.study_id} with {n_raters} raters, "
                f"but {study.root}/study.json lists {len(study.raters)}"
            )
        _sync_tokens(session, study)


def _add_new_columns(engine: Engine) -> None:
    """Add nullable columns introduced after a database was created (e.g. ``rs_rating.display``).

    ``create_all`` makes missing tables only; an older study database lacks later columns.
    Only nullable columns are ever added, so old rows stay valid (NULL).
    """
    inspector = inspect(engine)
    with engine.begin() as conn:
        for table in Base.metadata.sorted_tables:
            present = {c["name"] for c in inspector.get_columns(table.name)}
            for column in table.columns:
                if column.name not in present and column.nullable:
                    kind = column.type.compile(dialect=engine.dialect)
                    conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))


def _sync_tokens(session: Session, study: StudyFolder) -> None:
    """Make the stored token hashes those of ``study.json`` (a revoked link stops working)."""
    hashes = {spec.name: spec.token_hash for spec in study.raters}
    changed = False
    for rater in session.scalars(select(Rater).where(Rater.study_id == study.study_id)):
        if rater.name in hashes and rater.token_hash != hashes[rater.name]:
            rater.token_hash, changed = hashes[rater.name], True
    row = session.get(Study, study.study_id)
    if row is not None and row.admin_token_hash != study.admin_token_hash:
        row.admin_token_hash, changed = study.admin_token_hash, True
    if changed:
        session.commit()


def _load(session: Session, study: StudyFolder) -> None:
    session.add(Study(id=study.study_id, title=study.title, admin_token_hash=study.admin_token_hash))
    session.flush()
    session.add_all(
        Item(id=item_id, study_id=study.study_id, source=k.source, class_label=k.class_label,
             origin=k.origin, n_slices=study.n_slices)
        for item_id, k in study.key.items()
    )
    for spec in study.raters:
        rater = Rater(study_id=study.study_id, name=spec.name, token_hash=spec.token_hash)
        session.add(rater)
        session.flush()
        session.add_all(
            Assignment(id=a_id, rater_id=rater.id, item_id=item_id, position=pos)
            for pos, (a_id, item_id) in enumerate(spec.assignments)
        )
    session.flush()
