"""Local connectivity and parameter sharing: the lecture's graph representation of a convolution layer.

A fully connected layer joins every output unit to every input number, each connection with a
weight of its own. A convolution layer joins an output unit only to the k×k×d numbers under its
window (local connectivity), and every unit of one output channel uses the same k×k×d weights
(parameter sharing). This module says which inputs an output unit is connected to, which weight
each connection uses, and what the two kinds of layer cost for the same input and output sizes.

Shapes are channels first, as in torch: (d, m, l).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .conv import Geometry, output_size

# The lecture's example for a convolution layer: a 32×32×3 image and one 5×5×3 filter (75 weights and
# a bias), no padding: a 28×28×1 activation map.
LECTURE_INPUT = (3, 32, 32)
LECTURE_KERNEL = 5
LECTURE_FILTERS = 1


@dataclass(frozen=True)
class Connection:
    """One connection of an output unit: the input number (channel, row, column of the padded input)
    and the weight it is multiplied with, named by its place in the filter (channel, row, column)."""

    channel: int
    row: int
    col: int
    weight: tuple[int, int, int]


def conv_connections(in_shape: tuple[int, int, int], kernel: int, padding: int = 0, stride: int = 1,
                     dilation: int = 1, row: int = 0, col: int = 0) -> list[Connection]:
    """The connections of output unit (row, col) of a convolution: k·k·d of them, the same weights for
    every unit (parameter sharing); rows and columns in the padded input."""
    d = in_shape[0]
    rows, cols = Geometry.make(kernel, padding, stride, dilation).window(row, col)
    return [Connection(c, r, q, (c, i, j)) for c in range(d) for i, r in enumerate(rows) for j, q in enumerate(cols)]


def dense_connections(in_shape: tuple[int, int, int], unit: int) -> list[Connection]:
    """The connections of output unit `unit` of a fully connected layer on the flattened input: every input
    number, each with a weight of its own (row `unit` of W)."""
    d, m, l = in_shape
    return [Connection(c, r, q, (unit, c * m * l + r * l + q, 0)) for c in range(d) for r in range(m) for q in range(l)]


@dataclass(frozen=True)
class LayerComparison:
    """A convolution layer and a fully connected layer with the same input and output sizes."""

    in_shape: tuple[int, int, int]  # (d, m, l)
    kernel: int
    filters: int  # d′
    out_shape: tuple[int, int, int]  # (d′, m′, l′)

    @classmethod
    def make(cls, in_shape, kernel: int, filters: int, padding: int = 0, stride: int = 1,
             dilation: int = 1) -> LayerComparison:
        d, m, l = (int(n) for n in in_shape)
        out = (filters, output_size(m, kernel, padding, stride, dilation), output_size(l, kernel, padding, stride,
                                                                                         dilation))
        return cls((d, m, l), kernel, filters, out)

    @property
    def inputs(self) -> int:
        return math.prod(self.in_shape)

    @property
    def outputs(self) -> int:
        return math.prod(self.out_shape)

    @property
    def dense_params(self) -> int:
        """(m·l·d)·(m′·l′·d′) weights and m′·l′·d′ biases: every output joined to every input."""
        return self.inputs * self.outputs + self.outputs

    @property
    def conv_params(self) -> int:
        """d′·(k·k·d + 1): the lecture's count; shared by every position."""
        return self.filters * (self.kernel * self.kernel * self.in_shape[0] + 1)

    @property
    def connections_per_unit(self) -> tuple[int, int]:
        """(fully connected, convolution): how many inputs one output unit is joined to."""
        return self.inputs, self.kernel * self.kernel * self.in_shape[0]

    def formulas(self) -> list[tuple[str, str, int]]:
        d, m, l = self.in_shape
        dd, mm, ll = self.out_shape
        k = self.kernel
        return [
            ("Fully connected", f"(m·l·d)·(m′·l′·d′) + m′·l′·d′ = ({m}·{l}·{d})·({mm}·{ll}·{dd}) + {mm}·{ll}·{dd}",
             self.dense_params),
            ("Convolution", f"d′·(k·k·d + 1) = {dd}·({k}·{k}·{d} + 1)", self.conv_params),
        ]

    @property
    def ratio(self) -> float:
        return self.dense_params / self.conv_params


