"""Local stand-ins for Iterable and Segment: real aiohttp apps, faithful to the reference spec,
with fault injection. Used by the tests and by ``make demo``."""

from sync.sandbox.faults import Fault
from sync.sandbox.iterable import FakeIterable
from sync.sandbox.segment import FakeSegment

__all__ = ["FakeIterable", "FakeSegment", "Fault"]
