"""Presenter rooms in the pages: a lecturer opens a room, the hall follows the screen.

- `room_controls()`: open a room (its code and the students' link /r/CODE), close it. Drawn in the
  sidebar's "Lecture hall" box, and by the presenter view (ui.presenter) in its Share dialog.
- `lecture_hall()`: called once by every page (ui.lessons.page_setup, home.py). It mounts
  * for the presenter: a publisher (components v2) that posts the page's location to the room on load,
    on every change of the URL, on every `cnnviz:stepped` event, and every HEARTBEAT_MS, with no script
    rerun; the token lives in its data and in the tab's sessionStorage, never in a URL, so a reload or
    a slide's link opened in the same tab keeps presenting;
  * for a student (the link has `room=CODE`): a banner "Following room CODE" with Leave, and a
    follower that long-polls the room and goes where the presenter goes (the same page and settings:
    it opens that link; only the step moved: it dispatches `cnnviz:goto` {key, step} to the page's
    steppers). After Leave, the banner offers "Rejoin room CODE".

The rooms themselves are cnnviz.rooms' RoomStore (ui.room_routes.ROOMS, one per server process,
shared with the HTTP routes).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import streamlit as st

from cnnviz.rooms import IDLE_SECONDS, TooManyRooms, UnknownRoom, WrongToken, normalize_code
from ui.presenter import presenting as presenter_view
from ui.show import Component
from ui.room_routes import ROOMS
from ui.state import APP_PARAMS

PRESENTING = "room.presenting"  # {"code", "token"}: the room this session presents
LEFT = "room.left"  # the code of the room this session stopped following (offered to rejoin)
FLASH = "room.flash"  # a room that ended under its presenter, said once at the top of the page
HEARTBEAT_MS = 15_000  # well inside IDLE_SECONDS, so a missed beat or two does not close the room

_HERE = Path(__file__).resolve().parent / "components"
_LINE_CSS = """
.line { display: flex; align-items: center; gap: 0.5rem; font-family: var(--st-font, sans-serif);
        font-size: 0.95rem; color: var(--st-text-color, inherit); min-height: 1.5rem; }
