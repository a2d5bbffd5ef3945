"""Lecturers' links opened first on a fresh server: the pooling page steps; an old builder link opens the
stacking page, where a button rebuilds the head."""

import torch.nn.functional as F

from browser_helpers import assert_no_exception, click_text, wait_for_app, wait_for_text
from cnnviz.examples import LECTURE_POOLING_INPUT
from cnnviz.network import build_model
from cnnviz.notation import number


def test_pooling_link_step_and_network_head(fresh_server, browser_page):
    server = fresh_server()
    browser_page.goto(f"{server.url}/Pooling?kind=mean&step=2")
    wait_for_app(browser_page)
    wait_for_text(browser_page, "Output 3 of 4")
    # Third window: rows 3-4, columns 1-2 of the lecture's grid.
    wait_for_text(browser_page, "(0 + 3 + 1 + 0) / 4 = 4 / 4 = 1")

    click_text(browser_page, "Next")
    wait_for_text(browser_page, "Output 4 of 4")
    last = F.avg_pool2d(LECTURE_POOLING_INPUT[None, None], 2, 2)[0, 0, 1, 1].item()
    wait_for_text(browser_page, f"/ 4 = −9 / 4 = {number(last)}")
    assert "step=3" in browser_page.url

    assert_no_exception(browser_page, server)


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
