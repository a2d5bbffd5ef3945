"""Plotly figures for "what models learn": image grids, template grids, score bars, comparisons.

Pure functions of tensors. A grid of images (examples, templates, filters, activation maps)
is drawn as ONE picture: the cells are coloured in numpy, laid out with white gaps in a
mosaic, and sent to the browser as a PNG (`mosaic_png`), which is tens of times smaller than
a heatmap of the same pixels and keeps every pixel sharp. Captions are annotations.

Colouring (`to_rgb`):

- "pixels": uint8 images as they are (grey or colour).
- "signed": weights or activations, one channel: blue negative, white zero, red positive,
  scaled so the largest magnitude is full colour (per cell, or `shared` over all cells).
- "signed" with three channels (colour templates, AlexNet's filters): each cell rescaled
  so its minimum is black and its maximum white, channel by channel kept together, the way
  the lecture's pictures of CIFAR-10 templates and AlexNet filters are drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import torch

from .data import ImageSet
from .notation import count, number, percent
from .pictures import DIVERGING, colorize, data_url, decode_data_url, png

PREDICTED = "#dc2626"  # the winning class
TRUE = "#16a34a"
OTHER = "#94a3b8"
GAP_PX = 2  # white pixels between cells, in image pixels
FONT = 15


def to_rgb(images: torch.Tensor, mode: str = "pixels", shared: bool = False) -> np.ndarray:
    """(N, C, H, W) tensor to uint8 (N, H, W, 3) following the module docstring's rules."""
    images = images.detach().cpu()
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"Expected (N, 1 or 3, H, W) images, got shape {tuple(images.shape)}.")
    if mode == "pixels":
        array = images.to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return np.repeat(array, 3, axis=3) if array.shape[3] == 1 else array.copy()
    if mode != "signed":
        raise ValueError(f"mode is 'pixels' or 'signed', not {mode!r}")
    values = images.to(torch.float64).numpy()
    n = values.shape[0]
    if values.shape[1] == 1:
        flat = np.abs(values.reshape(n, -1))
        bound = np.full(n, flat.max() if flat.size else 1.0) if shared else flat.max(axis=1)
        bound = np.where(bound > 0, bound, 1.0)
        scaled = values[:, 0] / bound[:, None, None]  # in [-1, 1]
        return colorize(scaled, -1.0, 1.0)
    flat = values.reshape(n, -1)
    low = np.full(n, flat.min()) if shared else flat.min(axis=1)
    high = np.full(n, flat.max()) if shared else flat.max(axis=1)
    span = np.where(high > low, high - low, 1.0)
    scaled = (values - low[:, None, None, None]) / span[:, None, None, None]
    return np.round(scaled.transpose(0, 2, 3, 1) * 255).astype(np.uint8)


@dataclass
class Mosaic:
    pixels: np.ndarray  # (H, W, 3) uint8
    origins: list[tuple[int, int]]  # (row, column) of each cell's top-left pixel
    cell: tuple[int, int]  # (h, w) of one cell
    columns: int
    rows: int


