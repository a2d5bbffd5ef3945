"""'Your turn': a question on every lesson page, and questions a presenter puts to the hall.

- `your_turn(page_file)`: the page's "Your turn" section, called once at the end of its normal view. A
  question of one of the lesson's kinds (cnnviz.exercises), an answer box, Check, Hint, Show the answer,
  New question; after a check, right or wrong and the engine's worked arithmetic. The question is in the
  link (`q=<kind>.<seed>`, an app-wide parameter: each visitor's own), so a link reproduces it.
- Progress (answered, right first time, per lesson) lives in the browser's localStorage: Python tells the
  progress component (ui/components/progress.js) each answered question once, as an event with an id.
- `hall_question(page_file)`: a question put to the hall (`ask=<kind>.<seed>`, and `reveal=1` once the
  answer is shown). These two travel with the page's link, so a room carries them to the students' phones.
  In the presenter view the question takes the screen, its answer hidden until Reveal; a student sees it
  at the top of the page, answers it (their own check says right or wrong, not the answer) and sees the
  answer and its arithmetic when the presenter reveals it. Called by every lesson page's setup.
- `ask_the_hall(page_file)`: the presenter bar's "Ask the hall": the presenter's own question of this page
  (the one in their link), else a new one.

Sections are fragments: a check reruns the section, not the page.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path

import streamlit as st

from cnnviz.exercises import GENERATORS, MAX_SEED, Question, lesson_kinds, make, parse_code
from ui.presenter import presenting, share_dialog
from ui import show
from ui.show import Component, arithmetic, arithmetic_html

QUESTION = "q"  # the student's own question in the link (ui.state.APP_PARAMS)
ASK, REVEAL = "ask", "reveal"  # the hall's question and whether its answer is shown (ui.state.HALL_PARAMS)
TRIES = "yt.tries"  # {question code: what this session did with it}
FIGURE_MAX_PX = 400  # the tallest a question's figure is drawn in the presenter view
NEW_SEEDS = 9_999  # "New question" draws from 1..NEW_SEEDS: numbers short enough to read out in a hall

_PROGRESS = Component(
    "cnnviz_progress",
    html=("<div class='line' data-part='progress'><span class='icon'>✓</span> This lesson: <b data-part='answered'>"
          "0</b> <span data-part='answered-word'>questions answered</span>, <b data-part='right'>0</b> right first "
          "time <span class='where'>(kept in this browser)</span></div>"),
    css=(".line{font-family:var(--st-font,sans-serif);font-size:0.95rem;color:var(--st-text-color,inherit)}"
         ".icon{color:#16a34a}"
         ".where{color:#6b7280;font-size:0.85rem}"),
    js=(Path(__file__).resolve().parent / "components" / "progress.js").read_text(encoding="utf-8"),
)


def lesson_id(page_file: str) -> str:
    """'1_Convolution': the key the browser keeps a lesson's progress under."""
    return page_file.removesuffix(".py")


def _new_seed(old: int | None = None) -> int:
    seed = random.randint(1, NEW_SEEDS)
    return seed if seed != old else seed % NEW_SEEDS + 1


def _read(param: str, page_file: str) -> tuple[str, int] | None:
    """The question a link's parameter names, if it is one of this lesson's; a bad value is said once and dropped."""
    raw = st.query_params.get(param)
    if raw is None:
        return None
    try:
        return parse_code(raw, page_file)
    except ValueError as error:
        st.warning(f"The link's value {param}={raw[:40]!r} was ignored: {error}.", icon="🔗")
        st.query_params.pop(param, None)
        return None


# ---------------------------------------------------------------- what a session did with a question


def _tries(code: str) -> dict:
    return st.session_state.setdefault(TRIES, {}).setdefault(
        code, {"checks": 0, "right_first": None, "hint": False, "shown": False, "feedback": None})


def _answered(page_file: str, question: Question, where: str, right: bool) -> None:
    """The question counts as answered (once): tell the progress component at `where`."""
    st.session_state[f"yt.event.{where}"] = {
        "id": uuid.uuid4().hex, "lesson": lesson_id(page_file), "kind": question.kind, "seed": question.seed,
        "right_first_time": right}


def _check(page_file: str, question: Question, where: str, answer_key: str) -> None:
    tries = _tries(question.code)
    feedback = question.check(st.session_state.get(answer_key, ""))
    tries["feedback"] = feedback
    if not feedback.understood:
        return
    tries["checks"] += 1
    if tries["right_first"] is None:  # the first readable answer decides "right first time"
        tries["right_first"] = feedback.right and not tries["shown"]
        if not tries["shown"]:
            _answered(page_file, question, where, tries["right_first"])


def _show_answer(page_file: str, question: Question, where: str) -> None:
    tries = _tries(question.code)
    if tries["right_first"] is None and not tries["shown"]:  # given up before answering: answered, not right
        tries["right_first"] = False
        _answered(page_file, question, where, False)
    tries["shown"] = True


