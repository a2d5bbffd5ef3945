"""The HTTP side of presenter rooms (cnnviz.rooms), served next to the pages (ui.serving.ROUTES).

    GET  /api/rooms/CODE?since=N   the room as JSON as soon as its version is not N (long-poll, at
                                   most LONG_POLL_SECONDS, then 204 "no change"); 404 once it closed
    POST /api/rooms/CODE           the presenter publishes {token, path, query, step} (or only
                                   {token}: a heartbeat); 403 wrong token, 404 unknown room,
                                   400 bad location, 413 too large
    GET  /r/CODE                   a student's link: 302 to the presenter's page with room=CODE

ROOMS is the store; these handlers run in the server's event loop: they never block (the store's calls are quick; a
long-poll awaits).
"""

from __future__ import annotations

import html
import json
import os

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from cnnviz.rooms import (
    LONG_POLL_SECONDS,
    BadLocation,
    Location,
    RoomStore,
    TooManyFollowers,
    UnknownRoom,
    WrongToken,
    normalize_code,
)
from ui.state import APP_PARAMS

def make_room_store():
    """The rooms of this server: in Redis when CNNVIZ_REDIS_URL is set (several app servers behind a proxy
    then share them), else in this process."""
    url = os.environ.get("CNNVIZ_REDIS_URL", "").strip()
    if url:
        from cnnviz.rooms_redis import RedisRoomStore

        return RedisRoomStore(url, app_params=APP_PARAMS)
    return RoomStore(app_params=APP_PARAMS)


# Every room this server serves: the routes below and the pages (ui.room) share it.
ROOMS = make_room_store()

MAX_BODY = 8 * 1024  # bytes of a publish; a location is at most ~4.3 KB of text
NO_STORE = {"Cache-Control": "no-store"}


def room_routes(store: RoomStore, long_poll_seconds: float = LONG_POLL_SECONDS) -> list[Route]:
    """The routes of `store`'s rooms (tests pass their own store and a short long-poll)."""

    async def follow(request: Request) -> Response:
        code = normalize_code(request.path_params["code"])
        try:
            since = int(request.query_params.get("since", "0"))
        except ValueError:
            return _error(400, "since must be a whole number (the version you have)")
        if code is None:
            return _error(404, "There is no room with this code.")
        try:
            snapshot = await store.wait(code, since, long_poll_seconds)
        except TooManyFollowers as error:
            return _error(503, str(error), {"Retry-After": "5"})
        if snapshot is None:
            return _error(404, f"Room {code} has ended.")
        if snapshot.version == since:
            return Response(status_code=204, headers=NO_STORE)
        return JSONResponse(snapshot.as_dict(), headers=NO_STORE)

    async def publish(request: Request) -> Response:
        code = normalize_code(request.path_params["code"])
        if code is None:
            return _error(404, "There is no room with this code.")
        body = await _read_body(request)
        if body is None:
            return _error(413, f"A room's location is at most {MAX_BODY:,} bytes.")
        try:
            payload = json.loads(body)
        except ValueError:
            return _error(400, "The body must be JSON.")
        if not isinstance(payload, dict):
            return _error(400, "The body must be a JSON object.")
        try:
            store.authorize(code, payload.get("token"))  # before anything else is looked at
            if "path" not in payload:
                return JSONResponse({"version": store.heartbeat(code, payload["token"])}, headers=NO_STORE)
            location = Location.parse(payload, store.app_params)
            return JSONResponse({"version": store.publish(code, payload["token"], location)}, headers=NO_STORE)
        except UnknownRoom as error:
            return _error(404, str(error))
        except WrongToken as error:
            return _error(403, str(error))
        except BadLocation as error:
            return _error(400, str(error))

    async def student_link(request: Request) -> Response:
        code = normalize_code(request.path_params["code"])
        snapshot = store.get(code) if code else None
        if snapshot is None:
            return _room_not_open(request.path_params["code"])
        target = snapshot.location.link(code) if snapshot.location else f"/?room={code}"
        return RedirectResponse(target, status_code=302, headers=NO_STORE)

    return [
        Route("/api/rooms/{code}", follow, methods=["GET"]),
        Route("/api/rooms/{code}", publish, methods=["POST"]),
        Route("/r/{code}", student_link, methods=["GET"]),
    ]


async def _read_body(request: Request) -> bytes | None:
    """The request's body, or None once it passes MAX_BODY (the rest is not read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    return bytes(body)


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers={**NO_STORE, **(headers or {})})


def _room_not_open(typed: str) -> HTMLResponse:
    """A small page for a student whose link names no open room (ended, or mistyped)."""
    code = html.escape(typed[:20])
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Room not open · cnnviz</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#111827}}
a{{color:#1f6feb}}</style></head>
<body><h1>Room {code} is not open</h1>
<p>The presenter has closed it, or the code is mistyped. Check the code on the screen, or explore on your own.</p>
<p><a href="/">Open cnnviz</a></p></body></html>"""
    return HTMLResponse(page, status_code=404, headers=NO_STORE)
