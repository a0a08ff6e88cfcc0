"""The ledger's tables. Alembic revisions in ``migrations/`` create exactly these."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores them naive; we re-attach UTC)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger; use aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Any:
        """The conversion, remembering its last value: a commit of N rows binds one ``now`` 4N times, and
        SQLite's text conversion costs about 10 us each on the event loop (one (value, text) tuple is swapped
        in whole, so threads sharing the processor never mix a value with another's text)."""
        convert = super().bind_processor(dialect)
        if convert is None:
            return None
        last: list[tuple[Any, Any]] = [(object(), None)]

        def process(value: Any) -> Any:
            seen, out = last[0]
            if value is seen:
                return out
            out = convert(value)
            last[0] = (value, out)
            return out

        return process

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_pending = sa.text("status = 'pending'")
_held = sa.text("status = 'held'")
_leased = sa.text("status = 'pending' AND lease_owner IS NOT NULL")
_deletions = sa.text("status = 'pending' AND kind = 'delete'")

events = sa.Table(
    "events",
    metadata,
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
    sa.Column("retry_from", UTCDateTime(), nullable=True),  # start of the retry window (NULL: received_at)
    sa.Column("mapped", sa.JSON(), nullable=True),
    sa.Column("also_key", sa.String(64), nullable=True),  # a second idempotency key (revision 0010), or NULL  # the upstream call decided at intake (NULL: older rows)
    sa.Column("mapping_digest", sa.String(64), nullable=True),  # which mapping config decided it
    sa.Column("name", sa.String(255), nullable=True),  # the event's name (track, page, screen; inbound: its kind)
    sa.Column("reason_class", sa.String(32), nullable=True),  # ``history.reason_class(reason)`` (failure groups)
    sa.UniqueConstraint("direction", "key", name="uq_events_direction_key"),
    # a second idempotency key (an inbound event's Iterable message identity): a row with either is a duplicate
    sa.Index("uq_events_direction_also_key", "direction", "also_key", unique=True),
    sa.Index(
        "ix_events_due",
        "direction",
        "next_attempt_at",
        "id",
        postgresql_where=_pending,
        sqlite_where=_pending,
    ),
    sa.Index(
        "ix_events_user_pending",
        "direction",
        "user_key",
        "id",
        postgresql_where=_pending,
        sqlite_where=_pending,
    ),
    sa.Index("ix_events_status_updated", "status", "updated_at"),
    sa.Index("ix_events_held", "user_key", "id", postgresql_where=_held, sqlite_where=_held),
    sa.Index("ix_events_person", "user_key", "id"),  # a person's timeline in the console, every status
    sa.Index("ix_events_status_name", "status", "name", "updated_at"),  # console: problems by event name
    sa.Index("ix_events_failure_groups", "status", "reason_class", "name", "direction", "updated_at"),  # covering
    sa.Index("ix_events_received", "received_at", "id"),  # console: the live tail
    sa.Index("ix_events_leased", "lease_owner", "lease_expires_at", postgresql_where=_leased, sqlite_where=_leased),
    sa.Index("ix_events_deletions", "id", postgresql_where=_deletions, sqlite_where=_deletions),  # never dropped
)

downtime = sa.Table(  # spans in which a direction could not deliver: open (ended_at NULL) while paused
    "downtime",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # "paused" (credentials) or "ledger" (outage)
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Index("ix_downtime_direction_ended", "direction", "ended_at"),
)

identities = sa.Table(  # every identifier seen (``u:<userId>``, ``e:<email>``) -> the person it names
    "identities",
    metadata,
    sa.Column("identifier", sa.String(255), primary_key=True),
    sa.Column("person", sa.String(255), nullable=False),
    sa.Index("ix_identities_person", "person"),
)

consents = sa.Table(  # each identifier's last consent seen outbound (SPEC section 14): what inbound events obey
    "consents",
    metadata,
    sa.Column("identifier", sa.String(255), primary_key=True),
    sa.Column("categories", sa.JSON(), nullable=False),  # category -> bool, as sync.outbound.consent reads it
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

pacing = sa.Table(  # per upstream endpoint, the next free request slot (PostgreSQL: shared by every replica)
    "pacing",
    metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("next_at", sa.Float(), nullable=False),  # seconds since the epoch, by the database's clock
)

cursors = sa.Table(
    "cursors",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("position", sa.Text(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

attempts = sa.Table(  # each row's delivery history (SPEC section 12): kept when the row is retried or delivered
    "attempts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),  # delivered, retry, dead, requeued, redecided
    sa.Column("endpoint", sa.String(128), nullable=True),  # the endpoint actually called (bulk or single)
    sa.Column("http_status", sa.Integer(), nullable=True),  # None: no answer (timeout, connection error)
    sa.Column("detail", sa.Text(), nullable=True),  # the error, and an excerpt of the upstream's answer
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Index("ix_attempts_event", "event_id", "id"),
    sa.Index("ix_attempts_at", "at"),
)

counters = sa.Table(  # maintained counts per 5-minute bucket: the overview sums buckets, never the ledger
    "counters",
    metadata,
    sa.Column("bucket", UTCDateTime(), nullable=False),
    sa.Column("direction", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(32), nullable=False),  # delivered, failed, latency_le_<s>, latency_sum, ...
    sa.Column("label", sa.String(255), nullable=False),  # "" or "<reason class>|<event name>"
    sa.Column("value", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("bucket", "direction", "metric", "label", name="pk_counters"),
)

replays = sa.Table(  # each time a delivered row was sent again (``ledger replay``, the console): its history
    "replays",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.BigInteger(), nullable=False),  # events.id (no foreign key: retention prunes both)
    sa.Column("run", sa.String(64), nullable=False),  # one replay command or console action
    sa.Column("replayed_at", UTCDateTime(), nullable=False),
    sa.Column("outcome", sa.Text(), nullable=False),  # "sent", or why not
    sa.Index("ix_replays_event", "event_id", "id"),
)
