#!/usr/bin/env python
"""What one stroke costs on the server when a student draws on the classify page (bundled Fashion-MNIST CNN).

    python benchmarks/drawing_speed.py               # 12 strokes of a T-shirt, drawn one after another
    python benchmarks/drawing_speed.py --repeats 11
    python benchmarks/drawing_speed.py --browser     # the same strokes drawn on a real server's page

At a stroke's end the canvas sends all strokes and only the drawing's fragment reruns (ui/drawing.py):
it reads the strokes, prepares the drawing (cnnviz.drawing: draw, crop, scale, centre, invert) and runs
the network once. Measured per stroke, for the drawing as it grows:

- engine: read_strokes + classify_drawing (prepare, then one forward pass: what the fragment computes), the
  fastest of --repeats, each part;
- fragment: the fragment's script alone run by AppTest with the canvas's state set as the browser sends it
  (the components, the chart and the images included; AppTest's own start-up per run too, so this is an
  upper bound on the server's fragment rerun), the median of --repeats.

With --browser, the same T-shirt is drawn with the mouse on a freshly started server's page in headless
chromium (Debian's /usr/bin/chromium), and each stroke is timed on the browser's clock from the canvas
sending its strokes (the websocket message) to the last message of the fragment's rerun handled by the page
(the server's real fragment rerun and localhost's round trip, but also any wait in the page's own queue
behind its work on earlier messages), and to the new probabilities' caption in the page.

Goal: a stroke's end to updated probabilities in <= 100 ms on the server; the ratio to 100 ms is printed
(the script exits 1 if the slowest stroke's median is over it).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cnnviz import classify  # noqa: E402
from cnnviz.drawing import classify_drawing, read_strokes  # noqa: E402

GOAL_MS = 100.0
KEY = "bench.drawing"
# A T-shirt in canvas units (0 … 280): its outline, then scribbles filling it, as a student draws it.
OUTLINE = [(60, 60), (110, 45), (170, 45), (220, 60), (255, 110), (215, 125), (200, 100), (200, 240), (80, 240),
           (80, 100), (65, 125), (25, 110), (60, 60)]
FILL = [[(90, y), (190, y), (190, y + 15), (90, y + 15)] for y in range(60, 230, 17)]


def as_browser_sends(polyline, width: int = 20, spacing: float = 3.0) -> dict:
    """A stroke as the canvas sends it: a point every few canvas units along the pointer's path."""
    points = [polyline[0]]
    for (x0, y0), (x1, y1) in zip(polyline, polyline[1:]):
        n = max(1, math.ceil(math.hypot(x1 - x0, y1 - y0) / spacing))
        points += [(round(x0 + (x1 - x0) * i / n), round(y0 + (y1 - y0) * i / n)) for i in range(1, n + 1)]
    return {"w": width, "p": [c for point in points for c in point]}


def fragment_app() -> None:
    """The drawing's fragment on its own: the code a stroke's end reruns."""
    from ui.drawing import drawing_pad
    from ui.upload import bundled_model

    drawing_pad("bench.drawing", bundled_model())


