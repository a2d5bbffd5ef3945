"""Draw a picture and see it classified as you draw (the classify page's "Draw" image source).

    drawing = drawing_pad("classify.drawing", classifier)   # the Drawing, or None while blank

The canvas is our own components-v2 component (ui/components/drawing_canvas.*), not
streamlit-drawable-canvas: that package is a components-v1 iframe (Fabric.js, a bundled React
frontend) which sends the whole canvas as pixels on every update, cannot live in a fragment's
own rerun as cheaply, and would be one more dependency to keep working with each Streamlit
release. Ours is a few hundred lines in the page's own document (Playwright draws on it directly),
sends only the strokes (a few kilobytes), and follows the project's components rules: trusted code,
the drawing reaching Python only as data that cnnviz.drawing checks.

As you draw: each stroke's end sends the strokes; only this fragment reruns, prepares the drawing
(cnnviz.drawing) and runs the network once, and shows the probabilities beside the canvas. After
a short pause without drawing the canvas asks for one full rerun, so the rest of the page (the
preprocessing steps, the softmax, the network inside) shows the drawing too.

The drawing lives in session state (not in the canvas's widget state, which Streamlit forgets
while another image source is shown): it survives reruns, another source and other pages, and is
loaded back into the canvas when it is mounted again. A link cannot carry it.
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from cnnviz import classify, notation
from cnnviz.drawing import CANVAS_SIDE, EMPTY_MESSAGE, Drawing, DrawingError, classify_drawing, read_strokes

from .show import Component

_HERE = Path(__file__).resolve().parent / "components"
# Trusted files of ours; the strokes only ever travel as data.
_CANVAS = Component("cnnviz_drawing_canvas", **{part: (_HERE / f"drawing_canvas.{part}").read_text(encoding="utf-8")
                                                 for part in ("html", "css", "js")})
LIVE_TOP = 3  # classes shown beside the canvas; the page below shows them all
LINK_NOTE = ("Your drawing stays in this browser tab (it survives switching to another image or page); a link "
             "to this page cannot carry it.")


def _memory(key: str) -> dict:
    """The session's drawing and what the canvas was last told to load."""
    return st.session_state.setdefault(f"_drawing.{key}", {
        "drawing": Drawing(), "error": None, "load": {"id": 0, "strokes": []}, "page": None})


def _heard(key: str) -> None:
    """The canvas sent its strokes (a stroke's end, Undo or Clear): keep them if they can be read."""
    memory = _memory(key)
    value = st.session_state.get(key) or {}
    try:
        memory["drawing"] = read_strokes(value.get("strokes"))
        memory["error"] = None
    except DrawingError as error:
        memory["error"] = str(error)


def _live(drawing: Drawing, classifier: classify.Classifier | None, invert: str, key: str) -> None:
    """The drawing as the network sees it and its most likely classes, computed now."""
    if classifier is None:
        st.info("Choose a model above to classify your drawing.", icon=":material/model_training:")
        return
    start = time.perf_counter()
    try:
        prepared, prediction = classify_drawing(drawing, classifier, invert=invert)
    except classify.ClassifyError as error:
        st.error(str(error), icon=":material/block:")
        return
    seconds = time.perf_counter() - start
    st.markdown(f"**Top {LIVE_TOP} as you draw**")
    # Progress bars, not a chart: a stroke's update is a few small elements the browser draws at once.
    for index, p in prediction.top(LIVE_TOP):
        st.progress(min(p, 1.0), text=f"{classifier.classes[index]}: **{notation.percent(p)}**")
    seeing, caption = st.columns([1, 3], vertical_alignment="center")
    seeing.image(prepared.steps[-1].image, width=84)
    caption.caption(f"What the network sees ({notation.shape(tuple(prepared.tensor.shape))}). Prepared and "
                    f"classified in {notation.seconds(seconds)} on the server.")


@st.fragment
def _pad(key: str, classifier: classify.Classifier | None, invert: str) -> None:
    memory = _memory(key)
    if key not in st.session_state:  # not drawn in the previous run: the browser mounts the canvas anew
        memory["load"] = {"id": memory["load"]["id"] + 1, "strokes": memory["drawing"].as_json()}
    canvas, live = st.columns([1, 1], gap="medium")
    with canvas:
        # The same data while the canvas stays mounted: sent once, and the canvas is not called again.
        result = _CANVAS(key=key, data={"side": CANVAS_SIDE, "load": memory["load"]},
                         on_strokes_change=lambda: _heard(key), on_settled_change=lambda: None)
        st.caption(LINK_NOTE)
    drawing = memory["drawing"]
    with live:
        if memory["error"]:
            st.error(memory["error"], icon=":material/gesture:")
        elif drawing.empty:
            st.info(f"{EMPTY_MESSAGE} Draw with the mouse, a pen or a finger; each stroke is classified when "
                    "you lift it. Big, filled-in shapes work best.", icon=":material/draw:")
        else:
            _live(drawing, classifier, invert, key)
    if result["settled"] and drawing.ident != memory["page"]:
        st.rerun()  # the pause after drawing: the whole page catches up with the drawing


def drawing_pad(key: str, classifier: classify.Classifier | None, *, invert: str = "auto") -> Drawing | None:
    """The canvas with the drawing classified live beside it; the drawing to classify on the page, or None
    while the canvas is blank or its strokes could not be read (the message is shown)."""
    _pad(key, classifier, invert)
    memory = _memory(key)
    drawing = memory["drawing"]
    memory["page"] = drawing.ident  # what the page below shows now
    return None if memory["error"] or drawing.empty else drawing
