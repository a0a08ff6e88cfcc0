"""The console's routes. Every page but the login form needs a session; every change needs its CSRF token.

Reading goes through ``sync.ledger.browse`` (indexed, paged); changing goes through the same ledger
operations as the CLI (``ledger retry``) and the workers (pause spans in ``downtime``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web
from markupsafe import Markup

from sync import requeue
from sync.config import Config, secrets
from sync.engine.worker import Worker
from sync.http.console import session
from sync.http.console.budget import LoginBudget
from sync.http.ingress import ERROR_PAGE
from sync.ledger import browse, counters, history
from sync.ledger.store import Ledger
from sync.logs import Redactor
from sync.metrics import Metrics
from sync.model import Direction, Pending, Row, Status
from sync.wire import unreadable_fields

log = logging.getLogger("sync.http.console")

HERE = Path(__file__).parent
FAILED_LOGIN_DELAY = 1.0
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True, kw_only=True)
class Console:
    """What the pages need: the ledger, the config, this process's workers and a clock."""

    config: Config
    ledger: Ledger
    workers: Sequence[Worker]
    digest: str
    redactor: Redactor
    pages: jinja2.Environment
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    logins: LoginBudget = field(default_factory=LoginBudget)
    metrics: Metrics | None = None
    _pending: tuple[float, Pending] | None = None  # the last pending reading, shared by every open tab

    def render(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        cookie = request.cookies.get(session.COOKIE, "")
        page = self.pages.get_template(template).render(csrf=session.csrf_token(cookie) if cookie else "",
                                                    now=self.clock(), digest=self.digest, **values)
        return web.Response(text=page, status=status, content_type="text/html", headers=SECURITY_HEADERS)


CONSOLE = web.AppKey("console", Console)


def error_page(console: Console, request: web.Request, status: int, reason: str) -> web.StreamResponse:
    """A refused console request as a page with the reason and a way on (it was a bare JSON error): a 401
    leads to the login, anything else back to the page it came from (same site only) and the overview."""
    referer = request.headers.get("Referer", "")
    origin = f"{request.scheme}://{request.host}"
    back = referer.removeprefix(origin) if referer.startswith(f"{origin}/console") else None
    return console.render(request, "error.html", status=status, code=status, message=reason, back=back)


def install(app: web.Application, config: Config, ledger: Ledger, workers: Sequence[Worker], digest: str, *,
            metrics: Metrics | None = None) -> None:
    """Add the console's routes to the daemon's app (``console.enabled``)."""
    pages = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    console = Console(config=config, ledger=ledger, workers=workers, digest=digest,
                      redactor=Redactor(secrets(config)), pages=pages, metrics=metrics)
    pages.globals["static"] = _static_urls()
    pages.filters.update(age=_age, when=_when, became=_became, what=_what, shown=lambda v: _shown(console.redactor, v),
                         redact=console.redactor.redact, rows=_rows, who=_who, seconds=_seconds,
                         when_rel=lambda moment: _when_rel(moment, console.clock()))
    app[CONSOLE] = console
    app[ERROR_PAGE] = lambda request, status, reason: error_page(console, request, status, reason)
    app.router.add_get("/console/login", login_form)
    app.router.add_post("/console/login", login)
    app.router.add_static("/console/static", HERE / "static")
    for path, handler in (("/console", overview), ("/console/overview", overview_part), ("/console/rows", rows),
                          ("/console/rows/{id:\\d+}", row_detail), ("/console/person", person),
                          ("/console/groups", groups), ("/console/tail", tail), ("/console/tail/part", tail_part)):
        app.router.add_get(path, _session(handler))
    for path, handler in (("/console/logout", logout), ("/console/retry", retry), ("/console/pause", pause),
                          ("/console/resume", resume)):
        app.router.add_post(path, _session(_csrf(handler)))


# -- sessions ----------------------------------------------------------------------------------


def _session(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE]
        nonce = session.valid(request.cookies.get(session.COOKIE), console.config.console.tokens, now=time.time())
        if nonce is None or await console.ledger.cursor(session.ended(nonce)) is not None:
            if request.method == "GET" and "HX-Request" not in request.headers:
                raise web.HTTPSeeOther("/console/login")
            raise web.HTTPUnauthorized(reason="log in to the console first")
        return await handler(request)
    return guarded


async def session_form(request: web.Request) -> Any:
    """The request's form fields; a body that does not parse as a form (a multipart body without its
    boundary, say) is a 400, never a 500 with a traceback in the log."""
    try:
        form = await request.post()
    except ValueError:
        raise web.HTTPBadRequest(reason="the form could not be read") from None
    if problem := unreadable_fields(form):
        raise web.HTTPBadRequest(reason=f"form: {problem}")
    return form


def _forwarded_https(request: web.Request) -> bool:
    """Whether the client reached a TLS-terminating proxy in front of us (``X-Forwarded-Proto`` or
    ``Forwarded: proto=https``): the session cookie is ``Secure`` then, as the README says behind TLS."""
    if request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower() == "https":
        return True
    return "proto=https" in request.headers.get("Forwarded", "").lower().replace(" ", "")


def _csrf(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        form = await session_form(request)
        given = request.headers.get("X-CSRF-Token") or form.get("csrf")
        if not session.csrf_ok(request.cookies.get(session.COOKIE, ""), given if isinstance(given, str) else None):
            log.warning("console action refused: missing or wrong CSRF token", extra={"path": request.path})
            raise web.HTTPForbidden(reason="missing or wrong CSRF token: reload the page and try again")
        return await handler(request)
    return checked


async def login_form(request: web.Request) -> web.StreamResponse:
    return request.app[CONSOLE].render(request, "login.html", error=None)


async def login(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    address = request.remote or ""
    wait = console.logins.locked(address, time.monotonic())
    if wait:
        log.warning("console login refused: address locked out", extra={"remote": address})
        return console.render(request, "login.html", status=429, error=f"Too many failed logins from this address: "
                              f"try again in {int(wait) // 60 + 1} min.")
    given = (await session_form(request)).get("token")
    token = session.login(given if isinstance(given, str) else "", console.config.console.tokens)
    if token is None:
        log.warning("console login refused", extra={"remote": address})
        if console.logins.failed(address, time.monotonic()):
            log.error("console login: address locked out after repeated failures",
                      extra={"remote": address, "minutes": console.logins.lockout / 60})
        await asyncio.sleep(FAILED_LOGIN_DELAY)  # guessing costs time
        return console.render(request, "login.html", status=401, error="That token is not valid.")
    console.logins.succeeded(address)
    response = web.HTTPSeeOther("/console")
    response.set_cookie(session.COOKIE, session.open_session(token, now=time.time(),
                                                             hours=console.config.console.session_hours),
                        path="/console", httponly=True, samesite="Strict",
                        secure=request.secure or _forwarded_https(request),
                        max_age=int(console.config.console.session_hours * 3600))
    log.info("console login", extra={"remote": request.remote or ""})
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    """End the session here and on every replica (a copy of the cookie is refused from now on)."""
    console = request.app[CONSOLE]
    nonce = session.valid(request.cookies.get(session.COOKIE), console.config.console.tokens, now=time.time())
    if nonce is not None:  # (``_session`` checked it)
        expires = request.cookies[session.COOKIE].split(".")[0]  # kept: after it, the cookie is dead anyway
        await console.ledger.set_cursor(session.ended(nonce), expires, console.clock())
        log.info("console session ended (logout)")
    response = web.HTTPSeeOther("/console/login")
    response.del_cookie(session.COOKIE, path="/console")
    raise response


# -- pages -------------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    return console.render(request, "overview.html", **await _overview(console),
                          directions=[w.direction.value for w in console.workers])


async def overview_part(request: web.Request) -> web.StreamResponse:
    """The part of the overview that refreshes by itself (htmx polls it)."""
    console = request.app[CONSOLE]
    return console.render(request, "overview_part.html", **await _overview(console))


async def _overview(console: Console) -> dict[str, Any]:
    """Pending rows (read through the pending index, at most every ``PENDING_SECONDS`` for all tabs), and the
    maintained counters: deliveries and dead letters per 5 minutes, the last delivery, latency quantiles."""
    now = console.clock()
    async with console.ledger._tx() as conn:
        trends = await counters.trends(conn, now)
        pauses = await browse.pauses(conn)
    pending = await _pending(console)
    directions = [d.value for d in Direction]
    oldest = {d: (now - t).total_seconds() for d, t in pending.oldest.items()}
    since = {d: (now - t.last_delivery).total_seconds() for d, t in trends.directions.items() if t.last_delivery}
    ticks = [(i, trends.start + trends.step * i) for i in range(0, counters.TREND_BUCKETS + 1, 6)]
    return {"pending": pending, "oldest": oldest, "pauses": pauses, "trends": trends.directions, "ticks": ticks,
            "since_delivery": since, "all_directions": directions, "bars": counters.TREND_BUCKETS,
            "deletions": await console.ledger.deletions_pending()}


PENDING_SECONDS = 2.0


async def _pending(console: Console) -> Pending:
    if console._pending and time.monotonic() - console._pending[0] < PENDING_SECONDS:
        return console._pending[1]
    reading = await console.ledger.pending()
    console._pending = (time.monotonic(), reading)
    return reading


async def groups(request: web.Request) -> web.StreamResponse:
    """Problem rows grouped by direction, reason class and event name, with counts, a sample and a retry."""
    console = request.app[CONSOLE]
    wanted, problem = _filter(request.query)
    async with console.ledger._tx() as conn:
        found = await counters.groups(conn, wanted.status, console.clock(), direction=wanted.direction)
    return console.render(request, "groups.html", groups=found, wanted=wanted, problem=problem,
                          statuses=[s.value for s in browse.PROBLEMS], retryable=wanted.status in browse.RETRYABLE,
                          redecides=wanted.status in (Status.REJECTED, Status.SKIPPED))


async def tail(request: web.Request) -> web.StreamResponse:
    """The live tail: the latest events as they arrive (htmx polls ``tail_part``)."""
    console = request.app[CONSOLE]
    return console.render(request, "tail.html", **await _tail(console, request.query))


async def tail_part(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    return console.render(request, "tail_part.html", **await _tail(console, request.query))


async def _tail(console: Console, query: Any) -> dict[str, Any]:
    direction = query.get("direction") or None
    if direction not in (None, *Direction):
        direction = None
    name = _text(query, "name")
    found = await browse.tail(console.ledger, direction=Direction(direction) if direction else None, name=name)
    return {"tail": found, "direction": direction or "", "event_name": name or "",
            "query": urlencode({k: v for k, v in (("direction", direction), ("name", name)) if v})}


async def rows(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    wanted, problem = await _person(console, *_filter(request.query), request.query)
    try:
        page = await browse.problems(console.ledger, wanted, after=request.query.get("after") or None)
    except ValueError:
        raise web.HTTPBadRequest(reason="after: not a page cursor (follow the 'Older rows' link)") from None
    matching = await browse.count_matching(console.ledger, wanted, cap=COUNT_CAP)
    query = {k: v for k, v in request.query.items() if k in FILTER_FIELDS}
    done = {k: _number(request.query.get(k)) for k in ("done", "redone", "refused")}
    return console.render(request, "rows.html", page=page, wanted=wanted, matching=matching, problem=problem,
                          statuses=[s.value for s in browse.PROBLEMS], retryable=wanted.status in browse.RETRYABLE,
                          query=query, next_url=f"/console/rows?{urlencode({**query, 'after': page.next})}"
                          if page.next else None, done=done if any(v is not None for v in done.values()) else None,
                          redecides=wanted.status in (Status.REJECTED, Status.SKIPPED), capped=matching > COUNT_CAP)


async def row_detail(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    row_id = _number(request.match_info["id"])
    found = await browse.row(console.ledger, row_id) if row_id is not None else None
    if found is None:
        raise web.HTTPNotFound(reason="no such row")
    async with console.ledger._tx() as conn:
        tried = await history.of_row(conn, found.id)
    return console.render(request, "row.html", row=found, forgotten=_forgotten(found), history=tried,
                          retryable=found.status in browse.RETRYABLE and not _forgotten(found))


async def person(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    text, key = request.query.get("q", ""), request.query.get("key", "")
    after = _number(request.query.get("after")) or 0
    page = await browse.timeline(console.ledger, text, key=key, after=after) if text.strip() or key else None
    asked = {"q": text} if text else {"key": key}
    next_url = f"/console/person?{urlencode({**asked, 'after': page.next})}" if page and page.next else None
    return console.render(request, "person.html", q=text or key, page=page, next_url=next_url)


# -- actions -----------------------------------------------------------------------------------


async def retry(request: web.Request) -> web.StreamResponse:
    """Requeue the selected rows, or every row matching the filter; the first post asks to confirm."""
    console = request.app[CONSOLE]
    form = await session_form(request)
    wanted, problem = await _person(console, *_filter(form), form)
    if problem:
        raise web.HTTPBadRequest(reason=problem)
    ids = [n for n in (_number(v) for v in form.getall("id", [])) if n is not None]
    everything = form.get("all") == "1"
    if not ids and not everything:
        raise web.HTTPBadRequest(reason="select rows to retry, or choose 'all matching'")
    if form.get("confirm") != "1":
        count = await browse.count_matching(console.ledger, wanted) if everything else len(ids)
        fields = [(k, v) for k, v in form.items() if k not in ("csrf", "confirm") and isinstance(v, str)]
        return console.render(request, "confirm.html", count=count, fields=fields, everything=everything,
                              wanted=wanted, redecides=wanted.status in (Status.REJECTED, Status.SKIPPED))
    selected = requeue.matching(console.ledger, wanted) if everything else requeue.matching(console.ledger, ids=ids)
    outcome = await requeue.retry(console.ledger, console.config, console.digest, selected, console.clock())
    log.info("console retry", extra={"requeued": outcome.requeued, "redecided": outcome.redecided,
                                     "refused": len(outcome.refused), "all_matching": everything})
    for worker in console.workers:
        worker.notify()
    back = {k: v for k, v in form.items() if k in FILTER_FIELDS}
    done = {"done": outcome.requeued, "redone": sum(outcome.redecided.values()), "refused": len(outcome.refused)}
    raise web.HTTPSeeOther(f"/console/rows?{urlencode({**back, **done})}")


async def pause(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await session_form(request)
    direction = _direction(form.get("direction"))
    reason = str(form.get("reason") or "").strip()[:500] or "paused from the console"
    if form.get("confirm") != "1":  # pausing production is never one click
        return console.render(request, "pause_confirm.html", direction=direction.value, reason=reason)
    if (already := await console.ledger.held_by_operator(direction)) is not None:  # its first reason stays
        log.info("direction already paused from the console", extra={"direction": direction.value,
                                                                     "reason": already})
        raise web.HTTPSeeOther("/console")
    await console.ledger.pause(direction, reason, console.clock(), kind="manual")
    log.warning("direction paused from the console", extra={"direction": direction.value, "reason": reason})
    _recheck(console)
    raise web.HTTPSeeOther("/console")


async def resume(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    direction = _direction((await session_form(request)).get("direction"))
    await console.ledger.resume(direction, console.clock(), kind="manual")
    log.warning("direction resumed from the console", extra={"direction": direction.value})
    _recheck(console)
    raise web.HTTPSeeOther("/console")


def _recheck(console: Console) -> None:
    for worker in console.workers:
        worker.recheck()


# -- helpers -----------------------------------------------------------------------------------


def _direction(value: Any) -> Direction:
    try:
        return Direction(value)
    except ValueError:
        raise web.HTTPBadRequest(reason="direction: expected outbound or inbound") from None


def _filter(values: Any) -> tuple[browse.RowFilter, str | None]:
    """The filter a query string or form describes, and what was wrong with it (ignored parts)."""
    problems: list[str] = []
    status = values.get("status") or Status.DEAD.value
    if status not in browse.PROBLEMS:
        problems.append(f"status: one of {', '.join(browse.PROBLEMS)}")
        status = Status.DEAD.value
    direction = values.get("direction") or None
    if direction not in (None, *Direction):
        problems.append("direction: outbound or inbound")
        direction = None
    moments: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        moments[name] = _moment(values.get(name) or "")
        if moments[name] is None and values.get(name):
            problems.append(f"{name}: a date and time in UTC such as 2026-11-28T09:30")
    wanted = browse.RowFilter(status=Status(status), direction=Direction(direction) if direction else None,
                              kind=_text(values, "kind"), name=_text(values, "name"), key=_text(values, "message_id"),
                              reason=_text(values, "reason", 200), since=moments["since"], until=moments["until"])
    return wanted, "; ".join(problems) or None


COUNT_CAP = 10_000  # a list counts this far; "Retry all" counts exactly when asked to confirm
FILTER_FIELDS = ("status", "direction", "kind", "name", "message_id", "person", "class", "reason", "since", "until")
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _text(values: Any, name: str, size: int = 255) -> str | None:
    value = values.get(name)
    return value.strip()[:size] or None if isinstance(value, str) else None


def _moment(text: str) -> datetime | None:
    """An ISO 8601 time (UTC when it names no offset) between 1970 and 9999, else None."""
    try:
        moment = datetime.fromisoformat(text.strip()) if text.strip() and len(text) < 64 else None
        if moment is None:
            return None
        moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment if moment >= EARLIEST else None


def _number(value: Any) -> int | None:
    """A row id or count from a query string or form: ASCII digits that fit a BIGINT, else None."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 18:
        return int(value)
    return None


async def _person(console: Console, wanted: browse.RowFilter, problem: str | None,
                  values: Any) -> tuple[browse.RowFilter, str | None]:
    """The filter narrowed to the person ``values["person"]`` names (an email or a userId), and to the failure
    group ``values["class"]`` names (with the direction and event name)."""
    text = _text(values, "person")
    if text:
        wanted = replace(wanted, people=await browse.person_keys(console.ledger, text))
    group = _text(values, "class", 32)
    if group:
        async with console.ledger._tx() as conn:
            unclassified = await counters.unclassified_reasons(conn, wanted.status, group)
        wanted = replace(wanted, reason_class=group, reasons=unclassified)
    return wanted, problem


def _static_urls() -> Callable[[str], str]:
    """``static('x.css')``: the asset's URL with its content hash, so a new release is never served stale."""
    versions = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in (HERE / "static").iterdir()}
    return lambda name: f"/console/static/{name}?v={versions[name]}"


def _forgotten(row: Row) -> bool:
    return bool(row.user_key and row.user_key.startswith("forgotten:"))


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "none"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else ""


def _when_rel(moment: datetime | None, now: datetime) -> Markup:
    """An ISO UTC time with its relative form ("3 min ago", "in 2 min") beside it."""
    if moment is None:
        return Markup("")
    seconds = (now - moment).total_seconds()
    relative = "just now" if abs(seconds) < 1 else f"{_age(abs(seconds))} ago" if seconds > 0 else f"in {_age(-seconds)}"
    iso = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Markup('<time datetime="{0}" title="{0}">{1}</time> <span class="rel">({2})</span>').format(
        iso, _when(moment), relative)


def _seconds(value: float | None) -> str:
    """A latency as an operator reads it: "120 ms", "4.2 s", "3 min"; "none" without one."""
    if value is None:
        return "none"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 60 else _age(value)


def _rows(count: int) -> str:
    """"1 row", "4,001 rows"."""
    return f"{count:,} row" if count == 1 else f"{count:,} rows"


def _who(user_key: str) -> str:
    """A person's ordering key as an operator reads it (``u:ada`` -> "ada", ``e:a@b.c`` -> "a@b.c")."""
    return user_key.split(":", 1)[1] if user_key[:2] in ("u:", "e:") else user_key


def _what(row: Row) -> str:
    """The event in a few words: its type, and for a track, page or screen its name."""
    if row.direction is Direction.INBOUND:
        return row.kind
    payload = row.payload if isinstance(row.payload, dict) else {}
    name = payload.get("event") if row.kind == "track" else payload.get("name")
    return f"{row.kind} \u201c{name}\u201d" if isinstance(name, str) and name else row.kind


def _became(row: Row) -> str:
    """The upstream call a row became (or becomes), in a few words."""
    call = row.mapped
    if not call:
        return "decided when delivered" if row.status is Status.PENDING else ""
    if row.direction is Direction.INBOUND:
        return f"Segment track \u201c{call.get('event', '')}\u201d"
    body = call.get("body") if isinstance(call.get("body"), dict) else {}
    name = body.get("eventName") if isinstance(body, dict) else None
    text = f"Iterable {call.get('method', 'POST')} {call.get('endpoint', '')}"
    return f"{text} \u201c{name}\u201d" if isinstance(name, str) else text


def _shown(redactor: Redactor, value: Any) -> str:
    """A stored JSON value as indented text, with every configured secret masked."""
    return redactor.redact(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str))
