"""Step through a sliding window: start / previous / next / end, and play.

The step index lives in the page's URL state (param "step", or the one passed to
step_controls as `param`, so a page can have several steppers). A page puts its drawing
in a fragment that reruns every PLAY_SECONDS while playing, so playing redraws only
the stepped part of the page:

    play_toggle("conv")

    @st.fragment(run_every=play_interval("conv"))
    def stepper():
        index = step_controls(state, "conv", n_steps)
        ...draw step `index`...
"""

from __future__ import annotations

import time

import streamlit as st

from .state import UrlState

PLAY_SECONDS = 0.8


def play_toggle(key: str) -> None:
    # Outside the fragment: switching play on or off must rerun the page to (un)set run_every.
    st.toggle(f"Play: advance one step every {PLAY_SECONDS:g} s", key=f"{key}.play")


def play_interval(key: str) -> float | None:
    return PLAY_SECONDS if st.session_state.get(f"{key}.play") else None


def step_controls(state: UrlState, key: str, n_steps: int, noun: str = "Output", param: str = "step") -> int:
    """Draw the navigation row and return the current step, advanced by one tick while playing.

    `param` names the URL state parameter holding the step, so one page can have several steppers."""
    last = n_steps - 1
    if st.session_state.get(f"{key}.play"):
        now = time.monotonic()
        # Reruns of the whole page also run the fragment; only a tick's worth of time advances it.
        if now - st.session_state.get(f"{key}.tick", 0.0) >= PLAY_SECONDS * 0.9:
            st.session_state[f"{key}.tick"] = now
            if state[param] >= last:
                st.session_state[f"{key}.play"] = False
                st.rerun()  # the whole page, so the fragment stops ticking
            state[param] = state[param] + 1
    index = state[param] = max(0, min(state[param], last))

    def go_to(step: int) -> None:
        state[param] = step

    # One horizontal container rather than columns: a block per column costs the server time on every step.
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.button("Start", icon=":material/first_page:", on_click=go_to, args=(0,), disabled=index == 0,
                  key=f"{key}.first")
        st.button("Previous", icon=":material/chevron_left:", on_click=go_to, args=(index - 1,),
                  disabled=index == 0, key=f"{key}.previous")
        st.button("Next", icon=":material/chevron_right:", on_click=go_to, args=(index + 1,),
                  disabled=index == last, type="primary", key=f"{key}.next")
        st.button("End", icon=":material/last_page:", on_click=go_to, args=(last,), disabled=index == last,
                  key=f"{key}.last")
        st.progress((index + 1) / n_steps, text=f"{noun} {index + 1} of {n_steps}")
    return index
