"""Plotly figures for grids, feature maps and photos: pure functions of tensors.

Grids are drawn as heatmaps with their numbers written in, row 0 at the top like a
matrix on a slide. Negative values are blue and positive red around a white zero,
so the sign of a weight or an activation can be read from across a lecture hall.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch

from .grids import format_number

DIVERGING = "RdBu_r"
HIGHLIGHT = "#f59e0b"  # amber: the filter window, visible on red and blue alike
PADDING_FILL = "rgba(120,120,120,0.28)"
CELL_PX = 46


def _text(grid: torch.Tensor) -> list[list[str]]:
    return [["" if v != v else format_number(v, 2) for v in row] for row in grid.tolist()]


def _symmetric_range(grid: torch.Tensor) -> tuple[float, float]:
    finite = grid[torch.isfinite(grid)]
    bound = float(finite.abs().max()) if finite.numel() else 1.0
    bound = bound or 1.0
    return -bound, bound


def grid_figure(grid: torch.Tensor, title: str = "", *,
                highlight: tuple[Sequence[int], Sequence[int]] | None = None,
                padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                value_range: tuple[float, float] | None = None,
                cell_px: int = CELL_PX, show_values: bool = True,
                marked: tuple[int, int] | None = None) -> go.Figure:
    """A 2-D grid with its values; NaN cells stay blank (not yet computed).

    highlight: the rows and columns of the cells a filter window touches (a dilated
    window touches every d-th cell). padding: (top, bottom, left, right) border cells
    to grey out as zeros that padding added. marked: one cell outlined (the output
    being computed).
    """
    grid = grid.detach().to(torch.float64).cpu()
    rows, cols = grid.shape
    low, high = value_range if value_range is not None else _symmetric_range(grid)
    heat = go.Heatmap(
        z=grid.tolist(), zmin=low, zmax=high, colorscale=DIVERGING, showscale=False,
        text=_text(grid) if show_values else None, texttemplate="%{text}" if show_values else None,
        textfont={"size": max(10, min(18, cell_px // 3))}, xgap=1, ygap=1,
        hovertemplate="row %{y}, column %{x}: %{z}<extra></extra>",
    )
    fig = go.Figure(heat)
    shapes = []
    top, bottom, left, right = padding
    if any(padding):
        # Grey veil over the zeros that padding added, and a dashed line around the real input.
        for y0, y1, x0, x1 in ((-0.5, top - 0.5, -0.5, cols - 0.5), (rows - bottom - 0.5, rows - 0.5, -0.5, cols - 0.5),
                               (-0.5, rows - 0.5, -0.5, left - 0.5), (-0.5, rows - 0.5, cols - right - 0.5, cols - 0.5)):
            if y1 > y0 and x1 > x0:
                shapes.append({"type": "rect", "x0": x0, "x1": x1, "y0": y0, "y1": y1,
                               "fillcolor": PADDING_FILL, "line": {"width": 0}})
        shapes.append({"type": "rect", "x0": left - 0.5, "x1": cols - right - 0.5, "y0": top - 0.5,
                       "y1": rows - bottom - 0.5, "line": {"color": "#444", "width": 2, "dash": "dash"}})
    if highlight is not None:
        hl_rows, hl_cols = highlight
        contiguous = (list(hl_rows) == list(range(hl_rows[0], hl_rows[-1] + 1))
                      and list(hl_cols) == list(range(hl_cols[0], hl_cols[-1] + 1)))
        boxes = ([(hl_rows[0], hl_rows[-1], hl_cols[0], hl_cols[-1])] if contiguous
                 else [(r, r, c, c) for r in hl_rows for c in hl_cols])
        for r0, r1, c0, c1 in boxes:
            shapes.append({"type": "rect", "x0": c0 - 0.5, "x1": c1 + 0.5, "y0": r0 - 0.5, "y1": r1 + 0.5,
                           "line": {"color": HIGHLIGHT, "width": 4}})
    if marked is not None:
        r, c = marked
        shapes.append({"type": "rect", "x0": c - 0.5, "x1": c + 0.5, "y0": r - 0.5, "y1": r + 0.5,
                       "line": {"color": HIGHLIGHT, "width": 4}})
    margin_top = 34 if title else 6
    fig.update_layout(
        title={"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 15}} if title else None,
        shapes=shapes, width=cols * cell_px + 12, height=rows * cell_px + margin_top + 8,
        margin={"l": 6, "r": 6, "t": margin_top, "b": 6}, plot_bgcolor="white",
        paper_bgcolor="rgba(0,0,0,0)",
    )
    fig.update_xaxes(visible=False, range=[-0.5, cols - 0.5], constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    return fig


def feature_map_figure(fmap: torch.Tensor, title: str = "", width_px: int = 360,
                       colorscale: str = DIVERGING) -> go.Figure:
    """A large 2-D activation map (no numbers), zero in white."""
    fmap = fmap.detach().to(torch.float32).cpu()
    low, high = _symmetric_range(fmap) if colorscale == DIVERGING else (float(fmap.min()), float(fmap.max()))
    rows, cols = fmap.shape
    fig = go.Figure(go.Heatmap(z=fmap.tolist(), zmin=low, zmax=high, colorscale=colorscale,
                               colorbar={"thickness": 10},
                               hovertemplate="row %{y}, column %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title={"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 14}} if title else None,
                      width=width_px, height=int(width_px * rows / cols) + (40 if title else 10),
                      margin={"l": 4, "r": 4, "t": 34 if title else 4, "b": 4})
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    return fig
