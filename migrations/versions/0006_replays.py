"""The ``replays`` table: each time a delivered row was sent again by ``ledger replay`` or the console
(SPEC section 15), with the run it belonged to and what came of it. A replay creates no event row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replays",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("run", sa.String(64), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
    )
    op.create_index("ix_replays_event", "replays", ["event_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_replays_event", table_name="replays")
    op.drop_table("replays")
