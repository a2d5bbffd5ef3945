"""Short links to an exact state of the app: '/s/K7P2QX' stands for '/Convolution?pad=0&step=3'.

A QR code of the short link is small enough for a phone across a lecture hall to read, where a
link carrying a whole grid would not be. A code is the state's own hash, so the same state always
gets the same code and making it twice stores nothing new. The store is bounded (least recently
used codes are forgotten first) and keeps only links to this app's own pages.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections import OrderedDict

CODE_LENGTH = 6
MAX_LINKS = 10_000
MAX_TARGET = 4_000  # characters: what a link to this app can carry
_SAFE_TARGET = re.compile(r"/[A-Za-z0-9_]*(\?[^\s#]*)?")


class LinkError(ValueError):
    """A target that is not a link to one of this app's pages."""


def check_target(target: str) -> str:
    """The target if it is a relative link to a page of this app ('/Page?query'); LinkError otherwise
    (another site, a protocol-relative '//host', too long)."""
    if not isinstance(target, str) or len(target) > MAX_TARGET or not _SAFE_TARGET.fullmatch(target):
        raise LinkError("A short link leads to a page of this app: '/Page?query'.")
    return target


def code_for(target: str) -> str:
    """The code of a target: the first letters of its SHA-256 in base 32 (no 0/1/8/9 to misread)."""
    digest = hashlib.sha256(target.encode()).digest()
    return base64.b32encode(digest).decode()[:CODE_LENGTH]


class ShortLinks:
    """Codes and the targets they stand for, in this process (bounded, thread-safe)."""

    def __init__(self, limit: int = MAX_LINKS):
        self.limit = limit
        self._targets: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def shorten(self, target: str) -> str:
        code = code_for(check_target(target))
        with self._lock:
            self._targets[code] = target
            self._targets.move_to_end(code)
            while len(self._targets) > self.limit:
                self._targets.popitem(last=False)
        return code

    def resolve(self, code: str) -> str | None:
        with self._lock:
            target = self._targets.get(code)
            if target is not None:
                self._targets.move_to_end(code)
            return target


class RedisShortLinks:
    """The same, in Redis, for several app servers behind a proxy (a QR code made on one server is
    scanned by a phone that another one serves). Each code expires `keep_days` after its last use."""

    def __init__(self, url: str, keep_days: float = 30):
        import redis

        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.keep_seconds = int(keep_days * 86400)

    def shorten(self, target: str) -> str:
        code = code_for(check_target(target))
        self.redis.set(f"cnnviz:link:{code}", target, ex=self.keep_seconds)
        return code

    def resolve(self, code: str) -> str | None:
        if not isinstance(code, str) or not code.isalnum() or len(code) > 16:
            return None
        return self.redis.getex(f"cnnviz:link:{code}", ex=self.keep_seconds)


def make_links() -> ShortLinks | RedisShortLinks:
    """This server's short links: in Redis when CNNVIZ_REDIS_URL is set, else in this process."""
    import os

    url = os.environ.get("CNNVIZ_REDIS_URL", "").strip()
    return RedisShortLinks(url) if url else ShortLinks()


LINKS = make_links()  # this server's short links
