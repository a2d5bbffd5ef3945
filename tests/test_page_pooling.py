"""The pooling page through Streamlit's AppTest: the lecture's numbers, its controls, its URL state.

Its two steppers run in the browser (ui.client_stepper): AppTest reads their data and plays the
browser's part by sending the component's state (`browser_steps_to`)."""

import json

import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from apptest_helpers import open_page
from cnnviz.examples import LECTURE_POOLING_INPUT

PAGE = "pages/2_Pooling.py"


def run_page(**query) -> AppTest:
    return open_page(PAGE, **query)


POOL, STRIDED = "pool.stepper", "pool.strided"


def text_of(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption])


def stepper(at: AppTest, key: str):
    return next(element for element in at.get("bidi_component") if element.key == key)


def stepper_data(at: AppTest, key: str = POOL) -> dict:
    return json.loads(stepper(at, key).proto.json)


def shown(at: AppTest, step: int | None = None, key: str = POOL) -> str:
    """The caption and arithmetic the stepper shows at `step` (default: where Python opens it), from its data."""
    data = stepper_data(at, key)
    step = data["goto"]["step"] if step is None else step
    positions = len(data["windows"])
    caption = f"{data['channel_captions'][step // positions]}, {data['position_captions'][step % positions]}"
    if data["kind"] == "conv":
        lines = [" + ".join(data["terms"][i] for i in ids) + f" = {total}"
                 for ids, total in zip(data["products"][step], data["sums"][step])]
        return "\n".join([f"Computing {caption}:", *lines, data["totals"][step]])
    notes = [data["notes"][step]] if data["notes"] else []
    return "\n".join([f"Computing {caption} {data['crops'][step]}", data["maths"][step], *notes])


def browser_steps_to(at: AppTest, step: int, key: str = POOL) -> AppTest:
    """What the browser sends 400 ms after the student stepped: the step and Python's last command id."""
    widgets = at._tree.get_widget_states()
    state = widgets.widgets.add()
    state.id = stepper(at, key).proto.id
    state.json_value = json.dumps({"step": step, "goto": stepper_data(at, key)["goto"]["id"]})
    at._run(widgets)
    assert not at.exception, [e.value for e in at.exception]
    return at


def chart_values(at: AppTest) -> list[list[list[float]]]:
    """The value grids of all grid figures on the page (the heatmap with text), in page order."""
    grids = []
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        for trace in spec["data"]:
            if trace.get("type") == "heatmap" and "text" in trace:
                grids.append(trace["z"])
    return grids


def test_opens_on_the_lectures_max_pooling_and_steps_to_the_end():
    at = run_page()
    assert "max(1, 2, 2, −1) = 2" in shown(at)
    assert stepper_data(at)["count"] == 4 and stepper_data(at)["goto"]["step"] == 0
    browser_steps_to(at, 3)  # the student pressed End
    assert "max(−1, −1, −2, −5) = −1" in shown(at, 3)
    expected = F.max_pool2d(LECTURE_POOLING_INPUT[None, None], 2, 2)[0, 0].tolist()
    assert expected == [[2, 1], [3, -1]]
    assert stepper_data(at)["outputs"]["grids"][0]["labels"] == ["2", "1", "3", "−1"]  # the output it fills
    assert at.query_params["step"] == ["3"]
    assert "sstep" not in at.query_params  # the other stepper did not move


def test_mean_pooling_from_a_link_explains_the_sum_over_the_count():
    at = run_page(kind="mean", step="1")
    assert "(1 + 1 + 0 + 1) / 4 = 3 / 4 = 0.75" in shown(at)
    assert "Mean pooling would" not in shown(at)


def test_channels_are_pooled_one_by_one():
    at = run_page(channels="2")
    assert stepper_data(at)["count"] == 8
    assert "Input 4×4×2 → output **2×2×2**" in text_of(at)
    assert "output channel 2, row 2, column 2" in shown(at, 7)
    assert [g["title"] for g in stepper_data(at)["inputs"]["grids"]] == ["Input channel 1", "Input channel 2"]


