"""The shared widgets of ui/ tested on their own, in small AppTest scripts: the URL state table, the
labs' stepper and the stack builder."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest

from apptest_helpers import button


def state_script() -> None:
    import streamlit as st

    from ui.state import Param, UrlState, flag, int_in, one_of, show_flag

    state = UrlState("t", [
        Param("n", 3, int_in(1, 9)),
        Param("kind", "max", one_of("max", "mean")),
        Param("double", lambda s: s["n"] * 2, int_in(0, 99)),  # a default that follows an earlier param
        Param("on", False, flag, show_flag),
    ])
    state.show_problems()
    st.number_input("n", 1, 9, key=state.key("n"))
    st.markdown(f"n={state['n']} kind={state['kind']} double={state['double']} on={state['on']}")
    state.sync()


def run_state(**query) -> AppTest:
    at = AppTest.from_function(state_script)
    for key, value in query.items():
        at.query_params[key] = value
    return at.run()


def test_state_defaults_stay_out_of_the_url():
    at = run_state()
    assert at.markdown[0].value == "n=3 kind=max double=6 on=False"
    assert dict(at.query_params) == {}
    at.number_input(key="t.n").set_value(4).run()
    # double keeps its value 6, which is no longer its default (2·4): the link must say so to
    # reproduce the page exactly.
    assert dict(at.query_params) == {"n": ["4"], "double": ["6"]}
    assert at.markdown[0].value == "n=4 kind=max double=6 on=False"


def test_state_reads_a_link_and_writes_it_back():
    at = run_state(n="5", kind="mean", on="1")
    assert at.markdown[0].value == "n=5 kind=mean double=10 on=True"
    assert dict(at.query_params) == {"n": ["5"], "kind": ["mean"], "on": ["1"]}


def test_state_explains_bad_values_in_words():
    at = run_state(n="x", kind="median", on="yes", double="100")
    messages = [w.value for w in at.warning]
    assert "The link's value n='x' was ignored: it must be a whole number from 1 to 9." in messages
    assert "The link's value kind='median' was ignored: it must be one of max, mean." in messages
    assert "The link's value on='yes' was ignored: it must be 0 or 1." in messages
    assert "The link's value double='100' was ignored: it must be a whole number from 0 to 99." in messages
    assert at.markdown[0].value == "n=3 kind=max double=6 on=False"
    assert dict(at.query_params) == {}  # the bad values are gone from the link


def stepper_script() -> None:
    import streamlit as st

    from cnnviz.examples import LECTURE_POOLING_INPUT
    from cnnviz.pooling import Pooling
    from ui.client_stepper import client_stepper
    from ui.state import Param, UrlState, int_in

    state = UrlState("t", [Param("step", 0, int_in(0, 1000)), Param("k", 2, int_in(1, 3))])
    st.number_input("k", 1, 3, key=state.key("k"), on_change=state.__setitem__, args=("step", 0))
    client_stepper(state, "step", Pooling.make(LECTURE_POOLING_INPUT, "max", state["k"], 2), key="t.stepper")
    st.markdown(f"step {state['step']}")
    state.sync()


def stepper_data(at: AppTest) -> dict:
    return json.loads(at.get("bidi_component")[0].proto.json)


def browser_sends(at: AppTest, value: dict) -> AppTest:
    """The component's state as the browser sends it (AppTest has no public API for it)."""
    widgets = at._tree.get_widget_states()
    state = widgets.widgets.add()
    state.id, state.json_value = at.get("bidi_component")[0].proto.id, json.dumps(value)
    at._run(widgets)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_client_stepper_clamps_a_link_hears_the_browser_and_resets():
    at = AppTest.from_function(stepper_script)
    at.query_params["step"] = "99"  # past the end of a 4-step stepper: the last step
    at.run()
    assert at.markdown[0].value == "step 3" and at.query_params["step"] == ["3"]
    data = stepper_data(at)
    assert data["goto"] == {"id": 1, "step": 3, "predict": False} and (data["key"], data["param"]) == ("t.stepper", "step")
    assert data["count"] == 4 and data["present"] is False

    browser_sends(at, {"step": 1, "goto": 1})
    assert at.markdown[0].value == "step 1" and at.query_params["step"] == ["1"]
    assert stepper_data(at)["goto"] == {"id": 1, "step": 3, "predict": False}  # unchanged data: nothing sent back
    browser_sends(at, {"step": 0, "goto": 1})
    assert at.markdown[0].value == "step 0" and "step" not in at.query_params
    for crafted in ({"step": "2", "goto": 1}, {"step": True, "goto": 1}, {"step": [2], "goto": 1}):
        browser_sends(at, crafted)  # not a step: ignored
        assert at.markdown[0].value == "step 0"
    browser_sends(at, {"step": 50, "goto": 1})  # past the end: the last step
    assert at.markdown[0].value == "step 3"

    at.number_input(key="t.k").set_value(1).run()  # a new layer: the page resets the step
    assert stepper_data(at)["goto"] == {"id": 2, "step": 0, "predict": False} and stepper_data(at)["count"] == 4
    browser_sends(at, {"step": 2, "goto": 1})  # sent before the browser saw the reset: ignored
    assert at.markdown[0].value == "step 0"
    browser_sends(at, {"step": 2, "goto": 2})
    assert at.markdown[0].value == "step 2" and at.query_params["step"] == ["2"]


