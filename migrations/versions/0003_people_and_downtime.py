"""People and downtime: one ordering key per person, the retry window's start, downtime spans.

- ``identities`` maps every identifier of a person (userId, email, joined by alias) to one key.
- ``events.retry_from`` starts the retry window (a requeue restarts it without touching received_at).
- ``downtime`` replaces ``pauses``: spans in which a direction could not deliver do not count
  against the retry window; an open span is a pause in force.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from sync.ledger.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("retry_from", UTCDateTime(), nullable=True))
    op.create_table(
        "identities",
        sa.Column("identifier", sa.String(255), primary_key=True),
        sa.Column("person", sa.String(255), nullable=False),
    )
    op.create_index("ix_identities_person", "identities", ["person"])
    op.create_table(
        "downtime",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_downtime_direction_ended", "downtime", ["direction", "ended_at"])
    op.execute("INSERT INTO downtime (direction, kind, reason, started_at) "
               "SELECT direction, 'paused', reason, since FROM pauses")
    op.drop_table("pauses")


def downgrade() -> None:
    op.create_table(
        "pauses",
        sa.Column("direction", sa.String(16), primary_key=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
    )
    op.drop_table("downtime")
    op.drop_table("identities")
    op.drop_column("events", "retry_from")
