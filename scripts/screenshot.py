#!/usr/bin/env python
"""Screenshot a cnnviz page as served by a freshly started `streamlit run app.py`.

    python scripts/screenshot.py /                                  # home page, viewport
    python scripts/screenshot.py /Convolution --full-page --out conv.png
    python scripts/screenshot.py "/Convolution?stride=2" --wait-text "Output" --click "Next step" "Next step"

URL_PATH is appended to the server's base URL (a missing leading "/" is added); query
parameters are kept. The script starts a fresh server on a free port (same code as the
browser-test fixtures: tests/server.py), opens the page in Debian's headless chromium
(1400x1000), waits until the script run has finished, optionally waits for a text and clicks
buttons/tabs/links by their exact visible text (each click waits for the rerun), waits
--settle seconds more, and saves a PNG. With --full-page the whole app is captured, not just
the viewport (Streamlit scrolls inside its main container, so the viewport is grown to fit).

It prints the PNG's path. Exit status: 0 saved; 1 failure (no PNG); 3 saved, but the page
shows a Streamlit exception box (its text is printed to stderr).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from browser_helpers import (  # noqa: E402
    CHROMIUM,
    VIEWPORT,
    chromium_missing_message,
    click_text,
    exception_texts,
    launch_chromium,
    screenshot,
    wait_for_app,
    wait_for_text,
)
from server import DEFAULT_APP, StreamlitServer  # noqa: E402


def default_out(url_path: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", url_path).strip("-") or "home"
    return Path(tempfile.gettempdir()) / "cnnviz-screenshots" / f"{slug}.png"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start a fresh cnnviz server, open a page in headless chromium, save a PNG.",
        epilog="Example: python scripts/screenshot.py /Convolution --full-page --click 'Next step'",
    )
    parser.add_argument("url_path", metavar="URL_PATH",
                        help='page path and query, e.g. "/", "/Convolution?stride=2"')
    parser.add_argument("--out", type=Path,
                        help="PNG to write (default: $TMPDIR/cnnviz-screenshots/<path>.png)")
    parser.add_argument("--full-page", action="store_true",
                        help="capture the whole app, not just the 1400x1000 viewport")
    parser.add_argument("--wait-text", metavar="TEXT", action="append", default=[],
                        help="wait until TEXT appears on the page (repeatable)")
    parser.add_argument("--click", metavar="TEXT", nargs="+", action="extend", default=[],
                        help="click the buttons/tabs/links with this exact visible text, in order")
    parser.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                        help="extra wait before the screenshot, for charts to draw (default 1)")
    parser.add_argument("--width", type=int, default=VIEWPORT["width"])
    parser.add_argument("--height", type=int, default=VIEWPORT["height"])
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for the app and for each --wait-text (default 60)")
    parser.add_argument("--app", type=Path, default=DEFAULT_APP,
                        help="Streamlit script to serve (default: the repo's app.py)")
    parser.add_argument("--base-url", metavar="URL",
                        help="use this already running server instead of starting a fresh one")
    return parser.parse_args(argv)


def take(args: argparse.Namespace, base_url: str, server: StreamlitServer | None) -> int:
    from playwright.sync_api import sync_playwright

    path = args.url_path if args.url_path.startswith("/") else "/" + args.url_path
    url = base_url.rstrip("/") + path
    out = args.out or default_out(args.url_path)
    timeout_ms = args.timeout * 1000
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            context = browser.new_context(viewport={"width": args.width, "height": args.height})
            page = context.new_page()
            page.set_default_timeout(timeout_ms)
            page.goto(url)
            wait_for_app(page, timeout_ms)
            for text in args.wait_text:
                wait_for_text(page, text, timeout_ms)
            wait_for_app(page, timeout_ms)
            for text in args.click:
                click_text(page, text)
            page.wait_for_timeout(args.settle * 1000)
            wait_for_app(page, timeout_ms)
            screenshot(page, out, full_page=args.full_page)
            errors = exception_texts(page)
        finally:
            browser.close()
    if not out.is_file() or out.stat().st_size == 0:
        print(f"screenshot: no PNG written to {out}", file=sys.stderr)
        return 1
    print(out)
    if errors:
        print(f"screenshot: {url} shows {len(errors)} exception box(es):", file=sys.stderr)
        for text in errors:
            print(text, file=sys.stderr)
        if server is not None:
            print(f"--- server output ---\n{server.log_text()}", file=sys.stderr)
        return 3
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if not CHROMIUM.exists():
        print(f"screenshot: {chromium_missing_message()}", file=sys.stderr)
        return 1
    try:
        if args.base_url:
            return take(args, args.base_url, None)
        with StreamlitServer(args.app) as server:
            try:
                return take(args, server.url, server)
            except Exception:
                print(f"--- server output ---\n{server.log_text()}", file=sys.stderr)
                raise
    except Exception as error:  # one readable line plus the cause, not a Playwright traceback
        print(f"screenshot: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