.line[hidden] { display: none; }
.dot { width: 0.6rem; height: 0.6rem; border-radius: 50%; background: #9ca3af; flex: none; }
.line[data-state=live] .dot { background: #16a34a; }
.line[data-state=ended] .dot, .line[data-state=offline] .dot { background: #dc2626; }
.text { overflow-wrap: anywhere; }
"""
_LINE_HTML = ('<div class="line" data-part="room-line"{hidden}><span class="dot"></span>'
              '<span class="text" data-part="room-text"></span></div>')
_COMPONENTS = {
    "cnnviz_room_presenter": Component("cnnviz_room_presenter", html=_LINE_HTML.format(hidden=" hidden"),
                                       css=_LINE_CSS, js=(_HERE / "room_presenter.js").read_text()),
    "cnnviz_room_follower": Component("cnnviz_room_follower", html=_LINE_HTML.format(hidden=""), css=_LINE_CSS,
                                      js=(_HERE / "room_follower.js").read_text()),
}


def _mount(name: str, **kwargs):
    """Mount one of _COMPONENTS (registered with the running runtime on first use: ui.show.Component)."""
    return _COMPONENTS[name](**kwargs)


def room_link(code: str) -> str:
    """The students' link to room `code`, as a path of this app: /r/CODE."""
    return f"/r/{code}"


def room_url(code: str) -> str:
    """The students' link as the browser sees this app (scheme://host/r/CODE), for a QR code."""
    parts = urlsplit(st.context.url or "")
    origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    return origin + room_link(code)


def presented_room() -> str | None:
    """The code of the room this session presents, while it is open; else None."""
    presenting = st.session_state.get(PRESENTING)
    if presenting and ROOMS.get(presenting["code"]) is None:
        st.session_state[FLASH] = (f"Room {presenting['code']} has ended: the server heard nothing from your page "
                                   f"for {IDLE_SECONDS:.0f} s, or it restarted. Open a new room to go on.")
        del st.session_state[PRESENTING]
        return None
    return presenting["code"] if presenting else None


def followed_room() -> str | None:
    """The code of the room the link follows (`room=CODE`), unless this session presents it."""
    code = normalize_code(st.query_params.get("room"))
    return None if code is None or code == presented_room() else code


# ---------------------------------------------------------------- the presenter

def room_controls(key: str = "room") -> None:
    """Open a room, or show the open one (code, students' link) with Close. `key` prefixes the buttons'
    keys, so the sidebar and the presenter view can each draw these controls in the same run."""
    code = presented_room()
    if code is None:
        st.caption("Open a room and the hall follows your screen: students open its link on their phones "
                   "and see your page, example and step as you move.")
        if st.button("Open a room", icon=":material/cast:", key=f"{key}.open"):
            _open_room()
        return
    st.markdown(f"Room **{code}** is open. Students open")
    st.code(room_url(code), language=None)
    st.caption(f"It closes by itself {IDLE_SECONDS:.0f} s after this page is closed.")
    if st.button("Close the room", icon=":material/cancel_presentation:", key=f"{key}.close"):
        _close_room()


def _open_room() -> None:
    try:
        opened = ROOMS.open()
    except TooManyRooms as error:
        st.error(str(error), icon=":material/block:")
        return
    st.session_state[PRESENTING] = {"code": opened.code, "token": opened.token}
    # The whole page, not just a dialog or fragment these controls may be in: the publisher that every
    # page mounts (lecture_hall) must start now, or the room gets no location and no heartbeat.
    st.rerun(scope="app")


def _close_room() -> None:
    presenting = st.session_state.pop(PRESENTING, None)
    if presenting:
        try:
            ROOMS.close(presenting["code"], presenting["token"])
        except (UnknownRoom, WrongToken):
            pass  # it has ended already
    st.rerun(scope="app")


def _resume_room() -> None:
    """The tab presented a room before this session began (a reload, a slide's link opened in the same
    tab): its publisher found the room in sessionStorage and hands it back."""
    resumed = (st.session_state.get("room.resume") or {}).get("resume")
    if not isinstance(resumed, dict) or PRESENTING in st.session_state:
        return
    code, token = normalize_code(resumed.get("code")), resumed.get("token")
    try:
        ROOMS.authorize(code, token)
    except (UnknownRoom, WrongToken):
        return
    st.session_state[PRESENTING] = {"code": code, "token": token}


def _publisher(code: str, token: str) -> None:
    _mount("cnnviz_room_presenter", key="room.publisher", data={
        "mode": "present", "code": code, "token": token, "link": room_url(code),
        "heartbeat_ms": HEARTBEAT_MS, "app_params": list(APP_PARAMS),
    })


# ---------------------------------------------------------------- the hall

def _leave(code: str) -> None:
    st.session_state[LEFT] = code
    st.query_params.pop("room", None)


def _rejoin(code: str) -> None:
    st.session_state.pop(LEFT, None)
    st.query_params["room"] = code


def _follow_banner(code: str) -> None:
    st.session_state.pop(LEFT, None)
    with st.container(border=True, horizontal=True, vertical_alignment="center", key="room.banner"):
        _mount("cnnviz_room_follower", key="room.follower", data={"code": code, "app_params": list(APP_PARAMS)})
        st.button("Leave", icon=":material/logout:", key="room.leave", on_click=_leave, args=(code,),
                  help="Explore on your own; you can rejoin")


def _not_open_banner(code: str) -> None:
    with st.container(horizontal=True, vertical_alignment="center", key="room.closed_banner"):
        st.info(f"Room {code} is not open: the presenter has closed it, or the code in the link is mistyped.",
                icon=":material/podium:")
        st.button("Dismiss", key="room.dismiss", on_click=st.query_params.pop, args=("room", None))


def _rejoin_banner(code: str) -> None:
    with st.container(horizontal=True, vertical_alignment="center", key="room.rejoin_banner"):
        st.caption(f"You left room {code}.")
        st.button(f"Rejoin room {code}", icon=":material/login:", key="room.rejoin", on_click=_rejoin,
                  args=(code,))


def lecture_hall() -> None:
    """Everything a page needs for rooms (every page calls it once, under its title)."""
    code = presented_room()
    if FLASH in st.session_state:
        st.warning(st.session_state.pop(FLASH), icon=":material/podium:")
    if code is not None:
        _publisher(code, st.session_state[PRESENTING]["token"])
    else:
        with st.sidebar:
            # Hidden and silent unless this tab presented a room before its session began.
            _mount("cnnviz_room_presenter", key="room.resume", data={"mode": "resume"},
                   on_resume_change=_resume_room)
    followed = followed_room()
    if "room" in st.query_params and normalize_code(st.query_params["room"]) is None:
        st.warning(f"The link's value room={st.query_params['room'][:20]!r} was ignored: a room's code is five "
                   "letters, like KXPRT.", icon="🔗")
    if followed is not None:
        if ROOMS.get(followed) is None:
            _not_open_banner(followed)
        else:
            _follow_banner(followed)
    elif st.session_state.get(LEFT) and ROOMS.get(st.session_state[LEFT]) is not None:
        _rejoin_banner(st.session_state[LEFT])
    if followed is None and not presenter_view():  # the presenter view has them in its Share dialog
        with st.sidebar.expander("Lecture hall", icon=":material/podium:", expanded=code is not None):
            room_controls(key="room.sidebar")
