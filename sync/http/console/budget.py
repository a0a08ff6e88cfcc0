"""A budget of failed logins per client address (SPEC section 12): after ``limit`` failures within
``window`` seconds the address is locked out for ``lockout`` seconds, whatever it sends. Per process,
in memory, bounded: an attacker cannot grow it without limit."""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

MAX_ADDRESSES = 10_000


@dataclass(slots=True)
class LoginBudget:
    limit: int = 10
    window: float = 300.0
    lockout: float = 900.0
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)
    _locked: dict[str, float] = field(default_factory=dict)

    def locked(self, address: str, now: float) -> float:
        """Seconds ``address`` must still wait (0: it may try)."""
        until = self._locked.get(address, 0.0)
        if until <= now:
            self._locked.pop(address, None)
            return 0.0
        return until - now

    def failed(self, address: str, now: float) -> bool:
        """Count a failure; return whether it locked the address out."""
        times = self._failures.setdefault(address, deque())
        self._failures.move_to_end(address)
        times.append(now)
        while times and times[0] <= now - self.window:
            times.popleft()
        while len(self._failures) > MAX_ADDRESSES:
            self._failures.popitem(last=False)
        if len(times) >= self.limit:
            self._locked[address] = now + self.lockout
            times.clear()
            if len(self._locked) > MAX_ADDRESSES:
                self._locked.pop(next(iter(self._locked)))
            return True
        return False

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
