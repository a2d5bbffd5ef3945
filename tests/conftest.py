"""Shared fixtures: fresh Streamlit servers and a chromium page for browser tests; one torch thread.

    @pytest.mark.browser
    def test_home(app_url, browser_page):
        browser_page.goto(app_url)
        wait_for_app(browser_page)

    @pytest.mark.browser
    def test_other_app(fresh_server, browser_page):
        server = fresh_server("pages/1_Convolution.py")   # any script, relative to the repo
        browser_page.goto(server.url)

When a test fails, the output of every server it started is added to the failure report.
Tests that use `browser_page` get the `browser` marker automatically (`-m "not browser"`
leaves them out).
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import pytest
import torch
from streamlit import config as st_config

from browser_helpers import (
    CHROMIUM,
    VIEWPORT,
    chromium_missing_message,
    in_ci,
    launch_chromium,
)
from server import DEFAULT_APP, REPO_ROOT, StreamlitServer

# The served app hides error details (.streamlit/config.toml); tests want to read them: in the servers
# they start (`streamlit run` reads STREAMLIT_* variables) and in AppTest (which reads the config).
os.environ.setdefault("STREAMLIT_CLIENT_SHOW_ERROR_DETAILS", "full")
st_config.set_option("client.showErrorDetails", "full")

_SERVERS = pytest.StashKey[list]()


@pytest.fixture
def fresh_server(request) -> Callable[..., StreamlitServer]:
    """Factory: `fresh_server(app=DEFAULT_APP, *, cwd=None, env=None, extra_args=())`.

    Each call starts a freshly started `streamlit run APP` on a free 127.0.0.1 port (cwd:
    the repo root unless given, so .streamlit/config.toml applies; a relative `app` is
    resolved against the repo root), waits for /_stcore/health to answer "ok" (60 s), and
    returns the running StreamlitServer (`.url` is the base URL, `.log_text()` its output).
    Every server started is terminated, with its process group, when the test ends.
    """
    servers: list[StreamlitServer] = []
    request.node.stash[_SERVERS] = servers

    def start(
        app: str | os.PathLike = DEFAULT_APP,
        *,
        cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> StreamlitServer:
        app_path = REPO_ROOT / app  # an absolute `app` stays as it is
        server = StreamlitServer(app_path, cwd=cwd, env=env, extra_args=extra_args)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def app_server(fresh_server) -> StreamlitServer:
    """A freshly started server running the repo's app.py."""
    return fresh_server()


@pytest.fixture
def app_url(app_server) -> str:
    """Base URL (http://127.0.0.1:PORT) of a freshly started server running app.py."""
    return app_server.url


@pytest.fixture(scope="session")
def chromium_browser():
    """Debian's chromium, launched once per session through Playwright's sync API."""
    if not CHROMIUM.exists():
        if in_ci():
            pytest.fail(f"CI is set, and browser tests never skip in CI: {chromium_missing_message()}",
                        pytrace=False)
        pytest.skip(chromium_missing_message())
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def browser_page(chromium_browser):
    """A new page (own context, 1400x1000 viewport) in headless chromium; closed afterwards."""
    context = chromium_browser.new_context(viewport=dict(VIEWPORT))
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        yield page
    finally:
        context.close()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "browser_page" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        for server in item.stash.get(_SERVERS, []):
            log = server.log_text()
            if log:
                report.sections.append((f"streamlit server output ({server!r})", log))
    return report


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module's training tests: on a busy shared machine two threads
    mostly wait for each other (modules opt in with pytestmark = usefixtures("one_torch_thread"))."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def redis_server(tmp_path):
    """A Debian redis-server of the test's own on a free 127.0.0.1 port (no persistence); yields its URL.
    CI installs redis-server (.ci/run); tests never skip in CI."""
    import shutil
    import subprocess
    import time

    from server import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        if in_ci():
            pytest.fail("CI is set, and redis-server is missing: apt-get install redis-server", pytrace=False)
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
                                "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def rq_workers():
    """Starts RQ workers for cnnviz runs (`rq worker --worker-class cnnviz.runs_redis.RunWorker`), each in
    a session of its own; yields start(url, *queues) -> Popen. Every worker is killed afterwards, with
    the work horse it may have forked."""
    import signal
    import subprocess
    import sys

    started = []

    def start(url: str, *queues: str, env: Mapping[str, str] | None = None) -> subprocess.Popen:
        environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "CNNVIZ_REDIS_URL": url, **(env or {})}
        process = subprocess.Popen(
            [sys.executable, "-m", "rq.cli", "worker", "--url", url, "--worker-class", "cnnviz.runs_redis.RunWorker",
             "--logging_level", "WARNING", *queues],
            cwd=REPO_ROOT, env=environment, start_new_session=True, stdin=subprocess.DEVNULL)
        started.append(process)
        return process

    yield start
    for process in started:
        horses = _children(process.pid)  # each in a process group of its own (RQ's setpgrp)
        for pid in [process.pid, *horses]:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(10)


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux's /proc)."""
    from pathlib import Path

    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
