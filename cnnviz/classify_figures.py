"""Plotly figures for the classify page: pure functions of engine results.

- `top_k_figure`: the k most likely classes as horizontal bars (best on top).
- `softmax_figure`: the lecture's softmax box in three panels that share the class rows:
  class scores z, exponentiated e^z, and normalised p = e^z / sum of all e^z (the classes
  not listed are summed into one "other classes" row, so the last two panels add up).
- `activation_grid_image`: many activation maps of one layer as one picture (a mosaic),
  each channel scaled to its own range, zero white, positive red, negative blue.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from . import notation
from .classify import SoftmaxBreakdown, number_text
from .pictures import DIVERGING, colorize

BAR = "#1f6feb"  # the theme's blue
BEST = "#b91c1c"  # the predicted class
REST = "#9ca3af"  # grey: all other classes together
TILE_MAX_PX = 96  # larger maps are shrunk (area average) so a layer of 64 maps stays light
TILE_MIN_PX = 48  # smaller maps are enlarged pixel by pixel
GAP_PX = 3


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[:limit - 1] + "…"


def top_k_figure(names: Sequence[str], probabilities: Sequence[float], *, title: str = "",
                 height_px: int | None = None) -> go.Figure:
    """Horizontal bars of the top classes' probabilities, the most likely at the top."""
    names, probs = list(names), [float(p) for p in probabilities]
    bars = {
        "type": "bar", "orientation": "h", "x": [p * 100 for p in probs][::-1], "y": [_short(n) for n in names][::-1],
        "text": [notation.percent(p) for p in probs][::-1], "textposition": "outside", "cliponaxis": False,
        "marker": {"color": ([BAR] * (len(probs) - 1) + [BEST]) if probs else []},
        "hovertemplate": "%{y}: %{text}<extra></extra>", "textfont": {"size": 16},
    }
    layout = {
        "title": {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 15}} if title else None,
        "height": height_px or 70 + 48 * max(1, len(probs)),
        "margin": {"l": 10, "r": 20, "t": 44 if title else 10, "b": 40},
        "xaxis": {"title": {"text": "probability (%)"}, "range": [0, 118], "dtick": 20, "gridcolor": "#e5e7eb"},
        "yaxis": {"tickfont": {"size": 15}, "automargin": True},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "showlegend": False, "bargap": 0.3,
    }
    return go.Figure(data=[bars], layout=layout, _validate=False)


