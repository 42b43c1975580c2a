"""The data browser's query: any item of the queue, filtered, searched and sorted.

    items, total = browse(store, Filter(status="approved", text="orange suit"), limit=50)

Read-only; one SELECT for the page and one COUNT, both on indexed columns except the text
search (a case-insensitive substring of the draft or the current caption).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, or_, select

from annotate.records import STATUSES, Item
from annotate.views import ITEM_WITH_IMAGE, ITEMS, to_item

ORDERS = {
    "newest": ITEMS.c.id.desc(),
    "oldest": ITEMS.c.id.asc(),
    "recently changed": ITEMS.c.updated_at.desc(),
    "most edited": ITEMS.c.edit_rate.desc(),
}
MAX_PAGE = 200


@dataclass(frozen=True)
class Filter:
    status: str | None = None  # one of STATUSES
    reviewer: str | None = None  # who decided, or holds the claim
    model_version: str | None = None  # of the draft
    text: str | None = None  # substring of the draft or the caption, any case
    order: str = "newest"  # a key of ORDERS
    include_gold: bool = False  # gold items stay indistinguishable to reviewers


def browse(store, flt: Filter = Filter(), limit: int = 50, offset: int = 0) -> tuple[list[Item], int]:
    """A page of items matching the filter (no history: open one with `store.get_item`), and
    how many match in all."""
    if flt.status and flt.status not in STATUSES:
        raise ValueError(f"status is one of {', '.join(STATUSES)}")
    if flt.order not in ORDERS:
        raise ValueError(f"order is one of {', '.join(ORDERS)}")
    conditions = []
    if flt.status:
        conditions.append(ITEMS.c.status == flt.status)
    if flt.reviewer:
        conditions.append(or_(ITEMS.c.decided_by == flt.reviewer, ITEMS.c.claimed_by == flt.reviewer))
    if flt.model_version:
        conditions.append(ITEMS.c.model_version == flt.model_version)
    if flt.text:
        pattern = "%" + flt.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        conditions.append(or_(ITEMS.c.draft_caption.ilike(pattern, escape="\\"),
                              ITEMS.c.caption.ilike(pattern, escape="\\")))
    if not flt.include_gold:
        conditions.append(ITEMS.c.gold_caption.is_(None))
    page = (ITEM_WITH_IMAGE.where(*conditions).order_by(ORDERS[flt.order], ITEMS.c.id.desc())
            .limit(max(1, min(limit, MAX_PAGE))).offset(max(0, offset)))
    total = select(func.count()).select_from(ITEMS).where(*conditions)
    with store.engine.connect() as conn:
        rows = conn.execute(page).mappings().all()
        count = conn.execute(total).scalar_one()
    return [to_item(row, store.files) for row in rows], count
