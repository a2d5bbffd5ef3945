"""A student opens a link to the training page with a small stack on a fresh server, starts training,
watches the live progress and curves, reloads the page (a new session: the run is found again through
the link and the student id the browser keeps), stops the run from the reloaded page, and gets the model
trained so far to download."""

import re
import time

from browser_helpers import assert_no_exception, click_text, wait_for_app, wait_for_text

STACK = "conv3x4,relu,maxpool2,flatten,fc10"


def test_train_live_reload_still_see_the_run_and_stop_it(fresh_server, browser_page, tmp_path):
    # a busy CI machine: one thread trains fastest
    server = fresh_server(env={"OMP_NUM_THREADS": "1", "CNNVIZ_RUNS_DIR": str(tmp_path / "runs")})
    browser_page.goto(f"{server.url}/Train_a_CNN?net={STACK}&epochs=50&batch=128")
    wait_for_app(browser_page)
    # conv 3x3 with 4 filters: 4·(3·3·1 + 1) = 40; fc on 14·14·4 = 784 numbers: 10·(784 + 1) = 7,850
    wait_for_text(browser_page, "7,890 parameters")
    wait_for_text(browser_page, "47 steps per epoch")  # ceil(6,000 / 128)

    click_text(browser_page, "Start training")
    wait_for_text(browser_page, "images/s", timeout_ms=60_000)  # the live progress line
    wait_for_text(browser_page, "Loss (lower is better)")
    wait_for_text(browser_page, "Confusion matrix after epoch 1", timeout_ms=60_000)
    run_id = re.search(r"[?&]run=([A-Za-z0-9_-]+)", browser_page.url).group(1)
    assert "epochs=50" in browser_page.url and "batch=128" in browser_page.url

    browser_page.reload()  # a new session: the link has the run, the browser's localStorage the student
    wait_for_app(browser_page)
    wait_for_text(browser_page, f"Your run {run_id}")
    wait_for_text(browser_page, "images/s")  # still training, shown live
    stop = browser_page.get_by_role("button", name="Stop").first  # its name: the icon's "stop", then "Stop"
    asked = time.monotonic()
    stop.click()
    wait_for_text(browser_page, "Stopped after", timeout_ms=10_000)
    print(f"Stop clicked to 'Stopped after' on the page: {time.monotonic() - asked:.2f} s")
    text = browser_page.evaluate("() => document.body.innerText")
    accuracy = float(re.search(r"Stopped after [\d.]+ epochs: test accuracy (\d+\.\d)%", text).group(1))
    assert accuracy > 40  # chance is 10 %
    wait_for_text(browser_page, f"{run_id} stopped")  # Your runs, once the whole page has run again
    wait_for_text(browser_page, "Download the checkpoint")  # the model trained so far is the session's
    assert f"run={run_id}" in browser_page.url
    assert_no_exception(browser_page, server)
