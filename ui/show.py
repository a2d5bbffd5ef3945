"""Small display helpers shared by the lesson pages."""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from cnnviz import pictures

NO_MODEBAR = {"displayModeBar": False}


class Component:
    """A components-v2 component (trusted html/css/js of ours), registered with the Streamlit runtime
    that is running when it is first mounted, and again whenever that runtime has changed.

    Registering at import time (st.components.v2.component at module level) registers with whatever
    runtime exists then; a module imported before the server's runtime starts, or by one test and
    mounted in another test's AppTest runtime, would find its component 'not registered'."""

    def __init__(self, name: str, *, html: str | None = None, css: str | None = None, js: str | None = None):
        self.name, self.parts = name, {"html": html, "css": css, "js": js}
        self._mount = None

    def __call__(self, **kwargs):
        from streamlit.components.v2.get_bidi_component_manager import get_bidi_component_manager

        if self._mount is None or get_bidi_component_manager().get(self.name) is None:
            self._mount = st.components.v2.component(self.name, **self.parts)
        return self._mount(**kwargs)


class PlainFigure(go.Figure):
    """A figure that is already plotly.js's JSON ({"data": [...], "layout": {...}} of plain values).

    st.plotly_chart turns a go.Figure into that JSON with `figure.to_dict()`, which deep-copies
    every trace and merges in the default template (milliseconds per chart, on every rerun);
    a dict passed directly is worse still (validated property by property). This Figure skips
    plotly's constructor and hands its dict over as it is, so a chart costs what serialising
    its JSON costs. The dict is shared, never copied: don't change it after drawing it.
    tests/test_show.py checks that the chart Streamlit sends is the one go.Figure would send.
    """

    def __init__(self, spec: dict[str, Any]):  # noqa: D107 - plotly's __init__ deliberately not called
        self._plain_spec = spec

    def to_dict(self) -> dict[str, Any]:
        return self._plain_spec


def chart(figure: dict[str, Any] | go.Figure, *, key: str | None = None, where: Any = st,
          config: dict[str, Any] | None = None, on_select: Any = "ignore",
          selection_mode: str | tuple[str, ...] = ("points", "box", "lasso"), width: Any = "stretch") -> None:
    """Draw a figure given as a plain plotly dict (cnnviz.figures.*_spec) or a go.Figure, without
    plotly's mode bar. `where`: the container to draw in (st, a column, ...). on_select,
    selection_mode and width go to st.plotly_chart as they are (on_select="rerun" or a callback
    makes clicks on the chart select; its selection is then in st.session_state[key])."""
    if isinstance(figure, dict):
        figure = PlainFigure(figure)
    where.plotly_chart(figure, key=key, config=NO_MODEBAR if config is None else config, on_select=on_select,
                       selection_mode=selection_mode, width=width)


NARROW_PX = 640  # below this width Streamlit stacks columns: a phone
_BY_WIDTH_CSS = (f"<style>@media (max-width: {NARROW_PX}px) {{ [class*='st-key-wide-chart-'] {{ display: none; }} }} "
                 f"@media (min-width: {NARROW_PX + 1}px) {{ [class*='st-key-narrow-chart-'] {{ display: none; }} }}"
                 "</style>")


def chart_by_width(wide: dict[str, Any] | go.Figure, narrow: dict[str, Any] | go.Figure, *, key: str) -> None:
    """One figure laid out for a screen's width (panels side by side) and another for a phone's (stacked):
    both are sent, and the browser shows the one that fits (a CSS media query; the server cannot know the
    width). The figures carry the same numbers."""
    st.html(_BY_WIDTH_CSS)
    with st.container(key=f"wide-chart-{key.replace('.', '-')}"):
        chart(wide, key=key)
    with st.container(key=f"narrow-chart-{key.replace('.', '-')}"):
        chart(narrow, key=f"{key}.narrow")


def charts_in_a_row(figures: list, key: str, where: Any = st) -> None:
    """Figures side by side at their own sizes, wrapping onto the next line on a narrow screen
    (a phone) instead of being squeezed into one chart."""
    with where.container(horizontal=True, gap="medium"):
        for i, figure in enumerate(figures):
            chart(figure, key=f"{key}.{i}", width="content")


def arithmetic_html(lines: list[tuple[str, str]]) -> str:
    """The HTML table `arithmetic` draws; escaped, so typed numbers can't inject HTML."""
    rows = "".join(
        f"<tr><td style='padding:2px 12px 2px 0;color:#4b5563;white-space:nowrap'>{html.escape(label)}</td>"
        f"<td style='font-family:ui-monospace,Menlo,Consolas,monospace;font-size:1.15rem'>{html.escape(expr)}</td></tr>"
        for label, expr in lines
    )
    return f"<table style='border:none'>{rows}</table>"


def arithmetic(lines: list[tuple[str, str]], intro: str | None = None) -> None:
    """Worked arithmetic in a large monospace font, readable from the back of a lecture hall.

    Each line is (label, expression); the expression is escaped, so typed numbers can't inject HTML.
    `intro`: markdown shown above the table, in the same element (one element costs less than two).
    """
    table = arithmetic_html(lines)
    st.markdown(f"{intro}\n\n{table}" if intro else table, unsafe_allow_html=True)


BOX_STYLE = ("flex:1 1 300px;border:1px solid #c9d1dc;border-radius:0.5rem;"
             "padding:calc(1rem - 1px) calc(1rem - 1px) 0")  # as st.container(border=True) with borderColor of .streamlit/config.toml


def boxes(*parts: str, after: str = "", font_rem: float = 1.0) -> None:
    """Markdown parts side by side in bordered boxes (wrapping on narrow screens), and optional
    markdown `after` them, all as ONE element: st.columns(border=True) with a markdown in each
    column costs the server four more elements on every rerun."""
    inner = "".join(f"<div style='{BOX_STYLE}'>\n\n{part}\n\n</div>\n" for part in parts)
    st.markdown(f"<div style='display:flex;flex-wrap:wrap;gap:1rem;margin-bottom:1rem;font-size:{font_rem}rem'>"
                f"\n{inner}</div>\n\n{after}",
                unsafe_allow_html=True)


def gallery(items: list[tuple[str, bytes]], width_px: int = 170, where: Any = st) -> None:
    """Pictures (caption, PNG bytes) side by side, wrapping on narrow screens, as ONE element.
    The PNGs are the engine's own; the captions are escaped."""
    cells = "".join(
        f"<figure style='margin:0;width:{width_px}px;text-align:center'>"
        f"<figcaption style='font-size:0.85rem;font-weight:600;margin-bottom:4px'>{html.escape(caption)}</figcaption>"
        f"<img src='{pictures.data_url(png)}' style='width:{width_px}px;image-rendering:pixelated' alt=''></figure>"
        for caption, png in items)
    where.markdown(f"<div style='display:flex;flex-wrap:wrap;gap:14px;margin-bottom:1rem'>{cells}</div>",
                   unsafe_allow_html=True)
