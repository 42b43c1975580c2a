"""Alembic environment for the review queue: always run programmatically by annotate.db.

The caller passes an open connection (already inside a write transaction) through
`config.attributes["connection"]`, so migrations share the Store's engine and pragmas.
"""

from alembic import context

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most things; batch mode rebuilds tables instead.
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