def softmax_figure(breakdown: SoftmaxBreakdown, height_px: int | None = None, *, stacked: bool = False) -> go.Figure:
    """Scores → e^score → probability, for the listed classes plus one row for all others: three panels
    side by side sharing the class names, or (stacked, for a phone's width) one above the other, each
    with its own names."""
    b = breakdown
    names = [_short(n, 22) for n in b.names]
    has_rest = b.rest_count > 0
    rows = names + ([f"other {b.rest_count} classes"] if has_rest else [])
    y = rows[::-1]
    colours = ([BEST] + [BAR] * (len(names) - 1) + ([REST] if has_rest else []))[::-1]
    exp_label = "e<sup>z</sup>" if b.shift == 0 else "e<sup>z − max z</sup>"
    scores = b.scores.tolist()
    exps = b.exps.tolist() + ([b.rest_exp] if has_rest else [])
    probs = b.probabilities.tolist() + ([b.rest_probability] if has_rest else [])
    common = {"type": "bar", "orientation": "h", "y": y, "textposition": "outside", "cliponaxis": False,
              "textfont": {"size": 14}}
    y2, y3 = ("y2", "y3") if stacked else ("y", "y")
    traces = [
        {**common, "x": (scores + ([None] if has_rest else []))[::-1], "xaxis": "x", "yaxis": "y",
         "text": ([number_text(v) for v in scores] + ([""] if has_rest else []))[::-1],
         "marker": {"color": colours}, "hovertemplate": "%{y}: score %{text}<extra></extra>"},
        {**common, "x": exps[::-1], "xaxis": "x2", "yaxis": y2,
         "text": [number_text(v) for v in exps][::-1], "marker": {"color": colours},
         "hovertemplate": "%{y}: %{text}<extra></extra>"},
        {**common, "x": [p * 100 for p in probs][::-1], "xaxis": "x3", "yaxis": y3,
         "text": [notation.percent(p) for p in probs][::-1], "marker": {"color": colours},
         "hovertemplate": "%{y}: %{text}<extra></extra>"},
    ]
    low = min(0.0, min(scores)) if scores else 0.0
    high = max(0.0, max(scores)) if scores else 1.0
    span = (high - low) or 1.0
    axis = {"gridcolor": "#e5e7eb", "zeroline": True, "zerolinecolor": "#6b7280"}
    titles = [("score z", "x"), (exp_label, "x2"), ("p = e<sup>z</sup> / Σ e<sup>z</sup>  (%)"
               if b.shift == 0 else "p (%)", "x3")]
    layout = {
        "height": height_px or 110 + 44 * len(rows),
        "margin": {"l": 10, "r": 30, "t": 44, "b": 30},
        "xaxis": {**axis, "domain": [0.0, 0.28],
                  "range": [low - 0.05 * span - (0.55 * span if low < 0 else 0), high + 0.4 * span]},
        "xaxis2": {**axis, "domain": [0.36, 0.64], "anchor": "y", "range": [0, max(exps or [1]) * 1.45],
                   "tickformat": "~s" if max(exps or [1]) >= 1e4 else ""},
        "xaxis3": {**axis, "domain": [0.72, 1.0], "anchor": "y", "range": [0, 125], "dtick": 25},
        "yaxis": {"tickfont": {"size": 14}, "automargin": True},
        "annotations": [{"text": f"<b>{number}.</b> {text}", "x": 0.5, "y": 1.0, "xref": f"{axis_id} domain",
                         "yref": "paper", "yanchor": "bottom", "showarrow": False, "font": {"size": 16},
                         "yshift": 6} for number, (text, axis_id) in enumerate(titles, start=1)],
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "showlegend": False, "bargap": 0.3,
    }
    if stacked:
        panel = 80 + 30 * len(rows)  # each panel's own height, its title and axis included
        layout["height"] = height_px or 3 * panel + 40
        gap = 70 / layout["height"]
        bounds = [(1 - (i + 1) / 3 + gap * 0.5 * (i < 2), 1 - i / 3 - gap * 0.5 * (i > 0)) for i in range(3)]
        for i, (bottom, top) in enumerate(bounds):
            suffix = "" if i == 0 else str(i + 1)
            layout[f"xaxis{suffix}"].update(domain=[0.0, 1.0], anchor=f"y{suffix}")
            layout[f"yaxis{suffix}"] = {"tickfont": {"size": 13}, "automargin": True, "domain": [bottom, top],
                                        "anchor": f"x{suffix}", "ticksuffix": "  "}
        layout["annotations"] = [{**note, "xref": "paper", "yref": f"y{'' if i == 0 else i + 1} domain", "y": 1.0}
                                 for i, note in enumerate(layout["annotations"])]
        layout["margin"] = {"l": 6, "r": 40, "t": 30, "b": 20}
    return go.Figure(data=traces, layout=layout, _validate=False)


def colour_maps(maps: torch.Tensor, colorscale=DIVERGING) -> np.ndarray:
    """(n, h, w) maps -> (n, h, w, 3) uint8, each map scaled to its own ±max|value| (0 is the middle colour)."""
    maps = maps.detach().to(torch.float64).cpu()
    bound = maps.abs().amax(dim=(1, 2), keepdim=True)
    bound = torch.where(bound > 0, bound, torch.ones_like(bound))
    return colorize((maps / bound).numpy(), -1.0, 1.0, colorscale)


def tile_side(h: int, w: int, min_px: int = TILE_MIN_PX, max_px: int = TILE_MAX_PX) -> tuple[int, int]:
    """Displayed (height, width) of one map: shrunk to at most max_px, enlarged by whole
    pixels to at least min_px."""
    side = max(h, w)
    if side > max_px:
        scale = max_px / side
        return max(1, round(h * scale)), max(1, round(w * scale))
    factor = max(1, math.ceil(min_px / side))
    return h * factor, w * factor


