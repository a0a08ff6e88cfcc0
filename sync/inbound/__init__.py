"""Inbound: an Iterable webhook becomes a Segment track (mapper, people: pure); the export API pulls the same events for backfill and reconciliation (export); drift checks Iterable's webhook."""
