"""Presenter rooms in two browsers against a fresh server: a presenter opens a room and moves; a
student's page follows within a second, leaves, rejoins, and can never drive the room.

A step travels between the labs' client-side steppers (ui.client_stepper): the presenter's stepper
dispatches `cnnviz:stepped`, the room carries it, the student's page gets `cnnviz:goto` and its stepper
moves, with no reload.
"""

from __future__ import annotations

import json

import pytest
from browser_helpers import VIEWPORT, assert_no_exception, click_text, wait_for_app, wait_for_rerun, wait_for_text

FOLLOW_SECONDS = 1.0
# The presenter's page: when its URL changed (Streamlit writes it with pushState; epoch ms).
RECORD_URL_CHANGES = """
window.__urlChanges = [];
for (const name of ["pushState", "replaceState"]) {
  const original = history[name];
  history[name] = function (...args) {
    const result = original.apply(this, args);
    window.__urlChanges.push([Date.now(), location.pathname + location.search]);
    return result;
  };
}
"""
# The student's page: every cnnviz:goto it receives, and when (epoch ms).
RECORD_GOTOS = """
window.__gotos = [];
window.addEventListener("cnnviz:goto", (event) => window.__gotos.push({...event.detail, at: Date.now()}));
"""


def _line_text(page) -> str:
    return page.locator("[data-part=room-text]").first.inner_text()


def _wait_for_line(page, text: str, timeout_ms: float = 15_000) -> None:
    page.wait_for_function(
        """(text) => [...document.querySelectorAll("[data-testid=stBidiComponentIsolated]")].some(
               (host) => host.shadowRoot && host.shadowRoot.textContent.includes(text))""",
        arg=text, timeout=timeout_ms)


def _moved_at(presenter, pattern: str) -> float:
    """When the presenter's URL (path and query) first matched `pattern` (epoch ms)."""
    at = presenter.evaluate(
        "(pattern) => (window.__urlChanges.find(([at, url]) => new RegExp(pattern).test(url)) || [null])[0]",
        pattern)
    assert at is not None, f"the presenter's URL never matched {pattern!r}: {presenter.url}"
    return at


def _follows(student, presenter, pattern: str, student_url: str) -> float:
    """Wait until the student's page has opened the presenter's new page (its URL ends with
    `student_url`); return how long after the presenter's URL matched `pattern` the student's browser
    began opening it (s)."""
    student.wait_for_url(lambda url: url.endswith(student_url), timeout=10_000)
    student.wait_for_load_state("domcontentloaded")
    wait_for_app(student)
    started, drawn = student.evaluate("() => [performance.timeOrigin, Date.now()]")  # the navigation began
    moved = _moved_at(presenter, pattern)
    print(f"{student_url}: opening after {(started - moved) / 1000:.3f} s, drawn after {(drawn - moved) / 1000:.3f} s")
    return (started - moved) / 1000


def _forget_moves(presenter) -> None:
    presenter.evaluate("() => { window.__urlChanges.length = 0; }")


