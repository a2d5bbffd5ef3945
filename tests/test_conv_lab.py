"""The convolution lab's fast paths draw the same numbers: one chart for a step's grids, the palette
activation map, and the caches behind the page (ui/convlab.py, ui/photos.py)."""

from __future__ import annotations

import base64
import io

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from plotly.colors import sample_colorscale, unlabel_rgb

from cnnviz.conv import Convolution, ConvError
from cnnviz.examples import CONV_EXAMPLES, LECTURE_BIAS, LECTURE_FILTER, LECTURE_INPUT
from cnnviz.pictures import SEQUENTIAL
from cnnviz.figures import DIVERGING, HIGHLIGHT, feature_map_spec, grid_spec, grids_side_by_side
from cnnviz.grids import encode_channels, encode_filters


def _lecture_step(index: int):
    conv = Convolution.make(LECTURE_INPUT, LECTURE_FILTER, torch.tensor([LECTURE_BIAS], dtype=torch.float64),
                            padding=1)
    return conv, conv.step(index)


def test_side_by_side_keeps_every_grid_its_values_axes_and_shapes():
    conv, step = _lecture_step(7)
    inputs = [grid_spec(conv.padded[0], "Input", highlight=(step.rows, step.cols), padding=(1, 1, 1, 1))]
    slices = [grid_spec(step.weights[0], "Filter", cell_px=40)]
    outputs = [grid_spec(conv.filled(7)[0], "Out 1", marked=(step.row, step.col)),
               grid_spec(conv.filled(7)[0] * 2, "Out 2")]
    combined = grids_side_by_side([inputs, slices, outputs], [None, "bias b = <b>1</b>", None])
    go.Figure(combined)  # plotly's own validation accepts every property

    parts = [*inputs, *slices, *outputs]
    layout = combined["layout"]
    names = [("x", "y")] + [(f"x{n}", f"y{n}") for n in range(2, len(parts) + 1)]
    # Each grid's traces, unchanged but for the axes they sit on, in order.
    expected = [(part, trace) for part in parts for trace in part["data"]]
    assert len(combined["data"]) == len(expected)
    for got, (part, trace) in zip(combined["data"], expected):
        x, y = names[parts.index(part)]
        assert (got["xaxis"], got["yaxis"]) == (x, y)
        assert {k: v for k, v in got.items() if k not in ("xaxis", "yaxis")} == trace
    # Square cells: every y axis is tied to its own x axis; ranges as in the grid's own figure.
    for n, part in enumerate(parts, start=1):
        suffix = "" if n == 1 else str(n)
        assert layout[f"yaxis{suffix}"]["scaleanchor"] == names[n - 1][0]
        assert layout[f"xaxis{suffix}"]["range"] == part["layout"]["xaxis"]["range"]
        assert layout[f"yaxis{suffix}"]["autorange"] == "reversed"
    # Shapes (window, padding veil, marked cell) stay on their own grid's axes.
    shape_axes = [(s["xref"], s["yref"]) for s in layout["shapes"]]
    assert shape_axes == [names[i] for i, part in enumerate(parts) for _ in part["layout"].get("shapes", [])]
    amber = [s for s in layout["shapes"] if s.get("line", {}).get("color") == HIGHLIGHT]
    assert {(s["xref"], s["x0"], s["y0"]) for s in amber} == {
        ("x", step.cols[0] - 0.5, step.rows[0] - 0.5), ("x3", step.col - 0.5, step.row - 0.5)}
    # Titles and the note are annotations; the note sits under the filter column.
    texts = [a["text"] for a in layout["annotations"]]
    assert texts == ["<b>Input</b>", "<b>Filter</b>", "bias b = <b>1</b>", "<b>Out 1</b>", "<b>Out 2</b>"]
    filter_title, note = layout["annotations"][1:3]
    assert note["x"] == pytest.approx(filter_title["x"]) and note["y"] < filter_title["y"]


def test_side_by_side_domains_follow_pixel_sizes_without_overlap():
    grids = [[grid_spec(torch.zeros(6, 6))], [grid_spec(torch.zeros(3, 3), cell_px=40)],
             [grid_spec(torch.zeros(4, 4), "a"), grid_spec(torch.zeros(4, 4), "b")]]
    combined = grids_side_by_side(grids, gap_px=20, vgap_px=10)
    layout = combined["layout"]
    widths = [max(g["layout"]["width"] for g in column) + 20 for column in grids]
    assert layout["width"] == sum(widths)
    assert layout["height"] == max(sum(g["layout"]["height"] for g in column) + 10 * (len(column) - 1)
                                   for column in grids)
    boxes = []
    for n in range(1, 5):
        suffix = "" if n == 1 else str(n)
        x0, x1 = layout[f"xaxis{suffix}"]["domain"]
        y0, y1 = layout[f"yaxis{suffix}"]["domain"]
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        boxes.append((x0, x1, y0, y1))
    for i, a in enumerate(boxes):  # no two plot areas overlap
        for b in boxes[i + 1:]:
            assert a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2]
    # A plot area is exactly the grid's cells: 6 columns of 46 px in a 6x46 + 12 px wide figure.
    x0, x1 = boxes[0][:2]
    assert (x1 - x0) * layout["width"] == pytest.approx(6 * 46)
    with pytest.raises(ValueError, match="notes"):
        grids_side_by_side(grids, ["only one"])


