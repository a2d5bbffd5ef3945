"""The presenter view, the lecture tour and short links with their QR codes."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from apptest_helpers import button, open_page
from async_helpers import run as run_async
from PIL import Image
from starlette.requests import Request

from cnnviz.links import LINKS, LinkError, ShortLinks, check_target, code_for
from cnnviz.tour import TOUR, neighbour, stop_link, stop_query
from ui.lessons import LESSONS
from ui.serving import short_link


def test_the_tour_follows_the_lecture_in_slide_order():
    titles = [stop.title for stop in TOUR]
    assert titles[0] == "A convolution with zero padding" and titles[-2] == "Softmax: scores become probabilities"
    # The lecture ends with its slide on training: one gradient descent step on the convolution page.
    assert (titles[-1], TOUR[-1].page, TOUR[-1].section) == ("One step of gradient descent", "1_Convolution.py", "sgd")
    pages = [stop.page for stop in TOUR[:-1]]
    order = [lesson.page for lesson in LESSONS]
    assert pages == sorted(pages, key=order.index)  # never back to an earlier page before that
    assert [s.query.get("ex") for s in TOUR[:4]] == [None, "no-padding", "two-channels", "two-filters"]
    assert [s.section for s in TOUR if s.section][:4] == ["graph", "costs", "strided", "flatten"]
    assert stop_link(7, present="1") == "/Pooling?kind=mean&stop=8&present=1"
    assert neighbour(None, +1) == 0 and neighbour(len(TOUR) - 1, +1) is None and neighbour(0, -1) is None


@pytest.mark.parametrize("index", range(len(TOUR)))
def test_every_stop_opens_cleanly_in_the_presenter_view(index):
    stop = TOUR[index]
    at = open_page(f"pages/{stop.page}", **stop_query(index, present="1"))
    assert not at.warning, [w.value for w in at.warning]  # the stop's link is valid for its page
    assert any(f"{index + 1}/{len(TOUR)} · {stop.title}" in m.value for m in at.markdown)
    assert not at.sidebar.button  # the sidebar's controls are not drawn in the presenter view


def test_next_and_previous_walk_the_tour_across_pages():
    vgg = next(i for i, stop in enumerate(TOUR) if stop.page == "6_VGG16_explorer.py")
    softmax = vgg + 1
    assert TOUR[softmax].page == "7_Classify_an_image.py"
    n = len(TOUR)
    at = open_page("pages/6_VGG16_explorer.py", present="1", stop=str(vgg + 1))
    button(at, "▶").click().run()
    assert not at.exception
    assert dict(at.query_params) == {"stop": [str(softmax + 1)], "present": ["1"]}
    assert any(f"{softmax + 1}/{n} · Softmax" in m.value for m in at.markdown)
    at = open_page("pages/7_Classify_an_image.py", present="1", stop=str(softmax + 1))
    button(at, "◀").click().run()
    assert dict(at.query_params) == {"stop": [str(vgg + 1)], "present": ["1"]}
    assert any(f"{vgg + 1}/{n} · The VGG-16 walk-through" in m.value for m in at.markdown)
    at = open_page(f"pages/{TOUR[-1].page}", present="1", stop=str(n), **TOUR[-1].query)
    assert button(at, "▶").disabled  # the end of the lecture


def test_giving_the_lecture_starts_the_tour():
    at = open_page("pages/3_Stacking_layers.py")
    next(b for b in at.sidebar.button if b.label == "Give the lecture").click().run()
    assert dict(at.query_params) == {"stop": ["1"], "present": ["1"]}


def test_exit_leaves_the_presenter_view_and_keeps_the_page_state():
    at = open_page("pages/4_What_models_learn.py", view="linear", present="1", stop="10")
    button(at, "Exit").click().run()
    assert dict(at.query_params) == {"view": ["linear"]}
    assert at.sidebar.button  # the normal view is back


def test_the_share_link_is_the_pages_state_and_its_qr_code_reads_back():
    from ui.presenter import page_link, qr_png
    link = page_link("/VGG16_explorer", {"model": "alexnet", "present": "1", "stop": "11", "room": "KQXZT"})
    assert link == "/VGG16_explorer?model=alexnet"  # the state, not the presenter's own parameters
    short = f"http://192.168.1.20:8501/s/{LINKS.shorten(link)}"
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr_png(short))))
    assert [d.text for d in decoded] == [short]
    assert LINKS.resolve(short.rsplit("/", 1)[1]) == link
    assert page_link("/Pooling", {}) == "/Pooling"


def get_short_link(code: str):
    scope = {"type": "http", "method": "GET", "path": f"/s/{code}", "path_params": {"code": code},
             "headers": [], "query_string": b""}
    return run_async(short_link(Request(scope)))


def test_short_links_resolve_through_the_route_and_only_lead_inside_the_app():
    code = LINKS.shorten("/Convolution?pad=0&step=3")
    assert code == code_for("/Convolution?pad=0&step=3") and len(code) == 6
    response = get_short_link(code)
    assert response.status_code == 302 and response.headers["location"] == "/Convolution?pad=0&step=3"
    assert get_short_link("NOPE42").headers["location"] == "/?link=unknown"
    for bad in ["https://evil.example/", "//evil.example/x", "/Convolution?x=1#frag", "javascript:alert(1)",
                "/" + "a" * 5000]:
        with pytest.raises(LinkError):
            check_target(bad)


def test_the_short_link_store_is_bounded():
    links = ShortLinks(limit=3)
    codes = [links.shorten(f"/Pooling?k={k}") for k in range(2, 7)]
    assert [links.resolve(c) for c in codes] == [None, None, "/Pooling?k=4", "/Pooling?k=5", "/Pooling?k=6"]
    assert links.shorten("/Pooling?k=4") == codes[2]  # the same state, the same code


def test_an_unknown_short_link_lands_on_home_with_a_message():
    from apptest_helpers import ROOT
    from streamlit.testing.v1 import AppTest
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=60)
    at.query_params["link"] = "unknown"
    at.run()
    assert any("short link is not known" in w.value for w in at.warning)
