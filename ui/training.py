"""The training page's background job, seen from any page of the session.

A job started on the Train page goes on while the student looks at other pages. Its model
becomes the session's model (st.session_state[TRAINED_KEY], a Checkpoint) when the job
ends; `publish_finished_job()` does that, and any page may call it (ui.lessons.page_setup is
the natural place), so the Classify page sees a model that finished while it was open.
"""

from __future__ import annotations

import streamlit as st

JOB_KEY = "train.job"  # the session's cnnviz.jobs.TrainingJob, if any
TRAINED_KEY = "cnnviz.trained"  # the session's model: a cnnviz.checkpoint.Checkpoint, used by every page
PUBLISHED_KEY = "train.published"  # the job checkpoint already made the session's model


def publish_finished_job() -> bool:
    """Make the session's finished (or stopped) training run the session's model, once.

    True when it did so on this call. A model loaded from a file afterwards is not replaced
    by the same finished run again.
    """
    job = st.session_state.get(JOB_KEY)
    if job is None:
        return False
    snap = job.snapshot()
    if not snap.done or snap.checkpoint is None or st.session_state.get(PUBLISHED_KEY) is snap.checkpoint:
        return False
    st.session_state[TRAINED_KEY] = snap.checkpoint
    st.session_state[PUBLISHED_KEY] = snap.checkpoint
    return True