def mosaic(cells: np.ndarray, columns: int, gap: int = GAP_PX, upscale: int = 1,
           row_gap: int | None = None) -> Mosaic:
    """Lay out (N, h, w, 3) cells row by row, `columns` per row, with white gaps
    (`row_gap` between rows, default `gap`: room for captions).

    `upscale` repeats every pixel (nearest neighbour), so small filters stay crisp at any size.
    """
    n, h, w, _ = cells.shape
    if upscale > 1:
        cells = cells.repeat(upscale, axis=1).repeat(upscale, axis=2)
        h, w = h * upscale, w * upscale
    columns = max(1, min(columns, n)) if n else 1
    rows = max(1, -(-n // columns))
    row_gap = gap if row_gap is None else row_gap
    out = np.full((rows * h + (rows - 1) * row_gap, columns * w + (columns - 1) * gap, 3), 255, dtype=np.uint8)
    origins = []
    for i in range(n):
        r, c = divmod(i, columns)
        top, left = r * (h + row_gap), c * (w + gap)
        out[top:top + h, left:left + w] = cells[i]
        origins.append((top, left))
    return Mosaic(out, origins, (h, w), columns, rows)


def image_png(image: torch.Tensor, size: int = 224) -> bytes:
    """One uint8 image (C, H, W) as a PNG about `size` pixels across, each pixel repeated a
    whole number of times (nearest neighbour): a 28x28 image stays sharp squares instead of
    the blur a browser makes when it enlarges it."""
    zoom = max(1, size // max(image.shape[1:]))
    pixels = image.repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
    return png(pixels.permute(1, 2, 0).numpy())


def png_data_uri(pixels: np.ndarray) -> str:
    return data_url(png(pixels))


decode_png = decode_data_url


def image_grid_figure(images: torch.Tensor, *, mode: str = "pixels", columns: int = 10,
                      captions: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
                      title: str = "", cell_px: int = 84, shared: bool = False, colorbar: bool = False,
                      upscale: int | None = None, highlight: Sequence[int] = ()) -> go.Figure:
    """A grid of images as one sharp picture, with captions above cells and labels left of rows.

    `images` is (N, C, H, W), or (N, H, W) for maps of one channel. `cell_px` is the on-screen
    size of one cell; `highlight` draws a frame around those cells; `upscale` repeats each pixel
    (default: enough that the gaps between cells stay thin).
    """
    if images.dim() == 3:
        images = images[:, None]
    cells = to_rgb(images, mode, shared)
    if upscale is None:  # enlarge small cells so the white gaps stay thin on screen (<= 3 px per pixel)
        upscale = max(1, int(np.ceil(cell_px / max(cells.shape[1], cells.shape[2]) / 3)))
    h, w = cells.shape[1] * upscale, cells.shape[2] * upscale
    scale = cell_px / max(h, w)  # screen pixels per mosaic pixel
    caption_px = 22 if captions else 0
    # Captions sit above each row of cells: rows are spaced to leave them room.
    row_gap = GAP_PX + (int(np.ceil(caption_px / scale)) if captions else 0)
    m = mosaic(cells, columns, upscale=upscale, row_gap=row_gap)
    height, width = m.pixels.shape[:2]
    label_px = 8 + 9 * max((len(s) for s in row_labels), default=0) if row_labels else 0
    row_step = h + row_gap
    annotations, shapes = [], []
    if captions:
        for i, text in enumerate(captions[:len(m.origins)]):
            top, left = m.origins[i]
            annotations.append({"x": left + w / 2, "y": top, "text": text, "showarrow": False,
                                "xref": "x", "yref": "y", "yanchor": "bottom", "yshift": 1,
                                "font": {"size": FONT - 2}})
    if row_labels:
        for r, text in enumerate(row_labels[:m.rows]):
            annotations.append({"x": -0.5, "y": r * row_step + h / 2, "text": text, "showarrow": False,
                                "xref": "x", "yref": "y", "xanchor": "right", "xshift": -6,
                                "font": {"size": FONT}})
    for i in highlight:
        if 0 <= i < len(m.origins):
            top, left = m.origins[i]
            shapes.append({"type": "rect", "x0": left - 1, "x1": left + w, "y0": top - 1, "y1": top + h,
                           "line": {"color": PREDICTED, "width": 3}, "xref": "x", "yref": "y"})
    traces = [{"type": "image", "source": png_data_uri(m.pixels), "hoverinfo": "skip", "x0": 0, "y0": 0}]
    if colorbar and mode == "signed" and images.shape[1] == 1:
        traces.append({"type": "scatter", "x": [None], "y": [None], "mode": "markers", "showlegend": False,
                       "hoverinfo": "skip",
                       "marker": {"colorscale": DIVERGING, "cmin": -1, "cmax": 1, "color": [0], "showscale": True,
                                  "colorbar": {"thickness": 12, "tickvals": [-1, 0, 1],
                                               "ticktext": ["most negative", "0", "most positive"],
                                               "len": 0.9}}})
    top_margin = (40 if title else 6) + (caption_px if captions else 0)
    layout = {
        "width": int(width * scale) + label_px + (120 if colorbar else 12),
        "height": int(height * scale) + top_margin + 8,
        "margin": {"l": label_px + 6, "r": 120 if colorbar else 6, "t": top_margin, "b": 4},
        "xaxis": {"visible": False, "range": [-0.5, width - 0.5], "constrain": "domain"},
        "yaxis": {"visible": False, "range": [height - 0.5, -0.5], "scaleanchor": "x", "constrain": "domain"},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)",
        "annotations": annotations, "shapes": shapes,
    }
    if title:
        layout["title"] = {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": FONT + 2}}
    return go.Figure(data=traces, layout=layout, _validate=False)


def class_examples_figure(images: ImageSet, per_class: int = 10, seed: int = 0, *, cell_px: int = 64,
                          title: str = "") -> go.Figure:
    """`per_class` random images of each class (fixed seed), one row per class, labelled."""
    picked = images.examples_per_class(per_class, seed=seed)
    return image_grid_figure(images.images[picked], columns=per_class, row_labels=images.classes, cell_px=cell_px,
                             title=title)


def score_bars_figure(scores: torch.Tensor, classes: Sequence[str], *, dots: torch.Tensor | None = None,
                      bias: torch.Tensor | None = None, true_label: int | None = None,
                      title: str = "Class scores", value_name: str = "score") -> go.Figure:
    """Horizontal bars of the class scores, the winner in red, the true class named.

    With `dots` and `bias`, the hover text shows each score as w·x + b.
    """
    scores = scores.detach().to(torch.float64).cpu()
    winner = int(scores.argmax())
    colours = [PREDICTED if i == winner else (TRUE if i == true_label else OTHER) for i in range(len(classes))]
    labels = [f"{name} ✓" if i == true_label else name for i, name in enumerate(classes)]
    hover = []
    for i, name in enumerate(classes):
        if dots is not None and bias is not None:
            hover.append(f"{name}: w·x = {number(dots[i], 2)}, b = {number(bias[i], 2)}, "
                         f"{value_name} = {number(scores[i], 2)}")
        else:
            hover.append(f"{name}: {value_name} = {number(scores[i], 2)}")
    bars = {"type": "bar", "orientation": "h", "x": scores.tolist(), "y": labels,
            "marker": {"color": colours}, "text": [number(v, 1) for v in scores.tolist()],
            "textposition": "outside", "hovertext": hover, "hoverinfo": "text", "cliponaxis": False,
            "textfont": {"size": FONT}}
    low, high = float(scores.min()), float(scores.max())
    pad = 0.18 * ((max(high, 0) - min(low, 0)) or 1.0)
    layout = {
        "title": {"text": title, "font": {"size": FONT + 2}},
        "height": 60 + 34 * len(classes), "margin": {"l": 10, "r": 20, "t": 50, "b": 40},
        "xaxis": {"title": {"text": value_name}, "zeroline": True, "zerolinecolor": "#334155",
                  "range": [min(low, 0) - pad, max(high, 0) + pad], "tickfont": {"size": FONT - 2}},
        "yaxis": {"autorange": "reversed", "tickfont": {"size": FONT}, "automargin": True},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "showlegend": False,
    }
    return go.Figure(data=[bars], layout=layout, _validate=False)


def history_figure(histories: dict[str, Sequence[float]], title: str = "Test accuracy after each epoch") -> go.Figure:
    """Lines of test accuracy per epoch, one per model, with chance level marked."""
    traces = [{"type": "scatter", "mode": "lines+markers", "name": name,
               "x": list(range(1, len(values) + 1)), "y": [100 * v for v in values]}
              for name, values in histories.items()]
    layout = {
        "title": {"text": title, "font": {"size": FONT + 1}}, "height": 320,
        "margin": {"l": 50, "r": 10, "t": 50, "b": 40},
        "xaxis": {"title": {"text": "epoch"}, "dtick": 1}, "yaxis": {"title": {"text": "test accuracy (%)"},
                                                                      "range": [0, 100]},
        "shapes": [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": 10, "y1": 10,
                    "line": {"dash": "dot", "color": "#64748b"}}],
        "annotations": [{"xref": "paper", "x": 1, "y": 10, "text": "chance (10 classes)", "showarrow": False,
                         "xanchor": "right", "yanchor": "bottom"}],
        "legend": {"orientation": "h", "y": -0.25}, "plot_bgcolor": "white",
    }
    return go.Figure(data=traces, layout=layout, _validate=False)


def comparison_figure(names: Sequence[str], accuracies: Sequence[float], parameters: Sequence[int]) -> go.Figure:
    """Test accuracy per model as bars, each labelled with its parameter count."""
    bars = {"type": "bar", "x": list(names), "y": [100 * a for a in accuracies],
            "text": [f"{percent(a)}<br>{count(p)} parameters" for a, p in zip(accuracies, parameters)],
            "textposition": "outside", "marker": {"color": ["#60a5fa", "#a78bfa", "#f97316"][:len(names)]},
            "cliponaxis": False, "textfont": {"size": FONT}}
    layout = {"title": {"text": "Test accuracy on the same data", "font": {"size": FONT + 1}}, "height": 360,
              "margin": {"l": 50, "r": 10, "t": 50, "b": 40}, "yaxis": {"range": [0, 115], "title": {"text": "%"}},
              "xaxis": {"tickfont": {"size": FONT}}, "plot_bgcolor": "white"}
    return go.Figure(data=[bars], layout=layout, _validate=False)
