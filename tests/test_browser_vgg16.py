"""A lecturer's link to the architecture explorer, opened first on a freshly started server;
then the input size is changed and a box of the diagram is clicked."""

from browser_helpers import assert_no_exception, wait_for_app, wait_for_rerun, wait_for_text
from cnnviz import summary as S


def test_link_with_query_params_then_a_new_input_size_and_a_click_on_a_box(fresh_server, browser_page):
    server = fresh_server()  # the page's URL is the first request this server serves
    page = browser_page
    page.goto(f"{server.url}/VGG16_explorer?model=vgg11&input=224")
    wait_for_app(page)
    vgg11 = S.summarize("vgg11", 224)
    wait_for_text(page, "VGG-11 for a 224×224×3 input")
    wait_for_text(page, f"{vgg11.params:,}")
    wait_for_text(page, f"{vgg11.macs:,}")
    assert_no_exception(page, server)

    box = page.get_by_label("Input size (pixels)", exact=True)
    box.fill("112")
    box.press("Enter")
    wait_for_rerun(page)
    smaller = S.summarize("vgg11", 112)
    wait_for_text(page, "VGG-11 for a 112×112×3 input")
    wait_for_text(page, f"{smaller.macs:,}")
    assert "input=112" in page.url and "model=vgg11" in page.url

    # Click the box of the first fully connected layer: the layer card and the link follow.
    fc1 = next(r for r in smaller.layers if r.label == "fc1")
    boxes = S.boxes(smaller)
    position = next(i for i, b in enumerate(boxes) if fc1.index in b.rows)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.locator(".scatterlayer .trace").first.locator(".point").nth(position).click(force=True)
    wait_for_rerun(page)
    wait_for_text(page, f"n′·(n + 1) = {fc1.out_shape[0]}·({fc1.in_shape[0]} + 1) = {fc1.params:,}")
    assert f"layer={fc1.index}" in page.url
    assert_no_exception(page, server)
