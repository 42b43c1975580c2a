"""What reviewers read and write beside the captions: the annotation guidelines an admin sets,
and comments on items. Reached as `store.notes`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, insert, select, update

from annotate.errors import InvalidInput, ItemNotFound
from annotate.schema import CommentRow, SettingRow
from annotate.views import ITEMS

SETTINGS = SettingRow.__table__
COMMENTS = CommentRow.__table__
GUIDELINES = "guidelines"
MAX_GUIDELINES_CHARS = 20_000
MAX_COMMENT_CHARS = 2_000


@dataclass(frozen=True)
class Comment:
    id: int
    item_id: int
    author: str
    text: str
    created_at: datetime


class Notes:
    def __init__(self, engine: Engine, write_engine: Engine, clock):
        self._engine, self._write, self._clock = engine, write_engine, clock

    def guidelines(self) -> tuple[str, str | None, datetime | None]:
        """(text, who set it, when); empty text when none are set."""
        with self._engine.connect() as conn:
            row = conn.execute(select(SETTINGS).where(SETTINGS.c.key == GUIDELINES)).mappings().first()
        return (row["value"], row["updated_by"], row["updated_at"]) if row else ("", None, None)

    def set_guidelines(self, text: str, by: str) -> None:
        text = (text or "").strip()
        if len(text) > MAX_GUIDELINES_CHARS:
            raise InvalidInput(f"the guidelines are {len(text):,} characters; the limit is {MAX_GUIDELINES_CHARS:,}")
        values = {"value": text, "updated_by": by, "updated_at": self._clock()}
        with self._write.begin() as conn:
            done = conn.execute(update(SETTINGS).where(SETTINGS.c.key == GUIDELINES).values(**values))
            if done.rowcount == 0:
                conn.execute(insert(SETTINGS).values(key=GUIDELINES, **values))

    def add_comment(self, item_id: int, author: str, text: str) -> Comment:
        text = (text or "").strip()
        if not text:
            raise InvalidInput("the comment is empty")
        if len(text) > MAX_COMMENT_CHARS:
            raise InvalidInput(f"the comment is {len(text):,} characters; the limit is {MAX_COMMENT_CHARS:,}")
        row = {"item_id": item_id, "author": author, "text": text, "created_at": self._clock()}
        with self._write.begin() as conn:
            if conn.execute(select(ITEMS.c.id).where(ITEMS.c.id == item_id)).first() is None:
                raise ItemNotFound(item_id)
            new_id = conn.execute(insert(COMMENTS).values(**row)).inserted_primary_key[0]
        return Comment(new_id, **row)

    def comments(self, item_id: int) -> list[Comment]:
        query = select(COMMENTS).where(COMMENTS.c.item_id == item_id).order_by(COMMENTS.c.id)
        with self._engine.connect() as conn:
            return [Comment(**row._mapping) for row in conn.execute(query)]
