"""Figures are pure functions of tensors: check what they draw, cell by cell."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from PIL import Image
from plotly.colors import sample_colorscale, unlabel_rgb

from cnnviz.conv import Convolution
from cnnviz.examples import LECTURE_BIAS, LECTURE_FILTER, LECTURE_INPUT
from cnnviz.figures import DIVERGING, HIGHLIGHT, PADDING_FILL, feature_map_figure, grid_figure
from cnnviz.pictures import SEQUENTIAL
from cnnviz.notation import number


def _heatmap(fig: go.Figure) -> go.Heatmap:
    """The heatmap carrying the values (a pale frame heatmap without hover may lie under it)."""
    heatmaps = [t for t in fig.data if isinstance(t, go.Heatmap) and t.hoverinfo != "skip"]
    assert len(heatmaps) == 1
    return heatmaps[0]


def _z(fig: go.Figure) -> list[list[float]]:
    return [list(row) for row in _heatmap(fig).z]


def _rects(fig: go.Figure, *, color: str | None = None, fill: str | None = None, dash: str | None = None):
    found = []
    for s in fig.layout.shapes:
        if s.type != "rect":
            continue
        if color is not None and s.line.color != color:
            continue
        if fill is not None and s.fillcolor != fill:
            continue
        if dash is not None and s.line.dash != dash:
            continue
        found.append(s)
    return found


def _box(shape) -> tuple[float, float, float, float]:
    return (shape.x0, shape.x1, shape.y0, shape.y1)


def _covered_cells(rects, rows: int, cols: int) -> set[tuple[int, int]]:
    """The grid cells (row, col) whose centres lie inside any of the rectangles."""
    return {(r, c) for r in range(rows) for c in range(cols)
            for s in rects if s.x0 < c < s.x1 and s.y0 < r < s.y1}


def test_grid_figure_values_and_text():
    gen = torch.Generator().manual_seed(3)
    grid = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 3
    grid[1, 2] = 2.0
    grid[0, 0] = -0.0
    fig = grid_figure(grid, "input")
    assert isinstance(fig, go.Figure)
    assert _z(fig) == grid.tolist()
    text = [list(row) for row in _heatmap(fig).text]
    assert text == [[number(v, 2) for v in row] for row in grid.tolist()]
    assert text[1][2] == "2" and text[0][0] == "0"
    assert fig.layout.title.text == "input"
    # Symmetric colour range around zero, so white means 0.
    heat = _heatmap(fig)
    assert heat.zmin == -heat.zmax == -float(grid.abs().max())
    assert not fig.layout.shapes
    assert _heatmap(grid_figure(grid, show_values=False)).text is None
    assert (_heatmap(grid_figure(grid, value_range=(-1, 5))).zmin, _heatmap(grid_figure(grid, value_range=(-1, 5))).zmax) == (-1, 5)


def test_nan_cells_are_blank():
    conv = Convolution.make(LECTURE_INPUT, LECTURE_FILTER, torch.tensor([LECTURE_BIAS], dtype=torch.float64),
                            padding=1)
    partial = conv.filled(5)[0]
    fig = grid_figure(partial)
    text = [list(row) for row in _heatmap(fig).text]
    z = _z(fig)
    flat_text = [t for row in text for t in row]
    flat_z = [v for row in z for v in row]
    assert flat_text[0] == "2"  # the lecture's first output
    for i, (t, v) in enumerate(zip(flat_text, flat_z)):
        if i <= 5:
            assert t == number(v, 2) and t != ""
        else:
            assert t == "" and math.isnan(v)
    # A frame under the values keeps the blank (not yet computed) cells visible as cells.
    frames = [t for t in fig.data if isinstance(t, go.Heatmap) and t.hoverinfo == "skip"]
    assert len(frames) == 1 and fig.data.index(frames[0]) < fig.data.index(_heatmap(fig))
    assert [len(row) for row in frames[0].z] == [4] * 4
    assert all(math.isfinite(v) for row in frames[0].z for v in row)
    # The colour range ignores the NaNs.
    finite = partial[torch.isfinite(partial)]
    assert _heatmap(fig).zmax == float(finite.abs().max())


def test_all_nan_and_all_zero_grids_draw():
    fig = grid_figure(torch.full((2, 3), float("nan")))
    assert all(t == "" for row in _heatmap(fig).text for t in row)
    zero = grid_figure(torch.zeros(2, 3))
    assert _heatmap(zero).zmax > 0


@pytest.mark.parametrize("index", [0, 5, 15])
def test_highlight_contiguous_window(index):
    conv = Convolution.make(LECTURE_INPUT, LECTURE_FILTER, padding=1)
    step = conv.step(index)
    padded = conv.padded[0]
    fig = grid_figure(padded, highlight=(step.rows, step.cols))
    amber = _rects(fig, color=HIGHLIGHT)
    assert len(amber) == 1
    r0, c0 = step.rows[0], step.cols[0]
    assert _box(amber[0]) == (c0 - 0.5, c0 + 2.5, r0 - 0.5, r0 + 2.5)
    assert _covered_cells(amber, 6, 6) == {(r, c) for r in step.rows for c in step.cols}


def test_highlight_dilated_window_one_rect_per_tap():
    x = torch.arange(49, dtype=torch.float64).reshape(1, 7, 7)
    conv = Convolution.make(x, torch.ones(1, 1, 3, 3, dtype=torch.float64), padding=1, dilation=2, stride=2)
    step = conv.step(3)
    fig = grid_figure(conv.padded[0], highlight=(step.rows, step.cols))
    amber = _rects(fig, color=HIGHLIGHT)
    assert len(amber) == 9
    assert sorted(_box(s) for s in amber) == sorted(
        (c - 0.5, c + 0.5, r - 0.5, r + 0.5) for r in step.rows for c in step.cols)
    assert _covered_cells(amber, 9, 9) == {(r, c) for r in step.rows for c in step.cols}


def test_highlight_single_cell_and_marked():
    fig = grid_figure(torch.zeros(3, 3), highlight=((1,), (2,)), marked=(0, 0))
    amber = _rects(fig, color=HIGHLIGHT)
    assert sorted(_box(s) for s in amber) == sorted([(1.5, 2.5, 0.5, 1.5), (-0.5, 0.5, -0.5, 0.5)])


def test_padding_draws_grey_border_and_dashed_input():
    conv = Convolution.make(LECTURE_INPUT, LECTURE_FILTER, padding=1)
    fig = grid_figure(conv.padded[0], padding=(1, 1, 1, 1))
    grey = _rects(fig, fill=PADDING_FILL)
    assert len(grey) == 4
    border = {(r, c) for r in range(6) for c in range(6) if r in (0, 5) or c in (0, 5)}
    assert _covered_cells(grey, 6, 6) == border
    dashed = _rects(fig, dash="dash")
    assert len(dashed) == 1
    assert _box(dashed[0]) == (0.5, 4.5, 0.5, 4.5)  # around the real 4x4 input
    assert _covered_cells(dashed, 6, 6) == {(r, c) for r in range(1, 5) for c in range(1, 5)}
    assert not _rects(fig, color=HIGHLIGHT)


def test_uneven_padding():
    # 'same' with a 2x2 kernel: one row of zeros at the bottom and one column at the right only.
    conv = Convolution.make(LECTURE_INPUT, torch.ones(2, 2, dtype=torch.float64), padding="same")
    p = conv.geometry.padding
    fig = grid_figure(conv.padded[0], padding=(p.top, p.bottom, p.left, p.right))
    grey = _rects(fig, fill=PADDING_FILL)
    assert len(grey) == 2
    assert _covered_cells(grey, 5, 5) == {(r, c) for r in range(5) for c in range(5) if r == 4 or c == 4}
    dashed = _rects(fig, dash="dash")
    assert [_box(s) for s in dashed] == [(-0.5, 3.5, -0.5, 3.5)]


def test_padding_with_highlight():
    conv = Convolution.make(LECTURE_INPUT, LECTURE_FILTER, padding=2)
    step = conv.step(0)
    fig = grid_figure(conv.padded[0], padding=(2, 2, 2, 2), highlight=(step.rows, step.cols))
    assert len(_rects(fig, fill=PADDING_FILL)) == 4
    assert len(_rects(fig, dash="dash")) == 1
    assert [_box(s) for s in _rects(fig, color=HIGHLIGHT)] == [(-0.5, 2.5, -0.5, 2.5)]


def _png_pixels(fig: go.Figure) -> torch.Tensor:
    images = [t for t in fig.data if isinstance(t, go.Image)]
    assert len(images) == 1
    prefix = "data:image/png;base64,"
    assert images[0].source.startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(images[0].source[len(prefix):]))) as png:
        return torch.tensor(np.asarray(png.convert("RGB")), dtype=torch.float64)


def _expected_colours(fmap: torch.Tensor, low: float, high: float, colorscale) -> torch.Tensor:
    """What plotly's own colour-scale interpolation gives for each value."""
    t = ((fmap.double() - low) / (high - low)).clamp(0, 1).flatten().tolist()
    colours = [unlabel_rgb(c) for c in sample_colorscale(colorscale, t)]
    return torch.tensor(colours, dtype=torch.float64).reshape(*fmap.shape, 3)


