"""cnnviz home: the lecture's map, one entry per lesson page."""

import streamlit as st

from ui.lessons import APP_ICON, LESSONS, sidebar
from ui.room import lecture_hall

st.set_page_config(page_title="cnnviz", page_icon=APP_ICON, layout="wide")
sidebar()

st.title("cnnviz")
lecture_hall()  # presenter rooms (ui.room): the home page is a place a presenter and the hall can be
if st.query_params.get("link") == "unknown":
    st.warning("That short link is not known on this server (it may have been made on another server, or "
               "before a restart). Here is the lecture's map.", icon="🔗")
st.markdown(
    "**How convolutional neural networks classify images**, following the lecture "
    "*Convolutional Architectures For Image Classification*. Each lesson is a page you can "
    "play with; every state can be shared as a link, so a slide can open the exact example."
)

for number, lesson in enumerate(LESSONS, start=1):
    with st.container(border=True):
        left, right = st.columns([3, 2], vertical_alignment="center")
        with left:
            st.page_link(lesson.path, label=f"{number}. {lesson.title}", icon=lesson.icon)
            st.markdown(lesson.teaches)
        with right:
            st.caption(f"Lecture slides: {lesson.slides}")

st.caption("Runs offline: sample photos and data are bundled in `assets/` with their licences.")
