"""An index for a person's timeline (the operator console): every row of one ordering key, in order.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_events_person", "events", ["user_key", "id"])


def downgrade() -> None:
    op.drop_index("ix_events_person", table_name="events")
