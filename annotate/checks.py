"""Validation of what callers pass to the Store, and JSON round trips of item state."""

from __future__ import annotations

from datetime import datetime

from annotate.errors import InvalidInput
from annotate.records import FIELDS, ORDERS, TAGS, Draft


def jsonable(value):
    return value.isoformat() if isinstance(value, datetime) else value


def from_json(name: str, value):
    if value is not None and name in ("lease_expires_at", "decided_at"):
        return datetime.fromisoformat(value)
    return value


def check_name(reviewer: str) -> str:
    if not isinstance(reviewer, str) or not reviewer.strip() or len(reviewer.strip()) > 200:
        raise InvalidInput("a reviewer name (1 to 200 characters) is required")
    return reviewer.strip()


# HumanCaption-HQ's longest captions are about 500 words (~3,500 characters); far longer text
# is an accident or an attack, and one such example can run a training out of memory.
MAX_CAPTION_CHARS = 5_000


def check_caption(caption: str) -> str:
    if not isinstance(caption, str) or not caption.strip():
        raise InvalidInput("the caption is empty; write a caption or reject the item")
    _check_length(caption)
    return caption.strip()


def _check_length(caption: str) -> None:
    if len(caption) > MAX_CAPTION_CHARS:
        raise InvalidInput(f"the caption is {len(caption):,} characters; the limit is {MAX_CAPTION_CHARS:,}")


def check_fields(fields: dict[str, str] | None) -> dict[str, str] | None:
    if fields is None:
        return None
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown caption fields {sorted(unknown)}; use {', '.join(FIELDS)}")
    return {name: value.strip() for name, value in fields.items() if value and value.strip()}


def check_draft(draft: Draft) -> None:
    if not isinstance(draft, Draft) or not isinstance(draft.caption, str) or not draft.caption.strip():
        raise InvalidInput("a Draft with the model's (non-empty) caption is required")
    _check_length(draft.caption)


def check_tags(tags) -> list[str] | None:
    if tags is None:
        return None
    unknown = [tag for tag in tags if tag not in TAGS]
    if unknown:
        raise InvalidInput(f"unknown reason tags {unknown}; use {', '.join(TAGS)}")
    return sorted(set(tags), key=TAGS.index)


def check_overlap(overlap: int) -> int:
    if not isinstance(overlap, int) or not 1 <= overlap <= 50:
        raise InvalidInput("overlap must be a whole number of reviewers from 1 to 50")
    return overlap


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise InvalidInput(f"unknown claim order {order!r}; use one of {', '.join(ORDERS)}")
    return order
