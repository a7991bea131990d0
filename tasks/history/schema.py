"""The store's tables (SQLAlchemy Core). Alembic's migrations in tasks/history/migrations create them;
a change here comes with a new migration (tests/test_history.py checks they agree).

Times are epoch seconds, as in the records. JSON values (params, result) are kept as the text the
record held, so every database keeps them alike.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# One row a job: its latest state as the furthest of its records (JobState.supersedes), who
# submitted it and with what.
jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("job_type", String(100), nullable=False),
    Column("owner", String(64)),
    Column("status", String(16), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("total", BigInteger, nullable=False),
    Column("params", Text),
    Column("result", Text),
    Column("error", Text),
    Column("message", Text),
    # The job's first record (its run began), its latest state, and its final record.
    Column("first_ts", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
    Index("jobs_by_time", "first_ts"),
    Index("jobs_by_owner", "owner", "first_ts"),
    Index("jobs_by_status", "status", "first_ts"),
    Index("jobs_by_type", "job_type", "first_ts"),
    Index("jobs_by_end", "finished_at"),
)

# Every record of every job's log, keyed by where it is in Kafka: a record read twice is stored once.
job_records = Table(
    "job_records",
    metadata,
    Column("topic", String(249), primary_key=True),
    Column("partition", Integer, primary_key=True, autoincrement=False),
    Column("offset", BigInteger, primary_key=True, autoincrement=False),
    Column("job_id", String(36), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("ts", Float, nullable=False),
    Column("value", Text, nullable=False),
    Index("records_by_job", "job_id", "offset"),
)

# What each running consumer last said of its lag; a reader sums the members heard from lately.
history_members = Table(
    "history_members",
    metadata,
    Column("member", String(200), primary_key=True),
    Column("records_behind", BigInteger, nullable=False),
    Column("seconds_behind", Float, nullable=False),
    Column("stored", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)
