"""The history store: jobs, their records, and the consumers' lag.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(36), primary_key=True),
        sa.Column("job_type", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("params", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("message", sa.Text),
        sa.Column("first_ts", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
    )
    op.create_index("jobs_by_time", "jobs", ["first_ts"])
    op.create_index("jobs_by_owner", "jobs", ["owner", "first_ts"])
    op.create_index("jobs_by_status", "jobs", ["status", "first_ts"])
    op.create_index("jobs_by_type", "jobs", ["job_type", "first_ts"])
    op.create_index("jobs_by_end", "jobs", ["finished_at"])
    op.create_table(
        "job_records",
        sa.Column("topic", sa.String(249), primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_index("records_by_job", "job_records", ["job_id", "offset"])
    op.create_table(
        "history_members",
        sa.Column("member", sa.String(200), primary_key=True),
        sa.Column("records_behind", sa.BigInteger, nullable=False),
        sa.Column("seconds_behind", sa.Float, nullable=False),
        sa.Column("stored", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("history_members")
    op.drop_table("job_records")
    op.drop_table("jobs")
