"""Page state that lives in the URL, so a lecturer can put the exact state on a slide.

Each page declares its parameters once: a name (the query key), a default, and how to
read it from text. Widgets are bound to `state.key(name)`; at the end of the run
`state.sync()` writes every non-default value back into the query string. Opening a
link seeds the widgets from it; a malformed value falls back to the default with a
note, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import streamlit as st


@dataclass(frozen=True)
class Param:
    """One query parameter. `default` may be a function of the state seeded so far (params are
    seeded in order), so `?ex=strided` alone can open a whole example."""

    name: str
    default: Any
    parse: Callable[[str], Any] = str
    show: Callable[[Any], str] = str


# Parsers raise ValueError with what the parameter expects, in words: the page shows it as
# "The link's value s='nine' was ignored: it must be a whole number from 1 to 4."

def int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise ValueError(f"it must be a whole number from {low} to {high}")
        return value
    return parse


def number_in(choices: Sequence[float]) -> Callable[[str], float]:
    """One of a few numbers (a learning rate from a slider's steps)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = None
        if value not in choices:
            raise ValueError(f"it must be one of {', '.join(f'{v:g}' for v in choices)}")
        return value
    return parse


def one_of(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"it must be one of {', '.join(choices)}")
        return text
    return parse


def flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("it must be 0 or 1")
    return text == "1"


def show_flag(value: bool) -> str:
    return "1" if value else "0"


RESEED_KEY = "_url_reseed"  # set by a move to a link (reseed_from_link) for the next page run


def reseed_from_link() -> None:
    """Make the next page run take its whole state from the link it is switched to (st.switch_page
    within one session would otherwise keep the values the page had)."""
    st.session_state[RESEED_KEY] = True


# Query parameters that belong to the whole app, not to a page: every page keeps them in its link.
# They are each visitor's own: a room does not publish them (ui.room, cnnviz.rooms). "q": the visitor's
# own "Your turn" question (ui.exercises).
APP_PARAMS = ("present", "room", "stop", "q")
# Kept in every page's link as well, but part of what a room publishes: a question the presenter put to the
# hall ("ask") and whether its answer is shown ("reveal"), so the hall's phones follow them (ui.exercises).
HALL_PARAMS = ("ask", "reveal")


class UrlState:
    """The URL-backed state of one page."""

    def __init__(self, page: str, params: list[Param]):
        self.page = page
        self.params = {p.name: p for p in params}
        self.problems: list[str] = []
        # Widget keys vanish from session_state when their page is not shown; the shadow
        # copy brings a page back as the student left it when they return to it.
        shadow = st.session_state.setdefault("_url_shadow", {}).setdefault(page, {})
        # After an in-app move to a link (the lecture tour, which keeps the session), the link is the
        # page's whole state: what it does not say is the default, not what the page showed before.
        self.reseeded = bool(st.session_state.pop(RESEED_KEY, False))
        if self.reseeded:
            shadow.clear()
            for p in params:
                st.session_state.pop(self.key(p.name), None)
        for p in params:
            key = self.key(p.name)
            if key in st.session_state:
                # Set it again, unchanged: Streamlit sends a value set through session_state to
                # the browser only with a widget drawn in the same run. A value set in a run that
                # did not draw its widget (a view or tab not shown) would otherwise reach the
                # browser never: it would draw the widget at its own default (a slider's minimum)
                # and send that back, into the URL and the next computation.
                st.session_state[key] = st.session_state[key]
                continue
            raw = st.query_params.get(p.name)
            if raw is not None:
                try:
                    st.session_state[key] = p.parse(raw)
                    continue
                except (ValueError, TypeError) as error:
                    self.problems.append(f"The link's value {p.name}={raw!r} was ignored: "
                                         f"{str(error).rstrip('.')}.")
            st.session_state[key] = shadow.get(p.name, self.default(p.name))

    def default(self, name: str) -> Any:
        default = self.params[name].default
        return default(self) if callable(default) else default

    def key(self, name: str) -> str:
        return f"{self.page}.{name}"

    def __getitem__(self, name: str) -> Any:
        return st.session_state[self.key(name)]

    def __setitem__(self, name: str, value: Any) -> None:
        st.session_state[self.key(name)] = value

    def reset(self, *names: str) -> None:
        for name in names or tuple(self.params):
            self[name] = self.default(name)

    def as_query(self) -> dict[str, str]:
        return {name: p.show(self[name]) for name, p in self.params.items() if self[name] != self.default(name)}

    def sync(self) -> None:
        """Mirror the state into the URL (only what differs from the defaults) and the shadow.
        The app-wide parameters (APP_PARAMS: the presenter view, the room followed; HALL_PARAMS: the hall's
        question) stay as they are."""
        shadow = st.session_state["_url_shadow"][self.page]
        shadow.update({name: self[name] for name in self.params})
        kept = {k: st.query_params[k] for k in (*APP_PARAMS, *HALL_PARAMS) if k in st.query_params}
        query = {**self.as_query(), **kept}
        if dict(st.query_params) != query:
            st.query_params.from_dict(query)
        if st.session_state.get("present.sharing"):  # the presenter asked for this state's link and QR code
            from ui.presenter import share_dialog
            share_dialog(st.session_state.get("page.path", "/"), self.as_query())

    def show_problems(self) -> None:
        for problem in self.problems:
            st.warning(problem, icon="🔗")