@pytest.mark.browser
def test_a_hall_follows_the_presenter(fresh_server, chromium_browser):
    server = fresh_server()
    presenter_context = chromium_browser.new_context(viewport=dict(VIEWPORT))
    student_context = chromium_browser.new_context(viewport={"width": 390, "height": 844})  # a phone
    try:
        presenter, student = presenter_context.new_page(), student_context.new_page()
        for page in (presenter, student):
            page.set_default_timeout(30_000)
        presenter_context.add_init_script(RECORD_URL_CHANGES)
        student_context.add_init_script(RECORD_GOTOS)
        received: list[bytes | str] = []
        student.on("websocket", lambda ws: ws.on("framereceived", lambda frame: received.append(frame)))

        # The presenter opens a room on the convolution page.
        presenter.goto(f"{server.url}/Convolution")
        wait_for_app(presenter)
        click_text(presenter, "Lecture hall")
        click_text(presenter, "Open a room")
        _wait_for_line(presenter, "students open")
        code = presenter.locator("[data-part=room-text]").first.get_attribute("data-code")
        assert code and len(code) == 5 and f"/r/{code}" in _line_text(presenter)
        token = presenter.evaluate("() => JSON.parse(sessionStorage.getItem('cnnviz.room.presenting')).token")
        assert len(token) >= 32 and token not in presenter.url

        # The student opens the room's link: the presenter's page, in the room.
        student.goto(f"{server.url}/r/{code}")
        wait_for_app(student)
        assert student.url.endswith(f"/Convolution?room={code}")
        _wait_for_line(student, f"Following room {code} · live")

        # A page change follows within a second.
        _forget_moves(presenter)
        click_text(presenter, "2. Pooling and strides")
        seconds = _follows(student, presenter, "^/Pooling", f"/Pooling?room={code}")
        assert 0 < seconds < FOLLOW_SECONDS, f"the student's page followed after {seconds:.2f} s"
        wait_for_text(student, "Pooling and strides")
        _wait_for_line(student, f"Following room {code} · live")
        delays = {"page": seconds}

        # A settings change (the same page, another stride) follows within a second.
        click_text(presenter, "1. Convolution")
        _follows(student, presenter, "^/Convolution", f"/Convolution?room={code}")
        _forget_moves(presenter)
        stride = presenter.get_by_label("Stride s")
        stride.fill("2")
        stride.press("Enter")
        wait_for_rerun(presenter)
        assert "s=2" in presenter.url
        seconds = _follows(student, presenter, "s=2", f"/Convolution?s=2&room={code}")
        assert 0 < seconds < FOLLOW_SECONDS, f"the student's page followed after {seconds:.2f} s"
        delays["settings"] = seconds

        # Steps: the presenter's stepper moves; the student's stepper is told (cnnviz:goto) and moves
        # too, with no reload.
        student.evaluate("() => { window.__notReloaded = true; window.__gotos.length = 0; }")
        presenter_next = presenter.locator("[data-part=stepper] [data-act=next]").first
        for _ in range(3):
            presenter_next.click()
        stepped_at = presenter.evaluate("() => Date.now()")
        student_stepper = student.locator("[data-part=stepper]").first
        student.wait_for_function(
            """() => [...document.querySelectorAll("[data-testid=stBidiComponentIsolated]")].some((host) =>
                   host.shadowRoot?.querySelector("[data-part=stepper]")?.dataset.step === "3")""", timeout=10_000)
        arrived_at = student.evaluate("() => Date.now()")
        gotos = student.evaluate("() => window.__gotos")
        assert [{"key": goto["key"], "step": goto["step"]} for goto in gotos][-1] == {"key": "conv.stepper", "step": 3}
        seconds = (arrived_at - stepped_at) / 1000
        assert seconds < FOLLOW_SECONDS, f"the step reached the student after {seconds:.2f} s"
        assert student.evaluate("() => window.__notReloaded") is True
        assert student_stepper.get_attribute("data-step") == "3"
        delays["step"] = seconds
        presenter.wait_for_url(lambda url: "step=3" in url)
        student.wait_for_url(lambda url: "step=3" in url)  # the student's stepper wrote its own link

        # The student cannot drive the room: no token in their page, their storage or what the
        # server sent them; a publish without it is refused.
        seen = student.evaluate("""() => document.documentElement.outerHTML + location.href +
            JSON.stringify(sessionStorage) + JSON.stringify(localStorage) +
            [...document.querySelectorAll("[data-testid=stBidiComponentIsolated]")]
                .map((host) => host.shadowRoot ? host.shadowRoot.innerHTML : "").join("")""")
        assert token not in seen
        assert received and not any(token.encode() in (f if isinstance(f, bytes) else f.encode()) for f in received)
        statuses = student.evaluate("""async (code) => {
            const post = (body) => fetch(`/api/rooms/${code}`, {method: "POST", body: JSON.stringify(body)})
                .then((response) => response.status);
            return [await post({path: "/Stacking_layers", query: ""}),
                    await post({token: "guess", path: "/Stacking_layers", query: ""}),
                    await post({token: null})];
        }""", code)
        assert statuses == [403, 403, 403]
        assert "/Convolution" in student.url

        # Leave: the student explores alone and the hall moves on without them.
        # (Pressed like a finger, not in one instant: a stepper with a step still to tell Python sends it
        # on pointerdown, and Streamlit would fold a click in the same instant into that fragment's rerun.)
        student.get_by_role("button", name="Leave").click(delay=100)
        wait_for_rerun(student)
        assert "room=" not in student.url
        wait_for_text(student, f"Rejoin room {code}")
        click_text(presenter, "2. Pooling and strides")
        presenter.wait_for_url("**/Pooling**")
        student.wait_for_timeout(1500)
        assert "/Convolution" in student.url and "room=" not in student.url

        # Rejoin: back where the presenter is (a new page load: no waiting for a rerun of this one).
        student.get_by_role("button", name=f"Rejoin room {code}").click()
        _follows(student, presenter, "^/Pooling", f"/Pooling?room={code}")
        _wait_for_line(student, f"Following room {code} · live")

        # A reload keeps the presenter presenting (the tab kept the room), and the hall still follows.
        presenter.reload()
        wait_for_app(presenter)
        _wait_for_line(presenter, f"Room {code} · students open")
        _forget_moves(presenter)
        click_text(presenter, "Home: the lecture's map")
        seconds = _follows(student, presenter, "^/(\\?|$)", f"/?room={code}")
        assert 0 < seconds < FOLLOW_SECONDS, f"the student's page followed after {seconds:.2f} s"
        delays["page after the presenter's reload"] = seconds
        print("followed after (s):", {what: round(value, 3) for what, value in delays.items()})

        # What a room holds is the presenter's input: a page whose room says to go elsewhere than a page
        # of this app stays where it is (the server refuses such a location; this is the page's own check).
        wary = chromium_browser.new_context(viewport={"width": 390, "height": 844})
        answers = [{"path": "//evil.example/x", "query": ""}, {"path": "https://evil.example/", "query": ""},
                   {"path": "javascript:alert(1)", "query": ""}, {"path": "/\\evil.example", "query": ""},
                   {"path": "/Pooling", "query": "a=1#x"}, {"path": "/Pooling", "query": "", "step": None}]
        served = []

        def hostile_room(route):
            if not answers:
                return route.continue_()
            served.append({"code": code, "version": 100 + len(served), **answers.pop(0)})
            route.fulfill(status=200, content_type="application/json", body=json.dumps(served[-1]))

        try:
            wary.route("**/api/rooms/**", hostile_room)
            wary_page = wary.new_page()
            wary_page.goto(f"{server.url}/Stacking_layers?room={code}")
            wary_page.wait_for_url(lambda url: "/Pooling?" in url, timeout=15_000)  # the last, safe answer
            assert len(served) == 6 and wary_page.url == f"{server.url}/Pooling?room={code}"
        finally:
            wary.close()

        # The presenter closes the room (the box is open while a room is): the student is told.
        click_text(presenter, "Close the room")
        _wait_for_line(student, f"Room {code} has ended.")
        for page in (presenter, student):
            assert_no_exception(page, server)
    finally:
        presenter_context.close()
        student_context.close()
