"""Prometheus metrics of SPEC section 8, on a registry of their own (no globals)."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sync.ledger.model import Direction, Pending

DIRECTIONS = tuple(d.value for d in Direction)


class Metrics:
    def __init__(self) -> None:
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
        self.paused = Gauge("sync_direction_paused", "1 while a direction is paused (bad credentials)",
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
            for metric in (self.delivered, self.rejected, self.dead, self.duplicates, self.pending, self.oldest,
                           self.paused, self.held):
                metric.labels(direction=direction)

    def observe_ledger(self, pending: Pending, now: datetime) -> None:
        for direction in DIRECTIONS:
            self.pending.labels(direction=direction).set(pending.counts.get(direction, 0))
            self.held.labels(direction=direction).set(pending.held.get(direction, 0))
            oldest = pending.oldest.get(direction)
            self.oldest.labels(direction=direction).set((now - oldest).total_seconds() if oldest else 0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
