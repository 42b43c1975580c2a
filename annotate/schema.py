"""ORM tables of the review queue (SQLAlchemy 2.x declarative).

The tables change only through migrations in annotate/migrations/versions; keep this file and
the latest migration describing the same schema (tests/test_queue.py checks they agree).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Identity: sha256 of the file bytes, or of "url:" + URL for images not fetched.
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    hash_kind: Mapped[str] = mapped_column(String(8))
    path: Mapped[str | None] = mapped_column(Text)  # relative to the data folder
    source_url: Mapped[str | None] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    licence: Mapped[str | None] = mapped_column(Text)
    consent: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ItemRow(Base):
    __tablename__ = "items"
    __table_args__ = (
        Index("ix_items_status_id", "status", "id"),
        Index("ix_items_status_lease", "status", "lease_expires_at"),
        Index("ix_items_claimed_by", "claimed_by"),
        Index("ix_items_decided_by", "decided_by"),
        Index("ix_items_status_confidence", "status", "confidence_mean"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    # Optimistic locking: every UPDATE says "AND version = <the version read>" (the Store's
    # statements explicitly; ORM flushes through version_id_col, raising StaleDataError).
    version: Mapped[int] = mapped_column(Integer)
    __mapper_args__ = {"version_id_col": version}
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)
    edit_rate: Mapped[float | None] = mapped_column(Float)
    # The model draft, as produced (never edited).
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(200))
    preset: Mapped[str | None] = mapped_column(String(100))
    prompt: Mapped[str | None] = mapped_column(Text)
    settings_json: Mapped[str] = mapped_column(Text)
    draft_caption: Mapped[str] = mapped_column(Text)
    # Copy of the latest revision (NULL: nobody edited the draft yet), written in the same
    # transaction as that revision so reads and exports need no join over the history.
    caption: Mapped[str | None] = mapped_column(Text)
    fields_json: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    # Team review (migration 0004). overlap: independent reviews needed (1: the classic flow).
    overlap: Mapped[int] = mapped_column(Integer, server_default="1")
    # A gold item's reference caption (NULL: not gold). Gold items stay pending, never export.
    gold_caption: Mapped[str | None] = mapped_column(Text)
    # The model's confidence in its draft: mean and minimum token log-probability (nats).
    confidence_mean: Mapped[float | None] = mapped_column(Float)
    confidence_min: Mapped[float | None] = mapped_column(Float)
    # Reason tags of the latest correction (JSON list), and where the final caption came from
    # for overlap items: "medoid:<reviewer>", "pick:<reviewer>" or "merge" (adjudicated).
    tags_json: Mapped[str | None] = mapped_column(Text)
    final_source: Mapped[str | None] = mapped_column(String(240))


class RevisionRow(Base):
    """Append-only caption history: rows are inserted, never updated or deleted."""

    __tablename__ = "revisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    caption: Mapped[str] = mapped_column(Text)
    face: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    action: Mapped[str | None] = mapped_column(Text)
    background: Mapped[str | None] = mapped_column(Text)
    reviewer: Mapped[str] = mapped_column(String(200), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "correct" | "undo"
    created_at: Mapped[datetime] = mapped_column(DateTime)


class ActionRow(Base):
    """The action log: every state change, with the state before it so it can be undone."""

    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_reviewer_id", "reviewer", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    reviewer: Mapped[str | None] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    before_json: Mapped[str] = mapped_column(Text)  # item columns before the action
    version_after: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    undone_at: Mapped[datetime | None] = mapped_column(DateTime)


class ReviewRow(Base):
    """One reviewer's independent review of an overlap (or gold) item: claim, caption, verdict."""

    __tablename__ = "reviews"
    __table_args__ = (
        # Not unique: a reassigned item's earlier reviews stay, archived, beside the new ones.
        Index("ix_reviews_item_reviewer", "item_id", "reviewer"),
        Index("ix_reviews_reviewer_status", "reviewer", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    reviewer: Mapped[str] = mapped_column(String(200))
    # "in_review" | "approved" | "rejected" | "skipped" | "archived" (reassigned: no longer counts)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)  # this review's optimistic-locking counter
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime)
    caption: Mapped[str | None] = mapped_column(Text)  # NULL: the draft, unedited
    fields_json: Mapped[str | None] = mapped_column(Text)
    tags_json: Mapped[str | None] = mapped_column(Text)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    edit_rate: Mapped[float | None] = mapped_column(Float)
    gold_score: Mapped[float | None] = mapped_column(Float)  # token F1 vs the gold reference
    created_at: Mapped[datetime] = mapped_column(DateTime)
    decided_at: Mapped[datetime | None] = mapped_column(DateTime)


class AuditRow(Base):
    """Privileged actions, allowed or refused (append-only): who, what, when, on what."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"), Index("ix_audit_log_actor", "actor"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    allowed: Mapped[bool] = mapped_column(Boolean)


class SettingRow(Base):
    """Queue settings set by admins (the annotation guidelines), one row per key."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(200))
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class CommentRow(Base):
    """A reviewer's comment on an item (append-only)."""

    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"), index=True)
    author: Mapped[str] = mapped_column(String(200))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
