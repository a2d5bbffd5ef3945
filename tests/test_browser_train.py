"""A student opens a link to the training page with a small stack on a fresh server, starts
training, watches the live progress and curves, and gets a checkpoint to download."""

import re

from browser_helpers import assert_no_exception, click_text, wait_for_app, wait_for_text

STACK = "conv3x4,relu,maxpool2,flatten,fc10"


def test_link_then_train_live_until_finished(fresh_server, browser_page):
    server = fresh_server(env={"OMP_NUM_THREADS": "1"})  # a busy CI machine: one thread trains fastest
    browser_page.goto(f"{server.url}/Train_a_CNN?net={STACK}&epochs=2&batch=256")
    wait_for_app(browser_page)
    # conv 3x3 with 4 filters: 4·(3·3·1 + 1) = 40; fc on 14·14·4 = 784 numbers: 10·(784 + 1) = 7,850
    wait_for_text(browser_page, "7,890 parameters")
    wait_for_text(browser_page, "24 steps per epoch")  # ceil(6,000 / 256)

    click_text(browser_page, "Start training")
    wait_for_text(browser_page, "images/s", timeout_ms=60_000)  # the live progress line
    wait_for_text(browser_page, "Loss (lower is better)")
    wait_for_text(browser_page, "Finished 2 epochs: test accuracy", timeout_ms=120_000)
    text = browser_page.evaluate("() => document.body.innerText")
    accuracy = float(re.search(r"Finished 2 epochs: test accuracy (\d+\.\d)%", text).group(1))
    assert accuracy > 40  # chance is 10 %
    wait_for_text(browser_page, "Confusion matrix after epoch 2")
    wait_for_text(browser_page, "Download the checkpoint")
    assert "epochs=2" in browser_page.url and "batch=256" in browser_page.url
    assert_no_exception(browser_page, server)
