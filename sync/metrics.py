"""Prometheus metrics of SPEC section 8, on a registry of their own (no globals)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sync.model import LATENCY_EDGES, Direction, Pending, reason_class

DIRECTIONS = tuple(d.value for d in Direction)


class Metrics:
    def __init__(self, *, event_names: int = 20) -> None:
        self.event_names = event_names  # how many event names the failure counter names; the rest are "other"
        self.named: set[str] = set()
        self.last_pending: tuple[Pending, datetime] | None = None  # the gauges' latest reading (the console's too)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.received = Counter("sync_events_received", "Events recorded", ["direction", "type"], registry=r)
        self.delivered = Counter("sync_events_delivered", "Events delivered upstream", ["direction"], registry=r)
        self.skipped = Counter("sync_events_skipped", "Events not sent on purpose", ["direction", "reason"],
                               registry=r)
        self.rejected = Counter("sync_events_rejected", "Invalid events", ["direction"], registry=r)
        self.dead = Counter("sync_events_dead", "Events given up on", ["direction"], registry=r)
        self.duplicates = Counter("sync_duplicates", "Events already in the ledger", ["direction"], registry=r)
        self.pending = Gauge("sync_ledger_pending", "Rows waiting for delivery", ["direction"], registry=r)
        self.oldest = Gauge("sync_oldest_pending_seconds", "Age of the oldest pending row", ["direction"],
                            registry=r)
        self.upstream = Counter("sync_upstream_requests", "Requests to Iterable and Segment",
                                ["target", "endpoint", "status"], registry=r)
        self.latency = Histogram("sync_delivery_seconds", "Received to delivered", registry=r,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400))
        self.delivery_latency = Histogram(
            "sync_delivery_latency_seconds", "End-to-end latency, received to delivered, per direction",
            ["direction"], registry=r, buckets=LATENCY_EDGES)
        self.failures = Counter("sync_delivery_failures", "Rows given up on (dead letters), by reason class and event "
                                "name (names beyond delivery.metrics_event_names are 'other')",
                                ["direction", "reason_class", "event"], registry=r)
        self.paused = Gauge("sync_direction_paused", "1 while a direction is paused (credentials refused, or an operator's pause)",
                            ["direction"], registry=r)
        self.held = Gauge("sync_events_held", "Anonymous events waiting for their visitor to be identified",
                          ["direction"], registry=r)
        self.deletions_pending = Gauge("sync_deletions_pending", "Deletion and forget requests not yet accepted "
                                       "by Iterable (never dead-lettered: they wait and retry)", registry=r)
        self.mapping = Gauge("sync_mapping_info", "1 for the digest of the mapping config in force",
                             ["digest"], registry=r)
        self.webhook_ok = Gauge("sync_iterable_webhook_ok", "1 while Iterable's system webhook matches [inbound], "
                                "0 when it drifted, -1 before a check (server.public_url unset)", registry=r)
        self.webhook_ok.set(-1)
        for direction in DIRECTIONS:
            self.delivery_latency.labels(direction=direction)
            for metric in (self.delivered, self.rejected, self.dead, self.duplicates, self.pending, self.oldest,
                           self.paused, self.held):
                metric.labels(direction=direction)

    def observe_ledger(self, pending: Pending, now: datetime) -> None:
        self.last_pending = (pending, now)
        for direction in DIRECTIONS:
            self.pending.labels(direction=direction).set(pending.counts.get(direction, 0))
            self.held.labels(direction=direction).set(pending.held.get(direction, 0))
            oldest = pending.oldest.get(direction)
            self.oldest.labels(direction=direction).set((now - oldest).total_seconds() if oldest else 0)

    def failed(self, direction: str, reason: str | None, event: str | None) -> None:
        """Count one dead letter under a bounded label set."""
        name = event or "none"
        if name not in self.named and len(self.named) < self.event_names:
            self.named.add(name)
        self.failures.labels(direction=direction, reason_class=reason_class(reason),
                             event=name if name in self.named else "other").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
