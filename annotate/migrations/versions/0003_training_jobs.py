"""Training jobs table (train/jobstore.py) under Alembic.

Until now train/ created `training_jobs` itself with `create_all`; databases made that way
already hold the table, so this migration adopts an existing one (adding its index if missing)
instead of failing, and creates it everywhere else.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "training_jobs"
INDEX = "ix_training_jobs_status"


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table(TABLE):
        op.create_table(
            TABLE,
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("options_json", sa.Text, nullable=False),
            sa.Column("out_dir", sa.Text, nullable=False),
            sa.Column("data_dir", sa.Text),
            sa.Column("log_path", sa.Text, nullable=False),
            sa.Column("pid", sa.Integer),
            sa.Column("returncode", sa.Integer),
            sa.Column("error", sa.Text),
            sa.Column("cancel_requested", sa.Integer, nullable=False),
            sa.Column("version", sa.String(200)),
            sa.Column("metrics_json", sa.Text),
            sa.Column("eval_json", sa.Text),
            sa.Column("attempts", sa.Integer, nullable=False),
            sa.Column("created_at", sa.DateTime, nullable=False),
            sa.Column("started_at", sa.DateTime),
            sa.Column("finished_at", sa.DateTime),
        )
    elif INDEX in {ix["name"] for ix in inspector.get_indexes(TABLE)}:
        return
    op.create_index(INDEX, TABLE, ["status"])


def downgrade() -> None:
    op.drop_table(TABLE)
