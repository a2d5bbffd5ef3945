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
