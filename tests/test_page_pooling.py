"""The pooling page through Streamlit's AppTest: the lecture's numbers, its controls, its URL state."""

import json

import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from apptest_helpers import button, open_page
from cnnviz.examples import LECTURE_POOLING_INPUT
from cnnviz.network import STACK_PRESETS, analyse, build_model, parse_stack, totals

PAGE = "pages/2_Pooling.py"


def run_page(**query) -> AppTest:
    return open_page(PAGE, **query)


def text_of(at: AppTest) -> str:
    progress = [p.proto.text for p in at.get("progress")]
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + progress)


def figures(at: AppTest) -> dict[str, dict]:
    """Plotly figures by widget key suffix (the charts' keys end in their names)."""
    found = {}
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        found[element.proto.id.rsplit("-", 1)[-1] if element.proto.id else str(len(found))] = spec
    return found


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
    assert "max(1, 2, 2, −1) = 2" in text_of(at)
    assert "Output 1 of 4" in text_of(at)
    button(at, "End").click().run()
    assert not at.exception
    assert "max(−1, −1, −2, −5) = −1" in text_of(at)
    expected = F.max_pool2d(LECTURE_POOLING_INPUT[None, None], 2, 2)[0, 0].tolist()
    assert expected == [[2, 1], [3, -1]]
    assert expected in chart_values(at)  # the filled output grid
    assert at.query_params["step"] == ["3"]


def test_mean_pooling_from_a_link_explains_the_sum_over_the_count():
    at = run_page(kind="mean", step="1")
    assert "(1 + 1 + 0 + 1) / 4 = 3 / 4 = 0.75" in text_of(at)
    assert "Mean pooling would" not in text_of(at)


def test_channels_are_pooled_one_by_one():
    at = run_page(channels="2")
    assert "Output 1 of 8" in text_of(at)
    assert "Input 4×4×2 → output **2×2×2**" in text_of(at)
    button(at, "End").click().run()
    assert "output channel 2, row 2, column 2" in text_of(at)


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
    assert "max(1, 2, 2, −1) = 2" in text_of(at)


def test_strided_convolution_and_the_three_ways_to_halve():
    at = run_page()
    # The strided convolution's first output, with the lecture's 2x2 kernel [[1, 0], [0, 1]]: 1 + (-1) = 0.
    assert "1·1 + 0·2 + 0·2 + 1·(−1) = 0" in text_of(at)
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
    spec = figures(at)["pool.fig.step"]
    shapes = spec["layout"]["shapes"]
    window = [s for s in shapes if s["line"]["color"] == "#f59e0b" and s["x1"] - s["x0"] > 1.5]
    winner = [s for s in shapes if s["line"]["color"] != "#f59e0b"]
    assert len(window) == 1 and len(winner) == 1
    # second window: rows 1-2, columns 3-4, values 1 1 / 0 1: the winner is row 1, column 3 (the first 1)
    assert (winner[0]["x0"] + winner[0]["x1"]) / 2 == 2 and (winner[0]["y0"] + winner[0]["y1"]) / 2 == 0
    assert winner[0]["xref"] == window[0]["xref"]  # on the input grid, inside the window
