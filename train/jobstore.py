"""Training jobs in the database: the `training_jobs` table and its reads and writes.

The table lives in the review queue's database (same URL) and belongs to train/; its schema
changes only through the queue's Alembic migrations (0003 created it), run on every open, so
a restored older database upgrades cleanly. Keep `JobRow` and the migrations in agreement.
Writes are single transactions that begin as writes (BEGIN IMMEDIATE on SQLite), so "is a job
active? if not, insert one" is atomic even between two app processes on one database.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy import DateTime, Integer, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from train.errors import JobAlreadyRunning, JobError

STATUSES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE = ("queued", "running")
ENDED = ("finished", "failed", "cancelled", "interrupted")


class Base(DeclarativeBase):
    pass


class JobRow(Base):
    __tablename__ = "training_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    options_json: Mapped[str] = mapped_column(Text)  # TrainOptions as a dict
    out_dir: Mapped[str] = mapped_column(Text)
    data_dir: Mapped[str | None] = mapped_column(Text)
    log_path: Mapped[str] = mapped_column(Text)
    pid: Mapped[int | None] = mapped_column(Integer)
    returncode: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[str | None] = mapped_column(String(200))
    metrics_json: Mapped[str | None] = mapped_column(Text)
    eval_json: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=1)  # 1 + number of resumes
    created_at: Mapped[datetime] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # stored as naive UTC


@dataclass(frozen=True)
class Job:
    """A training job as plain values (never a live ORM row)."""

    id: int
    status: str
    options: dict
    out_dir: str
    data_dir: str | None
    log_path: str
    pid: int | None
    returncode: int | None
    error: str | None
    cancel_requested: bool
    version: str | None
    metrics: dict = field(default_factory=dict)
    evaluation: dict = field(default_factory=dict)  # {"before": {...}, "after": {...}}
    attempts: int = 1
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def _job(row: JobRow) -> Job:
    return Job(id=row.id, status=row.status, options=json.loads(row.options_json), out_dir=row.out_dir,
               data_dir=row.data_dir, log_path=row.log_path, pid=row.pid, returncode=row.returncode,
               error=row.error, cancel_requested=bool(row.cancel_requested), version=row.version,
               metrics=json.loads(row.metrics_json) if row.metrics_json else {},
               evaluation=json.loads(row.eval_json) if row.eval_json else {}, attempts=row.attempts or 1,
               created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at)


def _apply(row: JobRow, values: dict) -> None:
    for key, value in values.items():
        if key in ("metrics", "evaluation"):
            setattr(row, "metrics_json" if key == "metrics" else "eval_json", json.dumps(value))
        else:
            setattr(row, key, value)


class JobStore:
    """CRUD for training jobs on one database URL."""

    def __init__(self, url: str):
        from annotate.db import open_database, write_engine

        self.engine = open_database(url)  # migrated to the newest schema, training_jobs included
        self._write_engine = write_engine(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def create(self, options: dict, out_dir: str, log_path: str, data_dir: str | None) -> Job:
        """Insert a queued job, refused when another job is queued or running."""
        with Session(self._write_engine) as session, session.begin():
            active = session.scalars(select(JobRow).where(JobRow.status.in_(ACTIVE)).limit(1)).first()
            if active is not None:
                raise JobAlreadyRunning(active.id, active.status)
            row = JobRow(status="queued", options_json=json.dumps(options), out_dir=out_dir, data_dir=data_dir,
                         log_path=log_path, created_at=utcnow(), cancel_requested=0, attempts=1)
            session.add(row)
            session.flush()
            return _job(row)

    def requeue(self, job_id: int, options: dict) -> Job:
        """Put an ended job back in the queue to resume it (same refusal rule as `create`)."""
        with Session(self._write_engine) as session, session.begin():
            active = session.scalars(select(JobRow).where(JobRow.status.in_(ACTIVE)).limit(1)).first()
            if active is not None:
                raise JobAlreadyRunning(active.id, active.status)
            row = self._row(session, job_id)
            if row.status == "finished":
                raise JobError(f"job {job_id} has finished; there is nothing to resume")
            row.status, row.options_json, row.error, row.returncode = "queued", json.dumps(options), None, None
            row.cancel_requested, row.pid, row.finished_at = 0, None, None
            row.attempts = (row.attempts or 1) + 1
            session.flush()
            return _job(row)

    def update(self, job_id: int, **values) -> Job:
        with Session(self._write_engine) as session, session.begin():
            row = self._row(session, job_id)
            _apply(row, values)
            session.flush()
            return _job(row)

    def finish(self, job_id: int, status: str, only_if: tuple[str, ...] = ACTIVE, **values) -> Job | None:
        """Move an active job to an end state in one transaction (None when it had already ended)."""
        if status not in ENDED:
            raise ValueError(f"not an end state: {status}")
        with Session(self._write_engine) as session, session.begin():
            row = self._row(session, job_id)
            if row.status not in only_if:
                return None
            _apply(row, {"status": status, "finished_at": utcnow(), **values})
            session.flush()
            return _job(row)

    def get(self, job_id: int) -> Job:
        with Session(self.engine) as session:
            return _job(self._row(session, job_id))

    def list(self, limit: int = 20, statuses: tuple[str, ...] | None = None) -> list[Job]:
        query = select(JobRow).order_by(JobRow.id.desc()).limit(limit)
        if statuses:
            query = query.where(JobRow.status.in_(statuses))
        with Session(self.engine) as session:
            return [_job(r) for r in session.scalars(query)]

    def active(self) -> Job | None:
        found = self.list(limit=1, statuses=ACTIVE)
        return found[0] if found else None

    @staticmethod
    def _row(session: Session, job_id: int) -> JobRow:
        row = session.get(JobRow, job_id)
        if row is None:
            raise JobError(f"no training job {job_id}")
        return row
