"""'Your turn' in chromium on a fresh server: the progress a student makes is kept by the browser (a reload,
a new session, still shows it, and a rerun never counts an answer twice), and a question put to the hall
keeps its answer hidden until the presenter reveals it, on a 1280×720 projector without scrolling."""

from __future__ import annotations

import re

from browser_helpers import assert_no_exception, click_text, content_height, wait_for_app, wait_for_rerun, wait_for_text
from cnnviz.exercises import make

PROGRESS = "[data-part=progress]"


def progress(page) -> tuple[int, int]:
    """(answered, right first time) as the page's progress line shows them."""
    page.wait_for_selector(PROGRESS, state="attached")
    line = page.locator(PROGRESS).first
    return int(line.get_attribute("data-answered")), int(line.get_attribute("data-right"))


def wait_for_progress(page, expected: tuple[int, int], timeout_s: float = 10) -> None:
    """Until the progress line (in the component's shadow root: a locator, not document.querySelector,
    reaches it) shows `expected`."""
    for _ in range(int(timeout_s / 0.2)):
        if progress(page) == expected:
            return
        page.wait_for_timeout(200)
    assert progress(page) == expected


def press(page, label: str) -> None:
    """Click the button labelled `label` (its Material icon's name may precede it), then wait for the rerun."""
    page.get_by_role("button").filter(has_text=re.compile(rf"{re.escape(label)}$")).first.click()
    wait_for_rerun(page)


def wait_for_component_text(page, text: str, timeout_ms: float = 15_000) -> None:
    """Until a component (in its shadow root, which body.innerText leaves out) shows `text`."""
    page.wait_for_function(
        """(text) => [...document.querySelectorAll("[data-testid=stBidiComponentIsolated]")].some(
               (host) => host.shadowRoot && host.shadowRoot.textContent.includes(text))""",
        arg=text, timeout=timeout_ms)


def check(page, text: str) -> None:
    page.get_by_label("Your answer").fill(text)
    page.get_by_role("button", name="Check", exact=True).click()
    wait_for_rerun(page)


def test_progress_survives_a_reload(app_server, browser_page):
    page = browser_page
    first = make("conv-size", 5)
    page.goto(f"{app_server.url}/Convolution?q={first.code}")
    wait_for_app(page)
    assert progress(page) == (0, 0)
    check(page, "1000")  # wrong
    wait_for_text(page, "Not right")
    wait_for_progress(page, (1, 0))

    press(page, "Hint")  # a rerun with the same event: counted once
    press(page, "New question")
    code = page.url.split("q=")[1].split("&")[0]
    kind, seed = code.rsplit(".", 1)
    second = make(kind, int(seed))
    check(page, second.answer.text)
    wait_for_text(page, "Right first time")
    wait_for_progress(page, (2, 1))

    page.reload()  # a new session: only the browser remembers
    wait_for_app(page)
    page.wait_for_timeout(500)
    assert progress(page) == (2, 1)
    assert "This lesson: 2 questions answered, 1 right first time" in page.locator(PROGRESS).first.inner_text()

    page.goto(f"{app_server.url}/Pooling")  # progress is per lesson
    wait_for_app(page)
    assert progress(page) == (0, 0)
    assert_no_exception(page, app_server)


def test_the_hall_question_hides_its_answer_until_revealed(app_server, browser_page):
    page = browser_page
    page.set_viewport_size({"width": 1280, "height": 720})
    question = make("pool-value", 9)
    page.goto(f"{app_server.url}/Pooling?present=1&q={question.code}")
    wait_for_app(page)
    press(page, "Ask the hall")
    wait_for_text(page, "Your turn · A pooled value")
    assert f"ask={question.code}" in page.url
    shown = page.evaluate("() => document.body.innerText")
    assert f"Answer: {question.answer.text}" not in shown and question.worked[-1][1] not in shown
    page.wait_for_timeout(600)  # the grid lays out
    assert content_height(page) <= 722, content_height(page)  # fits the projector

    press(page, "Reveal")
    wait_for_text(page, f"Answer: {question.answer.text}")
    wait_for_text(page, question.worked[-1][1])
    assert "reveal=1" in page.url
    page.wait_for_timeout(600)
    assert content_height(page) <= 722, content_height(page)

    # a student's phone on the same link (as a room opens it): the question on top, the answer revealed
    student = page.context.browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    student.goto(f"{app_server.url}/Pooling?ask={question.code}")
    wait_for_app(student)
    wait_for_text(student, "Question from the lecture · A pooled value")
    assert f"The answer: {question.answer.text}" not in student.evaluate("() => document.body.innerText")
    student.goto(f"{app_server.url}/Pooling?ask={question.code}&reveal=1")
    wait_for_app(student)
    wait_for_text(student, f"The answer: {question.answer.text}")
    student.context.close()
    assert_no_exception(page, app_server)


def test_a_room_takes_the_hall_question_to_the_phones(app_server, chromium_browser):
    """The presenter's room publishes `ask` and `reveal` (they are not app-wide parameters): a following
    student's page shows the question, then the answer once it is revealed."""
    presenter_context = chromium_browser.new_context(viewport={"width": 1280, "height": 720})
    student_context = chromium_browser.new_context(viewport={"width": 390, "height": 844})
    try:
        presenter, student = presenter_context.new_page(), student_context.new_page()
        question = make("pool-head", 4)
        presenter.goto(f"{app_server.url}/Pooling?q={question.code}")
        wait_for_app(presenter)
        click_text(presenter, "Lecture hall")
        press(presenter, "Open a room")
        presenter.wait_for_selector("[data-part=room-text][data-code]", state="attached")
        code = presenter.locator("[data-part=room-text]").first.get_attribute("data-code")
        student.goto(f"{app_server.url}/r/{code}")
        wait_for_app(student)
        wait_for_component_text(student, f"Following room {code} · live")

        press(presenter, "Presenter view")
        press(presenter, "Ask the hall")
        wait_for_text(presenter, "Your turn · Flatten or GAP")
        student.wait_for_url(lambda url: f"ask={question.code}" in url, timeout=15_000)
        wait_for_app(student)
        wait_for_text(student, "Question from the lecture · Flatten or GAP")
        assert f"The answer: {question.answer.text}" not in student.evaluate("() => document.body.innerText")
        assert "present=1" not in student.url and "q=" not in student.url  # the presenter's own parameters stay

        press(presenter, "Reveal")
        student.wait_for_url(lambda url: "reveal=1" in url, timeout=15_000)
        wait_for_app(student)
        wait_for_text(student, f"The answer: {question.answer.text}")
        assert_no_exception(student, app_server)
    finally:
        presenter_context.close()
        student_context.close()
