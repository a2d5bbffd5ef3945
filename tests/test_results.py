"""ui.results: what the classify page computes for a shared model is made once per process and shared by
every session; a session's own model keeps its results in the session."""

from __future__ import annotations

import streamlit as st
from streamlit.testing.v1 import AppTest

from apptest_helpers import open_page
from cnnviz import explain
from ui import results


def test_a_hall_opening_the_classify_page_runs_its_forward_passes_once(monkeypatch):
    calls = []
    real = explain.network_overview

    def counted(classifier, x):
        calls.append(classifier.key)
        return real(classifier, x)

    monkeypatch.setattr(explain, "network_overview", counted)
    st.cache_resource.clear()
    first = open_page("pages/7_Classify_an_image.py", timeout=90, img="Coffee")
    second = open_page("pages/7_Classify_an_image.py", timeout=90, img="Coffee")  # another student
    assert not first.exception and not second.exception
    assert calls == ["bundled"]  # the second session shares the first one's overview
    words = [m.value for m in second.markdown]
    assert words == [m.value for m in first.markdown]  # and shows the same page from it
    open_page("pages/7_Classify_an_image.py", timeout=90, img="Dog")  # another image: its own
    assert calls == ["bundled", "bundled"]


def _session_script():
    import streamlit as st

    from ui.results import remember

    made = st.session_state.setdefault("made", [])
    value = remember("figure", ("session:1", "img", ""), lambda: made.append(1) or len(made))
    shared = remember("figure", ("bundled", "img-for-results-test", ""), lambda: object())
    st.session_state["shared"] = shared
    st.write(value)


def test_a_sessions_own_model_keeps_its_results_in_the_session():
    st.cache_resource.clear()
    one = AppTest.from_function(_session_script).run()
    one.run()  # a rerun reuses the session's result
    two = AppTest.from_function(_session_script).run()
    assert one.session_state["made"] == [1] and two.session_state["made"] == [1]  # each session made its own
    assert one.session_state["shared"] is two.session_state["shared"]  # the shared model's result: one object


def _lru_script():
    import streamlit as st

    from ui.results import SESSION_ENTRIES, remember

    for k in range(SESSION_ENTRIES + 5):
        remember("picture", ("session:7", k), lambda k=k: k * k)
    st.session_state["kept"] = [key[1] for _, key in st.session_state["results.session"]]


def test_a_session_keeps_only_its_latest_results():
    at = AppTest.from_function(_lru_script).run()
    assert at.session_state["kept"] == list(range(5, results.SESSION_ENTRIES + 5))


def test_model_key_names_shared_models_and_marks_session_models():
    from ui.upload import bundled_model

    shared = bundled_model()
    assert results.model_key(shared) == "bundled"
    import dataclasses
    own = dataclasses.replace(shared, key="session")
    assert results.model_key(own) == f"session:{id(shared.model)}"


def test_only_a_sample_on_a_shared_model_is_shared():
    import dataclasses

    from ui.upload import bundled_model

    class Image:
        def __init__(self, ident):
            self.ident, self.is_sample = ident, ident.startswith(("sample:", "fashion:"))

    shared = bundled_model()
    assert results.result_key(shared, Image("fashion:Ankle boot"), "auto") == ("bundled", "fashion:Ankle boot", "auto")
    assert results.result_key(shared, Image("sample:Coffee"), "")[0] == "bundled"
    mine = f"session:{id(shared.model)}"
    assert results.result_key(shared, Image("drawing:ab12"), "auto")[0] == mine  # one student's drawing
    assert results.result_key(shared, Image("upload:cd34"), "")[0] == mine
    own = dataclasses.replace(shared, key="session")
    assert results.result_key(own, Image("sample:Coffee"), "")[0] == mine