def _png(spec: dict) -> np.ndarray:
    source = spec["data"][0]["source"]
    with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
        assert image.mode == "P"  # a palette PNG
        return np.asarray(image.convert("RGB")).astype(np.float64)


@pytest.mark.parametrize("scale", [DIVERGING, SEQUENTIAL])
def test_palette_map_is_within_half_a_step_of_the_exact_colours(scale):
    gen = torch.Generator().manual_seed(5)
    fmap = torch.randn(40, 70, generator=gen)
    levels = 256
    spec = feature_map_spec(fmap, "map", levels=levels, colorscale=scale)
    pixels = _png(spec)
    bar = spec["data"][1]["marker"]
    low, high = bar["cmin"], bar["cmax"]
    t = ((fmap.double() - low) / (high - low)).clamp(0, 1)
    # The colour of the nearest of the 256 levels, as plotly itself interpolates it.
    nearest = (t * (levels - 1)).round() / (levels - 1)
    expected = np.array([unlabel_rgb(c) for c in sample_colorscale(scale, nearest.flatten().tolist())])
    assert np.abs(pixels.reshape(-1, 3) - expected).max() <= 1.01
    exact = np.array([unlabel_rgb(c) for c in sample_colorscale(scale, t.flatten().tolist())])
    assert np.abs(pixels.reshape(-1, 3) - exact).max() <= 4  # invisible next to the exact colours
    with pytest.raises(ValueError, match="levels"):
        feature_map_spec(fmap, levels=1)


def test_filtered_photo_is_torch_conv2d_on_the_grey_photo_and_cached():
    from ui.photos import Photo, filtered_photo

    gen = torch.Generator().manual_seed(2)
    pixels = torch.rand(3, 30, 40, generator=gen)
    photo = Photo(pixels, "test", "test:random")
    sobel = torch.tensor([[[1.0, 0, -1], [2, 0, -2], [1, 0, -1]]], dtype=torch.float64)
    view = filtered_photo(photo, sobel, 0.5, padding=1, stride=2, title="map {width}×{height}")
    expected = F.conv2d(pixels.mean(0, keepdim=True)[None], sobel[None].float(), torch.tensor([0.5]),
                        padding=1, stride=2)[0, 0]
    assert (view.map_height, view.map_width) == tuple(expected.shape) == (15, 20)
    assert view.map_spec["layout"]["title"]["text"] == "map 20×15"
    bar = view.map_spec["data"][1]["marker"]
    assert bar["cmax"] == pytest.approx(float(expected.abs().max()), rel=1e-6)
    assert not view.colour and (view.width, view.height) == (40, 30)
    with Image.open(io.BytesIO(view.seen_png)) as seen:
        grey = np.asarray(seen).astype(np.float64)
    assert np.abs(grey - pixels.mean(0).numpy() * 255).max() <= 0.51
    # The same inputs again: the very same result, nothing recomputed; a new bias: a new map.
    assert filtered_photo(photo, sobel, 0.5, padding=1, stride=2, title="map {width}×{height}") is view
    other = filtered_photo(photo, sobel, -3.0, padding=1, stride=2, title="map {width}×{height}")
    assert other is not view and other.map_spec["data"][1]["marker"]["cmax"] != bar["cmax"]
    # Three slices: the colour photo itself.
    colour = filtered_photo(photo, sobel.repeat(3, 1, 1), 0.0, padding=0)
    assert colour.colour and (colour.map_height, colour.map_width) == (28, 38)
    with pytest.raises(ConvError):
        filtered_photo(photo, sobel, 0.0, dilation=20)


def test_layer_cache_and_example_defaults():
    from ui.convlab import example_value, make_layer, parse_tensors

    ex = CONV_EXAMPLES["two-channels"]
    x_text, w_text = example_value("two-channels", "x"), example_value("two-channels", "weight")
    assert x_text == encode_channels(ex.x) and w_text == encode_filters(ex.weight)
    assert example_value("no-such-example", "padding") == CONV_EXAMPLES["lecture"].padding
    b_text = example_value("two-channels", "bias")
    layer = make_layer(x_text, w_text, b_text, ex.padding, ex.stride, ex.dilation)
    assert make_layer(x_text, w_text, b_text, ex.padding, ex.stride, ex.dilation) is layer
    torch.testing.assert_close(layer.output, F.conv2d(ex.x[None], ex.weight, ex.bias, padding=ex.padding,
                                                      stride=ex.stride, dilation=ex.dilation)[0])
    # parse_tensors hands out copies: changing one does not change the cached tensors.
    x, w, b = parse_tensors(x_text, w_text, b_text)
    w[0] = 99
    assert not bool((parse_tensors(x_text, w_text, b_text)[1] == 99).any())
    # A layer that gives no output is an explanation, not an exception.
    error = make_layer(x_text, w_text, b_text, 0, 1, 3)
    assert isinstance(error, ConvError) and "7" in str(error)
