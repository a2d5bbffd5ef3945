"""Driving a Streamlit app in Debian's chromium through Playwright's sync API.

Shared by the browser-test fixtures (tests/conftest.py) and scripts/screenshot.py.
Playwright is imported lazily, so importing this module costs nothing for non-browser tests.

Streamlit renders the app straight into the page's DOM (no iframe, apart from custom
components). The root element `[data-testid="stApp"]` carries two attributes the helpers
rely on: `data-test-script-state` ("initial", "running", "notRunning", "rerunRequested",
"stopRequested", "compilationError") and `data-test-connection-state` ("CONNECTED", ...).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterable

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1400, "height": 1000}

APP = '[data-testid="stApp"]'
EXCEPTION = '[data-testid="stException"]'
STATUS_WIDGET = '[data-testid="stStatusWidget"]'


def in_ci() -> bool:
    """True when the CI environment variable is set (to anything but an explicit no)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def chromium_missing_message() -> str:
    return (
        f"{CHROMIUM} not found: the browser tests drive Debian's chromium through Playwright "
        "(Playwright's own browser download is not used). Install it with "
        "`apt-get install chromium`."
    )


def launch_chromium(playwright):
    """Launch Debian's chromium headless; `playwright` is a started sync_playwright()."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


# -- waiting ----------------------------------------------------------------------------------


def wait_for_app(page, timeout_ms: float = 60_000) -> None:
    """Wait until the app is connected and its script run has finished.

    Finished means `data-test-script-state` is "notRunning" (or "compilationError") and the
    running indicator is gone, twice in a row 250 ms apart (a rerun can start right after a
    run ends, e.g. after st.rerun or a query-parameter sync).
    """
    page.wait_for_selector(APP, state="attached", timeout=timeout_ms)
    deadline = time.monotonic() + timeout_ms / 1000
    settled_once = False
    while True:
        state = page.evaluate(
            """([app, status]) => {
                const root = document.querySelector(app);
                const widget = document.querySelector(status);
                return {
                    script: root ? root.getAttribute("data-test-script-state") : null,
                    connection: root ? root.getAttribute("data-test-connection-state") : null,
                    running: !!(widget && widget.querySelector(
                        '[data-testid="stStatusWidgetRunningIcon"]')),
                };
            }""",
            [APP, STATUS_WIDGET],
        )
        idle = (
            state["connection"] == "CONNECTED"
            and state["script"] in ("notRunning", "compilationError")
            and not state["running"]
        )
        if idle and settled_once:
            return
        settled_once = idle
        if time.monotonic() > deadline:
            raise AssertionError(
                f"Streamlit app did not settle within {timeout_ms / 1000:.0f} s "
                f"(script state {state['script']!r}, connection {state['connection']!r}, "
                f"running indicator {'shown' if state['running'] else 'hidden'})."
            )
        page.wait_for_timeout(250)


def wait_for_rerun(page, timeout_ms: float = 60_000) -> None:
    """After an interaction: give the rerun up to 2 s to start, then wait until it settles."""
    try:
        page.wait_for_function(
            """(app) => {
                const root = document.querySelector(app);
                return root && root.getAttribute("data-test-script-state") !== "notRunning";
            }""",
            arg=APP,
            timeout=2_000,
        )
    except Exception:  # the rerun may already be over (fast scripts) or not happen at all
        pass
    wait_for_app(page, timeout_ms)


def wait_for_text(page, text: str, timeout_ms: float = 30_000) -> None:
    """Wait until `text` appears in the visible text of the app (anywhere in the page DOM)."""
    try:
        page.wait_for_function(
            "(text) => document.body && document.body.innerText.includes(text)",
            arg=text,
            timeout=timeout_ms,
        )
    except Exception as error:
        shown = page.evaluate("() => document.body ? document.body.innerText : ''")
        raise AssertionError(
            f"Text {text!r} did not appear within {timeout_ms / 1000:.0f} s. "
            f"Page text:\n{shown[:3000]}"
        ) from error


def exception_texts(page) -> list[str]:
    """The text of every Streamlit exception box (`st.exception` / uncaught errors) shown."""
    return page.locator(EXCEPTION).all_inner_texts()


def assert_no_exception(page, server=None) -> None:
    """Fail if the app shows an exception box; the message includes the server's log."""
    boxes = exception_texts(page)
    if boxes:
        message = "The app shows an exception:\n" + "\n---\n".join(boxes)
        if server is not None:
            message += f"\n--- server output ---\n{server.log_text()}"
        raise AssertionError(message)


# -- interacting ------------------------------------------------------------------------------


def click_text(page, text: str, timeout_ms: float = 10_000) -> None:
    """Click the button, tab, link or other element whose visible text is exactly `text`,
    then wait for the rerun it causes to finish."""
    candidates = [
        page.get_by_role("button", name=text, exact=True),
        page.get_by_role("tab", name=text, exact=True),
        page.get_by_role("link", name=text, exact=True),
        page.get_by_text(text, exact=True),
    ]
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        for locator in candidates:
            visible = [item for item in locator.all() if item.is_visible()]
            if visible:
                visible[0].click()
                wait_for_rerun(page)
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"Nothing visible to click with the text {text!r}.")
        page.wait_for_timeout(200)


def click_all(page, texts: Iterable[str]) -> None:
    for text in texts:
        click_text(page, text)


# -- screenshots ------------------------------------------------------------------------------


def content_height(page) -> int:
    """Height of the whole app. Streamlit scrolls inside its main container rather than the
    document, so Playwright's own full_page screenshot would stop at the viewport."""
    return page.evaluate(
        """() => {
            const heights = [document.documentElement.scrollHeight, document.body.scrollHeight];
            for (const sel of ['[data-testid="stMain"]', '[data-testid="stAppViewContainer"]',
                               '[data-testid="stSidebarContent"]', 'section.main']) {
                const el = document.querySelector(sel);
                if (el) heights.push(el.scrollHeight);
            }
            return Math.max(...heights);
        }"""
    )


def screenshot(page, path: str | os.PathLike, full_page: bool = False, max_height: int = 16_000):
    """Save a PNG of the page; with full_page, grow the viewport to the app's full height first
    (capped at max_height pixels) and restore it afterwards."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not full_page:
        page.screenshot(path=str(path))
        return path
    original = page.viewport_size or VIEWPORT
    height = min(max(content_height(page), original["height"]), max_height)
    page.set_viewport_size({"width": original["width"], "height": height})
    try:
        page.wait_for_timeout(500)  # let charts re-layout to the new size
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(original)
    return path
