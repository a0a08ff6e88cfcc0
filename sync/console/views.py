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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from sync.config import Config, secrets
from sync.console import session
from sync.delivery import Worker
from sync.ledger import Direction, Ledger, Row, Status, browse
from sync.logs import Redactor

log = logging.getLogger("sync.console")

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

    def render(self, request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
        cookie = request.cookies.get(session.COOKIE, "")
        page = self.pages.get_template(name).render(csrf=session.csrf_token(cookie) if cookie else "",
                                                    now=self.clock(), digest=self.digest, **values)
        return web.Response(text=page, status=status, content_type="text/html", headers=SECURITY_HEADERS)


CONSOLE = web.AppKey("console", Console)


def install(app: web.Application, config: Config, ledger: Ledger, workers: Sequence[Worker], digest: str) -> None:
    """Add the console's routes to the daemon's app (``console.enabled``)."""
    pages = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined)
    console = Console(config=config, ledger=ledger, workers=workers, digest=digest,
                      redactor=Redactor(secrets(config)), pages=pages)
    pages.globals["static"] = _static_urls()
    pages.filters.update(age=_age, when=_when, became=_became, what=_what, shown=lambda v: _shown(console.redactor, v),
                         redact=console.redactor.redact)
    app[CONSOLE] = console
    app.router.add_get("/console/login", login_form)
    app.router.add_post("/console/login", login)
    app.router.add_static("/console/static", HERE / "static")
    for path, handler in (("/console", overview), ("/console/overview", overview_part), ("/console/rows", rows),
                          ("/console/rows/{id:\\d+}", row_detail), ("/console/person", person)):
        app.router.add_get(path, _session(handler))
    for path, handler in (("/console/logout", logout), ("/console/retry", retry), ("/console/pause", pause),
                          ("/console/resume", resume)):
        app.router.add_post(path, _session(_csrf(handler)))


# -- sessions ----------------------------------------------------------------------------------


def _session(handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        console = request.app[CONSOLE]
        if session.valid(request.cookies.get(session.COOKIE), console.config.console.tokens,
                         now=time.time()) is None:
            if request.method == "GET" and "HX-Request" not in request.headers:
                raise web.HTTPSeeOther("/console/login")
            raise web.HTTPUnauthorized(reason="log in to the console first")
        return await handler(request)
    return guarded


def _csrf(handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        form = await request.post()
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
    given = (await request.post()).get("token")
    token = session.login(given if isinstance(given, str) else "", console.config.console.tokens)
    if token is None:
        log.warning("console login refused", extra={"remote": request.remote or ""})
        await asyncio.sleep(FAILED_LOGIN_DELAY)  # guessing costs time
        return console.render(request, "login.html", status=401, error="That token is not valid.")
    response = web.HTTPSeeOther("/console")
    response.set_cookie(session.COOKIE, session.open_session(token, now=time.time(),
                                                             hours=console.config.console.session_hours),
                        path="/console", httponly=True, samesite="Strict", secure=request.secure,
                        max_age=int(console.config.console.session_hours * 3600))
    log.info("console login", extra={"remote": request.remote or ""})
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
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
    now = console.clock()
    seen = await browse.overview(console.ledger, now)
    directions = [d.value for d in Direction]
    counts = {d: {s.value: seen.counts.get((d, s.value), 0) for s in Status} for d in directions}
    oldest = {d: (now - t).total_seconds() for d, t in seen.oldest_pending.items()}
    return {"counts": counts, "oldest": oldest, "pauses": seen.pauses, "delivered": seen.delivered,
            "statuses": [s.value for s in Status], "all_directions": directions,
            "deletions": await console.ledger.deletions_pending()}


async def rows(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    wanted, problem = _filter(request.query)
    page = await browse.problems(console.ledger, wanted, after=request.query.get("after") or None)
    matching = await browse.count_matching(console.ledger, wanted)
    query = {k: v for k, v in request.query.items() if k not in ("after", "done")}
    return console.render(request, "rows.html", page=page, wanted=wanted, matching=matching, problem=problem,
                          statuses=[s.value for s in browse.PROBLEMS], retryable=wanted.status in browse.RETRYABLE,
                          query=query, next_url=f"/console/rows?{urlencode({**query, 'after': page.next})}"
                          if page.next else None, done=request.query.get("done"))


async def row_detail(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    found = await browse.row(console.ledger, int(request.match_info["id"]))
    if found is None:
        raise web.HTTPNotFound(reason="no such row")
    return console.render(request, "row.html", row=found, forgotten=_forgotten(found),
                          retryable=found.status in browse.RETRYABLE and not _forgotten(found))


async def person(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    text, key = request.query.get("q", ""), request.query.get("key", "")
    after = int(request.query["after"]) if request.query.get("after", "").isdigit() else 0
    page = await browse.timeline(console.ledger, text, key=key, after=after) if text.strip() or key else None
    asked = {"q": text} if text else {"key": key}
    next_url = f"/console/person?{urlencode({**asked, 'after': page.next})}" if page and page.next else None
    return console.render(request, "person.html", q=text or key, page=page, next_url=next_url)


# -- actions -----------------------------------------------------------------------------------


async def retry(request: web.Request) -> web.StreamResponse:
    """Requeue the selected rows, or every row matching the filter; the first post asks to confirm."""
    console = request.app[CONSOLE]
    form = await request.post()
    wanted, problem = _filter(form)
    if problem:
        raise web.HTTPBadRequest(reason=problem)
    ids = [int(v) for v in form.getall("id", []) if isinstance(v, str) and v.isdigit()]
    everything = form.get("all") == "1"
    if not ids and not everything:
        raise web.HTTPBadRequest(reason="select rows to retry, or choose 'all matching'")
    if form.get("confirm") != "1":
        count = await browse.count_matching(console.ledger, wanted) if everything else len(ids)
        fields = [(k, v) for k, v in form.items() if k not in ("csrf", "confirm") and isinstance(v, str)]
        return console.render(request, "confirm.html", count=count, fields=fields, everything=everything,
                              wanted=wanted)
    now = console.clock()
    count = (await browse.requeue_matching(console.ledger, wanted, now) if everything
             else await browse.requeue_ids(console.ledger, ids, now))
    log.info("console retry: rows requeued", extra={"rows": count, "all_matching": everything})
    for worker in console.workers:
        worker.notify()
    back = {k: v for k, v in form.items() if k in ("status", "direction", "kind", "reason", "since", "until")}
    raise web.HTTPSeeOther(f"/console/rows?{urlencode({**back, 'done': count})}")


async def pause(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    form = await request.post()
    direction = _direction(form.get("direction"))
    reason = str(form.get("reason") or "").strip()[:500] or "paused from the console"
    await console.ledger.pause(direction, reason, console.clock(), kind="manual")
    log.warning("direction paused from the console", extra={"direction": direction.value, "reason": reason})
    _recheck(console)
    raise web.HTTPSeeOther("/console")


async def resume(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    direction = _direction((await request.post()).get("direction"))
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
        text = values.get(name) or ""
        try:
            moment = datetime.fromisoformat(text) if text else None
            moments[name] = moment.replace(tzinfo=UTC) if moment and moment.tzinfo is None else moment
        except ValueError:
            problems.append(f"{name}: a date and time such as 2026-11-28T09:30")
            moments[name] = None
    wanted = browse.RowFilter(status=Status(status), direction=Direction(direction) if direction else None,
                              kind=(values.get("kind") or "").strip()[:255] or None,
                              reason=(values.get("reason") or "").strip()[:200] or None, **moments)
    return wanted, "; ".join(problems) or None


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
