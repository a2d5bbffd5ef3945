"""The convolution page, driven through Streamlit's AppTest: it renders, reacts and keeps its state in the URL.

The stepper runs in the browser (ui.client_stepper): AppTest sees its data, and plays the browser's
part by sending the component's state (`browser_steps_to`)."""

import json

import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from apptest_helpers import open_page
from cnnviz.examples import LECTURE_BIAS, LECTURE_FILTER, LECTURE_INPUT
from cnnviz.notation import number

PAGE = "pages/1_Convolution.py"


def run_page(**query) -> AppTest:
    return open_page(PAGE, **query)


STEPPER = "conv.stepper"


def text_of(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def stepper(at: AppTest, key: str = STEPPER):
    return next(element for element in at.get("bidi_component") if element.key == key)


def stepper_data(at: AppTest, key: str = STEPPER) -> dict:
    return json.loads(stepper(at, key).proto.json)


def shown(at: AppTest, step: int | None = None, key: str = STEPPER) -> str:
    """What the stepper shows at `step` (default: the step Python tells it to open at): its caption and
    arithmetic, from its data, joined the way the component joins them."""
    data = stepper_data(at, key)
    step = data["goto"]["step"] if step is None else step
    positions = len(data["windows"])
    caption = f"{data['channel_captions'][step // positions]}, {data['position_captions'][step % positions]}"
    lines = [" + ".join(data["terms"][i] for i in ids) + f" = {total}"
             for ids, total in zip(data["products"][step], data["sums"][step])]
    return "\n".join([f"Computing {caption}:", *lines, data["totals"][step]])


def browser_steps_to(at: AppTest, step: int, key: str = STEPPER, goto: int | None = None) -> AppTest:
    """What the browser does 400 ms after the student stepped: send the component's state (the step,
    and the id of Python's last command it has applied, `goto`: by default the current one)."""
    widgets = at._tree.get_widget_states()
    state = widgets.widgets.add()
    state.id = stepper(at, key).proto.id
    state.json_value = json.dumps({"step": step, "goto": stepper_data(at, key)["goto"]["id"] if goto is None else goto})
    at._run(widgets)
    assert not at.exception, [e.value for e in at.exception]
    return at


def lecture_output() -> torch.Tensor:
    return F.conv2d(LECTURE_INPUT[None, None], LECTURE_FILTER[None, None],
                    torch.tensor([LECTURE_BIAS], dtype=torch.float64), padding=1)[0, 0]


def test_opens_on_the_lecture_example_with_first_value_two():
    at = run_page()
    assert "output channel 1, row 1, column 1" in shown(at)
    assert "1 + 1 (bias) = 2" in shown(at)
    assert stepper_data(at)["count"] == 16 and stepper_data(at)["param"] == "step"
    text = text_of(at)
    assert "d′·(k·k·d + 1) = 1·(3·3·1 + 1) = **10**" in text
    assert "4·4·1·(3·3·1 + 1) = **160**" in text
    # the output size formula with the lecture's numbers, for both axes: padding 1 keeps 4×4
    assert text.count("⌊(4 + 2·1 − 1·(3 − 1) − 1) / 1⌋ + 1 = 4") == 2
    assert "Input 4×4×1 → output **4×4×1**" in text


def test_the_browsers_step_reaches_python_and_the_url():
    at = run_page()
    browser_steps_to(at, 1)
    assert at.query_params["step"] == ["1"]
    assert at.session_state["conv.step"] == 1
    expected = lecture_output()[0, 1]
    assert f"(bias) = {number(expected)}" in shown(at, 1)
    assert "row 1, column 2" in shown(at, 1)
    assert stepper_data(at)["goto"] == {"id": 1, "step": 0, "predict": False}  # no command back: the browser is there already


def test_link_opens_the_exact_state():
    at = run_page(step="5", pad="0")
    out = F.conv2d(LECTURE_INPUT[None, None], LECTURE_FILTER[None, None],
                   torch.tensor([LECTURE_BIAS], dtype=torch.float64))[0, 0]
    # Without padding the output is 2x2: there are only 4 steps, so step 5 is clamped to the last.
    assert stepper_data(at)["goto"]["step"] == 3
    assert f"(bias) = {number(out[1, 1])}" in shown(at)
    assert "row 2, column 2" in shown(at)


def test_a_changed_setting_starts_the_stepper_again():
    at = run_page(step="5")
    assert stepper_data(at)["goto"] == {"id": 1, "step": 5, "predict": False}
    browser_steps_to(at, 7)
    at.number_input(key="conv.s").set_value(2).run()
    # Python tells the browser, with a new command id, to go to step 0 of the new layer.
    assert stepper_data(at)["goto"] == {"id": 2, "step": 0, "predict": False} and stepper_data(at)["count"] == 4
    assert "step" not in at.query_params
    # A step the browser sent before it saw that command is not taken.
    browser_steps_to(at, 3, goto=1)
    assert at.session_state["conv.step"] == 0 and "step" not in at.query_params
    browser_steps_to(at, 3)
    assert at.session_state["conv.step"] == 3 and at.query_params["step"] == ["3"]


def test_bad_link_value_is_explained_and_ignored():
    at = run_page(s="nine")
    assert any("s='nine'" in w.value for w in at.warning)
    assert "1 + 1 (bias) = 2" in shown(at)


def test_impossible_layer_is_explained_not_crashed():
    at = run_page(pad="0", dil="3")  # a 3x3 filter with dilation 3 spans 7 pixels > 4
    assert any("gives no output" in e.value for e in at.error)
    assert "7" in next(e.value for e in at.error if "gives no output" in e.value)


def test_editing_a_grid_with_a_typo_shows_a_message_and_keeps_the_text():
    at = run_page()
    box = next(t for t in at.text_area if t.label == "Input channel 1")
    box.set_value("1 2 1 1\n2 x 0 1\n0 2 1 1\n1 0 -2 2").run()
    assert any("'x' in row 2, column 2" in e.value for e in at.error)
    assert next(t for t in at.text_area if t.label == "Input channel 1").value.startswith("1 2 1 1\n2 x")
    assert "1 + 1 (bias) = 2" in shown(at)  # the last good input is still in use


def test_editing_the_input_recomputes_against_torch():
    at = run_page()
    box = next(t for t in at.text_area if t.label == "Input channel 1")
    box.set_value("1 1 1\n1 1 1\n1 1 1").run()
    assert not at.error
    x = torch.ones(1, 1, 3, 3, dtype=torch.float64)
    out = F.conv2d(x, LECTURE_FILTER[None, None], torch.tensor([1.0], dtype=torch.float64), padding=1)
    assert f"(bias) = {number(out[0, 0, 0, 0])}" in shown(at)
    assert at.query_params["x"]  # the edit is in the link


def test_kernel_size_and_filters_update_the_counts():
    at = run_page()
    at.number_input(key="conv.k").set_value(5).run()
    at.number_input(key="conv.dd").set_value(2).run()
    assert not at.exception
    text = text_of(at)
    # k=5, d=1, d'=2, padding 1 on a 4x4 input: output 2x2 (4 + 2 - 4 - 1 + 1).
    assert "d′·(k·k·d + 1) = 2·(5·5·1 + 1) = **52**" in text
    assert "2·2·2·(5·5·1 + 1) = **208**" in text


@pytest.mark.parametrize("example", ["two-channels", "two-filters", "strided", "no-padding"])
def test_every_example_renders(example):
    at = run_page(ex=example)
    assert "(bias) =" in shown(at)


def test_the_examples_note_only_describes_its_own_settings():
    note = "zero padding 1 keeps the output 4×4"
    assert any(note in c.value for c in open_page(PAGE).caption)
    at = run_page(pad="0")  # the lecture's grids without padding: the note would be wrong
    assert not any(note in c.value for c in at.caption)
    assert "Input 4×4×1 → output **2×2×1**" in text_of(at)


def test_an_edge_preset_comes_with_bias_zero():
    at = run_page()
    at.selectbox(key="conv.preset.0").set_value("sobel (vertical edges)").run()
    assert at.query_params["b"] == ["0"]  # the lecture's +1 would wash the edge map out
    assert at.query_params["w"] == ["-1,0,1;-2,0,2;-1,0,1"]
    at.selectbox(key="conv.preset.0").set_value("lecture").run()
    assert "b" not in at.query_params  # back to the lecture's filter and its bias +1


@pytest.mark.parametrize("query, says", [
    ({"w": "/".join(["1,0;0,1"] * 5), "b": "0,0,0,0,0"}, "at most 4 filters"),
    ({"w": ";".join([",".join(["1"] * 9)] * 9)}, "k×k with k from 1 to 7"),
    ({"x": "|".join(["1,2;3,4"] * 7)}, "at most 6 input channels"),
    ({"x": "1e308,1;1,1"}, "use a number between"),
])
def test_a_link_beyond_the_controls_limits_says_so(query, says):
    at = run_page(**query)
    assert any(says in w.value for w in at.warning), [w.value for w in at.warning]
    assert "1 + 1 (bias) = 2" in shown(at)  # the lecture's example instead


def test_bad_link_values_say_what_the_parameter_expects():
    at = run_page(step="abc", s="nine")
    warnings = " ".join(w.value for w in at.warning)
    assert "invalid literal" not in warnings  # Python's wording
    assert "step='abc'" in warnings and "a whole number from 0 to 100000" in warnings
    assert "s='nine'" in warnings and "a whole number from 1 to 4" in warnings


def test_an_unknown_sample_photo_in_a_link_is_said():
    at = run_page(img="Dog")
    assert any("img='Dog' was ignored: it must be one of Cat" in w.value for w in at.warning)
    assert at.selectbox(key="conv.img").value == "Cat"


def test_the_presenter_view_asks_for_the_large_stepper():
    assert stepper_data(run_page())["present"] is False
    assert stepper_data(run_page(present="1"))["present"] is True


# ---------------------------------------------------------------- predict mode


SGD = "conv.sgd"


def test_predict_mode_is_off_by_default_and_a_link_turns_it_on():
    at = run_page()
    for key in (STEPPER, SGD):
        assert stepper_data(at, key)["goto"]["predict"] is False and stepper_data(at, key)["predict_param"] == "predict"
    at = run_page(predict="1", step="3")
    for key in (STEPPER, SGD):
        assert stepper_data(at, key)["goto"]["predict"] is True
    assert stepper_data(at)["goto"]["step"] == 3 and at.query_params["predict"] == ["1"]
    # The value a guess is compared with is the engine's: the slide's output, step by step.
    assert stepper_data(at)["answers"] == lecture_output().flatten().tolist()


def test_the_browsers_predict_switch_reaches_python_and_the_link():
    at = run_page()
    command = stepper_data(at)["goto"]
    widgets = at._tree.get_widget_states()
    state = widgets.widgets.add()
    state.id = stepper(at).proto.id
    state.json_value = json.dumps({"step": 2, "goto": command["id"], "predict": True})
    at._run(widgets)
    assert not at.exception
    assert at.query_params["predict"] == ["1"] and at.query_params["step"] == ["2"]
    assert at.session_state["conv.predict"] is True
    assert stepper_data(at)["goto"] == command  # no command back: the browser switched it itself
    at.number_input(key="conv.s").set_value(2).run()  # a new layer keeps predict mode
    assert stepper_data(at)["goto"] == {"id": command["id"] + 1, "step": 0, "predict": True}


def test_a_bad_predict_value_in_a_link_is_explained():
    at = run_page(predict="yes")
    assert any("predict='yes'" in w.value and "0 or 1" in w.value for w in at.warning)
    assert stepper_data(at)["goto"]["predict"] is False


# ---------------------------------------------------------------- one step of gradient descent


def autograd_step(x, w, b, target, learning_rate, padding=1):
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    y = F.conv2d(x[None], w, b, padding=padding)[0]
    loss = 0.5 * ((y - target) ** 2).sum()
    loss.backward()
    with torch.no_grad():
        new_loss = 0.5 * ((F.conv2d(x[None], w - learning_rate * w.grad, b - learning_rate * b.grad,
                                    padding=padding)[0] - target) ** 2).sum()
    return loss.item(), w.grad, b.grad, new_loss.item()


def test_the_gradient_step_on_the_lecture_example_matches_autograd():
    from cnnviz.sgd import seeded_target
    at = run_page()
    data = stepper_data(at, SGD)
    assert data["kind"] == "grids" and data["count"] == 10 and data["param"] == "gstep"
    target = seeded_target((1, 4, 4), 0)
    loss, weight_grad, bias_grad, new_loss = autograd_step(
        LECTURE_INPUT[None], LECTURE_FILTER[None, None], torch.tensor([LECTURE_BIAS], dtype=torch.float64), target, 0.01)
    assert data["answers"] == [*weight_grad.flatten().tolist(), bias_grad.item()]
    text = text_of(at)
    assert f"= ½ · {number(2 * loss)} = **{number(loss)}**" in text and loss == 292.5
    assert f"after the step with η = 0.01, L = **{number(new_loss)}**, lower." in text
    assert "∂L/∂w = Σ ∂L/∂y · x" in text  # the gradient said as the correlation it is
    first = data["lines"][0][0]
    assert " + ".join(data["terms"][i] for i in first[1]) + first[2] == (
        "1·0 + (−4)·0 + 10·0 + 6·0 + 7·0 + 11·1 + (−4)·2 + 1·1 + (−3)·0 + (−3)·2 + 3·(−1) + 13·0 + 5·0 + 2·0 "
        "+ 2·2 + (−4)·1 = −5")


def test_the_links_target_learning_rate_and_step():
    from cnnviz.sgd import seeded_target
    at = run_page(tgt="3", lr="0.1", gstep="4")
    data = stepper_data(at, SGD)
    assert data["goto"]["step"] == 4
    loss, weight_grad, _, new_loss = autograd_step(
        LECTURE_INPUT[None], LECTURE_FILTER[None, None], torch.tensor([LECTURE_BIAS], dtype=torch.float64),
        seeded_target((1, 4, 4), 3), 0.1)
    assert data["answers"][4] == weight_grad[0, 0, 1, 1].item()
    assert new_loss > loss and f"L = **{number(new_loss)}**, **higher**: η = 0.1 is too large a step" in text_of(at)
    assert any("w − 0.1·∂L/∂w" == s["title"] for g in data["groups"] for s in g["sets"])
    at = run_page(lr="0.5", tgt="ten")
    warnings = " ".join(w.value for w in at.warning)
    assert "lr='0.5'" in warnings and "0.001, 0.003, 0.01, 0.03, 0.1" in warnings and "tgt='ten'" in warnings


def test_a_new_target_and_another_learning_rate_start_the_step_again():
    at = run_page(gstep="5")
    before = stepper_data(at, SGD)["answers"]
    next(b for b in at.button if b.label == "New target").click().run()
    assert at.query_params["tgt"] == ["1"] and "gstep" not in at.query_params
    assert stepper_data(at, SGD)["goto"]["step"] == 0 and stepper_data(at, SGD)["answers"] != before
    at.segmented_control(key="conv.lr").set_value(0.03).run()
    assert at.query_params["lr"] == ["0.03"]
    assert "after the step with η = 0.03" in text_of(at)


def test_the_presenter_views_gradient_descent_stop():
    from cnnviz.tour import TOUR, stop_query
    index = next(i for i, stop in enumerate(TOUR) if stop.section == "sgd")
    at = run_page(**stop_query(index, present="1"))
    keys = [element.key for element in at.get("bidi_component")]
    assert SGD in keys and STEPPER not in keys  # the gradient step fills the screen, not the forward pass
    assert stepper_data(at, SGD)["present"] is True
    assert "L = **146.294**" in text_of(at) and "What the layer costs" not in text_of(at)


# ---------------------------------------------------------------- more than three input channels


def test_six_input_channels_are_said_to_be_hyperspectral_and_counted():
    at = run_page()
    at.number_input(key="conv.d").set_value(6).run()
    assert not at.exception
    assert any("hyperspectral" in c.value and "k·k·d + 1" in c.value for c in at.caption)
    text = text_of(at)
    assert "k·k·d + 1 = 3·3·6 + 1 = **55**" in text and "d′·(k·k·d + 1) = 1·(3·3·6 + 1) = **55**" in text
    data = stepper_data(at)
    assert len(data["inputs"]["grids"]) == 6 and data["line_labels"] == [f"channel {c}" for c in range(1, 7)]
    assert stepper_data(at, SGD)["count"] == 6 * 9 + 1
    assert not any("hyperspectral" in c.value for c in run_page(ex="two-channels").caption)