def builder_script() -> None:
    import streamlit as st

    from ui.stack import StackBuilder
    from ui.state import Param, UrlState

    state = UrlState("t", [Param("net", "conv3x8,relu,maxpool2,flatten,fc10")])
    builder = StackBuilder(state, "t", classes=10)
    builder.draw_controls()
    infos, problem = builder.analyse((1, 28, 28), "Fashion-MNIST")
    builder.draw_analysis(infos, problem)
    state.sync()


def test_stack_builder_buttons_edit_the_stack_and_keep_bad_text():
    at = AppTest.from_function(builder_script).run()
    button(at, "Conv block").click().run()
    assert at.query_params["net"] == ["conv3x8,relu,maxpool2,conv3x16,relu,flatten,fc10"]
    button(at, "Batch norm").click().run()
    assert at.query_params["net"] == ["conv3x8,relu,maxpool2,conv3x16,bn,relu,flatten,fc10"]
    button(at, "GAP head").click().run()
    assert at.query_params["net"] == ["conv3x8,relu,maxpool2,conv3x16,bn,relu,gap,fc10"]
    at.text_input(key="t.net").set_value("conv3x8,oops").run()
    assert any("Layer 2 'oops'" in e.value for e in at.error)
    button(at, "Max pool").click().run()  # a button on unreadable text changes nothing
    assert at.text_input(key="t.net").value == "conv3x8,oops"


def test_stack_builder_checks_the_head_against_the_classes():
    at = AppTest.from_function(builder_script).run()
    at.text_input(key="t.net").set_value("conv3x8,gap,fc7").run()
    assert any("ends in 7 outputs, but Fashion-MNIST has 10 classes" in e.value for e in at.error)


def test_state_keeps_the_apps_own_parameters_in_the_link():
    at = run_state(present="1", room="K7P2", n="5")
    at.number_input(key="t.n").set_value(6).run()
    assert dict(at.query_params) == {"n": ["6"], "double": ["10"], "present": ["1"], "room": ["K7P2"]}


def test_a_move_to_a_link_takes_the_whole_state_from_it():
    from ui.state import RESEED_KEY
    at = run_state(n="5", kind="mean")
    at.session_state[RESEED_KEY] = True  # what the lecture tour sets before st.switch_page
    at.query_params.clear()
    at.query_params["kind"] = "max"
    at.run()
    assert at.markdown[0].value == "n=3 kind=max double=6 on=False"  # n back to its default: the link omits it


def test_training_prediction_cards_escape_class_names_and_colour_right_and_wrong():
    from cnnviz.train_figures import RIGHT, WRONG, PredictionCard
    from ui.training import cards_html

    cards = [PredictionCard("data:image/png;base64,AAAA", "<b>cat</b>", 0.913, "dog & co", False),
             PredictionCard("data:image/png;base64,BBBB", "Shirt", 0.5, "Shirt", True)]
    text = cards_html(cards)
    assert "<b>cat</b>" not in text and "&lt;b&gt;cat&lt;/b&gt;" in text and "dog &amp; co" in text
    assert text.count("<figure") == 2 and "flex-wrap:wrap" in text
    first, second = text.split("<figure")[1:]
    assert WRONG in first and "91.3%" in first and RIGHT in second and "50.0%" in second
