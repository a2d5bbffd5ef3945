"""Presenter rooms: a lecture hall follows one presenter's screen.

A presenter opens a room and gets its code (five letters, read aloud or shown as a QR code) and a
secret token that only the presenter's session holds. The presenter's page publishes where it is
(a Location: the page's path, its URL state and the stepper last moved); students follow by asking
for a version newer than the one they have, and wait (long-poll) until there is one.

    store = RoomStore()
    room = store.open()                       # Opened(code="KXPRT", token="…")
    store.publish(room.code, room.token, Location("/Convolution", "pad=0"))
    snapshot = await store.wait(room.code, since=0, timeout=25)   # version 1, at once

A room nobody heartbeats (publishes) for IDLE_SECONDS closes by itself: the presenter left. The
number of rooms and the size of what they hold are bounded (it is user input).

This is the in-process store: one server process holds every room. Its public methods are the
interface a shared store (e.g. Redis) would implement for several processes; they are quick and
never block on anything but a lock, so the server's event loop may call them directly.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

# Letters only, without I and O: nothing to confuse with 1 or 0 when a code is read off a screen.
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ"
CODE_LENGTH = 5  # 24**5 ≈ 8 million codes
# A room without a presenter's publish or heartbeat for this long is closed. The presenter's page beats
# every 15 s, but a browser throttles the timers of a tab hidden for minutes (the lecturer showing
# slides) to about once a minute: 90 s leaves room for that.
IDLE_SECONDS = 90.0
LONG_POLL_SECONDS = 25.0  # a follower's wait for a change ends after this long (and it asks again)
MAX_ROOMS = 200
MAX_FOLLOWERS = 1000  # waiting at once in one room
MAX_PATH = 200
MAX_QUERY = 4000
MAX_STEP = 1_000_000

# A page path of this app: "/" or "/Convolution" (letters, digits, _ and -; no "//", no scheme,
# no backslash), so that a follower only ever goes to a page of the same site.
PATH = re.compile(r"/(?:[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*)?")
# A query string as a browser's location.search writes it (without "?"): no spaces, quotes, angle
# brackets, backslashes or "#".
QUERY = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/?%\[\]]*")
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class RoomError(Exception):
    """Why a room request was refused; its text can be shown as it is."""


class UnknownRoom(RoomError):
    pass


class WrongToken(RoomError):
    pass


class BadLocation(RoomError, ValueError):
    pass


class TooManyRooms(RoomError):
    pass


class TooManyFollowers(RoomError):
    pass


def normalize_code(text: object) -> str | None:
    """A room code as typed or linked ("kxprt", " KXPRT ") in its canonical form, or None."""
    if not isinstance(text, str):
        return None
    code = text.strip().upper()
    if len(code) == CODE_LENGTH and all(letter in CODE_ALPHABET for letter in code):
        return code
    return None


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


@dataclass(frozen=True)
class Step:
    """Where one stepper of the page stands: its key, the URL parameter it writes, its step."""

    key: str
    param: str
    step: int

    @classmethod
    def parse(cls, payload: object) -> Step:
        if not isinstance(payload, Mapping):
            raise BadLocation("step must be an object with key, param and step")
        key, param, step = payload.get("key"), payload.get("param"), payload.get("step")
        if not (isinstance(key, str) and NAME.fullmatch(key)):
            raise BadLocation("step.key must be 1 to 64 letters, digits or ._:-")
        if not (isinstance(param, str) and NAME.fullmatch(param)):
            raise BadLocation("step.param must be 1 to 64 letters, digits or ._:-")
        if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEP:
            raise BadLocation(f"step.step must be a whole number from 0 to {MAX_STEP:,}")
        return cls(key, param, step)

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "param": self.param, "step": self.step}


@dataclass(frozen=True)
class Location:
    """Where the presenter is: a page path, its URL state (query string without "?") and the
    stepper moved last (if any)."""

    path: str
    query: str = ""
    step: Step | None = None

    @classmethod
    def parse(cls, payload: Mapping, app_params: Iterable[str] = ()) -> Location:
        """A location from a presenter's JSON; BadLocation says what is wrong. The app-wide link
        parameters (`app_params`: the presenter view, the room) are dropped from the query: they
        belong to each visitor, not to the room."""
        if not isinstance(payload, Mapping):
            raise BadLocation("a location must be an object with path, query and step")
        path, query, step = payload.get("path"), payload.get("query", ""), payload.get("step")
        if not isinstance(path, str) or len(path) > MAX_PATH or not PATH.fullmatch(path):
            raise BadLocation(f"path must be a page of this app such as /Convolution "
                              f"(at most {MAX_PATH} characters)")
        if not isinstance(query, str) or len(query) > MAX_QUERY or not QUERY.fullmatch(query.removeprefix("?")):
            raise BadLocation(f"query must be a URL query string of at most {MAX_QUERY:,} characters")
        return cls(path, without_params(query.removeprefix("?"), app_params),
                   None if step is None else Step.parse(step))

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "query": self.query, "step": self.step.as_dict() if self.step else None}

    def link(self, code: str) -> str:
        """The same page for a follower of room `code`: path?query&room=CODE."""
        return f"{self.path}?{self.query + '&' if self.query else ''}room={code}"


def without_params(query: str, names: Iterable[str]) -> str:
    """`query` without the parameters `names`, the others kept as written."""
    names = set(names)
    kept = [part for part in query.split("&") if part and unquote_plus(part.split("=", 1)[0]) not in names]
    return "&".join(kept)


@dataclass(frozen=True)
class Opened:
    """A room just opened: its public code and the presenter's secret token."""

    code: str
    token: str


