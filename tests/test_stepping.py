"""The stepper's data (cnnviz.stepping) held to torch and to the lecture: every output value, every
channel sum and total, every product term, window, padding cell, pooled value and max-pooling
winner that the browser will place, and the payload's size and plain-JSON form."""

from __future__ import annotations

import itertools
import json
import zlib

import pytest
import torch
import torch.nn.functional as F

from cnnviz import pictures
from cnnviz.conv import Convolution
from cnnviz.examples import CONV_EXAMPLES, LECTURE_POOLING_INPUT, random_grid
from cnnviz.notation import number, term
from cnnviz.pooling import Pooling
from cnnviz.sgd import GradientStep, seeded_target
from cnnviz.stepping import GRID_DIGITS, MAX_TERMS, conv_steps, pool_steps, sgd_steps

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def lecture_layer(name: str = "lecture") -> Convolution:
    e = CONV_EXAMPLES[name]
    return Convolution.make(e.x, e.weight, e.bias, padding=e.padding, stride=e.stride, dilation=e.dilation)


def channel_line(data: dict, step: int, channel: int) -> str:
    """A channel's arithmetic as the browser writes it: its product terms joined, then its sum."""
    products = " + ".join(data["terms"][i] for i in data["products"][step][channel])
    return f"{products} = {data['sums'][step][channel]}"


def caption(data: dict, step: int) -> str:
    positions = len(data["windows"])
    return f"{data['channel_captions'][step // positions]}, {data['position_captions'][step % positions]}"


