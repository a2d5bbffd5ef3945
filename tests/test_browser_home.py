"""The home page, opened in a real browser against a freshly started `streamlit run app.py`."""

import pytest

from browser_helpers import APP, assert_no_exception, wait_for_app, wait_for_text
from ui.lessons import LESSONS


@pytest.mark.browser
def test_home_page_renders_without_exception(app_server, browser_page):
    page = browser_page
    page.goto(app_server.url)
    page.wait_for_selector(APP, timeout=60_000)
    wait_for_text(page, "cnnviz", timeout_ms=60_000)
    wait_for_app(page)

    assert page.title() == "cnnviz"
    assert page.locator("h1").filter(has_text="cnnviz").count() == 1
    for lesson in LESSONS:
        wait_for_text(page, lesson.title)
    assert_no_exception(page, app_server)


@pytest.mark.browser
def test_a_page_asks_nothing_of_the_internet(fresh_server, browser_page):
    """Offline in a lecture hall: every request a page makes goes to the app's own server."""
    server = fresh_server()
    requests: list[str] = []
    browser_page.on("request", lambda request: requests.append(request.url))
    browser_page.goto(f"{server.url}/Convolution")
    wait_for_app(browser_page)
    wait_for_text(browser_page, "What the layer costs")
    outside = [url for url in requests if not url.startswith((server.url, "data:", "blob:"))]
    assert outside == [], outside
    assert_no_exception(browser_page, server)
