"""A student opens a lecturer's link to the linear class templates on a freshly started server."""

import pytest

from browser_helpers import assert_no_exception, click_text, wait_for_app, wait_for_text
from cnnviz.data import FASHION_CLASSES


@pytest.mark.browser
def test_link_to_linear_templates_trains_and_shows_them(fresh_server, browser_page, tmp_path):
    server = fresh_server(env={"CNNVIZ_DATA": str(tmp_path / "data"), "TORCH_HOME": str(tmp_path / "torch")})
    # The page's URL, with its settings, is the first request the fresh server serves.
    browser_page.goto(f"{server.url}/What_models_learn?view=linear&src=bundled&lin_ep=3&img=12")
    wait_for_app(browser_page, timeout_ms=120_000)
    wait_for_text(browser_page, "The 10 rows of W, reshaped back into images: the class templates")
    wait_for_text(browser_page, "Test image 12:")
    wait_for_text(browser_page, "template matches best")
    # the templates figure: one picture, captioned with every class name
    figure = browser_page.locator(".js-plotly-plot").first
    figure.wait_for()
    captions = [text.text_content() for text in figure.locator(".annotation-text").all()]
    assert captions == FASHION_CLASSES
    assert figure.locator("image").count() == 1
    box = figure.bounding_box()
    assert box["width"] > 700  # big enough to read from the back of the room

    click_text(browser_page, "Random test image")
    wait_for_text(browser_page, "template matches best")
    assert "img=12" not in browser_page.url and "img=" in browser_page.url
    assert "view=linear" in browser_page.url
    assert_no_exception(browser_page, server)
