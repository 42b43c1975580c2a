"""Plain values the Store API takes and returns (never live ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

STATUSES = ("pending", "in_review", "approved", "rejected", "skipped")
FINAL_STATUSES = ("approved", "rejected", "skipped")
# Structured parts of a human caption, after HumanVLM's face / body / whole-image split.
FIELDS = ("face", "body", "action", "background")
# What a reviewer fixed, tagged on a correction: the error profile that says what to train next.
TAGS = ("wrong_attribute", "hallucinated_object", "missing_detail", "wrong_count", "unsafe_or_identifying", "other")
# Claim orders: queue order, least confident model drafts first, or random.
ORDERS = ("fifo", "confidence", "random")


@dataclass(frozen=True)
class Draft:
    """What a model (or an imported dataset) proposed, and how it was produced."""

    model_name: str
    model_version: str
    caption: str
    preset: str | None = None
    prompt: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    # The model's token log-probabilities over the draft (nats): mean and minimum; None when
    # unknown (imported datasets). Claims in `confidence` order serve low means first.
    confidence_mean: float | None = None
    confidence_min: float | None = None


@dataclass(frozen=True)
class ImageRef:
    sha256: str
    hash_kind: str  # "content": sha256 of the file bytes; "url": sha256 of "url:" + URL
    path: Path | None  # absolute path of the stored file, None for URL-only images
    url: str | None
    width: int | None
    height: int | None
    licence: str | None
    consent: str | None


@dataclass(frozen=True)
class Revision:
    """One saved caption, append-only: the full history of an item's text."""

    id: int
    caption: str
    fields: dict[str, str]
    reviewer: str
    kind: str  # "correct": a reviewer's save; "undo": the caption an undo restored
    created_at: datetime


@dataclass(frozen=True)
class Action:
    """One entry of the action log (claim, correct, approve, reject, skip, release, ...)."""

    id: int
    action: str
    reviewer: str | None
    created_at: datetime
    undone: bool
    detail: str | None = None


@dataclass(frozen=True)
class Item:
    id: int
    status: str
    version: int  # optimistic-locking counter: pass it back as `expected_version`
    image: ImageRef
    draft: Draft
    caption: str  # the latest revision's caption, or the draft when nobody edited it
    fields: dict[str, str]
    claimed_by: str | None
    lease_expires_at: datetime | None
    reject_reason: str | None
    decided_by: str | None
    edit_rate: float | None  # normalized edit distance draft -> final, set on approval
    created_at: datetime
    history: tuple[Revision, ...] = ()
    actions: tuple[Action, ...] = ()
    overlap: int = 1  # independent reviews the item needs
    tags: tuple[str, ...] = ()  # reason tags of the latest correction
    final_source: str | None = None  # overlap items: "medoid:<reviewer>", "pick:<reviewer>", "merge"
    gold: bool = False  # a gold (scoring) item: never pushed to Label Studio, never exported


@dataclass(frozen=True)
class NewItem:
    """One row for `Store.enqueue_many`: an already-hashed image plus its draft."""

    sha256: str
    hash_kind: str
    draft: Draft
    url: str | None = None
    path: str | None = None  # relative to the data folder, for files already stored
    width: int | None = None
    height: int | None = None
    licence: str | None = None
    consent: str | None = None
    overlap: int = 1
    gold_caption: str | None = None  # a reference caption: the item is gold, never exported


@dataclass(frozen=True)
class Review:
    """One reviewer's independent review of an overlap item (for adjudication and stats)."""

    reviewer: str
    status: str  # "in_review" | "approved" | "rejected" | "skipped"
    caption: str
    tags: tuple[str, ...]
    reject_reason: str | None
    edit_rate: float | None


@dataclass(frozen=True)
class Disagreement:
    """An overlap item whose reviewers agree below the threshold, for an admin to adjudicate."""

    item: Item
    agreement: float
    reviews: tuple[Review, ...]


@dataclass(frozen=True)
class BulkResult:
    imported: int
    duplicates: int
    item_ids: tuple[int, ...] = ()
