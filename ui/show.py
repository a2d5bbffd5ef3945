"""Small display helpers shared by the lesson pages."""

from __future__ import annotations

import html

import streamlit as st


def arithmetic(lines: list[tuple[str, str]]) -> None:
    """Worked arithmetic in a large monospace font, readable from the back of a lecture hall.

    Each line is (label, expression); the expression is escaped, so typed numbers can't inject HTML.
    """
    rows = "".join(
        f"<tr><td style='padding:2px 12px 2px 0;color:#4b5563;white-space:nowrap'>{html.escape(label)}</td>"
        f"<td style='font-family:ui-monospace,Menlo,Consolas,monospace;font-size:1.15rem'>{html.escape(expr)}</td></tr>"
        for label, expr in lines
    )
    st.markdown(f"<table style='border:none'>{rows}</table>", unsafe_allow_html=True)
