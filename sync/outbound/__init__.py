"""Outbound: a Segment event becomes Iterable calls (mapper, commerce items, companion calls, anonymous holds, consent). Pure."""
