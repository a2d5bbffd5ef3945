"""Running a coroutine from a test, whatever else the test process runs.

The browser tests keep Playwright's sync API open for the whole session, and it keeps an event loop
running in the main thread: asyncio.run() there would refuse ("cannot be called from a running event
loop"). A coroutine run in a thread of its own has a loop of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures


def run(coroutine, timeout: float = 60):
    """asyncio.run(coroutine) in a fresh thread; its result (or its exception)."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result(timeout)
