"""Lecturers' links opened first on a fresh server: the pooling page's two steppers step in the browser
(keys go to the one used last, never while typing in a field), each with its own link parameter; an old
builder link opens the stacking page, where a button rebuilds the head."""

import torch.nn.functional as F
from playwright.sync_api import expect

from browser_helpers import assert_no_exception, click_text, wait_for_app, wait_for_text
from cnnviz.examples import LECTURE_POOLING_INPUT
from cnnviz.network import build_model
from cnnviz.notation import number

STEPPER = "[data-part=stepper]"  # CSS locators pierce the components' shadow roots
POOL, STRIDED = 0, 1  # the page's two steppers, in page order


def stepper(page, index: int):
    return page.locator(STEPPER).nth(index)


def step_of(page, index: int) -> int:
    return int(stepper(page, index).get_attribute("data-step"))


def url_param(page, name: str) -> str | None:
    return page.evaluate(f"() => new URLSearchParams(location.search).get('{name}')")


def test_pooling_link_steps_keys_and_the_strided_stepper(fresh_server, browser_page):
    page = browser_page
    server = fresh_server()
    sent: list[int] = []  # websocket frames the browser sends: every rerun request is one
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(len(payload))))
    page.goto(f"{server.url}/Pooling?kind=mean&step=2")
    wait_for_app(page)
    pool = stepper(page, POOL)
    expect(pool).to_contain_text("Output 3 of 4")
    # Third window: rows 3-4, columns 1-2 of the lecture's grid.
    expect(pool).to_contain_text("(0 + 3 + 1 + 0) / 4 = 4 / 4 = 1")
    wait_for_app(page)

    before = len(sent)
    pool.get_by_role("button", name="Next", exact=True).click()
    expect(pool).to_contain_text("Output 4 of 4")
    last = F.avg_pool2d(LECTURE_POOLING_INPUT[None, None], 2, 2)[0, 0, 1, 1].item()
    expect(pool).to_contain_text(f"/ 4 = −9 / 4 = {number(last)}")
    page.wait_for_function("() => new URLSearchParams(location.search).get('step') === '3'")
    assert len(sent) == before

    # Keys go to the stepper used last (the pooling one), then, after a click in it, to the strided one.
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    assert (step_of(page, POOL), step_of(page, STRIDED)) == (1, 0)
    strided = stepper(page, STRIDED)
    strided.get_by_role("button", name="Next", exact=True).click()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert (step_of(page, POOL), step_of(page, STRIDED)) == (1, 3)
    expect(strided).to_contain_text("Output 4 of 4")
    page.keyboard.press("End")  # already there, no wrap
    assert step_of(page, STRIDED) == 3
    assert len(sent) == before, "stepping sent a message to the server"
    page.wait_for_function("() => new URLSearchParams(location.search).get('sstep') === '3'")
    assert url_param(page, "step") == "1"
    page.wait_for_timeout(900)
    wait_for_app(page)
    assert len(sent) <= before + 2  # then Python hears each stepper once (one fragment rerun each)

    # Typing in a field: the keys are the field's.
    kernel = page.get_by_label("Kernel size k")
    kernel.click()
    for key in ["ArrowLeft", "ArrowRight", "Home", "End"]:
        kernel.press(key)
    assert (step_of(page, POOL), step_of(page, STRIDED)) == (1, 3)

    # Reloading the link opens both steppers where they were.
    page.reload()
    wait_for_app(page)
    expect(stepper(page, STRIDED)).to_have_attribute("data-step", "3")
    expect(stepper(page, POOL)).to_have_attribute("data-step", "1")
    expect(stepper(page, POOL)).to_contain_text("(1 + 1 + 0 + 1) / 4 = 3 / 4 = 0.75")
    assert_no_exception(page, server)


def test_an_old_builder_link_opens_the_stacking_page_first(fresh_server, browser_page):
    server = fresh_server()  # the old link is the first request this server serves
    stack = "conv3x16,relu,maxpool2,conv3x32,relu,maxpool2,conv3x64,relu,maxpool2,flatten,fc10"
    browser_page.goto(f"{server.url}/Pooling?net={stack}&inp=28")
    wait_for_app(browser_page)
    wait_for_text(browser_page, "What one unit sees")
    assert "/Stacking_layers" in browser_page.url
    click_text(browser_page, "GAP head")
    gap_stack = stack.replace("flatten", "gap")
    params = sum(p.numel() for p in build_model(gap_stack, (1, 28, 28)).parameters())
    wait_for_text(browser_page, f"{params:,} parameters")
    assert "gap%2Cfc10" in browser_page.url or "gap,fc10" in browser_page.url
    assert_no_exception(browser_page, server)