# ---------------------------------------------------------------- the graph, drawn

# One colour per weight of a 1-D filter (up to 7 taps): the same colour is the same weight.
WEIGHT_COLOURS = ["#1f6feb", "#d97706", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#4b5563"]
NODE = {"size": 18, "line": {"width": 1.5, "color": "#111827"}}


def graph_figure(n_inputs: int, kernel: int, unit: int, padding: int = 0, height_px: int = 330) -> dict:
    """The lecture's graph representation for one row of an image, as a plain plotly dict: inputs
    x1…xn below, output units above; left a fully connected layer, right a convolution with a
    1-D filter of `kernel` taps (zero padding `padding`, stride 1). The connections of output unit
    `unit` (0-based) are drawn bold; in the convolution each weight has its colour, and every unit
    uses the same colours: parameter sharing."""
    n_out = output_size(n_inputs, kernel, padding)
    if n_out < 1:
        raise ValueError(f"A {kernel}-tap filter does not fit {n_inputs} inputs with padding {padding}.")
    unit = max(0, min(unit, n_out - 1))
    spread = max(n_inputs + 2 * padding, n_out)

    def xs(count: int, offset: float = 0.0) -> list[float]:
        return [offset + (spread - count) / 2 + i for i in range(count)]

    panels = {"fc": 0.0, "conv": spread + 2.5}
    data, annotations = [], []
    for name, left in panels.items():
        in_x = xs(n_inputs + (2 * padding if name == "conv" else 0), left)
        out_x = xs(n_out, left)
        for o in range(n_out):
            taps = range(len(in_x)) if name == "fc" else range(o, o + kernel)
            for j, i in enumerate(taps):
                bold = o == unit
                colour = ("#111827" if bold else "#cbd5e1") if name == "fc" else WEIGHT_COLOURS[j % 7]
                data.append({"type": "scatter", "mode": "lines", "x": [in_x[i], out_x[o]], "y": [0, 1],
                             "line": {"color": colour, "width": 3.5 if bold else 1.2},
                             "opacity": 1 if bold or name == "conv" else 0.7, "hoverinfo": "skip",
                             "showlegend": False})
        labels_in = ([f"x{i + 1}" for i in range(n_inputs)] if name == "fc" else
                     ["0"] * padding + [f"x{i + 1}" for i in range(n_inputs)] + ["0"] * padding)
        data.append({"type": "scatter", "mode": "markers+text", "x": in_x, "y": [0] * len(in_x),
                     "text": labels_in, "textposition": "bottom center", "hoverinfo": "skip", "showlegend": False,
                     "marker": {**NODE, "color": ["#e5e7eb" if t == "0" else "#ffffff" for t in labels_in]}})
        data.append({"type": "scatter", "mode": "markers+text", "x": out_x, "y": [1] * n_out,
                     "text": [f"h{o + 1}" for o in range(n_out)], "textposition": "top center", "hoverinfo": "skip",
                     "showlegend": False,
                     "marker": {**NODE, "color": ["#f59e0b" if o == unit else "#ffffff" for o in range(n_out)]}})
        weights = n_inputs * n_out + n_out if name == "fc" else kernel + 1
        title = (f"Fully connected: every hᵢ joined to every xⱼ, {weights} parameters" if name == "fc" else
                 f"Convolution: each hᵢ joined to {kernel} inputs, the same {kernel} weights: {weights} parameters")
        annotations.append({"text": f"<b>{title}</b>", "x": left + spread / 2 - 0.5, "y": 1.42, "xref": "x",
                            "yref": "y", "showarrow": False, "font": {"size": 14, "color": "#111827"}})
    layout = {"height": height_px, "margin": {"l": 10, "r": 10, "t": 10, "b": 10}, "annotations": annotations,
              "xaxis": {"visible": False, "range": [-1, panels["conv"] + spread]},
              "yaxis": {"visible": False, "range": [-0.45, 1.55]},
              "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)"}
    return {"data": data, "layout": layout}
