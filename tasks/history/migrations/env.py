"""Alembic's environment for the history store: run on the connection HistoryStore.migrate hands it."""

from alembic import context

from tasks.history.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