def _colorbar(fig: go.Figure):
    bars = [t for t in fig.data if isinstance(t, go.Scatter) and t.marker.showscale]
    assert len(bars) == 1
    return bars[0].marker


def test_feature_map_figure_pixels_are_the_map():
    gen = torch.Generator().manual_seed(0)
    fmap = torch.randn(30, 45, generator=gen)
    fmap[0, 0] = 0.0
    fig = feature_map_figure(fmap, "edges")
    assert fig.layout.title.text == "edges"
    pixels = _png_pixels(fig)
    assert pixels.shape == (30, 45, 3)  # one pixel per activation, row 0 at the top
    bound = float(fmap.abs().max())
    torch.testing.assert_close(pixels, _expected_colours(fmap, -bound, bound, DIVERGING), atol=1.01, rtol=0)
    # Zero is the scale's white middle; the largest value is at the red end, its negative at blue.
    white = torch.tensor(unlabel_rgb(sample_colorscale(DIVERGING, [0.5])[0]), dtype=torch.float64)
    assert (pixels[0, 0] - white).abs().max() <= 1
    bar = _colorbar(fig)
    assert bar.cmin == pytest.approx(-bound) and bar.cmax == pytest.approx(bound)


def test_feature_map_figure_sequential_scale_and_float64():
    gen = torch.Generator().manual_seed(1)
    fmap = torch.rand(12, 7, generator=gen, dtype=torch.float64) * 5 + 1
    fig = feature_map_figure(fmap, colorscale=SEQUENTIAL)
    low, high = float(fmap.min()), float(fmap.max())
    bar = _colorbar(fig)
    assert bar.cmin == pytest.approx(low) and bar.cmax == pytest.approx(high)
    torch.testing.assert_close(_png_pixels(fig), _expected_colours(fmap, low, high, SEQUENTIAL), atol=1.01, rtol=0)
    # A constant map does not divide by zero.
    flat = _png_pixels(feature_map_figure(torch.zeros(4, 4)))
    assert bool((flat == flat[0, 0]).all())
