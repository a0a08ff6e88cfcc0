"""Indexes for a person's timeline (the operator console: every row of one ordering key, in order) and
for leased rows (releasing an owner's leases and reaping expired ones read only the rows in flight).

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


def downgrade() -> None:
    op.drop_index("ix_events_leased", table_name="events")
    op.drop_index("ix_events_person", table_name="events")
