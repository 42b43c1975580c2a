"""Independent reviews of overlap and gold items (the `reviews` table), inside the Store's
transactions.

An item with `overlap` N > 1 is reviewed by N different reviewers, each on a review row of
their own (their claim, caption, fields, tags, verdict, version): nobody sees another's work,
and nobody reviews the same item twice. The item stays `pending` until the Nth verdict; then it
becomes `rejected` when most reviewers rejected it, else `approved` with the medoid caption
(the approved caption with the highest token F1 to the others), `final_source` "medoid:<who>".
An admin may later pick another reviewer's caption or write a merged one (`adjudicate`).
A gold item (`gold_caption` set) takes any number of reviews, one per reviewer, each scored
against the reference (token F1; a rejection scores 0); it stays pending and never exports.

The Store's version arguments refer to the reviewer's own review row for these items, so two
reviewers never conflict with each other; the item row is locked (FOR UPDATE on PostgreSQL,
the write lock on SQLite) for each write, so the last two verdicts cannot both miss the count.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, insert, select, update

from annotate.agreement import item_agreement, medoid, token_f1
from annotate.checks import from_json, jsonable
from annotate.errors import ConflictError, InvalidInput, InvalidTransition
from annotate.records import Item, Review
from annotate.schema import ReviewRow
from annotate.views import ACTIONS, REVISIONS
from annotate.views import ITEMS as ITEM_TABLE

REVIEWS = ReviewRow.__table__
DECIDED = ("approved", "rejected")
# Review columns an action may change; the action log keeps them for undo.
REVIEW_STATE = ("status", "caption", "fields_json", "tags_json", "reject_reason", "edit_rate",
                "gold_score", "decided_at")


def is_team(row) -> bool:
    return row["overlap"] > 1 or row["gold_caption"] is not None


# Built once (parameters bound at execute time): this runs on every claim, overlap or not.
_OWN_CLAIM = (select(REVIEWS).where(REVIEWS.c.reviewer == bindparam("who"), REVIEWS.c.status == "in_review",
                                    REVIEWS.c.lease_expires_at > bindparam("now")).order_by(REVIEWS.c.id).limit(1))


def own_claim(conn: Connection, who: str, now: datetime):
    return conn.execute(_OWN_CLAIM, {"who": who, "now": now}).mappings().first()


def mine(conn: Connection, item_id: int, who: str):
    query = select(REVIEWS).where(REVIEWS.c.item_id == item_id, REVIEWS.c.reviewer == who,
                                  REVIEWS.c.status != "archived")
    return conn.execute(query).mappings().first()


def start(conn: Connection, item, who: str, now: datetime, lease: timedelta):
    """`who` starts an independent review of `item` (the claim); returns the review row.

    The caller holds the item row's lock. The candidate query's count of reviews may predate a
    claim committed just before that lock was granted (PostgreSQL re-reads a locked row, not
    its subqueries), so the slots are counted again here, under the lock.
    """
    # Abandoned claims of others free their slot for good: their late saves become conflicts.
    conn.execute(delete(REVIEWS).where(REVIEWS.c.item_id == item["id"], REVIEWS.c.status == "in_review",
                                       REVIEWS.c.lease_expires_at <= now))
    others = conn.execute(select(REVIEWS.c.reviewer, REVIEWS.c.status, REVIEWS.c.lease_expires_at).where(
        REVIEWS.c.item_id == item["id"], REVIEWS.c.status != "archived")).all()
    taken = sum(1 for _, status, lease in others if status in DECIDED or (status == "in_review" and lease > now))
    if (item["gold_caption"] is None and taken >= item["overlap"]) or any(r == who for r, _, _ in others):
        raise ConflictError(f"item {item['id']} has all its reviewers already")
    same = (ITEM_TABLE.c.id == item["id"], ITEM_TABLE.c.version == item["version"])
    bumped = conn.execute(update(ITEM_TABLE).where(*same).values(version=item["version"] + 1, updated_at=now))
    if bumped.rowcount != 1:
        raise ConflictError(f"item {item['id']} was claimed by someone else meanwhile")
    review_id = conn.execute(insert(REVIEWS).values(
        item_id=item["id"], reviewer=who, status="in_review", version=1, lease_expires_at=now + lease,
        created_at=now)).inserted_primary_key[0]
    _log(conn, item["id"], who, "claim", None, 1, now)
    return conn.execute(select(REVIEWS).where(REVIEWS.c.id == review_id)).mappings().one()


def renew(conn: Connection, review, now: datetime, lease: timedelta):
    conn.execute(update(REVIEWS).where(REVIEWS.c.id == review["id"]).values(lease_expires_at=now + lease))
    return {**review, "lease_expires_at": now + lease}


def as_seen_by(item: Item, review) -> Item:
    """The item as its reviewer sees it: their own caption, fields, tags and version."""
    return replace(
        item, status=review["status"], version=review["version"],
        caption=review["caption"] if review["caption"] is not None else item.draft.caption,
        fields=json.loads(review["fields_json"]) if review["fields_json"] else {},
        tags=tuple(json.loads(review["tags_json"])) if review["tags_json"] else (),
        claimed_by=review["reviewer"] if review["status"] == "in_review" else None,
        lease_expires_at=review["lease_expires_at"], decided_by=None, reject_reason=review["reject_reason"],
        edit_rate=review["edit_rate"],
    )


def _open_review(conn: Connection, item, who: str, expected_version: int | None):
    review = mine(conn, item["id"], who)
    if review is None or review["status"] != "in_review":
        done = review is not None
        raise InvalidTransition(f"you {'already reviewed' if done else 'do not hold'} item {item['id']}"
                                + ("" if done else "; claim it first (your claim may have expired)"))
    if expected_version is not None and review["version"] != expected_version:
        raise ConflictError(f"item {item['id']} changed since you loaded it (your version {expected_version}, "
                            f"now {review['version']}); reload it and re-apply your edit")
    return review


def correct(conn: Connection, item, who: str, caption: str, expected_version: int | None,
            fields: dict | None, tags: list | None, now: datetime, lease: timedelta) -> int:
    review = _open_review(conn, item, who, expected_version)
    values = {"caption": caption, "lease_expires_at": now + lease}
    if fields is not None:
        values["fields_json"] = json.dumps(fields, ensure_ascii=False) if fields else None
    if tags is not None:
        values["tags_json"] = json.dumps(tags) if tags else None
    return _write(conn, review, who, "correct", values, now)


def decide(conn: Connection, item, who: str, verdict: str, expected_version: int | None, now: datetime,
           edit_rate, finalize, reason: str | None = None, tags: list | None = None) -> int:
    """Record `who`'s verdict ("approved", "rejected" or "skipped"); at the Nth, finalize."""
    review = _open_review(conn, item, who, expected_version)
    final = review["caption"] if review["caption"] is not None else item["draft_caption"]
    values = {"status": verdict, "decided_at": now, "lease_expires_at": None, "reject_reason": reason}
    if tags is not None:
        values["tags_json"] = json.dumps(tags) if tags else None
    if verdict == "approved":
        values["edit_rate"] = edit_rate(item["draft_caption"], final)
    if item["gold_caption"] is not None and verdict != "skipped":
        values["gold_score"] = token_f1(final, item["gold_caption"]) if verdict == "approved" else 0.0
    action = {"approved": "approve", "rejected": "reject", "skipped": "skip"}[verdict]
    version = _write(conn, review, who, action, values, now, detail=reason)
    if item["gold_caption"] is None and verdict != "skipped":
        _finalize_if_complete(conn, item, edit_rate, finalize)
    return version


