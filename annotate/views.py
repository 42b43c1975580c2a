"""Read side of the store: rows to records, counts and reviewer statistics."""

from __future__ import annotations

import json
from collections import defaultdict

from sqlalchemy import Connection, bindparam, func, select

from annotate.blobs import ImageFiles
from annotate.records import (
    FIELDS,
    STATUSES,
    Action,
    Draft,
    ImageRef,
    Item,
    Revision,
)
from annotate.schema import ActionRow, ImageRow, ItemRow, ReviewRow, RevisionRow


ITEMS = ItemRow.__table__
IMAGES = ImageRow.__table__
REVISIONS = RevisionRow.__table__
ACTIONS = ActionRow.__table__
# An item row joined with its image's columns (names do not collide with the item's).
ITEM_WITH_IMAGE = select(
    ITEMS, IMAGES.c.sha256, IMAGES.c.hash_kind, IMAGES.c.path, IMAGES.c.source_url,
    IMAGES.c.width, IMAGES.c.height, IMAGES.c.licence, IMAGES.c.consent,
).join(IMAGES, ITEMS.c.image_id == IMAGES.c.id)
_ONE_ITEM = ITEM_WITH_IMAGE.where(ITEMS.c.id == bindparam("item_id"))
_REVISIONS_OF = select(REVISIONS).where(REVISIONS.c.item_id == bindparam("item_id")).order_by(REVISIONS.c.id)
_ACTIONS_OF = select(ACTIONS).where(ACTIONS.c.item_id == bindparam("item_id")).order_by(ACTIONS.c.id)


def load_item(conn: Connection, files: ImageFiles, item_id: int, history: bool = True) -> Item | None:
    found = conn.execute(_ONE_ITEM, {"item_id": item_id}).mappings().first()
    if found is None:
        return None
    revisions, actions = (), ()
    if history:
        revisions = tuple(_revision(row) for row in conn.execute(_REVISIONS_OF, {"item_id": item_id}).mappings())
        actions = tuple(
            Action(row["id"], row["action"], row["reviewer"], row["created_at"],
                   row["undone_at"] is not None, row["detail"])
            for row in conn.execute(_ACTIONS_OF, {"item_id": item_id}).mappings()
        )
    return to_item(found, files, revisions, actions)


def to_item(row, files: ImageFiles, revisions=(), actions=()) -> Item:
    """An Item from a mapping with ITEM_WITH_IMAGE's columns."""
    draft = Draft(
        model_name=row["model_name"],
        model_version=row["model_version"],
        caption=row["draft_caption"],
        preset=row["preset"],
        prompt=row["prompt"],
        settings=json.loads(row["settings_json"] or "{}"),
        confidence_mean=row["confidence_mean"],
        confidence_min=row["confidence_min"],
    )
    ref = ImageRef(
        sha256=row["sha256"],
        hash_kind=row["hash_kind"],
        path=files.absolute(row["path"]),
        url=row["source_url"],
        width=row["width"],
        height=row["height"],
        licence=row["licence"],
        consent=row["consent"],
    )
    caption = row["caption"]
    return Item(
        id=row["id"],
        status=row["status"],
        version=row["version"],
        image=ref,
        draft=draft,
        caption=caption if caption is not None else row["draft_caption"],
        fields=json.loads(row["fields_json"]) if row["fields_json"] else {},
        claimed_by=row["claimed_by"],
        lease_expires_at=row["lease_expires_at"],
        reject_reason=row["reject_reason"],
        decided_by=row["decided_by"],
        edit_rate=row["edit_rate"],
        created_at=row["created_at"],
        history=tuple(revisions),
        actions=tuple(actions),
        overlap=row["overlap"],
        tags=tuple(json.loads(row["tags_json"])) if row["tags_json"] else (),
        final_source=row["final_source"],
        gold=row["gold_caption"] is not None,
    )


