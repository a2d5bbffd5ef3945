"""A student opens a link to the classify page on a fresh server, uploads a photo and sees a prediction."""

import os

import pytest
from PIL import Image

from browser_helpers import assert_no_exception, screenshot, wait_for_app, wait_for_rerun, wait_for_text
from cnnviz import classify, images, notation


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
    wait_for_text(page, f"{clf.classes[index]} with probability {notation.percent(p)}")
    wait_for_text(page, "Forward pass")
    assert page.locator('[data-testid="stImage"]').count() >= 4  # the preprocessing steps as images
    assert "img=Coffee" in page.url and "layer=2" in page.url  # the link still describes the page
    assert_no_exception(page, server)
    if os.environ.get("CNNVIZ_SCREENSHOTS"):
        screenshot(page, os.path.join(os.environ["CNNVIZ_SCREENSHOTS"], "classify_upload.png"), full_page=True)


@pytest.mark.browser
def test_missing_pretrained_weights_are_one_short_message_that_fits_a_projector(fresh_server, browser_page, tmp_path):
    """No weights in the torch cache and no internet (a proxy that refuses every connection):
    one message says what is missing, links the file and names the folder; after a failed
    download the error takes its place. Neither runs wider than the page at 1280×720."""
    server = fresh_server(env={"TORCH_HOME": str(tmp_path / "torch"), "HTTPS_PROXY": "http://127.0.0.1:9",
                               "https_proxy": "http://127.0.0.1:9"})
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 720})
    page.goto(f"{server.url}/Classify_an_image?model=resnet18")
    wait_for_app(page)
    spec = classify.PRETRAINED["resnet18"]
    folder = str(tmp_path / "torch" / "hub" / "checkpoints")
    wait_for_text(page, "The ResNet-18 weights (46.8 MB) are not on this computer.")

    def alerts() -> list[str]:
        return page.locator('[data-testid="stAlert"]').all_inner_texts()

    def assert_fits(alert) -> None:
        box, main = alert.bounding_box(), page.locator('[data-testid="stMain"]').bounding_box()
        assert box["x"] >= main["x"] and box["x"] + box["width"] <= main["x"] + main["width"] + 1
        assert alert.evaluate("a => a.scrollWidth <= a.clientWidth + 1"), "the message runs out of its box"
        assert box["height"] < 140, box  # a few lines, not a column of wrapped path pieces

    [message] = alerts()
    assert message.count(folder) == 1 and message.count(spec.file_name) == 1 and "http" not in message
    link = page.locator('[data-testid="stAlert"] a')
    assert link.inner_text() == spec.file_name and link.get_attribute("href") == spec.url
    alert = page.locator('[data-testid="stAlert"]')
    assert_fits(alert)
    if os.environ.get("CNNVIZ_SCREENSHOTS"):
        screenshot(page, os.path.join(os.environ["CNNVIZ_SCREENSHOTS"], "classify_missing_weights.png"))

    page.get_by_role("button", name="Download ResNet-18 weights (46.8 MB)").click()
    wait_for_text(page, "could not be downloaded")
    wait_for_app(page)
    [message] = alerts()
    assert "The ResNet-18 weights could not be downloaded ([Errno 111] Connection refused)." in message
    assert message.count(folder) == 1
    assert_fits(page.locator('[data-testid="stAlert"]'))
    assert not list((tmp_path / "torch").rglob("*.pth*"))  # nothing half-downloaded left behind
    assert_no_exception(page, server)
    if os.environ.get("CNNVIZ_SCREENSHOTS"):
        screenshot(page, os.path.join(os.environ["CNNVIZ_SCREENSHOTS"], "classify_download_failed.png"))


@pytest.mark.browser
def test_clicking_a_unit_in_the_network_shows_its_arithmetic(fresh_server, browser_page):
    """A click on a map cell asks the page for that unit: its arithmetic appears, ending in torch's value,
    and the link names it; a click on a score shows the score's dot product."""
    import torch

    from cnnviz import explain

    server = fresh_server()
    page = browser_page
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{server.url}/Classify_an_image")
    wait_for_app(page)
    wait_for_text(page, "The network, unit by unit")
    column = page.locator('.column[data-column="4"]')
    tile = column.locator(".tile").nth(1)
    channel = int(tile.get_attribute("data-channel"))
    picture = tile.locator("img")
    picture.scroll_into_view_if_needed()
    box = picture.bounding_box()
    row, col = 9, 4  # of the 14×14 map: the click lands in the middle of that cell
    picture.click(position={"x": (col + 0.5) / 14 * box["width"], "y": (row + 0.5) / 14 * box["height"]})
    wait_for_rerun(page)
    wait_for_text(page, f"Unit (channel {channel + 1}, row {row + 1}, column {col + 1}) of layer 4: conv 3×3, 32 filters")
    clf = classify.load_bundled()
    x = classify.prepare(classify.fashion_test_images()["Fashion-MNIST: Ankle boot"][0], clf.recipe).tensor
    with torch.no_grad():
        value = float(clf.model[:4](x[None])[0, channel, row, col])
    wait_for_text(page, f"(bias) = {notation.number(value)}")
    wait_for_text(page, f"torch's value for this unit: {notation.number(value)}")
    assert f"unit=4.{channel + 1}.{row + 1}.{col + 1}" in page.url
    assert column.locator('[data-part="mark"]').count() == 1  # the chosen cell ringed
    page.locator('.column[data-column="11"] .row[data-index="7"]').click()  # the score of Sneaker
    wait_for_rerun(page)
    wait_for_text(page, "The score of 'Sneaker' of layer 11: fc, 10 units")
    overview = explain.network_overview(clf, x)
    wait_for_text(page, f"(bias) = {notation.number(float(overview.logits[7]))}")
    assert "unit=11.8" in page.url
    assert_no_exception(page, server)
