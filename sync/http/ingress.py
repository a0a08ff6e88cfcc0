"""The HTTP interface (SPEC section 3): an app factory, routes in one place, one error middleware."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from sync import masking
from sync.config import Config, secrets
from sync.engine.intake import Intake, Rejection, inbound_row, outbound_rows
from sync.errors import InvalidEvent, LedgerError, LedgerNotMigrated, Overloaded, Unauthenticated
from sync.http import auth
from sync.logs import Redactor
from sync.metrics import Metrics
from sync.model import Status
from sync.outbound import mapper as outbound
from sync.segment import timestamps
from sync.segment.spec import merge_batch_defaults
from sync.wire import TooMany, array_slices, strict_loads, unreadable_fields

log = logging.getLogger("sync.http.ingress")

SEGMENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
BODY_READ_SECONDS = 30.0
# events in one request (a /v1/batch "batch", a /segment/webhook array): more is a 413. Segment's Webhooks
# (Actions) batches hold up to 4,000 events and a 1 MiB /v1/batch of small events about 16,000.
MAX_EVENTS_PER_REQUEST = 20_000
SLICE = 200  # events parsed or mapped between two yields to the event loop (a few milliseconds of CPU)


@dataclass(slots=True, kw_only=True)
class Health:
    """What /readyz reports: a readiness check (O(1)), paused directions, and whether we are draining."""

    check: Callable[[], Awaitable[None]]
    paused: Callable[[], Mapping[str, str]] = dict
    draining: bool = False
    detail: Callable[[], Mapping[str, Any]] = dict  # more to show, not to judge by (the webhook drift check)
    ingest_failing: tuple[float, str] | None = None  # when (monotonic) and why the last ingest could not commit

    def ingest_failure(self) -> str | None:
        """Why ingest could not commit, if it failed in the last INGEST_FAILURE_SECONDS and has not succeeded since
        (the ledger may answer a probe while ingest cannot commit: a lock held by a stalled replica)."""
        if self.ingest_failing is None or time.monotonic() - self.ingest_failing[0] > INGEST_FAILURE_SECONDS:
            return None
        return self.ingest_failing[1]


REDACTOR = web.AppKey("redactor", Redactor)
INTAKE = web.AppKey("intake", Intake)
CONFIG = web.AppKey("config", Config)
METRICS = web.AppKey("metrics", Metrics)
HEALTH = web.AppKey("health", Health)
OPTIONS = web.AppKey("options", outbound.Options)
DIGEST = web.AppKey("digest", str)


def create_app(config: Config, intake: Intake, metrics: Metrics, health: Health, *, options: outbound.Options,
               digest: str) -> web.Application:
    """The HTTP surface. ``options`` and ``digest`` are the outbound mapper's options and the mapping digest,
    built once by the wiring (``sync.app.build``)."""
    limit = max(config.server.max_body_bytes, config.server.webhook_max_body_bytes)
    app = web.Application(client_max_size=limit, middlewares=[_errors])
    app[CONFIG], app[INTAKE], app[METRICS], app[HEALTH] = config, intake, metrics, health
    app[REDACTOR] = Redactor(secrets(config))
    app[OPTIONS], app[DIGEST] = options, digest
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    if config.outbound.enabled:
        app.router.add_post("/v1/batch", segment_batch)
        app.router.add_post("/v1/import", segment_batch)
        for kind in SEGMENT_TYPES:
            app.router.add_post(f"/v1/{kind}", segment_single)
        app.router.add_post("/segment/webhook", segment_webhook)
    if config.inbound.enabled:
        app.router.add_post("/iterable/webhook", iterable_webhook)
    return app


def _fail(status: int, error: str) -> web.Response:
    return web.json_response({"success": False, "error": error}, status=status)


LEDGER_RETRY_AFTER_SECONDS = 5  # a ledger outage (slow, locked or out of connections): ask clients to come back
INGEST_FAILURE_SECONDS = 2 * LEDGER_RETRY_AFTER_SECONDS  # /readyz reports a failed ingest this long


class ErrorPage(Protocol):
    """The console's error page (``sync.http.console.views.error_page``): set when the console is on."""

    def __call__(self, request: web.Request, status: int, reason: str) -> web.StreamResponse: ...


