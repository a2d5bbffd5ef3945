"""Figures for a stack of layers: how shapes shrink and channels grow, and what one unit sees.

Pure functions from `cnnviz.network` results (and an input picture) to plotly figures.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from PIL import Image, ImageDraw, ImageOps

from . import notation
from .network import LayerInfo, unit_receptive_field
from .pictures import data_url, png

SIDE_COLOUR = "#1f6feb"  # blue: the spatial size
CHANNEL_COLOUR = "#b45309"  # amber-brown: the channels
FIELD_COLOUR = "#f59e0b"  # the same amber as a filter window on the grids
FIELD_FILL = "rgba(245,158,11,0.18)"


def fit_picture(image: Image.Image, in_shape: Sequence[int]) -> Image.Image:
    """The picture as the network would get it: centre-cropped and resized to (H, W), grey for 1 channel."""
    channels, height, width = in_shape
    picture = ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
    return picture.convert("L").convert("RGB") if channels == 1 else picture


def _png_source(image: Image.Image) -> str:
    return data_url(png(image))


lecture_shape = notation.shape  # as the lecture writes a tensor: (64, 224, 224) -> '224×224×64'; (n,) -> 'n'.


def layer_rows(infos: Sequence[LayerInfo], receptive_field: bool = False) -> list[dict]:
    """The builders' table: one row per layer after the input, m×l×d shapes as in the lecture."""
    def row(number, name, shape, params, macs, info=None) -> dict:
        cells = {"#": number, "layer": name, "output m×l×d": lecture_shape(shape), "parameters": params,
                 "multiply-adds": macs}
        if receptive_field:
            cells["receptive field"] = ("1×1" if info is None else "whole input" if info.rf_global
                                        else f"{info.rf_size}×{info.rf_size}")
        return cells
    return [row(0, "input", infos[0].in_shape, 0, 0)] + [
        row(i.number, i.name, i.out_shape, i.params, i.multiply_adds, i) for i in infos]


def spatial_layers(infos: Sequence[LayerInfo]) -> list[LayerInfo]:
    """The layers whose output is still a feature map (conv, pooling and the activations between)."""
    return [info for info in infos if len(info.out_shape) == 3]


def shapes_figure(infos: Sequence[LayerInfo], height_px: int = 400) -> go.Figure:
    """Two panels over the same layers: the height m of the feature maps (falling, top) and the
    number of channels d (rising, bottom), each bar labelled with the map's shape m×l×d.

    Two panels rather than two axes on one: nothing is drawn over a label, and each axis ticks
    at round numbers of its own quantity."""
    maps = [(0, "input", infos[0].in_shape)] if len(infos[0].in_shape) == 3 else []
    maps += [(info.number, f"{info.number}. {info.spec.token}", info.out_shape) for info in spatial_layers(infos)
             if info.spec.layer_kind.window]
    labels = [label for _, label, _ in maps]
    sides = [shape[1] for *_, shape in maps]
    channels = [shape[0] for *_, shape in maps]
    texts = [lecture_shape(shape) for *_, shape in maps]
    bar = {"type": "bar", "x": labels, "textposition": "outside", "cliponaxis": False, "textfont": {"size": 12},
           "hovertemplate": "%{x}: %{customdata}<extra></extra>", "customdata": texts, "showlegend": False}
    data = [
        {**bar, "y": sides, "text": texts, "marker": {"color": SIDE_COLOUR}, "xaxis": "x", "yaxis": "y"},
        {**bar, "y": channels, "text": [f"{d:,}" for d in channels], "marker": {"color": CHANNEL_COLOUR},
         "xaxis": "x2", "yaxis": "y2"},
    ]
    axis = {"rangemode": "tozero", "tickformat": ",d", "nticks": 5, "gridcolor": "#e5e7eb"}
    layout = {
        "height": height_px, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "title": {"text": "Space shrinks, channels grow", "x": 0.5, "xanchor": "center", "font": {"size": 15}},
        "xaxis": {"anchor": "y", "showticklabels": False, "domain": [0, 1]},
        "xaxis2": {"anchor": "y2", "matches": "x", "domain": [0, 1], "automargin": True},
        "yaxis": {**axis, "domain": [0.56, 1.0], "range": [0, max(sides) * 1.3],
                  "title": {"text": "height m", "font": {"color": SIDE_COLOUR}}},
        "yaxis2": {**axis, "domain": [0.0, 0.44], "range": [0, max(channels) * 1.3],
                   "title": {"text": "channels d", "font": {"color": CHANNEL_COLOUR}}},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "bargap": 0.35,
    }
    return go.Figure(data=data, layout=layout, _validate=False)


def receptive_field_figure(picture: Image.Image, box: tuple[int, int, int, int], title: str = "",
                           width_px: int = 300) -> go.Figure:
    """The input picture with the receptive field box (top, left, bottom, right, inclusive) drawn on it."""
    width, height = picture.size
    top, left, bottom, right = box
    field = {"type": "rect", "x0": left - 0.5, "x1": right + 0.5, "y0": top - 0.5, "y1": bottom + 0.5,
             "line": {"color": FIELD_COLOUR, "width": 3}, "fillcolor": FIELD_FILL}
    layout = {
        "title": {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 13}} if title else None,
        "width": width_px, "height": int(width_px * height / width) + (44 if title else 8),
        "margin": {"l": 4, "r": 4, "t": 40 if title else 4, "b": 4}, "shapes": [field],
        "xaxis": {"visible": False, "range": [-0.5, width - 0.5], "constrain": "domain"},
        "yaxis": {"visible": False, "range": [height - 0.5, -0.5], "scaleanchor": "x", "constrain": "domain"},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)",
    }
    image = {"type": "image", "source": _png_source(picture), "hoverinfo": "skip"}
    return go.Figure(data=[image], layout=layout, _validate=False)


def centre_unit(info: LayerInfo) -> tuple[int, int]:
    _, height, width = info.out_shape
    return (height - 1) // 2, (width - 1) // 2


def field_picture(picture: Image.Image, box: tuple[int, int, int, int], side_px: int = 170) -> bytes:
    """The input picture enlarged (sharp pixels) with a receptive field box drawn on it, as PNG bytes."""
    scale = max(1, side_px // max(picture.size))
    big = picture.resize((picture.width * scale, picture.height * scale), Image.Resampling.NEAREST).convert("RGB")
    top, left, bottom, right = box
    overlay = Image.new("RGBA", big.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    draw.rectangle([left * scale, top * scale, (right + 1) * scale - 1, (bottom + 1) * scale - 1],
                   fill=(245, 158, 11, 46), outline=(245, 158, 11, 255), width=max(2, scale // 2))
    return png(Image.alpha_composite(big.convert("RGBA"), overlay).convert("RGB"))


def growth_pictures(infos: Sequence[LayerInfo], picture: Image.Image, side_px: int = 170) -> list[tuple[str, bytes]]:
    """(caption, PNG) per conv or pooling layer: what its centre unit sees, growing layer by layer.
    Pictures rather than one chart, so a narrow screen wraps them instead of squeezing their titles."""
    found = []
    for info in spatial_layers(infos):
        if not info.spec.layer_kind.window:
            continue
        row, col = centre_unit(info)
        box = unit_receptive_field(infos, None, info.index, row, col)
        found.append((f"{info.number}. {info.spec.token} → {lecture_shape(info.out_shape)}, sees "
                      f"{notation.grid(box[2] - box[0] + 1, box[3] - box[1] + 1)}", field_picture(picture, box, side_px)))
    return found
