"""The database engine: URL and data folder resolution, SQLite pragmas, migrations.

SQLite is the default and gets the settings a multi-reviewer queue needs on every connection:
WAL (readers never block the writer), a busy timeout (writers wait instead of failing),
synchronous=FULL (an approved item survives a power cut) and foreign keys. pysqlite's own
transaction handling is switched off and write transactions start with BEGIN IMMEDIATE, so a
transaction takes the write lock up front instead of failing to upgrade a read lock midway
(SQLAlchemy's documented "serializable isolation / savepoints" recipe for pysqlite).
Migrations are Alembic scripts in annotate/migrations, run on every open; Alembic's version
table makes a second run a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from annotate.errors import DatabaseUnavailable

DB_URL_ENV = "HUMANVLM_DB_URL"
DATA_DIR_ENV = "HUMANVLM_DATA_DIR"
MIGRATIONS = Path(__file__).parent / "migrations"
# Execution option that marks an engine's transactions as writes (BEGIN IMMEDIATE). Its value
# says how durable the commit must be: "durable" (synchronous=FULL: fsync the WAL before the
# commit returns) for captions and decisions, "lease" (synchronous=NORMAL) for claims, which
# only lease an item: a claim lost to a power cut leaves the item claimable again and loses no
# work, and the next durable commit flushes it anyway. Either survives a crash of the process.
WRITE_OPTION = "humanvlm_write"


@dataclass
class DbConfig:
    url: str | None = field(
        default=None,
        metadata={"help": f"database URL (default: ${DB_URL_ENV}, else sqlite:///DATA/studio.db)"},
    )
    data_dir: Path | None = field(
        default=None, metadata={"help": f"data folder (default: ${DATA_DIR_ENV}, else /data when writable, else ./data)"}
    )
    busy_timeout_ms: int = field(
        default=30_000, metadata={"help": "how long a writer waits for SQLite's lock"}
    )


def resolve_data_dir(data_dir: Path | str | None) -> Path:
    from annotate.backup import default_data_dir  # /data on persistent storage, else ./data

    chosen = Path(data_dir or os.environ.get(DATA_DIR_ENV) or default_data_dir())
    chosen.mkdir(parents=True, exist_ok=True)
    return chosen.resolve()


def resolve_url(url: str | None, data_dir: Path) -> str:
    return url or os.environ.get(DB_URL_ENV) or f"sqlite:///{data_dir / 'studio.db'}"


def open_database(url: str, busy_timeout_ms: int = 30_000) -> Engine:
    """The store's engine with its schema up to date; a URL that cannot be opened (typo,
    driver not installed, server down, folder not writable) raises DatabaseUnavailable."""
    try:
        engine = create_store_engine(url, busy_timeout_ms)
        migrate(engine)
    except (ArgumentError, ImportError, OperationalError, OSError) as exc:
        raise DatabaseUnavailable(f"cannot open the database {_shown(url)}: {_why(exc)}") from exc
    return engine


def _shown(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "given by --db / $" + DB_URL_ENV  # unparsable: do not echo what may hold a password


def _why(exc: Exception) -> str:
    if isinstance(exc, NoSuchModuleError):
        return "unknown database type"
    if isinstance(exc, ArgumentError):
        return "not a database URL (e.g. sqlite:///data/studio.db or postgresql://user@host/db)"
    if isinstance(exc, ImportError):
        return f"its driver is not installed (pip install {exc.name})"
    if isinstance(exc, OperationalError):
        return str(exc.orig).strip().splitlines()[0]
    return str(exc)


def create_store_engine(url: str, busy_timeout_ms: int = 30_000) -> Engine:
    parsed = make_url(url)
    if parsed.drivername == "postgresql":  # no driver named: psycopg 3 (requirements.txt), not psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql":
        # One connection per reviewer thread at 64 threads without waiting on the pool; a server
        # gone away (restart, idle timeout) is noticed on checkout rather than mid-review.
        return create_engine(parsed, pool_pre_ping=True, pool_size=16, max_overflow=64, pool_timeout=60)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # Reviewer threads each hold a connection briefly; a generous pool keeps them off the
    # pool's own queue (SQLite serializes the writes anyway).
    engine = create_engine(url, pool_size=8, max_overflow=56, pool_timeout=60)
    _install_sqlite_hooks(engine, busy_timeout_ms)
    return engine


def _install_sqlite_hooks(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, record):
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        for pragma in (
            "journal_mode=WAL",
            f"busy_timeout={int(busy_timeout_ms)}",
            "synchronous=FULL",
            "foreign_keys=ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()
        record.info["synchronous"] = "FULL"

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        mode = conn.get_execution_options().get(WRITE_OPTION)
        if not mode:
            conn.exec_driver_sql("BEGIN")
            return
        wanted = "NORMAL" if mode == "lease" else "FULL"
        info = conn.connection.info  # per DBAPI connection: set the pragma only when it changes
        if info.get("synchronous") != wanted:
            conn.exec_driver_sql(f"PRAGMA synchronous={wanted}")
            info["synchronous"] = wanted
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "checkin")
    def _on_checkin(dbapi_connection, record):
        # A claim lowered synchronous for its own commit; every connection goes back to the
        # pool at FULL, so any other writer on it (ours or another module's) is durable.
        if dbapi_connection is not None and record.info.get("synchronous") != "FULL":
            dbapi_connection.execute("PRAGMA synchronous=FULL")
            record.info["synchronous"] = "FULL"


def write_engine(engine: Engine, durability: str = "durable") -> Engine:
    """The same engine and pool, but every transaction begins as a write (BEGIN IMMEDIATE).

    durability: "durable" (synchronous=FULL) or "lease" (synchronous=NORMAL, for claims).
    """
    if durability not in ("durable", "lease"):
        raise ValueError(f"durability must be 'durable' or 'lease', not {durability!r}")
    return engine.execution_options(**{WRITE_OPTION: durability})


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe to run any number of times."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with write_engine(engine).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
