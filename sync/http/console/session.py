"""Console sessions without server state: a signed cookie, and a CSRF token bound to it.

A session is ``<expires>.<nonce>.<mac>``, the MAC keyed by the login token that opened it. Replicas with
the same config accept each other's sessions; taking a token out of ``console.tokens`` ends every
session it opened. Logging out ends that session everywhere: the ledger keeps its name (``ended``) until it
would have expired, so a copied cookie is refused by every replica. The CSRF token is a second MAC over the nonce: a page can carry it, another site
cannot compute it, and it is worthless without the cookie. Pure functions, every comparison constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from sync.http.auth import as_bytes, matches_any

COOKIE = "sync_console"


def _key(token: str, purpose: str) -> bytes:
    return hashlib.sha256(f"iterable-segment-sync console {purpose}\x00{token}".encode()).digest()


def _mac(token: str, purpose: str, message: str) -> str:
    return hmac.new(_key(token, purpose), as_bytes(message), hashlib.sha256).hexdigest()


def login(given: str, tokens: Sequence[str]) -> str | None:
    """The configured token ``given`` equals (compared with all of them), else None."""
    if not given or not matches_any(given, tokens):
        return None
    return next(t for t in tokens if t and hmac.compare_digest(as_bytes(given), as_bytes(t)))


def open_session(token: str, *, now: float, hours: float) -> str:
    message = f"{int(now + hours * 3600)}.{secrets.token_hex(16)}"
    return f"{message}.{_mac(token, 'session', message)}"


def valid(cookie: str | None, tokens: Sequence[str], *, now: float) -> str | None:
    """The session's nonce when ``cookie`` is a live session opened by a configured token, else None."""
    if not cookie or cookie.count(".") != 2:
        return None
    expires, nonce, mac = cookie.split(".")
    if not (expires.isascii() and expires.isdigit() and len(expires) <= 12) or int(expires) <= now:
        return None
    signed = False
    for token in tokens:  # no early exit: the time does not tell which token opened it
        if token:
            signed |= hmac.compare_digest(as_bytes(mac), as_bytes(_mac(token, "session", f"{expires}.{nonce}")))
    return nonce if signed else None


def ended(nonce: str) -> str:
    """The ledger cursor that marks a logged-out session (a digest of its nonce, never the nonce itself)."""
    return f"console:ended:{hashlib.sha256(as_bytes(nonce)).hexdigest()[:40]}"


def csrf_token(cookie: str) -> str:
    """The CSRF token of a session: derived from the whole (already verified) cookie."""
    return hmac.new(as_bytes(cookie), b"csrf", hashlib.sha256).hexdigest()


def csrf_ok(cookie: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(as_bytes(csrf_token(cookie)), as_bytes(given or ""))
