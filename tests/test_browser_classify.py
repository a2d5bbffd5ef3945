"""A student opens a link to the classify page on a fresh server, uploads a photo and sees a prediction."""

import os

import pytest
from PIL import Image

from browser_helpers import assert_no_exception, screenshot, wait_for_app, wait_for_rerun, wait_for_text
from cnnviz import classify, images


@pytest.mark.browser
def test_link_then_upload_shows_the_steps_and_a_prediction(fresh_server, browser_page, tmp_path):
    server = fresh_server()  # a fresh server: the page's URL is the first request it serves
    page = browser_page
    page.goto(f"{server.url}/Classify_an_image?img=Coffee&layer=2")
    wait_for_app(page)
    wait_for_text(page, "From Coffee to the network's input")
    wait_for_text(page, "Convolution 2 of 3")
    assert_no_exception(page, server)

    # A light-background photo as the student's own PNG: inverted, padded, 28x28.
    photo = Image.open(images.SAMPLES["Coffee"]).convert("RGB")
    path = tmp_path / "my mug.png"
    photo.save(path)
    page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files(str(path))
    wait_for_rerun(page)
    wait_for_text(page, "From my mug.png to the network's input")
    clf = classify.load_bundled()
    prediction = classify.predict(clf, classify.prepare(images.load_image(path), clf.recipe).tensor)
    index, p = prediction.top(1)[0]
    wait_for_text(page, f"{clf.classes[index]} with probability {p * 100:.1f} %")
    wait_for_text(page, "Forward pass")
    assert page.locator('[data-testid="stImage"]').count() >= 4  # the preprocessing steps as images
    assert "img=Coffee" in page.url and "layer=2" in page.url  # the link still describes the page
    assert_no_exception(page, server)
    if os.environ.get("CNNVIZ_SCREENSHOTS"):
        screenshot(page, os.path.join(os.environ["CNNVIZ_SCREENSHOTS"], "classify_upload.png"), full_page=True)
