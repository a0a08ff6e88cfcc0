"""The ledger: events (both directions) and direction pauses.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from sync.ledger.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_pending = sa.text("status = 'pending'")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(255), nullable=False),
        sa.Column("user_key", sa.String(255), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(128), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("direction", "key", name="uq_events_direction_key"),
    )
    op.create_index(
        "ix_events_due", "events", ["direction", "next_attempt_at", "id"],
        postgresql_where=_pending, sqlite_where=_pending,
    )
    op.create_index(
        "ix_events_user_pending", "events", ["direction", "user_key", "id"],
        postgresql_where=_pending, sqlite_where=_pending,
    )
    op.create_index("ix_events_status_updated", "events", ["status", "updated_at"])
    op.create_table(
        "pauses",
        sa.Column("direction", sa.String(16), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("pauses")
    op.drop_table("events")
