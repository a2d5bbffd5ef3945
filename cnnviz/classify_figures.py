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


def softmax_figure(breakdown: SoftmaxBreakdown, height_px: int | None = None) -> go.Figure:
    """Scores → e^score → probability, for the listed classes plus one row for all others."""
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
    traces = [
        {**common, "x": (scores + ([None] if has_rest else []))[::-1], "xaxis": "x", "yaxis": "y",
         "text": ([number_text(v) for v in scores] + ([""] if has_rest else []))[::-1],
         "marker": {"color": colours}, "hovertemplate": "%{y}: score %{text}<extra></extra>"},
        {**common, "x": exps[::-1], "xaxis": "x2", "yaxis": "y",
         "text": [number_text(v) for v in exps][::-1], "marker": {"color": colours},
         "hovertemplate": "%{y}: %{text}<extra></extra>"},
        {**common, "x": [p * 100 for p in probs][::-1], "xaxis": "x3", "yaxis": "y",
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
