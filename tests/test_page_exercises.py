"""'Your turn' on every lesson page and questions put to the hall, through Streamlit's AppTest: a wrong answer
shows the engine's arithmetic, a right one counts (the event the page hands the progress component), the
question is in the link, and the hall's question keeps its answer hidden until the presenter reveals it."""

from __future__ import annotations

import html
import json

import pytest
from streamlit.testing.v1 import AppTest

from apptest_helpers import button, open_page
from cnnviz.exercises import GENERATORS, lesson_kinds, make
from cnnviz.rooms import Location
from ui.state import APP_PARAMS, HALL_PARAMS

LESSON_PAGES = sorted({generator.lesson for generator in GENERATORS.values()})


def page_text(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def progress_data(at: AppTest, where: str = "own") -> dict:
    component = next(c for c in at.get("bidi_component") if c.key == f"yt.progress.{where}")
    return json.loads(component.proto.json)


def answer(at: AppTest, code: str, text: str, where: str = "own") -> AppTest:
    at.text_input(key=f"yt.{where}.answer.{code}").input(text)
    at.button(key=f"yt.{where}.check").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shows_worked(at: AppTest, question) -> bool:
    text = page_text(at)
    return all(html.escape(expression) in text for _, expression in question.worked)


def wrong(question) -> str:
    from test_exercises import wrong_answer

    return wrong_answer(question.answer)


@pytest.mark.parametrize("page", LESSON_PAGES)
def test_a_wrong_answer_shows_the_arithmetic_and_a_right_one_counts(page):
    kind = lesson_kinds(page)[-1]
    question = make(kind, 11)
    at = open_page(f"pages/{page}", **{"q": question.code})
    assert question.prompt.split("**")[0][:30] in page_text(at) or question.prompt[:30] in page_text(at)
    assert progress_data(at) == {"lesson": page.removesuffix(".py"), "event": None}
    assert not shows_worked(at, question)

    answer(at, question.code, wrong(question))
    assert any(e.value.startswith("Not right") for e in at.error)
    assert shows_worked(at, question) and f"The answer: {question.answer.text}" in page_text(at)
    missed = progress_data(at)["event"]
    assert missed["lesson"] == page.removesuffix(".py") and missed["kind"] == kind and missed["seed"] == 11
    assert missed["right_first_time"] is False

    answer(at, question.code, question.answer.text)  # right the second time: counted once already
    assert any(s.value.startswith("Right") for s in at.success)
    assert progress_data(at)["event"] == missed

    button(at, "New question").click().run()
    code = at.query_params["q"][0]
    assert code.startswith(kind + ".") and code != question.code
    fresh = make(kind, int(code.rsplit(".", 1)[1]))
    answer(at, fresh.code, fresh.answer.text)
    assert any("Right first time" in s.value for s in at.success)
    counted = progress_data(at)["event"]
    assert counted["right_first_time"] is True and counted["id"] != missed["id"] and counted["seed"] == fresh.seed


def test_the_lessons_kinds_are_offered_and_the_choice_goes_into_the_link():
    at = open_page("pages/2_Pooling.py")
    choice = at.radio(key="yt.2_Pooling.py.kind")
    assert choice.options == [GENERATORS[k].title for k in lesson_kinds("2_Pooling.py")]
    assert make("pool-value", 1).prompt[:40] in page_text(at)  # no q in the link: the first kind, seed 1
    choice.set_value("pool-head").run()
    assert at.query_params["q"] == ["pool-head.1"]
    assert make("pool-head", 1).prompt[:40] in page_text(at)


def test_unreadable_answers_are_explained_and_not_counted():
    question = make("conv-size", 4)
    at = answer(open_page("pages/1_Convolution.py", q=question.code), question.code, "five")
    assert any("not a number" in w.value for w in at.warning)
    assert not at.error and progress_data(at)["event"] is None and not shows_worked(at, question)


def test_hint_first_and_giving_up_counts_as_answered_not_right():
    question = make("stack-rf", 2)
    at = open_page("pages/3_Stacking_layers.py", q=question.code)
    button(at, "Hint").click().run()
    assert any(question.hint in i.value for i in at.info) and not shows_worked(at, question)
    button(at, "Show the answer").click().run()
    assert shows_worked(at, question) and f"The answer: {question.answer.text}" in page_text(at)
    event = progress_data(at)["event"]
    assert event["right_first_time"] is False
    answer(at, question.code, question.answer.text)  # right now, but after seeing it: not counted again
    assert progress_data(at)["event"] == event


def test_a_bad_link_value_is_said_and_the_first_question_shown():
    at = open_page("pages/1_Convolution.py", q="pool-value.3")
    assert any("q='pool-value.3' was ignored" in w.value for w in at.warning)
    assert make("conv-size", 1).prompt[:40] in page_text(at)


# ---------------------------------------------------------------- questions put to the hall


def test_hall_parameters_travel_with_a_room_and_stay_in_the_link():
    """A room publishes the page's query without the app-wide parameters: the hall's question must not be one."""
    assert not set(HALL_PARAMS) & set(APP_PARAMS) and "q" in APP_PARAMS
    location = Location.parse({"path": "/Convolution", "query": "pad=0&ask=conv-size.3&reveal=1&present=1&q=conv-size.9"},
                              APP_PARAMS)
    assert location.query == "pad=0&ask=conv-size.3&reveal=1"
    # a student's page writes its own state into the link and keeps the question in it
    at = open_page("pages/2_Pooling.py", ask="pool-head.5", room="KXPRT")
    at.number_input(key="pool.k").set_value(3).run()
    assert at.query_params["k"] == ["3"] and at.query_params["ask"] == ["pool-head.5"]


def test_the_presenter_asks_the_hall_and_reveals_the_answer():
    question = make("conv-params", 8)
    at = open_page("pages/1_Convolution.py", present="1", q=question.code)
    assert any(b.key == "conv.stepper" for b in at.get("bidi_component"))
    button(at, "Ask the hall").click().run()
    assert at.query_params["ask"] == [question.code]  # the presenter's own question goes to the hall
    text = page_text(at)
    assert question.prompt in text and question.answer.text not in text and not shows_worked(at, question)
    assert not any(b.key == "conv.stepper" for b in at.get("bidi_component"))  # the question has the screen
    assert not any(b.label == "Ask the hall" for b in at.button)

    button(at, "Reveal").click().run()
    assert at.query_params["reveal"] == ["1"]
    assert f"Answer: {question.answer.text}" in page_text(at) and shows_worked(at, question)

    button(at, "New question").click().run()
    asked = at.query_params["ask"][0]
    assert asked.startswith("conv-params.") and asked != question.code and "reveal" not in at.query_params
    button(at, "Back to the figure").click().run()
    assert "ask" not in at.query_params and any(b.key == "conv.stepper" for b in at.get("bidi_component"))


def test_a_student_answers_the_hall_question_and_sees_the_answer_once_revealed():
    question = make("softmax-prob", 3)
    at = open_page("pages/7_Classify_an_image.py", ask=question.code)
    assert question.prompt[:40] in page_text(at) and not shows_worked(at, question)
    answer(at, question.code, wrong(question), where="hall")
    assert at.error[0].value.startswith("Not right") and question.answer.text not in at.error[0].value
    assert not shows_worked(at, question)
    assert progress_data(at, "hall")["event"]["right_first_time"] is False

    revealed = open_page("pages/7_Classify_an_image.py", ask=question.code, reveal="1")
    assert shows_worked(revealed, question) and f"The answer: {question.answer.text}" in page_text(revealed)


def test_a_hall_question_from_another_lesson_is_ignored_with_a_note():
    at = open_page("pages/3_Stacking_layers.py", ask="conv-size.3")
    assert any("ask='conv-size.3' was ignored" in w.value for w in at.warning)
    assert "ask" not in at.query_params
