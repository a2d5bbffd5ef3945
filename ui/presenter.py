"""The presenter view (`?present=1`): a page's main figure fills a projector's screen, the lecture tour
moves on with the keyboard or a clicker, and a QR code takes the hall to what is on the screen.

- `presenting()`: whether this run is in the presenter view; pages then draw only their main figure
  (`section()` names which one when the tour asks for a part of the page).
- `presenter_bar()`: the one row of controls the view keeps (the tour's previous/next stop, Share,
  full screen, exit), the CSS that hides Streamlit's chrome, and the keys component.
- `share_dialog(state)`: the exact state of the page as a short link and its QR code (segno), with
  the room controls when rooms are available.
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import segno
import streamlit as st

from cnnviz.exercises import lesson_kinds
from cnnviz.links import LINKS
from cnnviz.tour import TOUR, neighbour, stop_query

from .show import Component
from .state import reseed_from_link

PRESENT, STOP = "present", "stop"
_HERE = Path(__file__).resolve().parent / "components"
_KEYS = Component(
    "cnnviz_presenter_keys",
    html="<button data-part='fullscreen' title='Full screen (F)'>Full screen</button>",
    css="button{font:inherit;font-size:0.9rem;padding:0.3rem 0.7rem;border:1px solid var(--st-border-color,#c9d1dc);"
        "border-radius:0.5rem;background:var(--st-background-color,#fff);color:inherit;cursor:pointer}",
    js=(_HERE / "presenter_keys.js").read_text(),
)
# Streamlit's chrome goes; the page's own blocks move up and use the whole width.
PRESENTER_CSS = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"], [data-testid="stHeader"],
[data-testid="stToolbar"], [data-testid="stDecoration"] {display: none !important;}
[data-testid="stMainBlockContainer"], .block-container {padding: 0.5rem 1.2rem 0.4rem !important;
  max-width: 100% !important;}
[data-testid="stAppViewContainer"] > section {padding-top: 0 !important;}
</style>"""


def presenting() -> bool:
    return st.query_params.get(PRESENT) == "1"


def current_stop(page_file: str) -> int | None:
    """The tour stop this page shows (the link's `stop`, when it belongs to this page), else None."""
    try:
        index = int(st.query_params.get(STOP, "")) - 1
    except ValueError:
        return None
    return index if 0 <= index < len(TOUR) and TOUR[index].page == page_file else None


def section(page_file: str) -> str:
    """The part of the page the presenter view shows: the tour stop's section, or '' (the main figure)."""
    index = current_stop(page_file)
    return TOUR[index].section if index is not None else ""


def _app_params() -> dict[str, str]:
    return {name: st.query_params[name] for name in (PRESENT, "room") if name in st.query_params}


def go_to_stop(index: int | None) -> None:
    """Open tour stop `index` in the presenter view (st.switch_page keeps the session, and a room with it)."""
    if index is None:
        return
    stop = TOUR[index]
    reseed_from_link()
    st.switch_page(f"pages/{stop.page}", query_params=stop_query(index, **_app_params()))


def enter() -> None:
    st.query_params[PRESENT] = "1"


def leave() -> None:
    st.query_params.pop(PRESENT, None)
    st.query_params.pop(STOP, None)


def presenter_bar(page_file: str, title: str, has_stepper: bool = False) -> None:
    """The presenter view's only chrome: stop title, ◀ ▶, Share, full screen, exit; and its keys."""
    st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
    index = current_stop(page_file)
    before, after = neighbour(index, -1), neighbour(index, +1)
    with st.container(horizontal=True, vertical_alignment="center", gap="small"):
        if st.button("◀", key="present.previous", disabled=before is None, help="Previous example (Page Up)"):
            go_to_stop(before)
        label = f"{index + 1}/{len(TOUR)} · {TOUR[index].title}" if index is not None else title
        st.markdown(f"**{label}**", width="content")
        if st.button("▶", key="present.next", disabled=after is None,
                     help="Next example (Page Down, or → after the last step)"):
            go_to_stop(after)
        if lesson_kinds(page_file) and "ask" not in st.query_params:  # ui.exercises: a question for the hall
            st.button("Ask the hall", icon=":material/quiz:", key="present.ask", on_click=_ask_the_hall,
                      args=(page_file,), help="Put a \"Your turn\" question on the screen, its answer hidden "
                                              "until you reveal it; a room takes it to the students' phones")
        st.button("Share", icon=":material/qr_code_2:", key="present.share",
                  on_click=st.session_state.__setitem__, args=("present.sharing", True),
                  help="A QR code and a short link of exactly this state")
        keys = _KEYS(key="present.keys", data={"has_stepper": has_stepper}, on_go_change=lambda: None,
                     width="content")
        st.button("Exit", icon=":material/close:", key="present.exit", on_click=leave,
                  help="Back to the normal view")
    direction = keys.go if keys is not None else None
    if direction in ("next", "previous"):
        go_to_stop(after if direction == "next" else before)


def _ask_the_hall(page_file: str) -> None:
    from ui.exercises import ask_the_hall  # ui.exercises draws with this module's helpers

    ask_the_hall(page_file)


def controls(label: str = "Settings"):
    """Where a page puts its controls: in place normally, folded into one expander in the presenter view
    (the hall sees the figure; the lecturer can still change the example)."""
    return st.expander(label, icon=":material/tune:") if presenting() else st.container()


# ---------------------------------------------------------------- sharing

def origin() -> str:
    """scheme://host:port as the browser sees this app (the QR code must work from the students' phones)."""
    url = st.context.url or ""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def page_link(page_path: str, query: dict[str, str]) -> str:
    """'/Convolution?pad=0&step=3': a page and its state, without the presenter's own parameters."""
    shown = {k: v for k, v in query.items() if k not in (PRESENT, "room", STOP)}
    return page_path + (f"?{urlencode(shown)}" if shown else "")


def qr_png(url: str) -> bytes:
    """The link as a QR code, large modules for a projector (error correction M: readable from afar)."""
    buffer = io.BytesIO()
    segno.make(url, error="m").save(buffer, kind="png", scale=10, border=2)
    return buffer.getvalue()


@st.dialog("Open this on your phone", width="large")
def _share(link: str) -> None:
    code = LINKS.shorten(link)
    short = f"{origin()}/s/{code}"
    left, right = st.columns([3, 2], vertical_alignment="center")
    left.image(qr_png(short), width="stretch")
    right.markdown(f"### {short}\n\nScan the code, or type the short link. It opens exactly this page, with its "
                   "example, settings and step.")
    right.caption(f"Full link: {origin()}{link}")
    try:
        from ui.room import room_controls  # rooms: students follow the screen as it changes
    except ImportError:
        return
    with right:
        room_controls()


def share_dialog(page_path: str, query: dict[str, str]) -> None:
    """Open the share dialog if the Share button asked for it this run (called once the page's state is final)."""
    if st.session_state.pop("present.sharing", False):
        _share(page_link(page_path, query))