def test_a_changed_setting_starts_the_stepper_again():
    at = run_page(step="2")
    assert stepper_data(at)["goto"] == {"id": 1, "step": 2, "predict": False}
    browser_steps_to(at, 3)
    at.number_input(key="pool.s").set_value(1).run()
    assert stepper_data(at)["goto"] == {"id": 2, "step": 0, "predict": False} and stepper_data(at)["count"] == 9
    assert "step" not in at.query_params


def test_kernel_and_stride_change_the_output_size_formula():
    at = run_page()
    at.number_input(key="pool.k").set_value(3).run()
    assert "⌊(4 − 3) / 2⌋ + 1 = 1" in text_of(at)
    # stride 2 with kernel 3 on 4x4 leaves the last row and column out of every window
    assert any("never reach the output" in w.value for w in at.warning)


def test_a_window_larger_than_the_input_is_explained():
    at = run_page(k="5", s="1")
    assert any("gives no output" in e.value for e in at.error)


def test_a_bad_link_value_is_reported_and_replaced():
    at = run_page(k="99")
    assert any("k='99' was ignored" in w.value for w in at.warning)
    assert "max(1, 2, 2, −1) = 2" in shown(at)


def test_strided_convolution_and_the_three_ways_to_halve():
    at = run_page()
    # The strided convolution's first output, with the lecture's 2x2 kernel [[1, 0], [0, 1]]: 1 + (-1) = 0.
    assert "1·1 + 0·2 + 0·2 + 1·(−1) = 0" in shown(at, key=STRIDED)
    assert stepper_data(at, STRIDED)["param"] == "sstep"
    x = LECTURE_POOLING_INPUT[None, None]
    values = chart_values(at)
    for expected in (F.max_pool2d(x, 2, 2), F.avg_pool2d(x, 2, 2),
                     F.conv2d(x, torch.full((1, 1, 2, 2), 0.25, dtype=torch.float64), stride=2)):
        assert expected[0, 0].tolist() in values
    assert any("is* mean pooling" in s.value for s in at.success)


def test_flatten_versus_global_average_pooling_counts():
    at = run_page()
    text = text_of(at)
    assert "**102,764,544**" in text and "**2,101,248**" in text
    at.number_input(key="pool.units").set_value(1000).run()
    assert f"**{25088 * 1000 + 1000:,}**" in text_of(at) and f"**{512 * 1000 + 1000:,}**" in text_of(at)


def test_an_old_builder_link_opens_the_stacking_page():
    at = run_page(net="conv3x8,maxpool2,conv3x8,maxpool2,flatten,fc10", rfl="3", rfr="1", rfc="1")
    assert "input rows **1–5** and columns **1–5**: a **5×5** patch" in text_of(at)
    assert at.text_input(key="stack.net").value == "conv3x8,maxpool2,conv3x8,maxpool2,flatten,fc10"


def test_the_max_pooling_winner_is_marked_apart_from_the_window():
    at = run_page(step="1")
    data = stepper_data(at)
    # second window: rows 1-2, columns 3-4, values 1 1 / 0 1: the winner is row 1, column 3 (the first 1)
    assert data["windows"][1] == [2, 3, 6, 7] and data["winners"][1] == 2
    assert "The winner is input row 1, column 3" in shown(at)


def test_predict_mode_comes_with_the_link_for_both_steppers():
    for key in (POOL, STRIDED):
        assert stepper_data(run_page(), key)["goto"]["predict"] is False
    at = run_page(predict="1", kind="mean")
    for key in (POOL, STRIDED):
        assert stepper_data(at, key)["goto"]["predict"] is True and stepper_data(at, key)["predict_param"] == "predict"
    assert stepper_data(at)["answers"] == [1.0, 0.75, 1.0, -2.25]  # the lecture's input, mean-pooled
    assert stepper_data(at)["predict_hint"] == "What is the mean of the values in the amber window?"