def _finalize_if_complete(conn: Connection, item, edit_rate, finalize) -> None:
    decided = conn.execute(select(REVIEWS).where(REVIEWS.c.item_id == item["id"], REVIEWS.c.status.in_(DECIDED))
                           .order_by(REVIEWS.c.id)).mappings().all()
    if len(decided) < item["overlap"]:
        return
    rejects = [r for r in decided if r["status"] == "rejected"]
    if 2 * len(rejects) > len(decided):
        reason = Counter(r["reject_reason"] for r in rejects).most_common(1)[0][0]
        finalize(conn, item, status="rejected", reject_reason=reason, decided_by=rejects[0]["reviewer"])
        return
    approved = [r for r in decided if r["status"] == "approved"]
    captions = [r["caption"] if r["caption"] is not None else item["draft_caption"] for r in approved]
    best = approved[medoid(captions)]
    finalize(conn, item, status="approved", caption=captions[medoid(captions)], fields_json=best["fields_json"],
             tags_json=best["tags_json"], decided_by=best["reviewer"], final_source=f"medoid:{best['reviewer']}",
             edit_rate=edit_rate(item["draft_caption"], captions[medoid(captions)]))


def give_back(conn: Connection, item, who: str, now: datetime) -> None:
    review = _open_review(conn, item, who, None)
    conn.execute(delete(REVIEWS).where(REVIEWS.c.id == review["id"]))
    _log(conn, item["id"], who, "give_back", None, review["version"], now)


