"""A student opens a lecturer's link to the convolution lab on a freshly started server and steps once."""

import torch
import torch.nn.functional as F

from browser_helpers import assert_no_exception, click_text, wait_for_app, wait_for_text
from cnnviz.examples import LECTURE_BIAS, LECTURE_FILTER, LECTURE_INPUT
from cnnviz.notation import number


def test_link_with_query_params_then_one_step_forward(fresh_server, browser_page):
    server = fresh_server()  # a fresh server: the page's URL is the first request it serves
    # The lecture's example without padding, stride 1, starting at the third output.
    browser_page.goto(f"{server.url}/Convolution?pad=0&step=2")
    wait_for_app(browser_page)
    wait_for_text(browser_page, "Output 3 of 4")
    expected = F.conv2d(LECTURE_INPUT[None, None], LECTURE_FILTER[None, None],
                        torch.tensor([LECTURE_BIAS], dtype=torch.float64))[0, 0]
    wait_for_text(browser_page, f"(bias) = {number(expected[1, 0])}")

    click_text(browser_page, "Next")
    wait_for_text(browser_page, "Output 4 of 4")
    wait_for_text(browser_page, "row 2, column 2")
    # The fourth window: rows 2-4, columns 2-4 of the unpadded input.
    window = LECTURE_INPUT[1:4, 1:4]
    wait_for_text(browser_page, f"= {number((window * LECTURE_FILTER).sum())}")
    wait_for_text(browser_page, f"(bias) = {number(expected[1, 1])}")
    assert "step=3" in browser_page.url  # the new state is in the link
    assert_no_exception(browser_page, server)
