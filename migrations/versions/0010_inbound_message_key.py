"""A second idempotency key for inbound events: Iterable's own message identity (event name, its ``messageId``,
``createdAt``, the click's link), which names one recipient's message whatever identifiers a source carries. A
webhook naming only the userId and the export record of the same event carrying the email too got two keys
and reached Segment twice; a row with either key is now a duplicate. Rows recorded before keep no second key
(NULL, which no unique index compares), so nothing recorded changes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("also_key", sa.String(64), nullable=True))
    op.create_index("uq_events_direction_also_key", "events", ["direction", "also_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_events_direction_also_key", table_name="events")
    op.drop_column("events", "also_key")
