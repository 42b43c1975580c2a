"""Which item a claim takes next: the statements behind `Store.claim_next`.

Candidates are pending items that are not gold and either need one review (the classic flow)
or still have a free slot for another independent review that this reviewer has not done. The
order is `fifo` (queue order), `confidence` (the least confident model drafts first: lowest
mean token log-probability; items without a confidence, e.g. imported ones, come last) or
`random`. Every candidate query locks its row with FOR UPDATE SKIP LOCKED, so on PostgreSQL
concurrent claims pass each other instead of queueing on one row; SQLite ignores the clause
(its BEGIN IMMEDIATE already serializes writers).
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, exists, func, or_, select

from annotate.schema import ReviewRow
from annotate.views import ITEMS

REVIEWS = ReviewRow.__table__

# Reviews holding a slot: decided ones, and claims whose lease is still running.
_HOLDING = or_(REVIEWS.c.status.in_(("approved", "rejected")),
               and_(REVIEWS.c.status == "in_review", REVIEWS.c.lease_expires_at > bindparam("now")))
_TAKEN = (select(func.count()).select_from(REVIEWS)
          .where(REVIEWS.c.item_id == ITEMS.c.id, _HOLDING).scalar_subquery())
_MINE = exists().where(REVIEWS.c.item_id == ITEMS.c.id, REVIEWS.c.reviewer == bindparam("who"),
                       REVIEWS.c.status != "archived")
_ORDERS = {
    "fifo": (ITEMS.c.id,),
    "confidence": (ITEMS.c.confidence_mean.asc().nulls_last(), ITEMS.c.id),
    "random": (func.random(),),
}


def _pending(order: str):
    needs_review = or_(ITEMS.c.overlap == 1, and_(_TAKEN < ITEMS.c.overlap, ~_MINE))
    return (select(ITEMS).where(ITEMS.c.status == "pending", ITEMS.c.gold_caption.is_(None), needs_review)
            .order_by(*_ORDERS[order]).limit(1).with_for_update(skip_locked=True))


NEXT_PENDING = {order: _pending(order) for order in _ORDERS}
OWN_CLAIM = (select(ITEMS).where(ITEMS.c.status == "in_review", ITEMS.c.claimed_by == bindparam("who"),
                                 ITEMS.c.lease_expires_at > bindparam("now")).order_by(ITEMS.c.id).limit(1))
EXPIRED_CLAIM = (select(ITEMS).where(ITEMS.c.status == "in_review", ITEMS.c.lease_expires_at <= bindparam("now"))
                 .order_by(ITEMS.c.lease_expires_at).limit(1).with_for_update(skip_locked=True))
# A gold item this reviewer has not reviewed yet (gold items take any number of reviewers).
NEXT_GOLD = (select(ITEMS).where(ITEMS.c.status == "pending", ITEMS.c.gold_caption.is_not(None), ~_MINE)
             .order_by(func.random()).limit(1).with_for_update(skip_locked=True))
