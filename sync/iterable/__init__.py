"""Iterable, the upstream: its API catalogue (api), the client and sink (sink), per-person bulk waves (bulk), and what Iterable takes (identifiers, field_types, learning)."""
