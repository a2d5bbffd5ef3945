"""Figures of a whole architecture: pure functions from a `cnnviz.summary.Summary` to plotly
figures (the block diagram, parameters and multiply-adds per layer, and where they sit).

The block diagram follows the lecture's VGG-16 picture: every feature map is a box whose
front face is as tall as the map's height, whose depth (drawn obliquely) is its width, and
whose thickness is its number of channels; vectors (flatten, fully connected, softmax) are
thin slabs as tall as their length. Sizes grow with the square root of the shape, so that
the 7×7 maps at the end stay visible next to the 224×224 ones and 3 channels next to 512;
the caption of the page says so. Colours as on the slides: convolution + ReLU dark, pooling
red, fully connected blue, softmax brown.
"""

from __future__ import annotations

import math

import plotly.graph_objects as go

from .notation import megabytes, percent, shape
from .summary import BYTES_PER_NUMBER, Box, Summary, boxes

# (front, top, side) face colours per kind
COLOURS = {
    "conv": ("#3f4a5a", "#6b7889", "#252c36"),
    "pool": ("#d62828", "#ef6a6a", "#9b1c1c"),
    "fc": ("#2563eb", "#6d9cf5", "#1b46a8"),
    "flatten": ("#9aa3ae", "#c3c9d0", "#737c87"),
    "softmax": ("#9a5b1e", "#c58a4c", "#6d3f12"),
    "other": ("#6b7280", "#9ca3af", "#4b5563"),
}
INPUT_COLOURS = ("#c7d7f0", "#e1eaf8", "#9fb4d6")  # a pale image
GREY_INPUT = ("#d1d5db", "#e5e7eb", "#9ca3af")
KIND_NAMES = {"conv": "convolution + ReLU", "pool": "pooling", "fc": "fully connected",
              "flatten": "flatten", "softmax": "softmax", "other": "other"}
HIGHLIGHT = "#f59e0b"
FONT = "Source Sans Pro, Segoe UI, sans-serif"

MAX_FACE = 250.0  # drawing units: the tallest front face
MIN_FACE = 30.0
MAX_THICK = 44.0
MIN_THICK = 6.0
VECTOR_THICK = 12.0
DEPTH_SLANT = 0.36  # oblique projection: depth drawn at 45°, shortened
LABEL_PX = 104.0  # pixels two labels on one side need between their centres


def _scale(value: float, largest: float, low: float, high: float) -> float:
    if largest <= 0:
        return low
    return low + (high - low) * math.sqrt(max(value, 0) / largest)


def _cuboid(x: float, y: float, thick: float, face: float, depth: float, colours, line: str, width: float):
    """Three faces of an obliquely drawn box: front (x..x+thick, y..y+face), top and side."""
    dx = dy = depth * DEPTH_SLANT
    front, top, side = colours
    paths = [
        (f"M{x},{y} L{x + thick},{y} L{x + thick},{y + face} L{x},{y + face} Z", front),
        (f"M{x},{y + face} L{x + thick},{y + face} L{x + thick + dx},{y + face + dy} L{x + dx},{y + face + dy} Z", top),
        (f"M{x + thick},{y} L{x + thick + dx},{y + dy} L{x + thick + dx},{y + face + dy} L{x + thick},{y + face} Z", side),
    ]
    return [{"type": "path", "path": p, "fillcolor": c, "line": {"color": line, "width": width}, "layer": "above"}
            for p, c in paths]


def _box_text(summary: Summary, box: Box) -> str:
    lines = [f"<b>{box.label}</b>: {box.description}", f"output {shape(box.shape)}"]
    if box.rows:
        params = sum(summary.row(r).params for r in box.rows)
        macs = sum(summary.row(r).macs for r in box.rows)
        lines += [f"parameters {params:,}", f"multiply-adds {macs:,}"]
    lines.append(f"activations {math.prod(box.shape):,} numbers ({megabytes(math.prod(box.shape) * BYTES_PER_NUMBER)})")
    return "<br>".join(lines)


