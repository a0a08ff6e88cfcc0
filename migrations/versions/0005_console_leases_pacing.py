"""Indexes for a person's timeline (the operator console: every row of one ordering key, in order) and
for leased rows (releasing an owner's leases and reaping expired ones read only the rows in flight), and
the ``pacing`` table: request slots per upstream endpoint that replicas on one PostgreSQL share.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


LEASED = "status = 'pending' AND lease_owner IS NOT NULL"


def upgrade() -> None:
    op.create_index("ix_events_person", "events", ["user_key", "id"])
    leased = sa.text(LEASED)
    op.create_index("ix_events_leased", "events", ["lease_owner", "lease_expires_at"], postgresql_where=leased,
                    sqlite_where=leased)
    op.create_table("pacing", sa.Column("name", sa.String(128), primary_key=True),
                    sa.Column("next_at", sa.Float(), nullable=False))


def downgrade() -> None:
    op.drop_table("pacing")
    op.drop_index("ix_events_leased", table_name="events")
    op.drop_index("ix_events_person", table_name="events")
