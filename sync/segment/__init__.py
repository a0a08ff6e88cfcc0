"""Segment, the upstream: how Segment reads events (spec, semantics, timestamps: pure) and the sink (sink)."""