ERROR_PAGE = web.AppKey("error_page", ErrorPage)
INGEST_PREFIXES = ("/v1/", "/segment/", "/iterable/")  # the routes that record events


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                  ) -> web.StreamResponse:
    if request.method == "POST" and request.app[HEALTH].draining:
        return _fail(503, "shutting down; retry shortly")
    if problem := unreadable_fields(request.query):
        return _fail(400, f"query string: {problem}")
    ingest = request.method == "POST" and request.path.startswith(INGEST_PREFIXES)
    try:
        response = await handler(request)
    except InvalidEvent as exc:
        return _fail(400, str(exc))
    except Unauthenticated as exc:
        return _fail(401, str(exc))
    except LedgerError as exc:
        if ingest:  # only a refused event is an ingest failure (/readyz reports it); a console page is not
            log.error("ingest refused: the ledger cannot commit", extra={"error": str(exc), "path": request.path})
            request.app[HEALTH].ingest_failing = (time.monotonic(), str(exc))
        else:
            log.warning("request failed: the ledger is unavailable", extra={"error": str(exc), "path": request.path})
        response = _fail(503, "the ledger cannot commit right now; retry")
        response.headers["Retry-After"] = str(LEDGER_RETRY_AFTER_SECONDS)
        return response
    except Overloaded as exc:
        response = _fail(503, f"overloaded: {exc}")
        response.headers["Retry-After"] = "1"
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        page = request.app.get(ERROR_PAGE)
        if page is not None and request.path.startswith("/console") and "HX-Request" not in request.headers:
            return page(request, exc.status, exc.reason)  # an operator's browser gets a page, not JSON
        return _fail(exc.status, exc.reason)
    if ingest and response.status < 300:
        request.app[HEALTH].ingest_failing = None
    return response


# -- health ------------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    health = request.app[HEALTH]
    without_secrets = request.app[REDACTOR].redact

    def redact(text: str) -> str:  # /readyz needs no login: no secret and no email (a pause's reason is free text)
        return masking.mask(without_secrets(text))

    paused = {direction: redact(reason) for direction, reason in health.paused().items()}
    reason = "shutting down" if health.draining else None
    if reason is None:
        try:
            await health.check()
        except LedgerNotMigrated as exc:
            reason = str(exc)
        except LedgerError as exc:
            reason = f"ledger: {exc}"
    if reason is None and (failure := health.ingest_failure()):  # a probe answers, yet ingest cannot commit
        reason = f"ledger: ingest cannot commit: {failure}"
    if reason:
        return web.json_response({"ready": False, "reason": redact(reason), "paused": paused, **health.detail()},
                                 status=503)
    return web.json_response({"ready": True, "paused": paused, **health.detail()})


async def metrics_view(request: web.Request) -> web.Response:
    """The gauges come from the periodic job's cache: a scrape never reads the ledger."""
    return web.Response(body=request.app[METRICS].render(), content_type="text/plain", charset="utf-8",
                        headers={"X-Content-Type-Options": "nosniff"})


# -- bodies ------------------------------------------------------------------------------------


async def _body(request: web.Request, limit: int | None = None) -> bytes:
    """The raw body, refused with 413 as soon as it passes ``limit`` (announced or streamed)."""
    limit = limit or request.app[CONFIG].server.max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    try:
        return await asyncio.wait_for(_read_at_most(request, limit), BODY_READ_SECONDS)
    except TimeoutError:
        raise web.HTTPRequestTimeout(reason="body not received in time") from None
    except RequestPayloadError:  # a gzip or deflate body that does not decompress
        # nothing more is read of it: without this aiohttp reads on after the answer, meets the same error and
        # logs it as an unhandled exception; the connection closes after the answer (its stream is broken)
        request.content.feed_eof()
        if request.protocol is not None:
            request.protocol.close()
        encoding = request.headers.get("Content-Encoding", "")[:20]
        raise InvalidEvent(f"body: cannot be decoded as its Content-Encoding ({encoding!r}) says") from None


async def _read_at_most(request: web.Request, limit: int) -> bytes:
    parts, size = [], 0
    async for part in request.content.iter_chunked(1 << 16):
        size += len(part)
        if size > limit:
            raise _too_large(limit, size)
        parts.append(part)
    return b"".join(parts)


def _too_large(limit: int, size: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size, reason=f"body larger than {limit} bytes")


def _json(raw: bytes) -> Any:
    try:
        return strict_loads(raw)
    except (ValueError, RecursionError):
        raise InvalidEvent("body: not valid JSON") from None


async def _json_array(raw: bytes) -> list[Any]:
    """A JSON array body, parsed ``SLICE`` elements at a time with a yield between (a 16 MiB array must not hold
    the event loop), and refused with 413 past ``MAX_EVENTS_PER_REQUEST`` elements without parsing the rest."""
    try:
        text = raw.decode()
        elements: list[Any] = []
        for chunk in array_slices(text, limit=MAX_EVENTS_PER_REQUEST, size=SLICE):
            elements += chunk
            await asyncio.sleep(0)
    except TooMany:
        raise _too_many(MAX_EVENTS_PER_REQUEST + 1) from None
    except (ValueError, RecursionError):
        raise InvalidEvent("body: not valid JSON") from None
    return elements


