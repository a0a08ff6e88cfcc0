"""The console's replay page (SPEC section 15): the same selection as ``ledger replay``, a preview with the
count and a sample, a confirmation, then the replay runs in the background while the page shows progress.

Its own module and template (``replay.html``), wired by ``install`` next to the console's routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from sync.engine.worker import Sink, Worker
from sync.errors import SyncError
from sync.http.console.views import CONSOLE, _csrf, _session, session_form
from sync.iterable.sink import IterableSink
from sync.ledger.replays import ReplayFilter
from sync.model import WANTED, Direction, named_time
from sync.replay import Progress, Replayer, new_run

log = logging.getLogger("sync.http.console")

FIELDS = ("since", "until", "direction", "person", "event")


@dataclass(slots=True, kw_only=True)
class Runs:
    """The replays started from this process's console: progress, and how each ended."""

    replayer: Replayer
    progress: dict[str, Progress] = field(default_factory=dict)
    ended: dict[str, str] = field(default_factory=dict)  # run -> "done" or why it stopped
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


RUNS = web.AppKey("replay_runs", Runs)


def sinks_for(workers: Sequence[Worker]) -> dict[Direction, Sink]:
    """The delivery sinks, sharing their clients (so the daemon's rate budget); Iterable's two-queue settle
    wait is off for rows delivered long ago."""
    sinks: dict[Direction, Sink] = {}
    for worker in workers:
        sink = worker.sink
        if isinstance(sink, IterableSink):
            sink = IterableSink(sink.client, settle_seconds=0)
        sinks[worker.direction] = sink
    return sinks


def install(app: web.Application, replayer: Replayer) -> None:
    """Add ``/console/replay`` (after ``sync.http.console.install``)."""
    app[RUNS] = Runs(replayer=replayer)
    app.router.add_get("/console/replay", _session(page))
    app.router.add_post("/console/replay", _session(_csrf(start)))
    app.cleanup_ctx.append(_stop_runs)


async def _stop_runs(app: web.Application) -> AsyncIterator[None]:
    yield
    for task in list(app[RUNS].tasks):
        task.cancel()


def selection(values: Mapping[str, Any], now: datetime) -> tuple[ReplayFilter | None, str | None]:
    """The replay a form describes, or why it cannot run."""
    moments: dict[str, datetime | None] = {}
    for name in ("since", "until"):
        text = str(values.get(name) or "").strip()
        try:
            moments[name] = named_time(text) if text else None
        except ValueError:
            return None, f"{name}: {WANTED}"
    since, until = moments["since"], moments["until"] or now
    if since is None:
        return None, None
    if since >= until:
        return None, "since: must be before until"
    direction = str(values.get("direction") or "")
    if direction not in ("", *Direction):
        return None, "direction: outbound or inbound"
    return ReplayFilter(since=since, until=until, direction=Direction(direction) if direction else None,
                        person=str(values.get("person") or "").strip()[:255] or None,
                        event=str(values.get("event") or "").strip()[:255] or None), None


async def page(request: web.Request) -> web.StreamResponse:
    """The form; with a selection, its preview and the confirmation; with ``run``, that replay's progress."""
    console, runs = request.app[CONSOLE], request.app[RUNS]
    run = request.query.get("run")
    wanted, problem = selection(request.query, console.clock())
    preview = await runs.replayer.preview(wanted) if wanted else None
    ended = runs.ended.get(run or "")
    if run and ended is None and run not in runs.progress:  # not this process's (a restart, another replica)
        ended = ("not known to this process (it restarted, or another replica ran it): each row sent again "
                 "shows the replay in its history")
    return console.render(request, "replay.html", query={k: request.query.get(k, "") for k in FIELDS},
                          problem=problem, preview=preview, run=run, progress=runs.progress.get(run or ""),
                          ended=ended)


async def start(request: web.Request) -> web.StreamResponse:
    """Start the confirmed replay in the background; the page then shows its progress."""
    console, runs = request.app[CONSOLE], request.app[RUNS]
    form = await session_form(request)
    wanted, problem = selection(form, console.clock())
    if wanted is None or form.get("confirm") != "1":
        raise web.HTTPBadRequest(reason=problem or "choose a window (since) and confirm the replay")
    run = new_run()
    runs.progress[run] = Progress(run=run)
    task = asyncio.create_task(_run(runs, wanted, run), name=f"console-{run}")
    runs.tasks.add(task)
    task.add_done_callback(runs.tasks.discard)
    log.info("console replay started", extra={"run": run})
    raise web.HTTPSeeOther(f"/console/replay?{urlencode({'run': run})}")


async def _run(runs: Runs, wanted: ReplayFilter, run: str) -> None:
    def report(progress: Progress) -> None:
        runs.progress[run] = progress

    try:
        await runs.replayer.run(wanted, report=report, run=run)
        runs.ended[run] = "done"
    except SyncError as exc:
        runs.ended[run] = f"stopped: {exc}"
        log.warning("console replay stopped", extra={"run": run, "error": str(exc)})
    except Exception as exc:  # the page must not say "Running" for ever
        runs.ended[run] = f"stopped by an unexpected error ({type(exc).__name__}): see the daemon's log"
        log.exception("console replay failed", extra={"run": run})
