"""Start and stop a fresh `streamlit run` server on a free localhost port.

Shared by the browser-test fixtures (tests/conftest.py) and scripts/screenshot.py, so both
drive the app exactly the same way. Nothing here imports Streamlit or Playwright: the server
is a separate process, started with the interpreter running this code.

    with StreamlitServer() as server:          # the repo's app.py, cwd = repo root
        print(server.url)                      # http://127.0.0.1:PORT
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_APP = REPO_ROOT / "app.py"
STARTUP_TIMEOUT_S = 60.0
LOG_TAIL_CHARS = 6000


class ServerStartError(RuntimeError):
    """The server exited or never answered its health check; the message carries its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StreamlitServer:
    """One `streamlit run APP` process in its own process group.

    app:        the script to run (default: the repo's app.py).
    cwd:        working directory of the server (default: the repo root, so that
                .streamlit/config.toml applies). Streamlit finds a multipage app's pages/
                next to the script, wherever cwd is.
    env:        extra environment variables for the server.
    extra_args: further `streamlit run` options, e.g. ["--server.maxUploadSize", "5"].
    """

    def __init__(
        self,
        app: str | os.PathLike = DEFAULT_APP,
        *,
        cwd: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        startup_timeout: float = STARTUP_TIMEOUT_S,
    ) -> None:
        self.app = Path(app).resolve()
        self.cwd = Path(cwd).resolve() if cwd is not None else REPO_ROOT
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
        self._log_file = None

    # -- public ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        """Start the server and wait for its health check; returns the base URL."""
        if not self.app.is_file():
            raise ServerStartError(f"Streamlit app not found: {self.app}")
        # A free port can be taken between choosing it and binding it: retry a few times.
        for attempt in range(3):
            self._spawn(free_port())
            try:
                self._wait_healthy()
                return self.url
            except ServerStartError:
                log = self.log_text()
                self.stop()
                if "already in use" in log and attempt < 2:
                    continue
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Terminate the server's whole process group (SIGTERM, then SIGKILL after 10 s)."""
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)

    def log_text(self, tail: int | None = LOG_TAIL_CHARS) -> str:
        """The server's combined stdout and stderr so far (the last `tail` characters)."""
        if self._log_file is None:
            return ""
        self._log_file.flush()
        text = Path(self._log_file.name).read_text(errors="replace")
        return text if tail is None or len(text) <= tail else "…" + text[-tail:]

    def close(self) -> None:
        """Stop the server and delete its log file."""
        self.stop()
        if self._log_file is not None:
            self._log_file.close()
            Path(self._log_file.name).unlink(missing_ok=True)
            self._log_file = None

    def __enter__(self) -> "StreamlitServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.url if self.port is not None else "not started"
        return f"StreamlitServer({self.app.name}, {where})"

    # -- internals ------------------------------------------------------------------------

    def command(self, port: int) -> list[str]:
        return [
            sys.executable, "-m", "streamlit", "run", str(self.app),
            "--server.headless", "true",
            "--server.port", str(port),
            "--server.address", "127.0.0.1",
            "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none",
            "--server.runOnSave", "false",
            *self.extra_args,
        ]

    def _spawn(self, port: int) -> None:
        if self._log_file is None:
            self._log_file = tempfile.NamedTemporaryFile(
                "w+", prefix="streamlit-server-", suffix=".log", delete=False
            )
        else:
            self._log_file.seek(0)
            self._log_file.truncate()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        self.port = port
        # A file, not a pipe, takes the output: an undrained pipe would block the server.
        self.process = subprocess.Popen(
            self.command(port),
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, so stop() reaches every child
        )

    def _wait_healthy(self) -> None:
        health = f"{self.url}/_stcore/health"
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerStartError(
                    f"`streamlit run {self.app}` exited with code {self.process.returncode} "
                    f"before answering {health}.\n--- server output ---\n{self.log_text()}"
                )
            try:
                with urllib.request.urlopen(health, timeout=2) as response:
                    body = response.read().decode(errors="replace").strip()
                if body == "ok":
                    return
                last_error = f"health answered {body!r}"
            except (urllib.error.URLError, OSError) as error:
                last_error = str(error)
            time.sleep(0.2)
        raise ServerStartError(
            f"`streamlit run {self.app}` did not answer {health} with 'ok' within "
            f"{self.startup_timeout:.0f} s (last: {last_error}).\n"
            f"--- server output ---\n{self.log_text()}"
        )
