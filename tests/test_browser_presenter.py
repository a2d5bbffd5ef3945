"""The presenter view in chromium on a fresh server: each tour stop's main figure fits a projector's
screen (1280×720 and 1920×1080) without scrolling, Streamlit's chrome is gone, the keys move the tour,
and the share dialog's QR code decodes to a link that opens the same state."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import pytest
import zxingcpp
from PIL import Image

from browser_helpers import assert_no_exception, content_height, wait_for_app, wait_for_rerun, wait_for_text
from cnnviz.tour import TOUR, stop_link

STOPS = range(len(TOUR))


def overflow(page) -> int:
    """How many pixels the app is taller than the viewport (0 or less: it fits)."""
    return content_height(page) - page.viewport_size["height"]


@pytest.mark.parametrize("size", [(1280, 720), (1920, 1080)])
def test_each_stop_fits_the_projector_without_scrolling(fresh_server, browser_page, size):
    server = fresh_server()
    browser_page.set_viewport_size({"width": size[0], "height": size[1]})
    for index in STOPS:
        browser_page.goto(server.url + stop_link(index, present="1"))
        wait_for_app(browser_page)
        wait_for_text(browser_page, f"{index + 1}/{len(TOUR)} · {TOUR[index].title}")
        browser_page.wait_for_timeout(600)  # charts lay out
        assert overflow(browser_page) <= 2, (TOUR[index].title, size, overflow(browser_page))
        if TOUR[index].page == "1_Convolution.py" and not TOUR[index].section:
            # numbers in the grids readable from the back of a hall: >= 24 px on a 1280×720 projector
            sizes = browser_page.evaluate("""() => {
                const hosts = [...document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')];
                const cells = hosts.flatMap(h => h.shadowRoot ? [...h.shadowRoot.querySelectorAll('.cell:not(.empty)')] : []);
                return cells.filter(c => c.textContent.trim()).map(c => parseFloat(getComputedStyle(c).fontSize));
            }""")
            assert sizes and min(sizes) >= 24, sizes[:10]
        assert not browser_page.locator('[data-testid="stSidebar"]').is_visible()
        assert not browser_page.locator('[data-testid="stHeader"]').is_visible()
        assert_no_exception(browser_page, server)


def test_page_down_walks_the_tour_and_the_qr_code_opens_the_same_state(fresh_server, browser_page):
    server = fresh_server()
    browser_page.set_viewport_size({"width": 1280, "height": 720})
    last = next(i for i, stop in enumerate(TOUR) if stop.page == "7_Classify_an_image.py")  # softmax
    browser_page.goto(server.url + stop_link(last - 1, present="1"))  # the VGG-16 walk-through
    wait_for_app(browser_page)
    wait_for_text(browser_page, TOUR[last - 1].title)
    browser_page.locator("h4").first.click()  # focus the page, not a widget
    browser_page.keyboard.press("PageDown")
    wait_for_text(browser_page, f"{last + 1}/{len(TOUR)} · {TOUR[last].title}")
    wait_for_app(browser_page)
    assert "/Classify_an_image" in browser_page.url and f"stop={last + 1}" in browser_page.url
    browser_page.locator("h4").first.click() if browser_page.locator("h4").count() else None
    browser_page.keyboard.press("PageUp")
    wait_for_text(browser_page, f"{last}/{len(TOUR)} · {TOUR[last - 1].title}")
    wait_for_app(browser_page)
    assert "/VGG16_explorer" in browser_page.url and f"stop={last}" in browser_page.url
    browser_page.keyboard.press("PageDown")
    wait_for_text(browser_page, f"{last + 1}/{len(TOUR)} · {TOUR[last].title}")
    wait_for_app(browser_page)

    browser_page.get_by_role("button", name="Share").click()
    wait_for_rerun(browser_page)
    dialog = browser_page.get_by_role("dialog")
    image = dialog.locator("img").first
    image.wait_for()
    png = browser_page.request.get(server.url + urlsplit(image.get_attribute("src")).path).body()
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(decoded) == 1
    link = decoded[0].text
    assert link.startswith(server.url + "/s/")
    student = browser_page.context.browser.new_page(viewport={"width": 390, "height": 844})
    student.goto(link)
    wait_for_app(student)
    assert urlsplit(student.url).path == "/Classify_an_image"
    assert "present" not in student.url and "stop" not in student.url  # the state, not the presenter's view
    wait_for_text(student, "The prediction")
    student.close()


def test_at_the_last_step_the_arrow_moves_on_to_the_next_example(fresh_server, browser_page):
    server = fresh_server()
    browser_page.set_viewport_size({"width": 1280, "height": 720})
    browser_page.goto(server.url + stop_link(0, present="1"))  # the padded convolution: 16 steps
    wait_for_app(browser_page)
    wait_for_text(browser_page, TOUR[0].title)
    browser_page.locator('[data-testid="stBidiComponentIsolated"]').locator("[data-act=last]").first.click()
    browser_page.keyboard.press("ArrowRight")  # past the last output: the tour's next stop
    wait_for_text(browser_page, f"2/{len(TOUR)} · {TOUR[1].title}")
    wait_for_app(browser_page)
    assert "ex=no-padding" in browser_page.url and "stop=2" in browser_page.url and "present=1" in browser_page.url
    browser_page.keyboard.press("Home")
    browser_page.keyboard.press("ArrowLeft")  # before the first output: back to the previous stop
    wait_for_text(browser_page, f"1/{len(TOUR)} · {TOUR[0].title}")
