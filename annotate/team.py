"""Team review on the Store: agreement, adjudication, gold scores and reason-tag counts.

`TeamReview` is a base class of `annotate.store.Store` (these methods need its engine, its
clock and its `_change`); it lives here because it is the multi-reviewer side of the queue,
with its own read queries, while store.py keeps the one-reviewer state machine.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import timedelta

from sqlalchemy import Connection, func, select

from annotate import reviews, views
from annotate.agreement import changed_spans, summarize
from annotate.checks import check_caption, check_name
from annotate.errors import InvalidInput, InvalidTransition
from annotate.records import TAGS, Disagreement, Item, Review
from annotate.reviews import REVIEWS
from annotate.views import ITEMS


class TeamReview:
    """Methods of `Store` for overlap items, gold items and reason tags."""

    def reviews(self, item_id: int) -> tuple[Review, ...]:
        """Every reviewer's independent review of an overlap (or gold) item, in claim order."""
        with self.engine.connect() as conn:
            self._get(conn, item_id)
            return reviews.reviews_of(conn, item_id)

    def claim_item(self, item_id: int, reviewer: str, lease_seconds: float | None = None) -> Item:
        """Start `reviewer`'s independent review of this overlap item (or renew the claim they
        hold), as `claim_next` does when it picks the item: for reviews made outside the app
        (Label Studio). Returns the item as they see it; pass its version as `expected_version`.
        Refused when the item is not a pending overlap item, or all its reviewers are in."""
        reviewer = check_name(reviewer)
        lease = timedelta(seconds=self.lease_seconds if lease_seconds is None else lease_seconds)
        with self._lease.begin() as conn:
            row, now = self._get(conn, item_id, lock=True), self._clock()
            if row["overlap"] < 2 or row["gold_caption"] is not None:
                raise InvalidTransition(f"item {item_id} is not an item with several independent reviews")
            if row["status"] != "pending":
                raise InvalidTransition(f"item {item_id} is already {row['status']}; it takes no more reviews")
            review = reviews.mine(conn, item_id, reviewer)
            if review is not None and review["status"] == "in_review" and review["lease_expires_at"] > now:
                return self._seen_by(conn, reviews.renew(conn, review, now, lease))
            return self._seen_by(conn, reviews.start(conn, row, reviewer, now, lease))

    def agreement(self) -> dict:
        """Token-F1 agreement between independent corrections: overall, per reviewer, per item."""
        with self.engine.connect() as conn:
            return agreement(conn)

    def disagreements(self, threshold: float = 0.5, limit: int = 50) -> list[Disagreement]:
        """Decided overlap items whose reviewers agree below `threshold` and that no admin has
        adjudicated yet, lowest agreement first: the adjudication view's list."""
        if not 0.0 <= threshold <= 1.0:
            raise InvalidInput("the agreement threshold is a number from 0 to 1")
        found = []
        with self.engine.connect() as conn:
            query = (views.ITEM_WITH_IMAGE.where(ITEMS.c.overlap > 1, ITEMS.c.status == "approved",
                                                 ITEMS.c.final_source.like("medoid:%")).order_by(ITEMS.c.id))
            for row in conn.execute(query).mappings():
                item_reviews = reviews.reviews_of(conn, row["id"])
                score = reviews.agreement_of(item_reviews)
                if score is not None and score < threshold:
                    found.append(Disagreement(views.to_item(row, self.files), score, item_reviews))
        return sorted(found, key=lambda d: (d.agreement, d.item.id))[:limit]

    def adjudicate(self, item_id: int, admin: str, pick: str | None = None, caption: str | None = None) -> int:
        """Settle an overlap item: `pick` one reviewer's caption, or give a merged `caption`.

        The final caption is recorded as a revision by `admin`, and `final_source` says which
        ("pick:<reviewer>" or "merge"); the item ends approved. Returns the item's new version.
        """
        admin = check_name(admin)
        caption = None if caption is None else check_caption(caption)
        with self._durable.begin() as conn:
            row = self._get(conn, item_id, lock=True)
            if row["overlap"] < 2 or row["status"] not in ("approved", "rejected"):
                raise InvalidTransition(f"item {item_id} is not a decided item with several reviews")
            values = reviews.adjudicated_values(row, reviews.reviews_of(conn, item_id), pick, caption)
            reviews.add_revision(conn, item_id, values["caption"], admin, "adjudicate", self._clock())
            return self._change(conn, row, admin, "adjudicate", detail=values["final_source"], status="approved",
                                decided_by=admin, decided_at=self._clock(), reject_reason=None,
                                edit_rate=self._edit_rate(row["draft_caption"], values["caption"]), **values)

    def gold_scores(self) -> dict:
        """Per reviewer: gold items reviewed and mean token F1 against the references."""
        with self.engine.connect() as conn:
            return gold_scores(conn)

    def tag_counts(self) -> list[dict]:
        """Per model version and reason tag: corrections tagged and word-diff spans changed."""
        with self.engine.connect() as conn:
            return tag_table(conn)

    def reviewer_agreement(self, name: str) -> dict:
        """One reviewer's own figures for the Review tab: agreement with the others and gold score."""
        name = check_name(name)
        with self.engine.connect() as conn:
            gold = gold_scores(conn)["by_reviewer"].get(name, {"reviews": 0, "mean_score": None})
            return {"agreement": agreement(conn)["by_reviewer"].get(name), "gold_reviews": gold["reviews"],
                    "gold_score": gold["mean_score"]}