def _revision(row) -> Revision:
    fields = {name: row[name] for name in FIELDS if row[name] is not None}
    return Revision(row["id"], row["caption"], fields, row["reviewer"], row["kind"], row["created_at"])


def counts(conn: Connection) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for status, n in conn.execute(select(ItemRow.status, func.count()).group_by(ItemRow.status)):
        out[status] = n
    return out


def reviewer_table(conn: Connection, name: str | None = None) -> dict[str, dict]:
    """Per reviewer: decisions by status, corrections saved, items held, mean edit rate.

    Independent reviews of overlap and gold items count as the reviewer's own decisions (the
    item's final decision, made by the count of reviews, is nobody's)."""
    table: dict[str, dict] = defaultdict(empty_reviewer_row)
    decided = select(
        ItemRow.decided_by, ItemRow.status, func.count(), func.avg(ItemRow.edit_rate)
    ).where(ItemRow.decided_by.is_not(None), ItemRow.overlap == 1)
    corrections = select(RevisionRow.reviewer, func.count()).where(RevisionRow.kind == "correct")
    held = select(ItemRow.claimed_by, func.count()).where(ItemRow.status == "in_review")
    if name is not None:
        decided = decided.where(ItemRow.decided_by == name)
        corrections = corrections.where(RevisionRow.reviewer == name)
        held = held.where(ItemRow.claimed_by == name)
    for who, status, n, mean_edit in conn.execute(decided.group_by(ItemRow.decided_by, ItemRow.status)):
        table[who][status] = n
        if status == "approved":
            table[who]["mean_edit_rate"] = _round(mean_edit)
    for who, n in conn.execute(corrections.group_by(RevisionRow.reviewer)):
        table[who]["corrections"] = n
    for who, n in conn.execute(held.group_by(ItemRow.claimed_by)):
        table[who]["in_review"] = n
    _add_reviews(conn, table, name)
    return dict(sorted(table.items()))


def _add_reviews(conn: Connection, table: dict, name: str | None) -> None:
    query = select(ReviewRow.reviewer, ReviewRow.status, func.count(), func.count(ReviewRow.caption),
                   func.avg(ReviewRow.edit_rate)).where(ReviewRow.status != "archived")
    if name is not None:
        query = query.where(ReviewRow.reviewer == name)
    for who, status, n, edited, mean_edit in conn.execute(query.group_by(ReviewRow.reviewer, ReviewRow.status)):
        row = table[who]
        row["corrections"] += edited
        if status == "approved" and mean_edit is not None:  # weighted with the single-review mean
            before = (row["mean_edit_rate"] or 0.0) * row["approved"]
            row["mean_edit_rate"] = _round((before + float(mean_edit) * n) / (row["approved"] + n))
        row[status] += n


def empty_reviewer_row() -> dict:
    return {"approved": 0, "rejected": 0, "skipped": 0, "corrections": 0, "in_review": 0, "mean_edit_rate": None}


def model_table(conn: Connection) -> list[dict]:
    """Per model name and version: items by status, approval rate, mean edit rate."""
    rows: dict[tuple[str, str], dict] = {}
    query = select(
        ItemRow.model_name, ItemRow.model_version, ItemRow.status, func.count(), func.avg(ItemRow.edit_rate)
    ).group_by(ItemRow.model_name, ItemRow.model_version, ItemRow.status)
    for name, version, status, n, mean_edit in conn.execute(query):
        entry = rows.setdefault(
            (name, version),
            {"model_name": name, "model_version": version, "total": 0, **dict.fromkeys(STATUSES, 0)},
        )
        entry[status] = n
        entry["total"] += n
        if status == "approved":
            entry["mean_edit_rate"] = _round(mean_edit)
    for entry in rows.values():
        decided = entry["approved"] + entry["rejected"]
        # Approval rate over decided items only: skipped and pending say nothing about quality.
        entry["approval_rate"] = _round(entry["approved"] / decided) if decided else None
        entry.setdefault("mean_edit_rate", None)
    return [rows[key] for key in sorted(rows)]


def _round(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)