# In the page: the time of every websocket message sent, and of every change of the live caption.
RECORDER = """
window.__sends = [];
window.__receives = [];
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (...args) {
    if (!this.__heard) {
        this.__heard = true;
        this.addEventListener("message", () => window.__receives.push(performance.now()));
    }
    window.__sends.push(performance.now());
    return send.apply(this, args);
};
window.__captions = [];
new MutationObserver(() => {
    const el = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
        .find(e => e.innerText.includes('Prepared and classified'));
    const text = el ? el.innerText : null;
    const last = window.__captions.at(-1);
    if (text && (!last || last.text !== text)) window.__captions.push({text, at: performance.now()});
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def browser_strokes(polylines, repeats: int) -> tuple[list[float], list[float]]:
    """Milliseconds from each stroke's message to the last message of the fragment's rerun received (the
    server and localhost), and to the new live caption in the page, on a fresh server: medians of `repeats`
    drawings (Clear between them)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from playwright.sync_api import sync_playwright

    from browser_helpers import launch_chromium, wait_for_app
    from server import StreamlitServer

    canvas = "canvas[data-part=canvas]"
    per_stroke: list[list[float]] = [[] for _ in polylines]
    server_side: list[list[float]] = [[] for _ in polylines]
    with StreamlitServer() as server, sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
        page.add_init_script(RECORDER)
        page.goto(f"{server.url}/Classify_an_image")
        wait_for_app(page)
        page.get_by_text("Draw", exact=True).click()
        page.wait_for_selector(canvas)
        wait_for_app(page)
        page.get_by_role("button", name="Thick brush").click()
        page.locator(canvas).evaluate("c => c.scrollIntoView({block: 'center'})")
        for _ in range(repeats + 1):  # the first drawing warms the server up: not counted
            for i, polyline in enumerate(polylines):
                box = page.locator(canvas).bounding_box()
                scale = box["width"] / 280
                sends = page.evaluate("() => window.__sends.length")
                captions = page.evaluate("() => window.__captions.length")
                page.mouse.move(box["x"] + polyline[0][0] * scale, box["y"] + polyline[0][1] * scale)
                page.mouse.down()
                for x, y in polyline[1:]:
                    page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=6)
                page.mouse.up()
                page.wait_for_function("(n) => window.__captions.length > n", arg=captions, timeout=30_000)
                sent = page.evaluate("(n) => window.__sends[n]", sends)
                shown = page.evaluate("(n) => window.__captions[n].at", captions)
                answered = page.evaluate("(t) => Math.max(...window.__receives.filter(r => r <= t))", shown)
                if _ > 0:
                    per_stroke[i].append(shown - sent)
                    server_side[i].append(answered - sent)
                page.wait_for_timeout(1500)  # past the pause: the page's full rerun is over
                wait_for_app(page)
            page.get_by_role("button", name="Clear").click()
            page.wait_for_timeout(300)
            wait_for_app(page)
        browser.close()
    return [statistics.median(t) for t in server_side], [statistics.median(t) for t in per_stroke]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--browser", action="store_true", help="time strokes drawn on a real server's page")
    args = parser.parse_args()
    if args.browser:
        polylines = [OUTLINE, *FILL[::3]]
        drawings = max(1, args.repeats // 2)
        server_ms, page_ms = browser_strokes(polylines, drawings)
        print(f"medians of {drawings} drawings, from the stroke's message: to the rerun's last message handled "
              "by the page (server, localhost, the page's queue) | to the new caption in the page")
        for n, (server, shown) in enumerate(zip(server_ms, page_ms), start=1):
            print(f"stroke {n}: {server:6.1f} ms = {server / GOAL_MS:.2f}x of 100 ms | {shown:6.1f} ms")
        worst = max(server_ms)
        print(f"slowest stroke on the server {worst:.1f} ms: {'met' if worst <= GOAL_MS else 'NOT met'}")
        return 0 if worst <= GOAL_MS else 1
    from streamlit.testing.v1 import AppTest

    clf = classify.load_bundled()
    strokes = [as_browser_sends(OUTLINE), *(as_browser_sends(line) for line in FILL)]
    growing = [strokes[:n] for n in range(1, len(strokes) + 1)]
    print(f"{clf.title}: a T-shirt drawn in {len(strokes)} strokes, "
          f"{sum(len(s['p']) // 2 for s in strokes)} points in all")

    def engine(sent: list[dict]) -> tuple[float, float, float]:
        """Milliseconds to read the strokes (as JSON from the browser), to prepare the drawing (and set up the
        network's run), and of the forward pass itself."""
        t0 = time.perf_counter()
        drawing = read_strokes(json.loads(json.dumps(sent)))
        t1 = time.perf_counter()
        _, prediction = classify_drawing(drawing, clf)
        t2 = time.perf_counter()
        return (t1 - t0) * 1000, (t2 - t1) * 1000 - prediction.seconds * 1000, prediction.seconds * 1000

    # The engine first, on its own: AppTest's script thread keeps torch's own worker threads of another pool
    # busy-waiting for a while after each run, which on a 2-core machine slows whatever runs beside it.
    engine(growing[0])  # warm up torch and Pillow
    engine_rows = []
    for sent in growing:
        runs = sorted((engine(sent) for _ in range(args.repeats)), key=sum)
        engine_rows.append(runs[0])  # the fastest: slower runs measure the other programs on the machine

    at = AppTest.from_function(fragment_app, default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]

    def run_fragment(sent: list[dict]) -> float:
        widgets = at._tree.get_widget_states()
        state = widgets.widgets.add()
        state.id = next(e for e in at.get("bidi_component") if e.key == KEY).proto.id
        state.json_value = json.dumps({"strokes": sent})
        start = time.perf_counter()
        at._run(widgets)
        seconds = time.perf_counter() - start
        assert not at.exception, [e.value for e in at.exception]
        assert any("What the network sees" in c.value for c in at.caption)
        return seconds * 1000

    run_fragment(growing[0])
    print(f"{'strokes':>7} {'points':>6}  {'read':>6} {'prepare':>8} {'forward':>8} {'engine':>8}  "
          f"{'fragment (median)':>17}  {'ratio to 100 ms':>15}")
    fragment_medians = []
    for sent, (read, prep, net) in zip(growing, engine_rows):
        fragment = statistics.median(run_fragment(sent) for _ in range(args.repeats))
        fragment_medians.append(fragment)
        print(f"{len(sent):>7} {sum(len(s['p']) // 2 for s in sent):>6}  {read:>3.1f} ms {prep:>5.1f} ms "
              f"{net:>5.1f} ms {read + prep + net:>5.1f} ms  {fragment:>14.1f} ms  {fragment / GOAL_MS:>14.2f}x")
    worst = max(fragment_medians)
    met = worst <= GOAL_MS
    print(f"slowest stroke, fragment median {worst:.1f} ms = {worst / GOAL_MS:.2f} of the 100 ms goal: "
          f"{'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
