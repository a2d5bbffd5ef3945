"""A student draws on the classify page's canvas with the mouse and sees the probabilities follow each stroke;
another takes a photo with the (fake) camera."""

import os

import pytest

from browser_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORT,
    assert_no_exception,
    screenshot,
    wait_for_app,
    wait_for_text,
)
from cnnviz import classify, notation
from cnnviz.drawing import EMPTY_MESSAGE, prepare_drawing, read_strokes

CANVAS = "canvas[data-part=canvas]"
# A T-shirt in canvas units (0 … 280): its outline, then a scribble filling it
OUTLINE = [(60, 60), (110, 45), (170, 45), (220, 60), (255, 110), (215, 125), (200, 100), (200, 240), (80, 240),
           (80, 100), (65, 125), (25, 110), (60, 60)]
FILL = [(90, 80), (190, 80), (190, 110), (90, 110), (90, 140), (190, 140), (190, 170), (90, 170), (90, 200),
        (190, 200), (190, 230), (90, 230)]
LIVE = """() => [...document.querySelectorAll('[data-testid="stProgress"]')].map(bar => bar.innerText.trim())"""


def draw(page, polyline, steps: int = 8) -> None:
    """Press the mouse at the polyline's start, move along it, release."""
    box = page.locator(CANVAS).bounding_box()
    scale = box["width"] / 280

    def at(x, y):
        return box["x"] + x * scale, box["y"] + y * scale

    page.mouse.move(*at(*polyline[0]))
    page.mouse.down()
    for (x0, y0), (x1, y1) in zip(polyline, polyline[1:]):
        for i in range(1, steps + 1):
            page.mouse.move(*at(x0 + (x1 - x0) * i / steps, y0 + (y1 - y0) * i / steps))
    page.evaluate("() => { window.__strokeEnd = performance.now(); }")
    page.mouse.up()


def expected_top(clf, page) -> list[tuple[str, str]]:
    """The top 3 (class, probability as the page writes it) of the strokes the canvas last sent to Python."""
    sent = page.evaluate("() => window.__cnnvizDrawing.lastSent")
    prediction = classify.predict(clf, prepare_drawing(read_strokes(sent), clf.recipe).tensor, record=False)
    return [(clf.classes[i], notation.percent(p)) for i, p in prediction.top(3)]


def live_top(page) -> list[tuple[str, str]]:
    """The bars beside the canvas: (class, probability) of the top 3."""
    return [tuple(line.rsplit(": ", 1)) for line in page.evaluate(LIVE)]


def wait_for_live(page, expected, timeout_ms: float = 30_000) -> float:
    """Wait until the bars beside the canvas show `expected`; the milliseconds from the stroke's end."""
    page.wait_for_function(f"(expected) => JSON.stringify(({LIVE})()) === JSON.stringify(expected)",
                           arg=[f"{name}: {p}" for name, p in expected], timeout=timeout_ms)
    return page.evaluate("() => performance.now() - window.__strokeEnd")


@pytest.mark.browser
def test_strokes_drawn_with_the_mouse_are_classified_as_they_are_drawn(fresh_server, browser_page):
    server = fresh_server()
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{server.url}/Classify_an_image")
    wait_for_app(page)
    page.get_by_text("Draw", exact=True).click()
    page.wait_for_selector(CANVAS)
    wait_for_app(page)
    wait_for_text(page, EMPTY_MESSAGE)
    page.get_by_role("button", name="Thick brush").click()
    page.locator(CANVAS).evaluate("c => c.scrollIntoView({block: 'center'})")
    clf = classify.load_bundled()

    draw(page, OUTLINE)
    first = expected_top(clf, page)
    ms_first = wait_for_live(page, first)
    # after the pause the whole page shows the drawing: its preprocessing and the softmax
    wait_for_text(page, "From your drawing to the network's input")
    wait_for_text(page, f"{first[0][0]} with probability {first[0][1]}")
    wait_for_app(page)
    assert live_top(page) == first

    draw(page, FILL)
    both = expected_top(clf, page)
    assert both != first  # a filled shirt is not its outline
    ms_second = wait_for_live(page, both)
    wait_for_text(page, f"{both[0][0]} with probability {both[0][1]}")
    wait_for_app(page)
    print(f"stroke end → probabilities beside the canvas (browser clock): {ms_first:.0f} ms, {ms_second:.0f} ms")
    if os.environ.get("CNNVIZ_SCREENSHOTS"):
        screenshot(page, os.path.join(os.environ["CNNVIZ_SCREENSHOTS"], "classify_drawing.png"))

    page.get_by_role("button", name="Undo").click()  # back to the outline
    wait_for_live(page, first)
    assert page.locator(CANVAS).get_attribute("data-strokes") == "1"

    # another image source and back: the drawing is still there, loaded into the new canvas
    page.get_by_text("Sample or file", exact=True).click()
    wait_for_text(page, "From Fashion-MNIST: Ankle boot to the network's input")
    wait_for_app(page)
    page.get_by_text("Draw", exact=True).click()
    page.wait_for_selector(CANVAS)
    wait_for_app(page)
    assert page.locator(CANVAS).get_attribute("data-strokes") == "1"
    assert live_top(page) == first
    wait_for_text(page, f"{first[0][0]} with probability {first[0][1]}")

    page.get_by_role("button", name="Clear").click()
    wait_for_text(page, EMPTY_MESSAGE)
    page.wait_for_function("() => !document.body.innerText.includes('with probability')")  # the page below empties
    wait_for_app(page)
    assert_no_exception(page, server)


@pytest.mark.browser
def test_a_photo_from_the_camera_is_classified(fresh_server, chromium_browser):
    """Chromium's fake camera (a moving test pattern), its permission granted: Take Photo, and the photo goes
    the uploads' way to a prediction."""
    server = fresh_server()
    browser = chromium_browser.browser_type.launch(
        executable_path=str(CHROMIUM),
        args=[*CHROMIUM_ARGS, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"])
    try:
        context = browser.new_context(viewport=dict(VIEWPORT), permissions=["camera"])
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{server.url}/Classify_an_image")
        wait_for_app(page)
        page.get_by_text("Camera", exact=True).click()
        wait_for_app(page)
        take = page.get_by_role("button", name="Take Photo")
        take.wait_for()
        page.wait_for_function("() => [...document.querySelectorAll('video')].some(v => v.readyState >= 2)")
        take.click()
        wait_for_text(page, "From your photo to the network's input")
        wait_for_text(page, "with probability")
        wait_for_app(page)
        assert_no_exception(page, server)
    finally:
        browser.close()
