"""Read side of the store: rows to records, counts and reviewer statistics."""

from __future__ import annotations

import json
from collections import defaultdict

from sqlalchemy import func, select
from sqlalchemy.orm import Session

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
from annotate.schema import ActionRow, ImageRow, ItemRow, RevisionRow


def load_item(session: Session, files: ImageFiles, item_id: int, history: bool = True) -> Item | None:
    found = session.execute(
        select(ItemRow, ImageRow).join(ImageRow, ItemRow.image_id == ImageRow.id).where(ItemRow.id == item_id)
    ).first()
    if found is None:
        return None
    revisions, actions = (), ()
    if history:
        revisions = tuple(
            _revision(row)
            for row in session.scalars(
                select(RevisionRow).where(RevisionRow.item_id == item_id).order_by(RevisionRow.id)
            )
        )
        actions = tuple(
            Action(row.id, row.action, row.reviewer, row.created_at, row.undone_at is not None, row.detail)
            for row in session.scalars(
                select(ActionRow).where(ActionRow.item_id == item_id).order_by(ActionRow.id)
            )
        )
    return to_item(found[0], found[1], files, revisions, actions)


def to_item(row: ItemRow, image: ImageRow, files: ImageFiles, revisions=(), actions=()) -> Item:
    draft = Draft(
        model_name=row.model_name,
        model_version=row.model_version,
        caption=row.draft_caption,
        preset=row.preset,
        prompt=row.prompt,
        settings=json.loads(row.settings_json or "{}"),
    )
    ref = ImageRef(
        sha256=image.sha256,
        hash_kind=image.hash_kind,
        path=files.absolute(image.path),
        url=image.source_url,
        width=image.width,
        height=image.height,
        licence=image.licence,
        consent=image.consent,
    )
    return Item(
        id=row.id,
        status=row.status,
        version=row.version,
        image=ref,
        draft=draft,
        caption=row.caption if row.caption is not None else row.draft_caption,
        fields=json.loads(row.fields_json) if row.fields_json else {},
        claimed_by=row.claimed_by,
        lease_expires_at=row.lease_expires_at,
        reject_reason=row.reject_reason,
        decided_by=row.decided_by,
        edit_rate=row.edit_rate,
        created_at=row.created_at,
        history=tuple(revisions),
        actions=tuple(actions),
    )


def _revision(row: RevisionRow) -> Revision:
    fields = {name: getattr(row, name) for name in FIELDS if getattr(row, name) is not None}
    return Revision(row.id, row.caption, fields, row.reviewer, row.kind, row.created_at)


def counts(session: Session) -> dict[str, int]:
    out = dict.fromkeys(STATUSES, 0)
    for status, n in session.execute(select(ItemRow.status, func.count()).group_by(ItemRow.status)):
        out[status] = n
    return out


def reviewer_table(session: Session, name: str | None = None) -> dict[str, dict]:
    """Per reviewer: decisions by status, corrections saved, items held, mean edit rate."""
    table: dict[str, dict] = defaultdict(_reviewer_row)
    decided = select(
        ItemRow.decided_by, ItemRow.status, func.count(), func.avg(ItemRow.edit_rate)
    ).where(ItemRow.decided_by.is_not(None))
    corrections = select(RevisionRow.reviewer, func.count()).where(RevisionRow.kind == "correct")
    held = select(ItemRow.claimed_by, func.count()).where(ItemRow.status == "in_review")
    if name is not None:
        decided = decided.where(ItemRow.decided_by == name)
        corrections = corrections.where(RevisionRow.reviewer == name)
        held = held.where(ItemRow.claimed_by == name)
    for who, status, n, mean_edit in session.execute(decided.group_by(ItemRow.decided_by, ItemRow.status)):
        table[who][status] = n
        if status == "approved":
            table[who]["mean_edit_rate"] = _round(mean_edit)
    for who, n in session.execute(corrections.group_by(RevisionRow.reviewer)):
        table[who]["corrections"] = n
    for who, n in session.execute(held.group_by(ItemRow.claimed_by)):
        table[who]["in_review"] = n
    return dict(sorted(table.items()))


def _reviewer_row() -> dict:
    return {"approved": 0, "rejected": 0, "skipped": 0, "corrections": 0, "in_review": 0, "mean_edit_rate": None}


def model_table(session: Session) -> list[dict]:
    """Per model name and version: items by status, approval rate, mean edit rate."""
    rows: dict[tuple[str, str], dict] = {}
    query = select(
        ItemRow.model_name, ItemRow.model_version, ItemRow.status, func.count(), func.avg(ItemRow.edit_rate)
    ).group_by(ItemRow.model_name, ItemRow.model_version, ItemRow.status)
    for name, version, status, n, mean_edit in session.execute(query):
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
