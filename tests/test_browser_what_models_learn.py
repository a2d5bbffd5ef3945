"""A student opens a lecturer's link to the linear class templates on a freshly started server,
then switches views: every slider keeps its value, in the browser and in the URL."""

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

    # Switching views: each view's sliders appear with the values the models on screen use
    # (the browser once drew sliders it had not shown before at their minimum, and sent it back).
    click_text(browser_page, "MLP: full-image templates")
    wait_for_text(browser_page, "rows of the first layer's W as images")
    assert slider_values(browser_page) == {"Hidden units k₁": "32", "Epochs": "10"}
    click_text(browser_page, "CNN: first-layer filters")
    wait_for_text(browser_page, "What they learned here")
    assert slider_values(browser_page) == {"Epochs": "4"}
    click_text(browser_page, "Linear: class templates")
    wait_for_text(browser_page, "template matches best")
    assert slider_values(browser_page) == {"Epochs": "3"}  # as the link set it
    assert "lin_ep=3" in browser_page.url
    for default in ("k1=", "mlp_ep=", "cnn_ep="):
        assert default not in browser_page.url
    assert_no_exception(browser_page, server)


def slider_values(page) -> dict[str, str]:
    """Each slider's label and the value its thumb shows."""
    return {slider.get_by_test_id("stWidgetLabel").inner_text().strip():
            slider.get_by_test_id("stSliderThumbValue").inner_text().strip()
            for slider in page.get_by_test_id("stSlider").all()}