@dataclass(frozen=True)
class Snapshot:
    """What a follower sees: the room's version and location (None until the first publish)."""

    code: str
    version: int
    location: Location | None

    def as_dict(self) -> dict[str, Any]:
        where = self.location.as_dict() if self.location else {"path": None, "query": "", "step": None}
        return {"code": self.code, "version": self.version, **where}


@dataclass
class _Room:
    token: str
    seen: float  # the store's clock at the presenter's last publish or heartbeat
    version: int = 0
    location: Location | None = None
    # Followers waiting for the next version: (their event loop, the future to resolve there).
    waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = field(default_factory=list)


class RoomStore:
    """Every open room of this server process. Thread-safe: the presenter's script thread opens
    and closes rooms, the server's event loop publishes and waits."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, idle_seconds: float = IDLE_SECONDS,
                 max_rooms: int = MAX_ROOMS, max_followers: int = MAX_FOLLOWERS,
                 app_params: Iterable[str] = ("present", "room")):
        self.clock = clock
        self.idle_seconds = idle_seconds
        self.max_rooms = max_rooms
        self.max_followers = max_followers
        self.app_params = tuple(app_params)
        self._rooms: dict[str, _Room] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._rooms)

    # -- the presenter ----------------------------------------------------------------------

    def open(self) -> Opened:
        with self._lock:
            self._expire()
            if len(self._rooms) >= self.max_rooms:
                raise TooManyRooms(f"All {self.max_rooms} rooms of this server are in use; try again in a minute.")
            code = new_code()
            while code in self._rooms:
                code = new_code()
            token = secrets.token_urlsafe(24)
            self._rooms[code] = _Room(token=token, seen=self.clock())
            return Opened(code, token)

    def authorize(self, code: str, token: object) -> None:
        """Raise UnknownRoom or WrongToken unless `token` is room `code`'s presenter's."""
        with self._lock:
            self._room_of_presenter(code, token)

    def publish(self, code: str, token: object, location: Location) -> int:
        """Move the room to `location`; returns its version (unchanged for the same location, which
        is then just a heartbeat)."""
        with self._lock:
            room = self._room_of_presenter(code, token)
            room.seen = self.clock()
            if location != room.location:
                room.location = location
                room.version += 1
                self._wake(room)
            return room.version

    def heartbeat(self, code: str, token: object) -> int:
        """The presenter is still there; returns the room's version."""
        with self._lock:
            room = self._room_of_presenter(code, token)
            room.seen = self.clock()
            return room.version

    def close(self, code: str, token: object) -> None:
        with self._lock:
            self._room_of_presenter(code, token)
            self._wake(self._rooms.pop(code))

    # -- followers ---------------------------------------------------------------------------

    def get(self, code: str) -> Snapshot | None:
        """The room's current state, or None for a room that is not open."""
        with self._lock:
            self._expire()
            room = self._rooms.get(code)
            return None if room is None else Snapshot(code, room.version, room.location)

    async def wait(self, code: str, since: int, timeout: float) -> Snapshot | None:
        """The room's state as soon as its version differs from `since` (a newer one; or an older
        one, for a follower that kept a version from before a restart), else after `timeout`
        seconds its unchanged state. None for a room that is not open or closes meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            with self._lock:
                self._expire()
                room = self._rooms.get(code)
                if room is None:
                    return None
                if room.version != since or loop.time() >= deadline:
                    return Snapshot(code, room.version, room.location)
                if len(room.waiters) >= self.max_followers:
                    raise TooManyFollowers(f"Room {code} has {self.max_followers} followers waiting already.")
                waiter = (loop, loop.create_future())
                room.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter[1], deadline - loop.time())
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    if waiter in room.waiters:
                        room.waiters.remove(waiter)

    # -- internals ---------------------------------------------------------------------------

    def _room_of_presenter(self, code: str, token: object) -> _Room:
        self._expire()
        room = self._rooms.get(code)
        if room is None:
            raise UnknownRoom(f"Room {code} is not open.")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), room.token.encode()):
            raise WrongToken(f"Only room {code}'s presenter can move it.")
        return room

    def _expire(self) -> None:
        """Close the rooms whose presenter has been silent for idle_seconds (the lock is held)."""
        now = self.clock()
        for code in [code for code, room in self._rooms.items() if now - room.seen > self.idle_seconds]:
            self._wake(self._rooms.pop(code))

    @staticmethod
    def _wake(room: _Room) -> None:
        """Resolve every waiter's future in its own event loop (this may run on another thread)."""
        for loop, future in room.waiters:
            try:
                loop.call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: its waiter is gone
                pass
        room.waiters.clear()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():  # a waiter that timed out has cancelled its future
        future.set_result(None)