def _too_many(count: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(max_size=MAX_EVENTS_PER_REQUEST, actual_size=count,
                                         reason=f"more than {MAX_EVENTS_PER_REQUEST} events in one request: "
                                                "send them in several")


def _accepted(rejected: list[Rejection]) -> web.Response:
    body: dict[str, Any] = {"success": True}
    if rejected:
        body["rejected"] = [{"index": r.index, "error": r.error} for r in rejected]
    return web.json_response(body)


# -- outbound: Segment -> Iterable ---------------------------------------------------------------


async def _write_keyed_body(request: web.Request) -> Any:
    """The parsed body of a Tracking API call, once its write key (Basic username, else ``writeKey``) passed.

    A Basic header is checked before the body is read; a key only in the body by a bounded scan before the
    body is parsed, then again after.
    """
    keys = request.app[CONFIG].outbound.write_keys
    key = auth.basic_username(request.headers.get("Authorization"))
    if key is not None and not auth.matches_any(key, keys):  # refused before a byte of the body is read
        raise Unauthenticated("write key")
    raw = await _body(request)
    if key is None and not auth.body_key_plausible(raw, keys):  # bounded work before an expensive parse
        raise Unauthenticated("write key")
    body = _json(raw)
    if key is None:
        key = body.get("writeKey") if isinstance(body, dict) and isinstance(body.get("writeKey"), str) else None
        if key is None or not auth.matches_any(key, keys):
            raise Unauthenticated("write key")
    return body


async def segment_batch(request: web.Request) -> web.Response:
    body = await _write_keyed_body(request)
    if not isinstance(body, dict) or not isinstance(body.get("batch"), list):
        raise InvalidEvent("batch: expected a list of events")
    if len(body["batch"]) > MAX_EVENTS_PER_REQUEST:
        raise _too_many(len(body["batch"]))
    events = [merge_batch_defaults(e, body.get("context"), body.get("integrations")) if isinstance(e, dict) else e
              for e in body["batch"]]
    now = request.app[INTAKE].clock()  # Segment's receivedAt; the batch's sentAt corrects device clocks
    events = [timestamps.stamp(e, received_at=now, sent_at=body.get("sentAt"), overwrite=True) for e in events]
    return await _record_outbound(request, events, single=False)


async def segment_single(request: web.Request) -> web.Response:
    body = await _write_keyed_body(request)
    if not isinstance(body, dict):
        raise InvalidEvent("body: expected a JSON object")
    event = {k: v for k, v in body.items() if k != "writeKey"}
    event["type"] = request.path.rsplit("/", 1)[-1]
    event = timestamps.stamp(event, received_at=request.app[INTAKE].clock(), overwrite=True)
    return await _record_outbound(request, [event], single=True)


async def segment_webhook(request: web.Request) -> web.Response:
    outbound_config = request.app[CONFIG].outbound
    if not auth.signature_shaped(request.headers.get("X-Signature")):  # refused before the body is read
        raise Unauthenticated("X-Signature")
    raw = await _body(request, request.app[CONFIG].server.webhook_max_body_bytes)
    if not auth.signature_ok(raw, request.headers.get("X-Signature"), outbound_config.shared_secrets):
        raise Unauthenticated("X-Signature")
    body = await _json_array(raw) if raw.lstrip()[:1] == b"[" else _json(raw)
    if isinstance(body, list) and len(body) > MAX_EVENTS_PER_REQUEST:
        raise _too_many(len(body))
    if isinstance(body, list) and len(body) > 1 and not outbound_config.accept_unsigned_array_tails:
        raise Unauthenticated("X-Signature covers only the first element of an array and "
                              "outbound.accept_unsigned_array_tails is false: a signature for every element")
    now = request.app[INTAKE].clock()  # events Segment already stamped keep its receivedAt
    if isinstance(body, list):
        return await _record_outbound(request, [timestamps.stamp(e, received_at=now, overwrite=False) for e in body],
                                      single=False)
    return await _record_outbound(request, [timestamps.stamp(body, received_at=now, overwrite=False)], single=True)


async def _record_outbound(request: web.Request, events: list[Any], *, single: bool) -> web.Response:
    """Map ``SLICE`` events at a time, yielding between slices, then record (``Intake`` commits large requests
    in slices too): a request of thousands of events never holds the event loop for long."""
    rows, rejected = [], []
    for start in range(0, len(events), SLICE):
        if start:
            await asyncio.sleep(0)
        part, refused = outbound_rows(events[start:start + SLICE], request.app[OPTIONS], request.app[DIGEST],
                                      request.app[INTAKE].guard)
        rows += part
        rejected += [Rejection(index=r.index + start, error=r.error) for r in refused]
    if single and rejected:
        raise InvalidEvent(rejected[0].error)
    await request.app[INTAKE].record(rows)
    return _accepted(rejected)


# -- inbound: Iterable -> Segment ----------------------------------------------------------------


async def iterable_webhook(request: web.Request) -> web.Response:
    config = request.app[CONFIG].inbound
    token = request.headers.get(config.auth_header)
    if token is None or not auth.matches_any(token, config.auth_tokens):
        raise Unauthenticated(f"header {config.auth_header}")
    body = _json(await _body(request))
    intake = request.app[INTAKE]
    row = inbound_row(body, event_names=config.event_names, now=intake.clock(), mapping=config.mapping,
                      digest=request.app[DIGEST])
    await intake.record([row])
    if row.status is Status.REJECTED:  # kept as evidence, and refused as SPEC section 3 says for one event
        raise InvalidEvent(row.reason or "the webhook could not be read")
    return _accepted([])
