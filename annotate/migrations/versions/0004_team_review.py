"""Team review: overlap, gold references, model confidence, reason tags, independent reviews.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("overlap", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("gold_caption", sa.Text))
        batch.add_column(sa.Column("confidence_mean", sa.Float))
        batch.add_column(sa.Column("confidence_min", sa.Float))
        batch.add_column(sa.Column("tags_json", sa.Text))
        batch.add_column(sa.Column("final_source", sa.String(240)))
    op.create_index("ix_items_status_confidence", "items", ["status", "confidence_mean"])
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("lease_expires_at", sa.DateTime),
        sa.Column("caption", sa.Text),
        sa.Column("fields_json", sa.Text),
        sa.Column("tags_json", sa.Text),
        sa.Column("reject_reason", sa.Text),
        sa.Column("edit_rate", sa.Float),
        sa.Column("gold_score", sa.Float),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("decided_at", sa.DateTime),
    )
    op.create_index("ix_reviews_item_reviewer", "reviews", ["item_id", "reviewer"])
    op.create_index("ix_reviews_reviewer_status", "reviews", ["reviewer", "status"])


def downgrade() -> None:
    op.drop_table("reviews")
    op.drop_index("ix_items_status_confidence", "items")
    with op.batch_alter_table("items") as batch:
        for name in ("final_source", "tags_json", "confidence_min", "confidence_mean", "gold_caption", "overlap"):
            batch.drop_column(name)