def agreement(conn: Connection) -> dict:
    captions = func.coalesce(REVIEWS.c.caption, ITEMS.c.draft_caption)
    query = (select(REVIEWS.c.item_id, REVIEWS.c.reviewer, captions)
             .join(ITEMS, ITEMS.c.id == REVIEWS.c.item_id)
             .where(REVIEWS.c.status == "approved", ITEMS.c.gold_caption.is_(None)).order_by(REVIEWS.c.id))
    return summarize(conn.execute(query))


def gold_scores(conn: Connection) -> dict:
    gold_items = conn.scalar(select(func.count()).select_from(ITEMS).where(ITEMS.c.gold_caption.is_not(None)))
    query = (select(REVIEWS.c.reviewer, func.count(), func.avg(REVIEWS.c.gold_score))
             .where(REVIEWS.c.gold_score.is_not(None)).group_by(REVIEWS.c.reviewer).order_by(REVIEWS.c.reviewer))
    by_reviewer = {who: {"reviews": n, "mean_score": round(float(mean), 4)} for who, n, mean in conn.execute(query)}
    return {"items": gold_items, "measure": "token_f1", "by_reviewer": by_reviewer}


def tag_table(conn: Connection) -> list[dict]:
    """Tagged corrections of approved single-review items and of approved independent reviews
    (not of gold items: those test reviewers, they say nothing about the model).

    A correction's changed spans (word diff, draft -> its caption) count toward each of its tags.
    """
    final = func.coalesce(ITEMS.c.caption, ITEMS.c.draft_caption)
    singles = select(ITEMS.c.model_name, ITEMS.c.model_version, ITEMS.c.draft_caption, final, ITEMS.c.tags_json).where(
        ITEMS.c.tags_json.is_not(None), ITEMS.c.status == "approved", ITEMS.c.overlap == 1)
    team = (select(ITEMS.c.model_name, ITEMS.c.model_version, ITEMS.c.draft_caption,
                   func.coalesce(REVIEWS.c.caption, ITEMS.c.draft_caption), REVIEWS.c.tags_json)
            .join(ITEMS, ITEMS.c.id == REVIEWS.c.item_id)
            .where(REVIEWS.c.tags_json.is_not(None), REVIEWS.c.status == "approved", ITEMS.c.gold_caption.is_(None)))
    table: dict[tuple[str, str], dict] = defaultdict(lambda: {tag: {"corrections": 0, "spans": 0} for tag in TAGS})
    for query in (singles, team):
        for name, version, draft, caption, tags_json in conn.execute(query):
            spans = changed_spans(draft, caption)
            for tag in json.loads(tags_json):
                table[(name, version)][tag]["corrections"] += 1
                table[(name, version)][tag]["spans"] += spans
    return [{"model_name": name, "model_version": version, "tags": tags}
            for (name, version), tags in sorted(table.items())]
