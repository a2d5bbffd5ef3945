"""Presenter rooms in Redis: the same interface as cnnviz.rooms.RoomStore, shared by several app servers.

Behind a proxy, a presenter's page may be served by one app server and a student's by another; the
room lives in Redis so that both see it. Keys (all expire on their own when the presenter is silent
for idle_seconds, so a crashed server leaves nothing behind):

    cnnviz:room:<CODE>          hash {token, version, location (JSON)}
    cnnviz:rooms                sorted set: code → time of the presenter's last sign of life (for the limit)

Publishing is one Lua script (check the token, bump the version only when the location changed,
refresh the expiry), so two servers never hand out the same version twice. A follower's long-poll
asks Redis for the version every POLL_SECONDS: cheap (a hall of 100 is ~500 small reads a second)
and it needs no connection per follower.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterable

from .rooms import (IDLE_SECONDS, MAX_FOLLOWERS, MAX_ROOMS, Location, Opened, Snapshot, Step, TooManyFollowers,
                    TooManyRooms, UnknownRoom, WrongToken, new_code)

PREFIX = "cnnviz:room:"
INDEX = "cnnviz:rooms"
POLL_SECONDS = 0.2

# KEYS[1] the room; ARGV: token, location JSON, idle seconds. Returns the version, -1 unknown, -2 wrong token.
_PUBLISH = """
local token = redis.call('HGET', KEYS[1], 'token')
if not token then return -1 end
if token ~= ARGV[1] then return -2 end
local version = tonumber(redis.call('HGET', KEYS[1], 'version'))
if ARGV[2] ~= '' and redis.call('HGET', KEYS[1], 'location') ~= ARGV[2] then
  version = version + 1
  redis.call('HSET', KEYS[1], 'location', ARGV[2], 'version', version)
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return version
"""


def _location_json(location: Location) -> str:
    return json.dumps(location.as_dict(), sort_keys=True, separators=(",", ":"))


def _location(text: str | bytes | None) -> Location | None:
    if not text:
        return None
    data = json.loads(text)
    step = data.get("step")
    return Location(data["path"], data.get("query", ""), Step(**step) if step else None)


class RedisRoomStore:
    """Rooms in Redis (a URL such as redis://127.0.0.1:6379/0). Thread-safe: redis-py's client is."""

    def __init__(self, url: str, *, idle_seconds: float = IDLE_SECONDS, max_rooms: int = MAX_ROOMS,
                 max_followers: int = MAX_FOLLOWERS, app_params: Iterable[str] = ("present", "room")):
        import redis

        self.url = url
        self.idle_seconds = idle_seconds
        self.max_rooms = max_rooms
        self.max_followers = max_followers
        self.app_params = tuple(app_params)
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self._publish = self.redis.register_script(_PUBLISH)
        self._async: dict[int, object] = {}  # one asyncio client per event loop
        self._waiting: dict[str, int] = {}  # followers waiting in this process, per room

    def _key(self, code: str) -> str:
        return PREFIX + code

    def _ttl(self) -> int:
        return max(1, int(round(self.idle_seconds)))

    def __len__(self) -> int:
        self._forget_silent()
        return int(self.redis.zcard(INDEX))

    def _forget_silent(self) -> None:
        self.redis.zremrangebyscore(INDEX, "-inf", time.time() - self.idle_seconds)

    # -- the presenter ----------------------------------------------------------------------

    def open(self) -> Opened:
        self._forget_silent()
        if self.redis.zcard(INDEX) >= self.max_rooms:
            raise TooManyRooms(f"All {self.max_rooms} rooms are in use; try again in a minute.")
        token = secrets.token_urlsafe(24)
        while True:
            code = new_code()
            if self.redis.hsetnx(self._key(code), "token", token):
                break
        pipe = self.redis.pipeline()
        pipe.hset(self._key(code), mapping={"version": 0, "location": ""})
        pipe.expire(self._key(code), self._ttl())
        pipe.zadd(INDEX, {code: time.time()})
        pipe.execute()
        return Opened(code, token)

    def _run_publish(self, code: str, token: object, location_json: str) -> int:
        if not isinstance(token, str):
            raise WrongToken(f"Only room {code}'s presenter can move it.")
        version = int(self._publish(keys=[self._key(code)], args=[token, location_json, self._ttl()]))
        if version == -1:
            raise UnknownRoom(f"Room {code} is not open.")
        if version == -2:
            raise WrongToken(f"Only room {code}'s presenter can move it.")
        self.redis.zadd(INDEX, {code: time.time()})
        return version

    def authorize(self, code: str, token: object) -> None:
        stored = self.redis.hget(self._key(code), "token")
        if stored is None:
            raise UnknownRoom(f"Room {code} is not open.")
        if not isinstance(token, str) or not secrets.compare_digest(token, stored):
            raise WrongToken(f"Only room {code}'s presenter can move it.")

    def publish(self, code: str, token: object, location: Location) -> int:
        return self._run_publish(code, token, _location_json(location))

    def heartbeat(self, code: str, token: object) -> int:
        return self._run_publish(code, token, "")

    def close(self, code: str, token: object) -> None:
        self.authorize(code, token)
        self.redis.delete(self._key(code))
        self.redis.zrem(INDEX, code)

    # -- followers ---------------------------------------------------------------------------

    def get(self, code: str) -> Snapshot | None:
        version, location = self.redis.hmget(self._key(code), "version", "location")
        if version is None:
            return None
        return Snapshot(code, int(version), _location(location))

    def _client(self):
        import redis.asyncio

        loop = asyncio.get_running_loop()
        client = self._async.get(id(loop))
        if client is None:
            client = self._async[id(loop)] = redis.asyncio.Redis.from_url(self.url, decode_responses=True)
        return client

    async def wait(self, code: str, since: int, timeout: float) -> Snapshot | None:
        """As RoomStore.wait: the room's state once its version differs from `since`, else after
        `timeout` seconds; None for a room that is not open (or closes meanwhile)."""
        if self._waiting.get(code, 0) >= self.max_followers:
            raise TooManyFollowers(f"Room {code} has {self.max_followers} followers waiting already.")
        self._waiting[code] = self._waiting.get(code, 0) + 1
        client, loop = self._client(), asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            while True:
                version, location = await client.hmget(self._key(code), "version", "location")
                if version is None:
                    return None
                if int(version) != since or loop.time() >= deadline:
                    return Snapshot(code, int(version), _location(location))
                await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - loop.time())))
        finally:
            self._waiting[code] -= 1
