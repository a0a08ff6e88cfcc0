"""Credential checks for the ingress endpoints; every comparison is constant-time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable


def as_bytes(value: str) -> bytes:
    """A credential's bytes for comparison, whatever it holds: aiohttp decodes header bytes that are not UTF-8
    as lone surrogates (``\\xff`` becomes ``\\udcff``), which ``str.encode()`` refuses; such a credential is
    simply not an accepted one."""
    return value.encode("utf-8", "surrogatepass")


def matches_any(value: str, accepted: Iterable[str]) -> bool:
    """Constant-time comparison against every accepted value (no early exit on a match)."""
    given = as_bytes(value)
    found = False
    for candidate in accepted:
        if candidate:
            found |= hmac.compare_digest(given, as_bytes(candidate))
    return found


def basic_username(header: str | None) -> str | None:
    """The username of an HTTP Basic ``Authorization`` header (Segment puts the write key there)."""
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text is not base64
        return None
    return decoded.split(":", 1)[0]


MAX_BODY_KEYS = 8  # candidates looked at; a body stuffed with "writeKey" strings costs no more
_BODY_KEY = re.compile(rb'"writeKey"\s*:\s*"((?:[^"\\]|\\.){1,512})"')  # JSON escapes allowed (``\u002d``)


def body_key_plausible(raw: bytes, accepted: Iterable[str]) -> bool:
    """Whether a ``"writeKey": "..."`` in the raw body matches an accepted key, checked before the
    body is parsed, so an unauthenticated request costs a scan, not a parse. (The parsed body's
    ``writeKey`` is checked again afterwards.)"""
    keys = [k for k in accepted if k]
    found = False
    for _, match in zip(range(MAX_BODY_KEYS), _BODY_KEY.finditer(raw), strict=False):
        found |= matches_any(_unescaped(match.group(1)), keys)
    return found


def _unescaped(value: bytes) -> str:
    """A JSON string's content as the parser will read it (escapes and all); undecodable text reads as no key."""
    if b"\\" not in value:
        return value.decode(errors="replace")
    try:
        text = json.loads(b'"' + value + b'"')
    except ValueError:
        return ""
    return text if isinstance(text, str) else ""


def first_element(raw: bytes) -> bytes | None:
    """The exact bytes of the first element of a JSON array body (what Segment signs for a batch)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        return None
    start = len(text) - len(text.lstrip())
    if not text[start:].startswith("["):
        return None
    index = start + 1
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    try:
        _, end = json.JSONDecoder().raw_decode(text, index)
    except (ValueError, RecursionError):
        return None
    return text[index:end].encode()


_HEX_SHA1 = re.compile(r"[0-9a-fA-F]{40}")


def signature_shaped(signature: str | None) -> bool:
    """Whether ``X-Signature`` can be a hex HMAC-SHA1 at all (40 hex digits): checked before the body is read,
    so a request without one costs nothing."""
    return signature is not None and _HEX_SHA1.fullmatch(signature.strip()) is not None


def signature_ok(raw: bytes, signature: str | None, secrets: Iterable[str]) -> bool:
    """Verify Segment's ``X-Signature``: hex HMAC-SHA1 of the body, or of a batch's first element."""
    if not signature:
        return False
    signed = first_element(raw) if raw.lstrip()[:1] == b"[" else raw
    if signed is None:
        return False
    digests = [hmac.new(secret.encode(), signed, hashlib.sha1).hexdigest() for secret in secrets if secret]
    return matches_any(signature.strip().lower(), digests)
