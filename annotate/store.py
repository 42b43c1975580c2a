"""The review queue's API: `Store`.

    store = Store()                                  # $HUMANVLM_DB_URL or ./data/studio.db
    item_id = store.enqueue(image=photo, draft=Draft("demo", "v1", caption="..."))
    item = store.claim_next("alice")                 # leased to alice for 10 minutes
    version = store.submit_correction(item.id, "alice", "A woman in ...", item.version)
    store.approve(item.id, "alice", expected_version=version)

The same Store runs on SQLite (the default) and on PostgreSQL (`postgresql+psycopg://...`),
where claims pass each other with FOR UPDATE SKIP LOCKED. Items queued with `overlap` N are
reviewed independently by N reviewers and gold items score reviewers (annotate/reviews.py);
agreement, adjudication and tag counts are in annotate/team.py, enqueueing in annotate/intake.py,
the reads in annotate/reading.py.
Every write is one transaction (BEGIN IMMEDIATE on SQLite) and appends to the action log, so
a reviewer's last action can be undone. Stale writes raise `ConflictError` instead of
overwriting someone else's work. Images are identified by content hash: queuing the same photo
twice raises `DuplicateImage` carrying the existing item's id (`.item_id`).
The tables are ORM-mapped (annotate/schema.py); the hot paths run as single Core statements
on them, which keeps a review (claim + save + approve) to about a millisecond of CPU.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from rapidfuzz.distance import Levenshtein
from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.engine import make_url

from annotate import claims, reviews, views
from annotate.audit import AuditLog
from annotate.notes import Notes
from annotate.blobs import ImageFiles, prepare_image
from annotate.checks import (
    check_caption, check_fields, check_name, check_order, check_tags, from_json, jsonable,
)
from annotate.db import open_database, resolve_data_dir, resolve_url, write_engine
from annotate.errors import (
    ClaimedByOther,
    ConflictError,
    InvalidInput,
    InvalidTransition,
    ItemNotFound,
    NothingToUndo,
)
from annotate.intake import QueueIntake
from annotate.reading import QueueReads
from annotate.records import Item
from annotate.team import TeamReview
from annotate.views import ACTIONS, IMAGES, ITEMS, REVISIONS

# Item columns an action may change; the action log keeps their values from before it.
STATE = ("status", "claimed_by", "lease_expires_at", "reject_reason", "decided_by",
         "decided_at", "edit_rate", "caption", "fields_json", "tags_json", "final_source")
UNDOABLE = ("correct", "approve", "reject", "skip", "release")
_CLAIM_ATTEMPTS = 20

_ITEM = select(ITEMS).where(ITEMS.c.id == bindparam("item_id"))
# Writes lock the item row on PostgreSQL (SQLite's BEGIN IMMEDIATE has locked everything already).
_ITEM_FOR_UPDATE = _ITEM.with_for_update()
# Statements built once: parameters go in at execute time (SET columns from the dict's keys),
# which skips rebuilding and re-hashing a statement on every call.
_UPDATE_ITEM = update(ITEMS).where(ITEMS.c.id == bindparam("b_id"), ITEMS.c.version == bindparam("b_version"))
_LOG_ACTION = insert(ACTIONS)
_LATER_ACTIONS = select(ACTIONS.c.action, ACTIONS.c.reviewer, ACTIONS.c.undone_at).where(
    ACTIONS.c.item_id == bindparam("item_id"), ACTIONS.c.id > bindparam("after"))
_MARK_UNDONE = update(ACTIONS).where(ACTIONS.c.id == bindparam("b_id"))
_ADD_REVISION = insert(REVISIONS)
_LAST_UNDOABLE = (select(ACTIONS).where(ACTIONS.c.reviewer == bindparam("who"), ACTIONS.c.action.in_(UNDOABLE),
                                        ACTIONS.c.undone_at.is_(None)).order_by(ACTIONS.c.id.desc()).limit(1))


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)  # stored as naive UTC


def edit_rate(draft: str, final: str) -> float:
    """Reviewer effort: normalized Levenshtein distance, 0 = untouched, 1 = rewritten."""
    return float(Levenshtein.normalized_distance(draft, final))


class Store(QueueIntake, QueueReads, TeamReview):
    """The review queue on one database. Thread-safe: share one Store between threads."""

    _edit_rate = staticmethod(edit_rate)

    def __init__(self, url: str | None = None, data_dir: Path | None = None, *,
                 lease_seconds: float = 600, busy_timeout_ms: int = 30_000, clock=utcnow,
                 order: str = "fifo", gold_rate: float = 0.0, seed: int | None = None):
        """order: how claims pick pending items, "fifo" | "confidence" | "random".
        gold_rate: chance (0-1) that a claim serves a gold item the reviewer has not done yet."""
        self.data_dir = resolve_data_dir(data_dir)
        self.url = resolve_url(url, self.data_dir)
        self.engine = open_database(self.url, busy_timeout_ms)
        self.files = ImageFiles(self.data_dir)
        self.lease_seconds = lease_seconds
        self._clock = clock
        self._durable = write_engine(self.engine, "durable")
        self._lease = write_engine(self.engine, "lease")
        self.order = check_order(order)
        if not 0.0 <= gold_rate <= 1.0:
            raise InvalidInput("the gold rate is a fraction from 0 to 1")
        self.gold_rate = gold_rate
        self._random = random.Random(seed)
        self.audit = AuditLog(self.engine, self._durable, clock)  # privileged actions, by the app
        self.notes = Notes(self.engine, self._durable, clock)  # guidelines and comments

    def __repr__(self) -> str:
        return f"Store({make_url(self.url).render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- reviewing ---------------------------------------------------------------------

    def claim_next(self, reviewer: str, lease_seconds: float | None = None, order: str | None = None) -> Item | None:
        """Lease the next item to `reviewer`: their own live claim first, then (at `gold_rate`)
        a gold item, then expired claims, then pending items in `order` (default: the store's).
        None when nothing is left to review. An overlap item comes back as the reviewer sees it:
        their own caption and their own review's version (pass it as `expected_version`)."""
        reviewer = check_name(reviewer)
        lease = timedelta(seconds=self.lease_seconds if lease_seconds is None else lease_seconds)
        order = check_order(order or self.order)
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                return self._claim_once(reviewer, lease, order)
            except ConflictError:  # another reviewer took that item first: pick again
                continue  # (only without SQLite's write lock, e.g. on PostgreSQL)
        raise ConflictError("the queue is too busy to claim an item right now; try again")

    def _claim_once(self, reviewer: str, lease: timedelta, order: str) -> Item | None:
        with self._lease.begin() as conn:
            now = self._clock()
            params = {"who": reviewer, "now": now}
            review = reviews.own_claim(conn, reviewer, now)
            if review is not None:
                return self._seen_by(conn, reviews.renew(conn, review, now, lease))
            row = conn.execute(claims.OWN_CLAIM, params).mappings().first()
            if row is None and self.gold_rate and self._random.random() < self.gold_rate:
                row = conn.execute(claims.NEXT_GOLD, params).mappings().first()
            row = (row or conn.execute(claims.EXPIRED_CLAIM, params).mappings().first()
                   or conn.execute(claims.NEXT_PENDING[order], params).mappings().first())
            if row is None:
                return None
            if reviews.is_team(row):
                return self._seen_by(conn, reviews.start(conn, row, reviewer, now, lease))
            self._change(conn, row, reviewer, "claim", status="in_review",
                         claimed_by=reviewer, lease_expires_at=now + lease)
            return views.load_item(conn, self.files, row["id"])

    def _seen_by(self, conn: Connection, review) -> Item:
        return reviews.as_seen_by(views.load_item(conn, self.files, review["item_id"], history=False), review)

    def submit_correction(self, item_id: int, reviewer: str, caption: str, expected_version: int,
                          fields: dict[str, str] | None = None, tags: Sequence[str] | None = None) -> int:
        """Save a corrected caption (and structured fields); returns the item's new version.

        Refused with `ConflictError` when the item changed since `expected_version` was read.
        `fields=None` keeps the current structured fields; `{}` clears them. `tags`: what the
        correction fixed (records.TAGS); None keeps the current tags.
        """
        reviewer = check_name(reviewer)
        caption = check_caption(caption)
        clean_fields, clean_tags = check_fields(fields), check_tags(tags)
        with self._durable.begin() as conn:
            row, now = self._get(conn, item_id, lock=True), self._clock()
            if reviews.is_team(row):
                return reviews.correct(conn, row, reviewer, caption, expected_version, clean_fields, clean_tags,
                                       now, timedelta(seconds=self.lease_seconds))
            self._workable(row, reviewer, expected_version)
            if clean_fields is None:
                clean_fields = json.loads(row["fields_json"]) if row["fields_json"] else {}
            conn.execute(_ADD_REVISION, {"item_id": item_id, "caption": caption, "reviewer": reviewer,
                                         "kind": "correct", "created_at": now, **clean_fields})
            return self._change(
                conn, row, reviewer, "correct", status="in_review", claimed_by=reviewer,
                lease_expires_at=now + timedelta(seconds=self.lease_seconds), caption=caption,
                fields_json=json.dumps(clean_fields, ensure_ascii=False) if clean_fields else None,
                **({} if clean_tags is None else {"tags_json": json.dumps(clean_tags) if clean_tags else None}),
            )

    def approve(self, item_id: int, reviewer: str, expected_version: int | None = None,
                tags: Sequence[str] | None = None) -> int:
        """Approve the item's latest caption; records the draft->final edit rate (and `tags`)."""
        reviewer, tags = check_name(reviewer), check_tags(tags)
        with self._durable.begin() as conn:
            row = self._get(conn, item_id, lock=True)
            if reviews.is_team(row):
                return self._team_decide(conn, row, reviewer, "approved", expected_version, tags=tags)
            self._workable(row, reviewer, expected_version)
            final = row["caption"] if row["caption"] is not None else row["draft_caption"]
            extra = {} if tags is None else {"tags_json": json.dumps(tags) if tags else None}
            return self._decide(conn, row, reviewer, "approve", "approved",
                                edit_rate=edit_rate(row["draft_caption"], final), **extra)

    def reject(self, item_id: int, reviewer: str, reason: str,
               expected_version: int | None = None) -> int:
        reviewer = check_name(reviewer)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInput("say why the item is rejected (a reason is required)")
        with self._durable.begin() as conn:
            row = self._get(conn, item_id, lock=True)
            if reviews.is_team(row):
                return self._team_decide(conn, row, reviewer, "rejected", expected_version, reason=reason.strip())
            self._workable(row, reviewer, expected_version)
            return self._decide(conn, row, reviewer, "reject", "rejected",
                                reject_reason=reason.strip(), detail=reason.strip())

    def skip(self, item_id: int, reviewer: str, expected_version: int | None = None) -> int:
        """Set the item aside (status `skipped`); `reassign` puts it back in the queue."""
        reviewer = check_name(reviewer)
        with self._durable.begin() as conn:
            row = self._get(conn, item_id, lock=True)
            if reviews.is_team(row):
                return self._team_decide(conn, row, reviewer, "skipped", expected_version)
            self._workable(row, reviewer, expected_version)
            return self._decide(conn, row, reviewer, "skip", "skipped")

    def _team_decide(self, conn: Connection, row, reviewer: str, verdict: str, expected_version: int | None,
                     **extra) -> int:
        def finalize(conn, item, **values):
            self._change(conn, item, None, "finalize", decided_at=self._clock(), **values)

        return reviews.decide(conn, row, reviewer, verdict, expected_version, self._clock(), edit_rate,
                              finalize, **extra)

    def release(self, item_id: int, reviewer: str, undoable: bool = True) -> int:
        """Give a claimed item back to the queue (status `pending`) without deciding.

        undoable=False: a step of an undo itself (the item the reviewer held when undoing goes
        back), which the next undo must walk past rather than undo."""
        reviewer = check_name(reviewer)
        with self._durable.begin() as conn:
            row = self._get(conn, item_id, lock=True)
            if reviews.is_team(row):
                reviews.give_back(conn, row, reviewer, self._clock())
                return row["version"]
            if row["status"] != "in_review" or row["claimed_by"] != reviewer:
                raise InvalidTransition(f"item {item_id} is not claimed by {reviewer}")
            return self._change(conn, row, reviewer, "release" if undoable else "unclaim", status="pending",
                                claimed_by=None, lease_expires_at=None)

    def reassign(self, item_id: int) -> int:
        """Put any item back to `pending` (clearing claim and decision; captions are kept)."""
        with self._durable.begin() as conn:
            row = self._get(conn, item_id, lock=True)
            if reviews.is_team(row) and row["gold_caption"] is None:
                reviews.archive(conn, item_id)  # an overlap item is reviewed afresh by N reviewers
            if row["status"] == "pending":
                return row["version"]
            return self._change(conn, row, None, "reassign", status="pending", claimed_by=None,
                                lease_expires_at=None, reject_reason=None, decided_by=None,
                                decided_at=None, edit_rate=None, final_source=None)

    def undo_last(self, reviewer: str) -> Item:
        """Undo `reviewer`'s most recent correction/approve/reject/skip/release.

        The item returns to its state before that action (a decided item comes back to the
        reviewer, claimed, with a fresh lease). Refused if someone changed the item since.
        """
        reviewer = check_name(reviewer)
        with self._durable.begin() as conn:
            action = conn.execute(_LAST_UNDOABLE, {"who": reviewer}).mappings().first()
            if action is None:
                raise NothingToUndo(reviewer)
            row = self._get(conn, action["item_id"], lock=True)
            if "review_id" in json.loads(action["before_json"]):  # an independent review's action
                reviews.undo(conn, row, action, reviewer, self._clock(), timedelta(seconds=self.lease_seconds))
                conn.execute(_MARK_UNDONE, {"b_id": action["id"], "undone_at": self._clock()})
                return self._seen_by(conn, reviews.mine(conn, row["id"], reviewer))
            later = conn.execute(_LATER_ACTIONS, {"item_id": row["id"], "after": action["id"]}).mappings().all()
            # Later actions on the item are fine only if they were undone, or were this
            # reviewer's own undos and re-claims: then the item is as the action left it.
            blocking = [a for a in later if not a["undone_at"]
                        and not (a["reviewer"] == reviewer and a["action"] in ("undo", "claim", "unclaim"))]
            if blocking:
                changed_by = blocking[0]["reviewer"] or "a reassign"
                raise ConflictError(
                    f"cannot undo your {action['action']} of item {row['id']}: it was changed "
                    f"since by {changed_by}"
                )
            self._restore(conn, row, reviewer, json.loads(action["before_json"]))
            conn.execute(_MARK_UNDONE, {"b_id": action["id"], "undone_at": self._clock()})
            return views.load_item(conn, self.files, row["id"])

    # ---- internals ---------------------------------------------------------------------

    def attach_photo(self, item_id: int, image) -> Item:
        """Store the photo of a URL-only item (fetched for its review). The item keeps its
        identity (the URL), so imports of the same row still count as duplicates."""
        prepared = prepare_image(image)
        path = self.files.store(prepared)
        with self._durable.begin() as conn:
            row = self._get(conn, item_id, lock=True)
            conn.execute(update(IMAGES).where(IMAGES.c.id == row["image_id"], IMAGES.c.path.is_(None))
                         .values(path=path, width=prepared.width, height=prepared.height))
            return views.load_item(conn, self.files, item_id)

    def _get(self, conn: Connection, item_id: int, lock: bool = False):
        row = conn.execute(_ITEM_FOR_UPDATE if lock else _ITEM, {"item_id": item_id}).mappings().first()
        if row is None:
            raise ItemNotFound(item_id)
        return row

    def _workable(self, row, reviewer: str, expected_version: int | None):
        """The item's row, if `reviewer` may act on it now at `expected_version`."""
        item_id = row["id"]
        if expected_version is not None and row["version"] != expected_version:
            raise ConflictError(
                f"item {item_id} changed since you loaded it (your version {expected_version}, "
                f"now {row['version']}); reload it and re-apply your edit"
            )
        if row["status"] in ("approved", "rejected"):
            raise InvalidTransition(
                f"item {item_id} is already {row['status']}; reassign it to pending to review it again"
            )
        lease = row["lease_expires_at"]
        live_claim = lease is not None and lease > self._clock()
        if row["status"] == "in_review" and row["claimed_by"] != reviewer and live_claim:
            raise ClaimedByOther(item_id, row["claimed_by"])
        return row

    def _decide(self, conn: Connection, row, reviewer: str, action: str, status: str,
                detail: str | None = None, **values) -> int:
        return self._change(conn, row, reviewer, action, detail=detail, status=status,
                            claimed_by=None, lease_expires_at=None, decided_by=reviewer,
                            decided_at=self._clock(), **values)

    def _change(self, conn: Connection, row, reviewer: str | None, action: str,
                detail: str | None = None, **values) -> int:
        """Apply `values` to the item (version +1) and log the action with the prior state."""
        now = self._clock()
        version = row["version"] + 1
        # The version condition makes this safe on any backend, not only under SQLite's lock.
        done = conn.execute(_UPDATE_ITEM, {"b_id": row["id"], "b_version": row["version"],
                                           "version": version, "updated_at": now, **values})
        if done.rowcount != 1:
            raise ConflictError(f"item {row['id']} was changed by someone else meanwhile; reload it")
        before = {name: jsonable(row[name]) for name in STATE}
        conn.execute(_LOG_ACTION, {
            "item_id": row["id"], "reviewer": reviewer, "action": action, "detail": detail,
            "before_json": json.dumps(before), "version_after": version, "created_at": now,
        })
        return version

    def _restore(self, conn: Connection, row, reviewer: str, before: dict) -> None:
        state = {name: from_json(name, before.get(name)) for name in STATE}
        if state["status"] == "in_review":  # the old lease may have run out meanwhile
            state["claimed_by"] = reviewer
            state["lease_expires_at"] = self._clock() + timedelta(seconds=self.lease_seconds)
        if state["caption"] != row["caption"] or state["fields_json"] != row["fields_json"]:
            restored = json.loads(state["fields_json"]) if state["fields_json"] else {}
            text = state["caption"] if state["caption"] is not None else row["draft_caption"]
            conn.execute(_ADD_REVISION, {"item_id": row["id"], "caption": text, "reviewer": reviewer,
                                         "kind": "undo", "created_at": self._clock(), **restored})
        self._change(conn, row, reviewer, "undo", **state)
