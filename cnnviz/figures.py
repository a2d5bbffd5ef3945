"""Plotly figures for grids, feature maps and photos: pure functions of tensors.

Grids are drawn as heatmaps with their numbers written in, row 0 at the top like a
matrix on a slide. Negative values are blue and positive red around a white zero,
so the sign of a weight or an activation can be read from across a lecture hall.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import torch

from . import notation, pictures
from .pictures import DIVERGING

HIGHLIGHT = "#f59e0b"  # amber: the filter window, visible on red and blue alike
PADDING_FILL = "rgba(120,120,120,0.28)"
EMPTY_CELL = "#eef0f3"
CELL_PX = 46
TEXT = "#111827"  # titles drawn as annotations: the app's text colour (.streamlit/config.toml textColor)


def _text(grid: torch.Tensor) -> list[list[str]]:
    return [["" if v != v else notation.number(v, 2) for v in row] for row in grid.tolist()]


def _symmetric_range(grid: torch.Tensor) -> tuple[float, float]:
    bound = pictures.symmetric_bound(grid.numpy())
    return -bound, bound


def grid_figure(grid: torch.Tensor, title: str = "", *,
                highlight: tuple[Sequence[int], Sequence[int]] | None = None,
                padding: tuple[int, int, int, int] = (0, 0, 0, 0),
                value_range: tuple[float, float] | None = None,
                cell_px: int = CELL_PX, show_values: bool = True,
                marked: tuple[int, int] | None = None) -> go.Figure:
    """A 2-D grid with its values; NaN cells stay blank (not yet computed). See grid_spec."""
    spec = grid_spec(grid, title, highlight=highlight, padding=padding, value_range=value_range,
                     cell_px=cell_px, show_values=show_values, marked=marked)
    # Built in one go without per-property validation.
    return go.Figure(data=spec["data"], layout=spec["layout"], _validate=False)


def grid_spec(grid: torch.Tensor, title: str = "", *,
              highlight: tuple[Sequence[int], Sequence[int]] | None = None,
              padding: tuple[int, int, int, int] = (0, 0, 0, 0),
              value_range: tuple[float, float] | None = None,
              cell_px: int = CELL_PX, show_values: bool = True,
              marked: tuple[int, int] | None = None) -> dict:
    """A 2-D grid with its values as a plain plotly dict {"data": [...], "layout": {...}}.

    The same figure as grid_figure, as plotly.js's own JSON: a page that redraws grids on
    every click can hand this dict to the browser as it is (go.Figure costs milliseconds
    to build, copy and serialise; this costs tens of microseconds). NaN cells stay blank
    (not yet computed).

    highlight: the rows and columns of the cells a filter window touches (a dilated
    window touches every d-th cell). padding: (top, bottom, left, right) border cells
    to grey out as zeros that padding added. marked: one cell outlined (the output
    being computed).
    """
    grid = grid.detach().to(torch.float64).cpu()
    rows, cols = grid.shape
    low, high = value_range if value_range is not None else _symmetric_range(grid)
    heat = {
        "type": "heatmap", "z": grid.tolist(), "zmin": low, "zmax": high, "colorscale": DIVERGING,
        "showscale": False, "xgap": 1, "ygap": 1, "hovertemplate": "row %{y}, column %{x}: %{z}<extra></extra>",
    }
    if show_values:
        heat.update(text=_text(grid), texttemplate="%{text}", textfont={"size": max(10, min(18, cell_px // 3))})
    # A pale layer under the values, so cells not computed yet (NaN) still show the grid's frame.
    frame = {"type": "heatmap", "z": [[0] * cols] * rows, "colorscale": [[0, EMPTY_CELL], [1, EMPTY_CELL]],
             "showscale": False, "xgap": 1, "ygap": 1, "hoverinfo": "skip"}
    traces = [frame, heat]
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
    layout = {
        # wide enough for its title too (the grid stays square and centred: constrain="domain")
        "shapes": shapes, "width": max(cols * cell_px + 12, 9 * len(title) + 12 if title else 0),
        "height": rows * cell_px + margin_top + 8,
        "margin": {"l": 6, "r": 6, "t": margin_top, "b": 6}, "plot_bgcolor": "white",
        "paper_bgcolor": "rgba(0,0,0,0)",
        "xaxis": {"visible": False, "range": [-0.5, cols - 0.5], "constrain": "domain"},
        "yaxis": {"visible": False, "autorange": "reversed", "scaleanchor": "x", "constrain": "domain"},
    }
    if title:
        layout["title"] = {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 15}}
    return {"data": traces, "layout": layout}


def grids_side_by_side(columns: Sequence[Sequence[dict]], notes: Sequence[str | None] | None = None, *,
                       gap_px: int = 32, vgap_px: int = 10, note_px: int = 30) -> dict:
    """Several grid_spec figures as ONE plain plotly figure: columns side by side, each a stack of
    grids top to bottom, with an optional note (plotly text, e.g. "bias b = <b>1</b>") under a column.

    One chart instead of a chart per grid in page columns: a page that redraws its grids on every
    click sends one element. Each grid keeps its own axes, so its cells stay square and its shapes
    (window, padding, marked cell) stay on it; its title becomes an annotation above it. Column
    widths are in proportion to the grids' own pixel widths (plus the gap), so a chart stretched to
    the page width spreads the columns out as page columns would.
    """
    notes = list(notes or [None] * len(columns))
    if len(notes) != len(columns):
        raise ValueError(f"{len(columns)} columns but {len(notes)} notes")
    col_widths = [max(spec["layout"]["width"] for spec in column) + gap_px for column in columns]
    col_heights = [sum(spec["layout"]["height"] for spec in column) + vgap_px * (len(column) - 1)
                   + (note_px if note else 0) for column, note in zip(columns, notes)]
    width, height = sum(col_widths), max(col_heights)
    data, shapes, annotations = [], [], []
    layout: dict = {"width": width, "height": height, "margin": {"l": 0, "r": 0, "t": 0, "b": 0},
                    "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "showlegend": False}
    n = 0
    left_px = 0.0
    for column, note, col_width in zip(columns, notes, col_widths):
        top_px = 0.0
        for spec in column:
            n += 1
            x_name, y_name = ("x", "y") if n == 1 else (f"x{n}", f"y{n}")
            sub = spec["layout"]
            margin = sub["margin"]
            box_left = left_px + (col_width - sub["width"]) / 2  # centred in its column
            x_domain = [(box_left + margin["l"]) / width, (box_left + sub["width"] - margin["r"]) / width]
            y_domain = [1 - (top_px + sub["height"] - margin["b"]) / height, 1 - (top_px + margin["t"]) / height]
            layout[f"xaxis{'' if n == 1 else n}"] = {**sub["xaxis"], "domain": x_domain, "anchor": y_name}
            layout[f"yaxis{'' if n == 1 else n}"] = {**sub["yaxis"], "domain": y_domain, "anchor": x_name,
                                                     "scaleanchor": x_name}
            data.extend({**trace, "xaxis": x_name, "yaxis": y_name} for trace in spec["data"])
            shapes.extend({**shape, "xref": x_name, "yref": y_name} for shape in sub.get("shapes", []))
            title = sub.get("title")
            if title:
                annotations.append({"text": f"<b>{title['text']}</b>", "showarrow": False,
                                    "font": {"color": TEXT, **title.get("font", {"size": 15})},
                                    "xref": "paper", "yref": "paper",
                                    "x": (x_domain[0] + x_domain[1]) / 2, "xanchor": "center",
                                    "y": 1 - (top_px + 4) / height, "yanchor": "top"})
            top_px += sub["height"] + vgap_px
        if note:
            annotations.append({"text": note, "showarrow": False, "font": {"size": 15, "color": TEXT}, "xref": "paper",
                                "yref": "paper", "x": (left_px + col_width / 2) / width, "xanchor": "center",
                                "y": 1 - (top_px - vgap_px + 6) / height, "yanchor": "top"})
        left_px += col_width
    layout["shapes"], layout["annotations"] = shapes, annotations
    return {"data": data, "layout": layout}


def feature_map_figure(fmap: torch.Tensor, title: str = "", width_px: int = 360,
                       colorscale: list = DIVERGING, levels: int | None = None) -> go.Figure:
    """A large 2-D activation map drawn as an image (zero in white), with its colour bar.

    levels: draw with that many colours of the scale (a smaller, quicker palette PNG); None: exact."""
    spec = feature_map_spec(fmap, title, width_px, colorscale, levels)
    return go.Figure(data=spec["data"], layout=spec["layout"], _validate=False)


def feature_map_spec(fmap: torch.Tensor, title: str = "", width_px: int = 360,
                     colorscale: list = DIVERGING, levels: int | None = None) -> dict:
    """feature_map_figure as a plain plotly dict {"data": [...], "layout": {...}} (see grid_spec)."""
    values = fmap.detach().cpu().to(torch.float32).numpy()  # numpy from here on: see cnnviz.pictures
    if colorscale is DIVERGING:
        bound = pictures.symmetric_bound(values)
        low, high = -bound, bound
    else:
        low, high = float(values.min()), float(values.max())
    rows, cols = values.shape
    png = (pictures.palette_png(values, low, high, levels, colorscale) if levels is not None
           else pictures.png(pictures.colorize(values, low, high, colorscale)))
    image = {"type": "image", "source": pictures.data_url(png), "hoverinfo": "skip"}
    colorbar = {"type": "scatter", "x": [None], "y": [None], "mode": "markers", "showlegend": False,
                "marker": {"colorscale": colorscale, "cmin": low, "cmax": high, "color": [low],
                           "showscale": True, "colorbar": {"thickness": 10}}}
    layout = {
        "width": width_px, "height": int(width_px * rows / cols) + (40 if title else 10),
        "margin": {"l": 4, "r": 4, "t": 34 if title else 4, "b": 4},
        "xaxis": {"visible": False, "constrain": "domain", "range": [-0.5, cols - 0.5]},
        "yaxis": {"visible": False, "autorange": "reversed", "scaleanchor": "x", "constrain": "domain"},
        "plot_bgcolor": "white",
    }
    if title:
        layout["title"] = {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 14}}
    return {"data": [image, colorbar], "layout": layout}


def lab_cell_px(rows: int, cols: int) -> int:
    """Cell size for a lab's grid: large for small grids, never below readable."""
    return max(26, min(46, 300 // max(rows, cols)))