def archive(conn: Connection, item_id: int) -> None:
    """On reassign: earlier reviews stop counting, so the item is reviewed afresh."""
    conn.execute(update(REVIEWS).where(REVIEWS.c.item_id == item_id).values(status="archived", lease_expires_at=None))


def undo(conn: Connection, item, action, who: str, now: datetime, lease: timedelta) -> None:
    before = json.loads(action["before_json"])
    if item["status"] != "pending":
        raise ConflictError(f"cannot undo your {action['action']} of item {item['id']}: all its reviews are in "
                            "and it is decided; an admin can reassign it")
    review = conn.execute(select(REVIEWS).where(REVIEWS.c.id == before["review_id"])).mappings().first()
    if review is None or review["version"] != action["version_after"]:
        raise ConflictError(f"cannot undo your {action['action']} of item {item['id']}: your review changed since")
    state = {name: from_json(name, before["review"].get(name)) for name in REVIEW_STATE}
    state.update(status="in_review", lease_expires_at=now + lease, decided_at=None)
    _write(conn, review, who, "undo", state, now)


def reviews_of(conn: Connection, item_id: int) -> tuple[Review, ...]:
    rows = conn.execute(select(REVIEWS, ITEM_TABLE.c.draft_caption)
                        .join(ITEM_TABLE, ITEM_TABLE.c.id == REVIEWS.c.item_id)
                        .where(REVIEWS.c.item_id == item_id, REVIEWS.c.status != "archived")
                        .order_by(REVIEWS.c.id)).mappings()
    return tuple(Review(r["reviewer"], r["status"], r["caption"] if r["caption"] is not None else r["draft_caption"],
                        tuple(json.loads(r["tags_json"])) if r["tags_json"] else (), r["reject_reason"], r["edit_rate"])
                 for r in rows)


def agreement_of(reviews: tuple[Review, ...]) -> float | None:
    value = item_agreement([r.caption for r in reviews if r.status == "approved"])
    return None if value is None else round(value, 4)


def adjudicated_values(item, reviews: tuple[Review, ...], pick: str | None, caption: str | None) -> dict:
    """The item columns an adjudication sets: a picked reviewer's caption, or a merged one."""
    if (pick is None) == (caption is None):
        raise InvalidInput("adjudicate by picking one reviewer's caption or by writing a merged caption")
    if pick is not None:
        chosen = [r for r in reviews if r.reviewer == pick and r.status == "approved"]
        if not chosen:
            raise InvalidInput(f"{pick} has no approved caption on item {item['id']}")
        return {"caption": chosen[0].caption, "final_source": f"pick:{pick}", "tags_json":
                json.dumps(list(chosen[0].tags)) if chosen[0].tags else None}
    return {"caption": caption, "final_source": "merge"}


def _write(conn: Connection, review, who: str, action: str, values: dict, now: datetime,
           detail: str | None = None) -> int:
    version = review["version"] + 1
    done = conn.execute(update(REVIEWS).where(REVIEWS.c.id == review["id"], REVIEWS.c.version == review["version"])
                        .values(version=version, **values))
    if done.rowcount != 1:
        raise ConflictError(f"your review of item {review['item_id']} changed meanwhile; reload it")
    before = {"review_id": review["id"], "review": {name: jsonable(review[name]) for name in REVIEW_STATE}}
    _log(conn, review["item_id"], who, action, before, version, now, detail)
    return version


def _log(conn: Connection, item_id: int, who: str, action: str, before: dict | None, version_after: int,
         now: datetime, detail: str | None = None) -> None:
    conn.execute(insert(ACTIONS).values(item_id=item_id, reviewer=who, action=action, detail=detail,
                                        before_json=json.dumps(before or {}), version_after=version_after,
                                        created_at=now))


def add_revision(conn: Connection, item_id: int, caption: str, who: str, kind: str, now: datetime) -> None:
    conn.execute(insert(REVISIONS).values(item_id=item_id, caption=caption, reviewer=who, kind=kind, created_at=now))

