"""iterable-segment-sync: a self-hosted, lossless two-way sync between Segment and Iterable.

Layout (README, "Layout"): ``cli`` (the commands) -> ``app`` (the wiring) and ``jobs`` -> the ``engine``
(intake, worker, retry, throttle) and the adapters (``http``, ``ledger``, ``iterable``, ``segment``) -> the
pure core (``model``, ``mapping``, ``outbound``, ``inbound``, ``people``, ``wire``, ``config``, ``errors``).
"""

__version__ = "0.1.0"