def _groups(items: list[Box]) -> list[list[int]]:
    """Runs of neighbouring boxes of one kind and one shape (a VGG block's convolutions)."""
    groups: list[list[int]] = []
    for i, box in enumerate(items):
        if groups and box.kind == items[groups[-1][0]].kind == "conv" and box.shape == items[groups[-1][0]].shape:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def _group_name(labels: list[str]) -> str:
    """'conv1_1', 'conv1_2' -> 'conv1_1–2'; module paths 'layer2.0.conv1' ... 'layer2.1.conv2' -> 'layer2'."""
    if len(labels) == 1:
        return labels[0]
    if all("." in label for label in labels):
        parts = [label.split(".") for label in labels]
        common = []
        for pieces in zip(*parts):
            if len(set(pieces)) > 1:
                break
            common.append(pieces[0])
        if common:
            return ".".join(common)
    return f"{labels[0]}–{labels[-1].split('_')[-1]}"


def block_diagram(summary: Summary, selected: int | None = None, *, softmax: bool = True,
                  width_px: int = 940) -> go.Figure:
    """The architecture as a row of boxes scaled by the activation shapes (see module doc).

    selected: index of a layer (summary.layers) whose box is outlined in amber. Every box
    carries its first layer's index in `customdata` for click-to-select. width_px: the width
    the figure will be shown at; the height follows from it (boxes keep their proportions).
    """
    items = boxes(summary, softmax=softmax)
    maps = [b for b in items if b.spatial]
    vectors = [b for b in items if not b.spatial]
    side_max = max((max(b.shape[1:]) for b in maps), default=1)
    chan_max = max((b.shape[0] for b in maps), default=1)
    vec_max = max((b.shape[0] for b in vectors), default=1)

    shapes, annotations, on_top = [], [], []
    hover_x, hover_y, hover_text, hover_rows = [], [], [], []
    groups = _groups(items)
    x = 0.0
    top_extent = 0.0
    placed: list[tuple[float, float, float]] = []  # (x, thick, face) per box
    for g, group in enumerate(groups):
        for position, i in enumerate(group):
            box = items[i]
            if box.spatial:
                c, h, w = box.shape
                face = _scale(h, side_max, MIN_FACE, MAX_FACE)
                depth = _scale(w, side_max, MIN_FACE, MAX_FACE)
                thick = _scale(c, chan_max, MIN_THICK, MAX_THICK)
            else:
                face = _scale(box.shape[0], vec_max, MIN_FACE, MAX_FACE)
                depth, thick = 20.0, VECTOR_THICK
            y = -face / 2
            chosen = selected is not None and selected in box.rows
            line, width = (HIGHLIGHT, 3.5) if chosen else ("rgba(255,255,255,0.9)", 1)
            colours = COLOURS.get(box.kind, COLOURS["other"])
            if box.kind == "input":
                colours = INPUT_COLOURS if box.shape[0] == 3 else GREY_INPUT
                line, width = "#64748b", 1
            faces = _cuboid(x, y, thick, face, depth, colours, line, width)
            if chosen:
                on_top = faces  # drawn last, so the outline is not hidden by the next box
            else:
                shapes += faces
            placed.append((x, thick, face))
            top_extent = max(top_extent, face / 2 + depth * DEPTH_SLANT)
            hover_x.append(x + thick / 2)
            hover_y.append(0.0)
            hover_text.append(_box_text(summary, box))
            hover_rows.append(box.rows[0] if box.rows else -1)
            x += thick + (5 if position < len(group) - 1 else 0)
        # the gap after a group: room for the next label and the depth of this box
        last = items[group[-1]]
        nxt = items[groups[g + 1][0]] if g + 1 < len(groups) else None
        gap = 22.0
        if not last.spatial or (nxt is not None and not nxt.spatial):
            gap = 40.0
        x += gap + (depth * DEPTH_SLANT if last.spatial else 0)

    # labels: one per group, below the boxes unless the previous label there is too close
    px_per_unit = (width_px - 8) / (x + 60)
    room = LABEL_PX / px_per_unit
    bottom = -MAX_FACE / 2 - 10
    top = top_extent + 10
    last_at = {"below": -1e9, "above": -1e9}
    for g, group in enumerate(groups):
        first, last = placed[group[0]], placed[group[-1]]
        centre = (first[0] + last[0] + last[1]) / 2
        box = items[group[0]]
        name = _group_name([items[i].label for i in group])
        side = "below"
        if centre - last_at["below"] < room:
            side = "above" if centre - last_at["above"] >= room or last_at["above"] < last_at["below"] else "below"
        last_at[side] = centre
        below = side == "below"
        written = shape(box.shape)
        text = f"<b>{written}</b><br>{name}" if below else f"{name}<br><b>{written}</b>"
        annotations.append({"x": centre, "y": bottom if below else top, "text": text, "showarrow": False,
                            "yanchor": "top" if below else "bottom", "xanchor": "center",
                            "font": {"size": 14, "color": "#111827", "family": FONT}})

    shapes += on_top
    hover = {"type": "scatter", "x": hover_x, "y": hover_y, "mode": "markers",
             "marker": {"size": 22, "color": "rgba(0,0,0,0)", "symbol": "square"},
             "hovertext": hover_text, "hoverinfo": "text", "customdata": hover_rows, "showlegend": False,
             "hoverlabel": {"bgcolor": "white", "font": {"size": 14}}}
    legend = [{"type": "scatter", "x": [None], "y": [None], "mode": "markers", "name": KIND_NAMES[k],
               "marker": {"size": 15, "symbol": "square", "color": COLOURS[k][0]}}
              for k in ("conv", "pool", "flatten", "fc", "softmax") if any(b.kind == k for b in items)]
    if any(b.kind == "conv" for b in items) and summary.share("batchnorm", "params") > 0:
        legend[0]["name"] = "convolution + batch norm + ReLU"
    x_range = [-95.0, x]  # room for the input's label, which is wider than its box
    label_units = (2 * 19 + 4) / px_per_unit
    y_range = [bottom - label_units, top + label_units]
    margin = {"l": 4, "r": 4, "t": 44, "b": 4}
    height = (width_px - 8) * (y_range[1] - y_range[0]) / (x_range[1] - x_range[0]) + margin["t"] + margin["b"]
    layout = {
        "shapes": shapes, "annotations": annotations, "height": int(min(max(height, 260), 480)),
        "margin": margin,
        "xaxis": {"visible": False, "range": x_range, "fixedrange": True, "constrain": "domain"},
        "yaxis": {"visible": False, "range": y_range, "scaleanchor": "x", "scaleratio": 1, "fixedrange": True,
                  "constrain": "domain"},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "hovermode": "closest",
        "legend": {"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom", "font": {"size": 14}},
        "font": {"family": FONT}, "dragmode": False,
    }
    return go.Figure(data=[hover, *legend], layout=layout, _validate=False)