def _progress(page_file: str, where: str) -> None:
    _PROGRESS(key=f"yt.progress.{where}", data={"lesson": lesson_id(page_file),
                                                 "event": st.session_state.get(f"yt.event.{where}")})


def _answer_form(page_file: str, question: Question, where: str) -> None:
    """The answer box and Check (Enter checks too)."""
    answer_key = f"yt.{where}.answer.{question.code}"
    with st.form(f"yt.{where}.form.{question.code}", border=False, enter_to_submit=True):
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.text_input("Your answer", key=answer_key, placeholder=_placeholder(question))
            st.form_submit_button("Check", type="primary", on_click=_check, key=f"yt.{where}.check",
                                  args=(page_file, question, where, answer_key))


def _placeholder(question: Question) -> str:
    return {"Whole": "a number, e.g. 1,792", "Decimal": "e.g. 0.75 or 74.3%", "Shape": "e.g. 4×4×16",
            "Choice": "a class name", "Cells": "e.g. row 5, column 5"}[type(question.answer).__name__]


def _feedback(tries: dict) -> None:
    """Right or wrong (never the answer: the caller shows it when it may); unreadable text explained."""
    feedback = tries["feedback"]
    if feedback is None:
        return
    if not feedback.understood:
        st.warning(feedback.message, icon=":material/help:")
    elif feedback.right:
        first = " Right first time." if tries["right_first"] and tries["checks"] == 1 else ""
        st.success(feedback.message + first, icon=":material/check_circle:")
    else:
        st.error(feedback.message, icon=":material/cancel:")  # the answer follows, with its arithmetic


