"""cnnviz's server. `streamlit run app.py` serves the app below: the home page (home.py) and the
lessons (pages/), plus a few HTTP routes of our own and a warm-up at start.

- The warm-up (ui.serving.lifespan) imports torch and the engine and loads the shared data and models
  once, before the server answers: the first visit of any page then costs only that page's own work.
- The routes (ui.serving.ROUTES): short links to an exact state (/s/<code>) and the presenter rooms that
  a hall follows (/api/rooms/...).
"""

import streamlit as st

from ui.serving import ROUTES, lifespan

app = st.App("home.py", lifespan=lifespan, routes=ROUTES)
