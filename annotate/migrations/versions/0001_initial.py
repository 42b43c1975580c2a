"""Initial review-queue schema: images, items, revisions, actions.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("hash_kind", sa.String(8), nullable=False),
        sa.Column("path", sa.Text),
        sa.Column("source_url", sa.Text),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("licence", sa.Text),
        sa.Column("consent", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("images.id"), nullable=False, unique=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("claimed_by", sa.String(200)),
        sa.Column("lease_expires_at", sa.DateTime),
        sa.Column("reject_reason", sa.Text),
        sa.Column("decided_by", sa.String(200)),
        sa.Column("decided_at", sa.DateTime),
        sa.Column("edit_rate", sa.Float),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(200), nullable=False),
        sa.Column("preset", sa.String(100)),
        sa.Column("prompt", sa.Text),
        sa.Column("settings_json", sa.Text, nullable=False),
        sa.Column("draft_caption", sa.Text, nullable=False),
        sa.Column("caption", sa.Text),
        sa.Column("fields_json", sa.Text),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_items_status_id", "items", ["status", "id"])
    op.create_index("ix_items_status_lease", "items", ["status", "lease_expires_at"])
    op.create_index("ix_items_claimed_by", "items", ["claimed_by"])
    op.create_index("ix_items_decided_by", "items", ["decided_by"])
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("caption", sa.Text, nullable=False),
        sa.Column("face", sa.Text),
        sa.Column("body", sa.Text),
        sa.Column("action", sa.Text),
        sa.Column("background", sa.Text),
        sa.Column("reviewer", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_revisions_item_id", "revisions", ["item_id"])
    op.create_index("ix_revisions_reviewer", "revisions", ["reviewer"])
    op.create_table(
        "actions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("item_id", sa.Integer, sa.ForeignKey("items.id"), nullable=False),
        sa.Column("reviewer", sa.String(200)),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("detail", sa.Text),
        sa.Column("before_json", sa.Text, nullable=False),
        sa.Column("version_after", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("undone_at", sa.DateTime),
    )
    op.create_index("ix_actions_item_id", "actions", ["item_id"])
    op.create_index("ix_actions_reviewer_id", "actions", ["reviewer", "id"])


def downgrade() -> None:
    for table in ("actions", "revisions", "items", "images"):
        op.drop_table(table)