def activation_grid_image(maps: torch.Tensor, channels: Sequence[int], *, columns: int = 8,
                          labels: Sequence[str] | None = None, label_px: int = 18,
                          min_px: int = TILE_MIN_PX, max_px: int = TILE_MAX_PX) -> Image.Image:
    """The chosen channels of a (C, H, W) layer output as one picture: a grid of small maps.

    Each map gets its own colour range (the strongest and the weakest channel both stay
    readable), zero white, positive red, negative blue; each tile is labelled above with its
    channel number (1-based) or the given `labels`. An image rather than a plotly figure, so
    it keeps its proportions at any column width.
    """
    channels = list(channels)
    if not channels:
        raise ValueError("no channels to show")
    _, h, w = maps.shape
    th, tw = tile_side(h, w, min_px, max_px)
    chosen = maps[channels].detach().float()
    if (th, tw) != (h, w):
        if th < h:
            chosen = F.interpolate(chosen[:, None], size=(th, tw), mode="area")[:, 0]
        else:
            chosen = chosen.repeat_interleave(th // h, dim=1).repeat_interleave(tw // w, dim=2)
    tiles = colour_maps(chosen)
    columns = max(1, min(columns, len(channels)))
    rows = math.ceil(len(channels) / columns)
    cell_h, cell_w = th + label_px + GAP_PX, tw + GAP_PX
    mosaic = np.full((rows * cell_h, columns * cell_w - GAP_PX, 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, q = divmod(i, columns)
        top, left = r * cell_h + label_px, q * cell_w
        mosaic[top:top + th, left:left + tw] = tile
    image = Image.fromarray(mosaic)
    draw = ImageDraw.Draw(image)
    font = _font(max(9, min(14, label_px - 4)))
    texts = list(labels) if labels is not None else [f"#{ch + 1}" for ch in channels]
    for i, text in enumerate(texts[:len(tiles)]):
        r, q = divmod(i, columns)
        draw.text((q * cell_w + tw / 2, r * cell_h + label_px - 3), text, fill=(55, 65, 81), font=font, anchor="ms")
    return image


@lru_cache(maxsize=8)
def _font(size: int):
    return ImageFont.load_default(size=size)


def strength_figure(strength: torch.Tensor, highlight: Sequence[int], *, title: str = "",
                    height_px: int = 220) -> go.Figure:
    """Bars of every channel's strength (mean positive activation), the strongest highlighted."""
    values = strength.detach().float().tolist()
    marked = set(highlight)
    bars = {"type": "bar", "x": list(range(1, len(values) + 1)), "y": values,
            "marker": {"color": [BEST if i in marked else BAR for i in range(len(values))]},
            "hovertemplate": "channel %{x}: %{y:.4g}<extra></extra>"}
    layout = {
        "title": {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 14}} if title else None,
        "height": height_px, "margin": {"l": 10, "r": 10, "t": 36 if title else 8, "b": 36},
        "xaxis": {"title": {"text": "channel"}, "tickfont": {"size": 11}},
        "yaxis": {"title": {"text": "mean positive activation"}, "gridcolor": "#e5e7eb", "rangemode": "tozero"},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "showlegend": False, "bargap": 0.15,
    }
    return go.Figure(data=[bars], layout=layout, _validate=False)


# --------------------------------------------------------------------------- explaining (cnnviz.explain)

AMBER = (245, 158, 11)  # the labs' window colour: the unit's window and receptive field
OVERVIEW_TILE_PX = 56  # a map in the overview is drawn at most this large (its PNG; the browser scales it)
VECTOR_ROWS = 10  # scores and probabilities listed per column (the largest when there are more classes)


def _grey_or_rgb(x: torch.Tensor) -> np.ndarray:
    """A network input (C, H, W) as uint8 pixels, stretched min..max (normalised inputs are not 0..1)."""
    x = x.detach().float()
    lo, hi = float(x.min()), float(x.max())
    scaled = ((x - lo) / ((hi - lo) or 1.0) * 255).round().clamp(0, 255).to(torch.uint8)
    array = scaled[0].numpy() if scaled.shape[0] == 1 else scaled[:3].permute(1, 2, 0).numpy()
    return np.stack([array] * 3, axis=-1) if array.ndim == 2 else array


def _shrunk(maps: torch.Tensor, max_px: int) -> torch.Tensor:
    """(n, h, w) maps area-averaged down so the longer side is at most max_px (never enlarged: the browser
    scales them up, pixelated)."""
    h, w = maps.shape[1:]
    if max(h, w) <= max_px:
        return maps
    scale = max_px / max(h, w)
    return F.interpolate(maps[:, None].float(), size=(max(1, round(h * scale)), max(1, round(w * scale))),
                         mode="area")[:, 0]


def input_picture(x: torch.Tensor, *, side_px: int = 224, box: tuple[int, int, int, int] | None = None,
                  heat: np.ndarray | None = None) -> Image.Image:
    """The network's input, enlarged (whole pixels for small inputs) to about side_px, with an amber box
    (top, left, bottom, right, inclusive, in input pixels) and / or a colour overlay `heat` (H, W, 4 uint8)."""
    pixels = _grey_or_rgb(x)
    h, w = pixels.shape[:2]
    if heat is not None:  # on a faded image, so a colour reads the same over black and over white
        alpha = heat[..., 3:4].astype(np.float64) / 255
        faded = 150 + pixels.astype(np.float64) * (105 / 255)
        pixels = np.rint(faded * (1 - alpha) + heat[..., :3] * alpha).astype(np.uint8)
    image = Image.fromarray(pixels)
    factor = side_px / max(h, w)
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    image = image.resize(size, Image.Resampling.NEAREST if factor >= 1 and max(h, w) <= 64 else
                         Image.Resampling.BILINEAR)
    if box is not None:
        top, left, bottom, right = box
        draw = ImageDraw.Draw(image)
        width = max(2, round(side_px / 90))
        draw.rectangle((left * factor - 1, top * factor - 1, (right + 1) * factor, (bottom + 1) * factor),
                       outline=AMBER, width=width)
    return image


def heat_overlay(values: torch.Tensor, *, signed: bool = False, opacity: float = 0.85) -> np.ndarray:
    """(H, W) values as an RGBA layer on the diverging scale: red where large, and for `signed` values
    blue where negative; transparent at zero, so the image shows through where nothing happens."""
    v = values.detach().double().numpy()
    bound = float(np.abs(v).max()) or 1.0
    t = v / bound
    if not signed:
        t = np.clip(t, 0, None)
    rgb = colorize(t, -1.0, 1.0, DIVERGING)
    alpha = np.rint(np.abs(t) * 255 * opacity).astype(np.uint8)[..., None]
    return np.concatenate([rgb, alpha], axis=-1)


def _vector_rows(values: torch.Tensor, names: Sequence[str], order: Sequence[int], text) -> list[dict]:
    bound = float(values.abs().max()) or 1.0
    colours = colorize((values[list(order)] / bound).double().numpy(), -1.0, 1.0, DIVERGING)
    return [{"index": i, "name": _short(names[i], 18), "text": text(float(values[i])),
             "colour": "#" + "".join(f"{int(c):02x}" for c in colours[n]),
             "share": abs(float(values[i])) / bound} for n, i in enumerate(order)]


def _square_of(vector: torch.Tensor) -> tuple[torch.Tensor, int]:
    """A long vector as a near-square grid read row by row (the cells past its end: 0, drawn white)."""
    n = vector.numel()
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    padded = torch.zeros(rows * cols)
    padded[:n] = vector.detach().float()
    return padded.view(rows, cols), cols


def overview_data(overview, *, maps_per_column: int = 8, tile_px: int = OVERVIEW_TILE_PX,
                  extra: dict[int, int] | None = None) -> dict:
    """The overview as plain data for the browser component (ui/components/network_view.js): per column its
    title, shape (as the lecture writes it), whether a click on it has arithmetic, and its pictures as PNG
    data URLs: maps (each on its own ±max scale, zero white), a long vector as a square of cells, scores
    and probabilities as labelled rows. `extra`: a channel to draw in a column even if it is not among
    the strongest (the unit a link names)."""
    from .pictures import data_url, png

    classes = overview.classes
    order = torch.argsort(overview.logits, descending=True)[:VECTOR_ROWS].tolist() \
        if len(classes) > VECTOR_ROWS else list(range(len(classes)))
    columns = []
    for column in overview.columns:
        entry = {"number": column.number, "title": column.title, "kind": column.kind, "shape": column.shape_text,
                 "clickable": column.clickable, "label": column.label}
        out = column.output
        if column.kind == "input":
            entry["picture"] = {"src": data_url(png(_grey_or_rgb(_shrunk(out, 4 * tile_px)))),
                                "rows": out.shape[1], "cols": out.shape[2]}
        elif column.is_maps:
            shown = column.shown[:maps_per_column]
            wanted = (extra or {}).get(column.number)
            if wanted is not None and wanted not in shown:
                shown = [*shown[:maps_per_column - 1], wanted]
            tiles = colour_maps(_shrunk(out[shown], tile_px))
            entry["maps"] = [{"channel": c, "src": data_url(png(tile))} for c, tile in zip(shown, tiles)]
            entry["rows"], entry["cols"] = out.shape[1], out.shape[2]
            entry["more"] = out.shape[0] - len(shown)
        elif column.kind in ("scores", "softmax"):
            values = out.flatten()
            text = notation.percent if column.kind == "softmax" else number_text
            entry["list"] = _vector_rows(values, classes, order, text)
            entry["more"] = len(classes) - len(order)
        else:
            values = out.flatten()
            square, cols = _square_of(values)
            bound = float(values.abs().max()) or 1.0
            entry["vector"] = {"src": data_url(png(colorize((square / bound).double().numpy(), -1.0, 1.0, DIVERGING))),
                               "rows": square.shape[0], "cols": cols, "n": values.numel()}
        columns.append(entry)
    return {"columns": columns}
