"""Opening a page through Streamlit's AppTest the way every page test does.

AppTest must start from home.py (the pages link back to it) and switch to the page; the
query parameters are the link being opened, `session` seeds st.session_state first (e.g. a
model trained in this session).
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent


def open_page(page: str, *, session: dict | None = None, timeout: float = 60, **query) -> AppTest:
    """Run `page` (e.g. "pages/2_Pooling.py") as if its link with `query` was opened; no exception allowed."""
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=timeout)
    at.switch_page(page)
    for key, value in (session or {}).items():
        at.session_state[key] = value
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def button(at: AppTest, label: str):
    """The button with this visible label."""
    return next(b for b in at.button if b.label == label)
