"""The ``consents`` table: each identifier's last end-user consent seen outbound, which inbound events obey
(SPEC section 14); forgotten with the person and pruned with their identity links. And an index of the
deletion requests still pending (``sync_deletions_pending``, the console), which are never dead-lettered.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from sync.ledger.schema import UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

DELETIONS = "status = 'pending' AND kind = 'delete'"


def upgrade() -> None:
    op.create_table("consents", sa.Column("identifier", sa.String(255), primary_key=True),
                    sa.Column("categories", sa.JSON(), nullable=False),
                    sa.Column("updated_at", UTCDateTime(), nullable=False))
    deletions = sa.text(DELETIONS)
    op.create_index("ix_events_deletions", "events", ["id"], postgresql_where=deletions, sqlite_where=deletions)


def downgrade() -> None:
    op.drop_index("ix_events_deletions", table_name="events")
    op.drop_table("consents")
