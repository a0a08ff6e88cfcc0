"""Delivery observability (SPEC section 12, "Finding and explaining"): each row's attempt history, the event
name as a column (filters and failure groups read an index, not the payload), and counters per 5-minute
bucket that the overview sums instead of counting the ledger.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from sync.ledger.schema import UTCDateTime

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("events", sa.Column("name", sa.String(255), nullable=True))
    op.add_column("events", sa.Column("reason_class", sa.String(32), nullable=True))
    op.create_index("ix_events_status_name", "events", ["status", "name", "updated_at"])
    op.create_index("ix_events_failure_groups", "events", ["status", "reason_class", "name", "direction", "updated_at"])
    op.create_index("ix_events_received", "events", ["received_at", "id"])
    op.create_table(
        "attempts",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("event_id", _id(), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_attempts_event", "attempts", ["event_id", "id"])
    op.create_index("ix_attempts_at", "attempts", ["at"])
    op.create_table(
        "counters",
        sa.Column("bucket", UTCDateTime(), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("bucket", "direction", "metric", "label", name="pk_counters"),
    )


def downgrade() -> None:
    op.drop_table("counters")
    op.drop_index("ix_attempts_at", table_name="attempts")
    op.drop_index("ix_attempts_event", table_name="attempts")
    op.drop_table("attempts")
    op.drop_index("ix_events_received", table_name="events")
    op.drop_index("ix_events_failure_groups", table_name="events")
    op.drop_index("ix_events_status_name", table_name="events")
    op.drop_column("events", "reason_class")
    op.drop_column("events", "name")
