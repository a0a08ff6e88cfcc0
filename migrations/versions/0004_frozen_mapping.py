"""Frozen mapping (the upstream call decided at intake, and the digest of the mapping that decided it),
and an index for held anonymous events.

A retry sends exactly what was decided when the event arrived, whatever the config became since; rows
recorded before this revision have NULL and are mapped when they are delivered.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("mapped", sa.JSON(), nullable=True))
    op.add_column("events", sa.Column("mapping_digest", sa.String(64), nullable=True))
    held = sa.text("status = 'held'")
    op.create_index("ix_events_held", "events", ["user_key", "id"], postgresql_where=held, sqlite_where=held)


def downgrade() -> None:
    op.drop_index("ix_events_held", table_name="events")
    op.drop_column("events", "mapping_digest")
    op.drop_column("events", "mapped")