def enlarged(figure: dict, factor: float) -> dict:
    """A copy of a plain plotly figure of fixed size (cnnviz.figures) `factor` times as large: its size,
    margins and every font. The engine's figures are sized for a page; a projector needs them larger."""
    def scale(node, key=""):
        if isinstance(node, dict):
            return {k: (v * factor if (k in ("width", "height") and key in ("", "layout")
                                       or key == "margin" or k == "size" and "font" in key)
                                      and isinstance(v, (int, float)) and not isinstance(v, bool)
                        else scale(v, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [scale(item, key) for item in node]
        return node
    return scale(figure)


def _question(question: Question, font_rem: float = 1.0) -> None:
    if font_rem == 1.0:
        st.markdown(question.prompt)
    else:  # our own markdown (the engine's prompt), larger for a projector
        st.markdown(f"<div style='font-size:{font_rem}rem;line-height:1.45'>\n\n{question.prompt}\n\n</div>",
                    unsafe_allow_html=True)
    if question.figure is not None:
        # on a projector: larger, but never taller than what 1280×720 leaves below the prompt
        factor = min(font_rem, FIGURE_MAX_PX / question.figure["layout"]["height"])
        figure = question.figure if font_rem == 1.0 else enlarged(question.figure, max(1.0, factor))
        show.chart(figure, key=f"yt.figure.{question.code}", width="content")  # looked up when drawn (tests count)


# ---------------------------------------------------------------- the page's own question


def _set_own(kind: str, seed: int) -> None:
    st.query_params[QUESTION] = f"{kind}.{seed}"


def _on_kind(page_file: str, seed: int) -> None:
    _set_own(st.session_state[f"yt.{page_file}.kind"], seed)


def your_turn(page_file: str) -> None:
    """The lesson's "Your turn" section (nothing in the presenter view)."""
    if presenting() or not lesson_kinds(page_file):
        return
    _your_turn(page_file)


@st.fragment
def _your_turn(page_file: str) -> None:
    kinds = lesson_kinds(page_file)
    st.header("Your turn", divider="gray", anchor="your-turn")
    kind, seed = _read(QUESTION, page_file) or (kinds[0], 1)
    question = make(kind, seed)
    _progress(page_file, "own")
    st.caption("Work it out first, then check. Every question has a number in the link: share it, and "
               "the same question opens.")
    if len(kinds) > 1:
        kind_key = f"yt.{page_file}.kind"
        st.session_state[kind_key] = kind
        st.radio("Question about", kinds, key=kind_key, format_func=lambda k: GENERATORS[k].title, horizontal=True,
                 on_change=_on_kind, args=(page_file, seed))
    with st.container(border=True, key=f"yt.own.{question.code}"):
        st.markdown(f"**{question.title}** · question {question.seed}")
        _question(question)
        _answer_form(page_file, question, "own")
        tries = _tries(question.code)
        with st.container(horizontal=True, gap="small"):
            st.button("Hint", icon=":material/lightbulb:", key="yt.own.hint", disabled=tries["hint"],
                      on_click=tries.__setitem__, args=("hint", True))
            st.button("Show the answer", icon=":material/visibility:", key="yt.own.show", disabled=tries["shown"],
                      on_click=_show_answer, args=(page_file, question, "own"))
            st.button("New question", icon=":material/casino:", key="yt.own.new",
                      on_click=lambda: _set_own(kind, _new_seed(seed)))
        if tries["hint"]:
            st.info(f"**Hint.** {question.hint}", icon=":material/lightbulb:")
        _feedback(tries)
        if tries["shown"] or (tries["feedback"] is not None and tries["feedback"].understood):
            arithmetic(list(question.worked), intro=f"**The answer: {question.answer.text}**")


# ---------------------------------------------------------------- questions put to the hall


def ask_the_hall(page_file: str) -> None:
    """Put a question of this page to the hall: the presenter's own (the link's `q`), else a new one."""
    own = None
    raw = st.query_params.get(QUESTION)
    if raw is not None:
        try:
            own = parse_code(raw, page_file)
        except ValueError:
            own = None
    kind, seed = own or (lesson_kinds(page_file)[0], _new_seed())
    st.query_params[ASK] = f"{kind}.{seed}"
    st.query_params.pop(REVEAL, None)


def _ask(kind: str, seed: int) -> None:
    st.query_params[ASK] = f"{kind}.{seed}"
    st.query_params.pop(REVEAL, None)


def _reveal(shown: bool) -> None:
    if shown:
        st.query_params[REVEAL] = "1"
    else:
        st.query_params.pop(REVEAL, None)


def _end_question() -> None:
    st.query_params.pop(ASK, None)
    st.query_params.pop(REVEAL, None)


def hall_question(page_file: str) -> None:
    """The question put to the hall, if the link has one: the presenter view's whole screen (the page stops
    after it), or a box at the top of a student's page."""
    asked = _read(ASK, page_file) if lesson_kinds(page_file) else None
    if asked is None:
        return
    question, revealed = make(*asked), st.query_params.get(REVEAL) == "1"
    if presenting():
        _presenter_question(page_file, question, revealed)
        st.stop()
    _student_question(page_file, question, revealed)


def _presenter_question(page_file: str, question: Question, revealed: bool) -> None:
    """Large, for 1280×720: the question and its figure; the answer hidden until Reveal."""
    kinds = lesson_kinds(page_file)
    with st.container(horizontal=True, vertical_alignment="center", gap="small", key="yt.hall.controls"):
        st.markdown(f"#### :material/quiz: Your turn · {question.title}", width="content")
        if revealed:
            st.button("Hide the answer", icon=":material/visibility_off:", key="yt.hall.hide",
                      on_click=_reveal, args=(False,))
        else:
            st.button("Reveal", icon=":material/visibility:", type="primary", key="yt.hall.reveal",
                      on_click=_reveal, args=(True,), help="Show the answer and its arithmetic to the hall")
        st.button("New question", icon=":material/casino:", key="yt.hall.new",
                  on_click=_ask, args=(question.kind, _new_seed(question.seed)))
        if len(kinds) > 1:
            st.session_state["yt.hall.kind"] = question.kind
            st.selectbox("Question about", kinds, key="yt.hall.kind", format_func=lambda k: GENERATORS[k].title,
                         label_visibility="collapsed", width=300,
                         on_change=lambda: _ask(st.session_state["yt.hall.kind"], question.seed))
        st.button("Back to the figure", icon=":material/close:", key="yt.hall.end", on_click=_end_question)
    left, right = st.columns(2, gap="large")
    with left:
        _question(question, font_rem=1.5)
    with right:
        if revealed:
            st.markdown(f"<div style='font-size:2rem;font-weight:700;margin-bottom:0.6rem'>"
                        f"Answer: {question.answer.text}</div>"
                        # the arithmetic's own monospace type, larger for the back of the hall
                        + arithmetic_html(list(question.worked)).replace("font-size:1.15rem", "font-size:1.4rem"),
                        unsafe_allow_html=True)
        else:
            st.markdown("<div style='font-size:1.5rem;color:#4b5563'>Work it out, then answer on your phone.<br>"
                        "The answer appears when it is revealed.</div>", unsafe_allow_html=True)
    # The bar's Share button: the dialog's link carries the question, so a QR code brings the hall to it.
    share_dialog(st.session_state.get("page.path", "/"), dict(st.query_params))


@st.fragment
def _student_question(page_file: str, question: Question, revealed: bool) -> None:
    with st.container(border=True, key="yt.hall"):
        st.markdown(f"#### :material/podium: Question from the lecture · {question.title}")
        _question(question)
        _answer_form(page_file, question, "hall")
        tries = _tries(question.code)
        _feedback(tries)
        if revealed:
            arithmetic(list(question.worked), intro=f"**The answer: {question.answer.text}**")
        else:
            st.caption("Check your answer here; the answer and its arithmetic appear when the presenter reveals them.")
        _progress(page_file, "hall")
