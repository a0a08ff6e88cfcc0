"""The ingest baseline: a bare aiohttp app that reads and parses the same bodies and answers 200, storing nothing.

``python -m bench.bare PORT``
"""

from __future__ import annotations

import json
import sys

from aiohttp import web


async def accept(request: web.Request) -> web.Response:
    body = json.loads(await request.read())
    assert isinstance(body, dict)
    return web.json_response({"success": True})


def main() -> None:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v1/batch", accept)
    app.router.add_post("/v1/track", accept)
    app.router.add_get("/healthz", lambda _: web.json_response({"ok": True}))  # type: ignore[arg-type,return-value]
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)


if __name__ == "__main__":
    main()