def plain(value) -> bool:
    """Only what JSON has: dicts of str keys, lists, str, int, float, bool, None."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain(v) for v in value)
    return value is None or type(value) in (str, int, float, bool)


# ---------------------------------------------------------------- the lecture's numbers


def test_the_lecture_example_step_by_step():
    data = conv_steps(lecture_layer())
    assert data["count"] == 16 and data["kernel"] == 3
    assert caption(data, 0) == "output channel 1, row 1, column 1"
    assert channel_line(data, 0, 0) == "1·0 + (−1)·0 + 1·0 + 2·0 + 0·1 + (−1)·2 + (−2)·0 + 2·2 + 1·(−1) = 1"
    assert data["totals"][0] == "1 + 1 (bias) = 2"  # the slide's first output
    assert data["line_labels"] == ["products"]
    assert data["intro"] == ("the filter's 3·3·1 = 9 weights times the input values under them, summed, "
                             "plus the bias.")
    # The 6×6 padded input: its 20 border cells are the padding, the first window the top-left 3×3.
    inputs = data["inputs"]
    assert (inputs["rows"], inputs["cols"]) == (6, 6)
    assert inputs["grids"][0]["title"] == "Input channel 1 (padded)"
    assert sorted(inputs["padding"]) == [i for i in range(36) if i // 6 in (0, 5) or i % 6 in (0, 5)]
    assert data["windows"][0] == [0, 1, 2, 6, 7, 8, 12, 13, 14]
    assert data["filters"][0]["bias"]["label"] == "1"
    assert data["filters"][0]["slices"][0]["labels"] == ["1", "−1", "1", "2", "0", "−1", "−2", "2", "1"]
    expected = F.conv2d(CONV_EXAMPLES["lecture"].x[None], CONV_EXAMPLES["lecture"].weight,
                        CONV_EXAMPLES["lecture"].bias, padding=1)[0, 0]
    assert data["outputs"]["grids"][0]["labels"] == [number(v, GRID_DIGITS) for v in expected.flatten().tolist()]
    assert data["outputs"]["grids"][0]["labels"][0] == "2"


def test_two_channels_add_their_sums_then_the_bias():
    layer = lecture_layer("two-channels")
    data = conv_steps(layer)
    assert data["line_labels"] == ["channel 1", "channel 2"]
    assert [g["title"] for g in data["filters"][0]["slices"]] == ["slice 1", "slice 2"]
    step = layer.step(0)
    assert data["totals"][0] == step.total_arithmetic()
    assert [channel_line(data, 0, c) for c in range(2)] == [step.channel_arithmetic(c) for c in range(2)]


def test_the_lectures_pooling_steps():
    data = pool_steps(Pooling.make(LECTURE_POOLING_INPUT, "max", 2, 2))
    assert data["maths"] == ["max(1, 2, 2, −1) = 2", "max(1, 1, 0, 1) = 1", "max(0, 3, 1, 0) = 3",
                             "max(−1, −1, −2, −5) = −1"]
    assert data["outputs"]["grids"][0]["labels"] == ["2", "1", "3", "−1"]
    assert data["crops"][1] == "from the 2×2 crop of input channel 1 (rows 1–2, columns 3–4):"
    assert caption(data, 1) == "output channel 1, row 1, column 2"
    # Window 2 holds 1 1 / 0 1: the first 1 wins, input row 1, column 3 (cell 2), inside the window.
    assert data["windows"][1] == [2, 3, 6, 7] and data["winners"][1] == 2
    assert data["notes"][1].startswith("The winner is input row 1, column 3")
    assert data["winners"][3] == 10  # −1 twice: the first one
    assert data["operation"] == "max 2×2, stride 2 →" and data["line_label"] == "max"

    mean = pool_steps(Pooling.make(LECTURE_POOLING_INPUT, "mean", 2, 2))
    assert mean["maths"][1] == "(1 + 1 + 0 + 1) / 4 = 3 / 4 = 0.75"
    assert mean["winners"] == [] and mean["notes"] == []


# ---------------------------------------------------------------- against torch, on random inputs

CONV_CASES = [  # (d, d', k, padding, stride, dilation, m, l)
    (1, 1, 3, 1, 1, 1, 4, 4), (2, 3, 3, "same", 1, 1, 5, 6), (3, 2, 2, 0, 2, 1, 7, 5), (1, 4, 3, 2, 3, 2, 6, 6),
    (2, 1, 1, 0, 1, 1, 3, 4), (3, 4, 5, "same", 1, 1, 8, 8), (1, 2, 2, "same", 1, 3, 5, 5), (2, 2, 4, 1, 2, 1, 9, 7),
]


@pytest.mark.parametrize("d, filters, k, padding, stride, dilation, m, l", CONV_CASES)
def test_every_convolution_step_matches_torch(d, filters, k, padding, stride, dilation, m, l):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((d, filters, k, padding, stride, dilation)).encode()))
    x = torch.randn(d, m, l, generator=gen, dtype=torch.float64)
    w = torch.randn(filters, d, k, k, generator=gen, dtype=torch.float64)
    b = torch.randn(filters, generator=gen, dtype=torch.float64)
    layer = Convolution.make(x, w, b, padding=padding, stride=stride, dilation=dilation)
    data = conv_steps(layer)
    assert plain(data) and json.loads(json.dumps(data)) == data

    p = layer.geometry.padding
    padded = F.pad(x, (p.left, p.right, p.top, p.bottom))
    expected = F.conv2d(padded[None], w, b, stride=stride, dilation=dilation)[0]
    # Each channel's sum on its own: the convolution of that channel with that slice, no bias.
    per_channel = torch.stack([F.conv2d(padded[None, c:c + 1], w[:, c:c + 1], stride=stride, dilation=dilation)[0]
                               for c in range(d)], dim=-1)  # (d', m', l', d)
    assert data["count"] == expected.numel()
    assert [g["labels"] for g in data["outputs"]["grids"]] == [
        [number(v, GRID_DIGITS) for v in expected[f].flatten().tolist()] for f in range(filters)]
    assert [g["labels"] for g in data["inputs"]["grids"]] == [
        [number(v, GRID_DIGITS) for v in padded[c].flatten().tolist()] for c in range(d)]
    padding_cells = {r * padded.shape[2] + c for r in range(padded.shape[1]) for c in range(padded.shape[2])
                     if not (p.top <= r < padded.shape[1] - p.bottom and p.left <= c < padded.shape[2] - p.right)}
    assert set(data["inputs"]["padding"]) == padding_cells

    # What a guess is compared with in predict mode: each step's output value, and as the page writes it.
    assert data["answers"] == pytest.approx(expected.flatten().tolist(), abs=1e-9)
    assert data["answer_labels"] == [number(v) for v in expected.flatten().tolist()]
    for index in range(layer.n_steps):
        step = layer.step(index)
        f, row, col = step.filter, step.row, step.col
        assert caption(data, index) == f"output channel {f + 1}, row {row + 1}, column {col + 1}"
        cells = data["windows"][index % len(data["windows"])]
        assert cells == [r * padded.shape[2] + c for r in step.rows for c in step.cols]
        for c in range(d):
            # Every product: the filter's weight times the padded input value in that window cell.
            shown = [data["terms"][i] for i in data["products"][index][c]]
            values = padded[c].flatten()[cells].tolist()
            assert shown == [f"{term(wv)}·{term(xv)}" for wv, xv in zip(w[f, c].flatten().tolist(), values)]
            assert data["sums"][index][c] == number(per_channel[f, row, col, c])
            assert channel_line(data, index, c) == step.channel_arithmetic(c)
        assert data["totals"][index] == step.total_arithmetic()
        assert data["totals"][index].endswith(f"(bias) = {number(expected[f, row, col])}")


@pytest.mark.parametrize("kind, op", [("max", F.max_pool2d), ("mean", F.avg_pool2d)])
@pytest.mark.parametrize("d, k, s, m, l", [(1, 2, 2, 4, 4), (3, 3, 2, 7, 6), (2, 2, 1, 5, 5), (1, 1, 3, 4, 5)])
def test_every_pooling_step_matches_torch(kind, op, d, k, s, m, l):
    gen = torch.Generator().manual_seed(zlib.crc32(repr((kind, d, k, s, m, l)).encode()))
    x = torch.randn(d, m, l, generator=gen, dtype=torch.float64)
    layer = Pooling.make(x, kind, k, s)
    data = pool_steps(layer)
    assert plain(data) and json.loads(json.dumps(data)) == data
    expected = op(x[None], k, s)[0]
    assert data["count"] == expected.numel()
    assert [g["labels"] for g in data["outputs"]["grids"]] == [
        [number(v, GRID_DIGITS) for v in expected[c].flatten().tolist()] for c in range(d)]
    assert data["answers"] == pytest.approx(expected.flatten().tolist(), abs=1e-9)
    assert data["answer_labels"] == [number(v) for v in expected.flatten().tolist()]
    positions = len(data["windows"])
    for index in range(layer.n_steps):
        channel, position = divmod(index, positions)
        row, col = divmod(position, expected.shape[2])
        cells = data["windows"][position]
        values = x[channel].flatten()[cells]
        assert values.tolist() == x[channel, row * s:row * s + k, col * s:col * s + k].flatten().tolist()
        assert data["maths"][index] == layer.step(index).explanation()
        assert data["maths"][index].endswith(f"= {number(expected[channel, row, col])}")
        if kind == "max":
            winner = data["winners"][index]
            assert winner in cells and x[channel].flatten()[winner] == values.max()
            assert data["notes"][index].startswith(
                f"The winner is input row {winner // l + 1}, column {winner % l + 1} ")


def test_strided_convolution_is_a_convolution_with_stride():
    data = conv_steps(lecture_layer("strided"))
    assert channel_line(data, 0, 0) == "1·1 + 0·2 + 0·2 + 1·(−1) = 0"
    assert data["windows"] == [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]]
    assert "(padded)" not in data["inputs"]["grids"][0]["title"] and data["inputs"]["padding"] == []


# ---------------------------------------------------------------- colours and size


def test_cells_are_coloured_on_the_one_diverging_scale():
    layer = lecture_layer()
    data = conv_steps(layer)
    grid = data["inputs"]["grids"][0]
    bound = float(layer.x.abs().max())
    for value, colour in zip(layer.padded[0].flatten().tolist(), grid["colours"]):
        red, green, blue = pictures.colorize([value], -bound, bound)[0].tolist()
        background, text = data["palette"][colour]
        assert background == f"#{red:02x}{green:02x}{blue:02x}"
        assert text in ("#111827", "#ffffff")
        if value < 0:
            assert blue > red  # blue below zero
        elif value > 0:
            assert red > blue  # red above
        else:
            assert red == green == blue and red > 240  # white at zero
    # The darkest colours carry white numbers, the pale ones dark numbers.
    darkest = data["palette"][grid["colours"][layer.padded[0].flatten().tolist().index(-2)]]
    assert darkest[1] == "#ffffff"
    assert data["palette"][grid["colours"][0]][1] == "#111827"


def test_a_16x16_input_with_four_filters_stays_small():
    x = random_grid(1, 16, 16, seed=3)
    w = random_grid(4, 3, 3, seed=4)[:, None]
    layer = Convolution.make(x, w, torch.tensor([1.0, 0.0, -1.0, 2.0], dtype=torch.float64), padding="same")
    data = conv_steps(layer)
    assert data["count"] == 1024
    size = len(json.dumps(data).encode())  # as Streamlit serialises it
    assert size < 150_000, size
    # Pooling a 16×16×3 input with 1×1 windows, its most steps, stays small too.
    pooled = pool_steps(Pooling.make(random_grid(3, 16, 16, seed=5), "max", 1, 1))
    assert len(json.dumps(pooled).encode()) < 250_000


@pytest.mark.parametrize("d, k", itertools.product((1, 3), (1, 3)))
def test_labels_and_colours_cover_every_cell(d, k):
    layer = Convolution.make(random_grid(d, 5, 5, seed=d), random_grid(2 * d, k, k, seed=k).reshape(2, d, k, k),
                             torch.zeros(2, dtype=torch.float64), padding=1)
    data = conv_steps(layer)
    for group in (data["inputs"], data["outputs"]):
        for grid in group["grids"]:
            assert len(grid["labels"]) == len(grid["colours"]) == group["rows"] * group["cols"]
            assert max(grid["colours"]) < len(data["palette"])
    for f in data["filters"]:
        assert all(len(s["labels"]) == k * k for s in f["slices"]) and len(f["slices"]) == d


# ---------------------------------------------------------------- predict mode's answers


def test_the_answers_are_the_lectures_outputs_exactly():
    data = conv_steps(lecture_layer())
    assert data["answers"][:4] == [2, -4, 7, 5] and all(isinstance(a, float) for a in data["answers"])
    assert data["answer_labels"][:4] == ["2", "−4", "7", "5"]
    assert data["predict_hint"].startswith("What does it come to? The filter's 9 weights")
    pooled = pool_steps(Pooling.make(LECTURE_POOLING_INPUT, "mean", 2, 2))
    assert pooled["answers"] == [1.0, 0.75, 1.0, -2.25] and pooled["answer_labels"][1] == "0.75"
    # Float noise is gone (0.1·3 is 0.30000000000000004): an exact comparison of a typed 0.3 can work.
    noisy = Convolution.make(torch.tensor([[[0.1, 0.1], [0.1, 0.0]]], dtype=torch.float64),
                             torch.ones(1, 1, 2, 2, dtype=torch.float64))
    assert float(noisy.output) != 0.3 and conv_steps(noisy)["answers"] == [0.3]


# ---------------------------------------------------------------- one step of gradient descent (the "grids" kind)


def figures(data: dict) -> list[dict]:
    """The figures by number, as the browser numbers them: groups, then sets, then figures."""
    return [figure for group in data["groups"] for each in group["sets"] for figure in each["figures"]]


def line_text(data: dict, line: list) -> str:
    _, ids, tail = line
    return " + ".join(data["terms"][i] for i in ids) + tail


def autograd(layer: Convolution, target: torch.Tensor, learning_rate: float):
    weight, bias = layer.weight.clone().requires_grad_(True), layer.bias.clone().requires_grad_(True)
    p = layer.geometry.padding
    padded = F.pad(layer.x, (p.left, p.right, p.top, p.bottom))[None]
    y = F.conv2d(padded, weight, bias, stride=layer.geometry.stride, dilation=layer.geometry.dilation)[0]
    (0.5 * ((y - target) ** 2).sum()).backward()
    return weight.grad, bias.grad, weight.detach() - learning_rate * weight.grad, bias.detach() - learning_rate * bias.grad


def test_the_lecture_examples_gradient_step_by_step():
    layer = lecture_layer()
    step = GradientStep.make(layer, seeded_target(layer.out_shape, 0), 0.01)
    data = sgd_steps(step)
    weight_grad, bias_grad, new_weight, new_bias = autograd(layer, step.target, 0.01)
    assert data["kind"] == "grids" and data["count"] == 10
    assert data["captions"][0] == "∂L/∂w at row 1, column 1" and data["captions"][9] == "∂L/∂b"
    # The top-left weight met the padding in the first row and column; ∂L/∂y = y − T starts 2 − 1 = 1.
    y_grad = (layer.output - step.target)[0].flatten().tolist()
    touched = layer.padded[0, 0:4, 0:4].flatten().tolist()
    assert line_text(data, data["lines"][0][0]) == (
        " + ".join(f"{term(g)}·{term(x)}" for g, x in zip(y_grad, touched)) + f" = {number(weight_grad[0, 0, 0, 0])}")
    assert line_text(data, data["lines"][0][0]).startswith("1·0 + (−4)·0 + 10·0 + 6·0 + 7·0 + 11·1 + (−4)·2 + ")
    assert line_text(data, data["lines"][0][0]).endswith(" = −5")
    assert line_text(data, data["lines"][0][1]) == (
        f"w − η·∂L/∂w = 1 − 0.01·{term(weight_grad[0, 0, 0, 0])} = {number(new_weight[0, 0, 0, 0])}")
    assert line_text(data, data["lines"][9][0]) == " + ".join(term(g) for g in y_grad) + f" = {number(bias_grad[0])}"
    assert line_text(data, data["lines"][9][1]) == f"b − η·∂L/∂b = 1 − 0.01·{term(bias_grad[0])} = {number(new_bias[0])}"
    assert data["answers"] == [*weight_grad.flatten().tolist(), float(bias_grad[0])]
    # Figures: the padded input, ∂L/∂y, the filter's gradient (its slice and bias), the updated filter.
    titles = [f["title"] for f in figures(data)]
    assert titles == ["Input channel 1 (padded)", "", "", "∂L/∂b", "", "b − 0.01·∂L/∂b"]
    assert [s["title"] for g in data["groups"] for s in g["sets"]] == ["", "∂L/∂y = y − T", "∂L/∂w", "w − 0.01·∂L/∂w"]
    assert figures(data)[1]["labels"] == [number(v, GRID_DIGITS) for v in y_grad]
    assert data["outline"][0] == [[0, 0], [1, 9]] and data["windows"][9] == list(range(16))
    assert data["windows"][0] == [r * 6 + c for r in range(4) for c in range(4)]  # rows and columns 0-3 of 6×6
    assert data["windows"][4] == [r * 6 + c for r in range(1, 5) for c in range(1, 5)]  # the centre weight
    assert data["compute"][4] == [[2, 4], [4, 4]] and data["compute"][9] == [[3, 0], [5, 0]]
    assert figures(data)[4]["labels"] == [number(v, GRID_DIGITS) for v in new_weight.flatten().tolist()]
    assert figures(data)[2]["fills"] and "fills" not in figures(data)[0]


SGD_CASES = [  # (d, d', k, padding, stride, dilation, m, l)
    (2, 3, 3, 1, 1, 1, 5, 5), (3, 2, 2, 0, 2, 1, 7, 6), (1, 4, 3, 2, 3, 2, 8, 8), (6, 1, 1, 0, 1, 1, 4, 3),
    (2, 2, 3, "same", 1, 2, 6, 7), (4, 2, 5, 0, 1, 1, 9, 9),
]


@pytest.mark.parametrize("d, filters, k, padding, stride, dilation, m, l", SGD_CASES)
def test_every_gradient_step_matches_autograd(d, filters, k, padding, stride, dilation, m, l):
    gen = torch.Generator().manual_seed(zlib.crc32(repr(("sgd", d, filters, k, padding, stride)).encode()))
    x = torch.randint(-3, 4, (d, m, l), generator=gen).to(torch.float64)
    w = torch.randint(-2, 3, (filters, d, k, k), generator=gen).to(torch.float64) / 2
    b = torch.randn(filters, generator=gen, dtype=torch.float64)
    layer = Convolution.make(x, w, b, padding=padding, stride=stride, dilation=dilation)
    step = GradientStep.make(layer, seeded_target(layer.out_shape, 3), 0.003)
    data = sgd_steps(step)
    assert plain(data) and json.loads(json.dumps(data)) == data
    weight_grad, bias_grad, new_weight, new_bias = autograd(layer, step.target, 0.003)
    shown = figures(data)
    assert len(shown) == d + filters + 2 * filters * (d + 1)
    assert data["count"] == filters * (d * k * k + 1) == len(data["lines"]) == len(data["answers"])
    padded = layer.padded
    width = padded.shape[2]
    for index in range(data["count"]):
        f, c, i, j = step.parameter(index)
        assert data["sets"][index] == f
        y_grad = (layer.output[f] - step.target[f]).flatten().tolist()
        if c is None:
            gradient, new, products = float(bias_grad[f]), float(new_bias[f]), [term(g) for g in y_grad]
            cell = 0
        else:
            gradient, new = float(weight_grad[f, c, i, j]), float(new_weight[f, c, i, j])
            rows = [i * dilation + p * stride for p in range(layer.out_shape[1])]
            cols = [j * dilation + q * stride for q in range(layer.out_shape[2])]
            touched = padded[c][rows][:, cols].flatten().tolist()
            products = [f"{term(g)}·{term(v)}" for g, v in zip(y_grad, touched)]
            assert [data["windows"][window] for figure, window in data["outline"][index] if figure == c] == [
                [r * width + col for r in rows for col in cols]]
            cell = i * k + j
        assert data["answers"][index] == pytest.approx(gradient, abs=1e-9)
        assert data["answer_labels"][index] == number(gradient)
        gradient_line, update_line = data["lines"][index]
        assert [data["terms"][t] for t in gradient_line[1]] == products[:MAX_TERMS]
        assert gradient_line[2].endswith(f" = {number(gradient)}")
        # torch's update, written as the engine rounds its own (a value on a rounding edge may differ in an ulp)
        engine_new = float(step.new_bias[f] if c is None else step.new_weight[f, c, i, j])
        assert engine_new == pytest.approx(new, abs=1e-12)
        assert line_text(data, update_line).endswith(f"·{term(gradient)} = {number(engine_new)}")
        (gradient_figure, at), (updated_figure, at_too) = data["compute"][index]
        assert at == at_too == cell
        assert shown[gradient_figure]["labels"][cell] == number(gradient, GRID_DIGITS)
        assert shown[updated_figure]["labels"][cell] == number(engine_new, GRID_DIGITS)
        assert data["outline"][index][-1] == [d + f, len(data["windows"]) - 1]  # all of ∂L/∂y of this filter


def test_a_long_sum_says_how_many_terms_it_left_out_and_the_payload_stays_small():
    x = random_grid(6, 16, 16, seed=1)
    layer = Convolution.make(x, random_grid(24, 3, 3, seed=2).reshape(4, 6, 3, 3), torch.zeros(4, dtype=torch.float64),
                             padding=1)
    step = GradientStep.make(layer, seeded_target(layer.out_shape, 1), 0.001)
    data = sgd_steps(step)
    assert data["count"] == 4 * (6 * 9 + 1)
    _, ids, tail = data["lines"][0][0]
    assert len(ids) == MAX_TERMS and tail == f" + … ({256 - MAX_TERMS} more) = {number(step.weight_grad[0, 0, 0, 0])}"
    assert len(json.dumps(data).encode()) < 250_000
