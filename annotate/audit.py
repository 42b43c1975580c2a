"""The audit log: every privileged action (and every refused attempt at one), append-only.

Written by the app's handlers through `Store.audit`; read by admins in the Audit tab and by
`python app.py audit [--json]`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select

from annotate.schema import AuditRow

AUDIT = AuditRow.__table__
MAX_DETAIL_CHARS = 2_000  # a hostile caller must not fill the log with megabytes per line


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    target: str | None
    detail: str | None
    allowed: bool

    def as_json(self) -> dict:
        return {**asdict(self), "at": self.at.isoformat()}


class AuditLog:
    def __init__(self, engine: Engine, write_engine: Engine, clock):
        self._engine, self._write, self._clock = engine, write_engine, clock

    def record(self, actor: str, role: str, action: str, target: str | None = None,
               detail: str | None = None, allowed: bool = True) -> int:
        row = {"at": self._clock(), "actor": actor[:200], "role": str(role)[:16], "action": action[:40],
               "target": None if target is None else str(target)[:MAX_DETAIL_CHARS],
               "detail": None if detail is None else str(detail)[:MAX_DETAIL_CHARS], "allowed": allowed}
        with self._write.begin() as conn:
            return conn.execute(insert(AUDIT).values(**row)).inserted_primary_key[0]

    def entries(self, limit: int = 100, before_id: int | None = None, actor: str | None = None) -> list[AuditEntry]:
        """Newest first."""
        query = select(AUDIT).order_by(AUDIT.c.id.desc()).limit(limit)
        if before_id is not None:
            query = query.where(AUDIT.c.id < before_id)
        if actor is not None:
            query = query.where(AUDIT.c.actor == actor)
        with self._engine.connect() as conn:
            return [AuditEntry(**row._mapping) for row in conn.execute(query)]