def _bar_colours(summary: Summary, rows, selected: int | None) -> tuple[list[str], list[str], list[float]]:
    fill = [COLOURS.get(r.kind if r.kind in COLOURS else "other", COLOURS["other"])[0] for r in rows]
    line = [HIGHLIGHT if r.index == selected else "rgba(0,0,0,0)" for r in rows]
    width = [4 if r.index == selected else 0 for r in rows]
    return fill, line, width


BAR_PITCH_PX = 18  # one bar per layer, one line of label text each: ResNet-18's 41 layers stay readable
LAYER_FONT_PX = 13


def _per_layer(summary: Summary, what: str, title: str, unit: str, selected: int | None,
               note: str, height_px: int) -> go.Figure:
    """Horizontal bars, one per layer that has any `what`, the first layer at the top; the
    layer names stand upright on the left however many layers there are (the figure grows)."""
    rows = [r for r in summary.layers if r.params > 0 or r.macs > 0]
    values = [getattr(r, what) for r in rows]
    fill, line, width = _bar_colours(summary, rows, selected)
    total = sum(values) or 1
    shares = [percent(v / total) for v in values]
    places = list(range(len(rows)))  # positions, not names: a layer called twice keeps two bars
    bars = {"type": "bar", "orientation": "h", "y": places, "x": values,
            "marker": {"color": fill, "line": {"color": line, "width": width}},
            "text": [s if v / total >= 0.03 else "" for s, v in zip(shares, values)], "textposition": "outside",
            "textfont": {"size": 13}, "constraintext": "none", "cliponaxis": False,
            "customdata": [r.index for r in rows],
            "hovertext": [f"{r.label}: {v:,} {unit} ({s})" for r, v, s in zip(rows, values, shares)],
            "hoverinfo": "text"}
    heading = f"{title}<br><span style='font-size:14px;color:#374151'>{note}</span>" if note else title
    margin = {"l": 10, "r": 10, "t": 78, "b": 40}
    layout = {
        "title": {"text": heading, "x": 0.01, "xanchor": "left", "y": 0.97, "yanchor": "top", "font": {"size": 17}},
        "height": max(height_px, margin["t"] + margin["b"] + BAR_PITCH_PX * len(rows)), "margin": margin,
        "xaxis": {"title": {"text": unit}, "tickformat": "~s", "rangemode": "tozero", "nticks": 5,
                  "range": [0, max(values, default=1) * 1.22], "gridcolor": "#e5e7eb", "tickfont": {"size": 13}},
        "yaxis": {"tickmode": "array", "tickvals": places, "ticktext": [r.label for r in rows],
                  "autorange": "reversed", "tickfont": {"size": LAYER_FONT_PX}, "automargin": True},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "showlegend": False, "bargap": 0.25,
        "hoverlabel": {"bgcolor": "white", "font": {"size": 14}},
    }
    return go.Figure(data=[bars], layout=layout, _validate=False)


