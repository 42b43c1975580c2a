"""The read side of `annotate.store.Store`: items, counts and statistics.

`QueueReads` is a base class of `Store` (it needs the Store's engine and image files); reads
take no lock and see the last committed state.
"""

from __future__ import annotations

from annotate import reviews, views
from annotate.checks import check_name
from annotate.errors import InvalidInput, ItemNotFound
from annotate.records import STATUSES, Item
from annotate.team import agreement, gold_scores, tag_table
from annotate.views import ITEMS


class QueueReads:
    """Reading methods of `Store`."""

    def get_item(self, item_id: int, reviewer: str | None = None) -> Item:
        """The item with its image, draft, latest caption and fields, and full history.

        With `reviewer`, an overlap or gold item comes as that reviewer's own review shows it
        (their caption, their version) when they have one.
        """
        with self.engine.connect() as conn:
            item = views.load_item(conn, self.files, item_id)
            review = reviews.mine(conn, item_id, check_name(reviewer)) if item and reviewer else None
        if item is None:
            raise ItemNotFound(item_id)
        return reviews.as_seen_by(item, review) if review is not None else item

    def list_items(self, status: str | None = None, limit: int = 50, after_id: int = 0) -> list[Item]:
        """Items in queue order (without history), optionally of one status; page with after_id."""
        query = views.ITEM_WITH_IMAGE
        if status is not None:
            if status not in STATUSES:
                raise InvalidInput(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
            query = query.where(ITEMS.c.status == status)
        query = query.where(ITEMS.c.id > after_id).order_by(ITEMS.c.id).limit(limit)
        with self.engine.connect() as conn:
            return [views.to_item(row, self.files) for row in conn.execute(query).mappings()]

    def counts(self) -> dict[str, int]:
        """Number of items per status (every status present)."""
        with self.engine.connect() as conn:
            return views.counts(conn)

    def stats(self) -> dict:
        """Counts per status, per reviewer and per model version (approval and edit rates)."""
        with self.engine.connect() as conn:
            by_status = views.counts(conn)
            return {
                "total": sum(by_status.values()),
                "by_status": by_status,
                "by_reviewer": views.reviewer_table(conn),
                "by_model_version": views.model_table(conn),
                "agreement": agreement(conn),
                "gold": gold_scores(conn),
                "tags": tag_table(conn),
            }

    def reviewer_counts(self, name: str) -> dict:
        """One reviewer's approved/rejected/skipped/corrections/in_review counts."""
        with self.engine.connect() as conn:
            return views.reviewer_table(conn, name).get(name, views.empty_reviewer_row())