def params_figure(summary: Summary, selected: int | None = None, height_px: int = 380) -> go.Figure:
    """Parameters of every layer that has any; the largest one named with its share."""
    big = summary.largest("params")
    note = (f"<b>{big.label}</b> alone holds <b>{percent(big.params / summary.params)}</b> of all "
            f"{summary.params:,}") if summary.params else ""
    return _per_layer(summary, "params", "Parameters per layer", "parameters", selected, note, height_px)


def macs_figure(summary: Summary, selected: int | None = None, height_px: int = 380) -> go.Figure:
    """Multiply-adds (bias counted) of every layer that does any; the convolutions' share named."""
    note = (f"the convolutions do <b>{percent(summary.share('conv', 'macs'))}</b> of all {summary.macs:,}"
            if summary.macs else "")
    return _per_layer(summary, "macs", "Multiply-adds per layer (bias counted)", "multiply-adds",
                      selected, note, height_px)


def share_figure(summary: Summary, height_px: int = 220) -> go.Figure:
    """Two 100 % bars: which kinds of layer hold the parameters, and which do the compute."""
    kinds = [k for k in ("conv", "fc", "batchnorm", "other")
             if any(r.kind == k and (r.params or r.macs) for r in summary.layers)]
    names = {"conv": "convolutions", "fc": "fully connected", "batchnorm": "batch norm", "other": "other"}
    colours = {"conv": COLOURS["conv"][0], "fc": COLOURS["fc"][0], "batchnorm": "#a78bfa", "other": "#9ca3af"}
    data = []
    for kind in kinds:
        shares = [summary.share(kind, "params"), summary.share(kind, "macs")]
        data.append({"type": "bar", "orientation": "h", "name": names[kind], "y": ["parameters", "multiply-adds"],
                     "x": shares, "marker": {"color": colours[kind]},
                     # too narrow a segment gets no text (the hover and the sentence below give it)
                     "text": [percent(s) if s >= 0.06 else "" for s in shares], "textposition": "inside",
                     "insidetextanchor": "middle", "textangle": 0, "textfont": {"size": 16, "color": "white"},
                     "hovertext": [f"{names[kind]}: {percent(s)} of the {what}"
                                   for s, what in zip(shares, ("parameters", "multiply-adds"))],
                     "hoverinfo": "text"})
    layout = {
        "barmode": "stack", "height": height_px, "margin": {"l": 10, "r": 10, "t": 40, "b": 10},
        "xaxis": {"tickformat": ".0%", "range": [0, 1], "gridcolor": "#e5e7eb", "tickfont": {"size": 13}},
        "yaxis": {"autorange": "reversed", "tickfont": {"size": 15}},
        "legend": {"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"size": 14},
                   "traceorder": "normal"},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)", "bargap": 0.3,
    }
    return go.Figure(data=data, layout=layout, _validate=False)
