"""Every step of a sliding-window lab, computed once, as plain JSON for the browser to step through.

The labs' stepper (ui.client_stepper) runs in the browser: it steps with no server round trip, so
everything it shows for every step is here, as strings and colours it only has to place:

- grids: each cell's label (notation.number) and colour (an index into `palette`, pairs of
  [background, text] on the one diverging scale of cnnviz.pictures: blue negative, white zero, red
  positive), which cells are padding;
- windows: the cells under each window position, in tap order (row by row, as F.unfold lists them);
- captions in two halves, "output channel 1" per output channel and "row 1, column 1" per window
  position (the browser writes them joined by ", ");
- per step the worked arithmetic. A convolution's product terms ("(−1)·2") are kept once each in
  `terms` and named by index, so a 16×16 input with four filters stays well under 200 KB (about
  110 KB); the browser joins a channel's terms with " + ", then " = " and the channel's sum.

Steps run as cnnviz.conv.step_position orders them: output channel by output channel, each row by
row. With P window positions, step s computes output channel s // P at position s % P (also its
cell in that channel's grid), and fills output cell s of the output channels read one after another
(`outputs` lists them in that order). Only plain int, float, str and lists: no numpy or torch
values (json.dumps would fail on them, and Streamlit would then send the data's repr instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import notation, pictures
from .conv import Convolution
from .pooling import Pooling

GRID_DIGITS = 2  # a cell's label: short enough to fit a cell (the arithmetic shows 3 decimals)
DARK_TEXT, LIGHT_TEXT = "#111827", "#ffffff"


class Palette:
    """Cell colours by index: each distinct [background, text] pair once."""

    def __init__(self) -> None:
        self.colours: list[list[str]] = []
        self._index: dict[tuple[int, int, int], int] = {}

    def indices(self, values: torch.Tensor, bound: float) -> list[int]:
        """Indices of `values` (any shape, read row by row) on the diverging scale ±bound."""
        rgb = pictures.colorize(values.detach().to(torch.float64).reshape(-1).numpy(), -bound, bound)
        return [self._add(tuple(int(v) for v in pixel)) for pixel in rgb]

    def _add(self, rgb: tuple[int, int, int]) -> int:
        if rgb not in self._index:
            red, green, blue = rgb
            # Relative luminance (sRGB weights): white numbers on the deep blues and reds.
            light = (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255 > 0.5
            self._index[rgb] = len(self.colours)
            self.colours.append([f"#{red:02x}{green:02x}{blue:02x}", DARK_TEXT if light else LIGHT_TEXT])
        return self._index[rgb]


def _labels(values: torch.Tensor) -> list[str]:
    return [notation.number(v, GRID_DIGITS) for v in values.reshape(-1).tolist()]


def _grid(title: str, values: torch.Tensor, palette: Palette, bound: float) -> dict:
    return {"title": title, "labels": _labels(values), "colours": palette.indices(values, bound)}


def _bound(*tensors: torch.Tensor) -> float:
    return pictures.symmetric_bound(torch.cat([t.reshape(-1) for t in tensors]).numpy())


def _windows(layer: Convolution | Pooling, width: int) -> list[list[int]]:
    """Each window position's cells (flat indices into a grid `width` wide), row-major positions."""
    _, out_rows, out_cols = layer.out_shape
    windows = []
    for row in range(out_rows):
        for col in range(out_cols):
            rows, cols = layer.geometry.window(row, col)
            windows.append([r * width + c for r in rows for c in cols])
    return windows


def _captions(out_shape: Sequence[int]) -> dict:
    """The two halves of each step's caption: 'output channel 1' per output channel and
    'row 1, column 1' per window position (the browser writes them joined by ', ')."""
    channels, rows, cols = out_shape
    return {"channel_captions": [f"output channel {c + 1}" for c in range(channels)],
            "position_captions": [f"row {r + 1}, column {c + 1}" for r in range(rows) for c in range(cols)]}


def _padding_cells(layer: Convolution) -> list[int]:
    p = layer.geometry.padding
    _, rows, cols = layer.padded.shape
    return [r * cols + c for r in range(rows) for c in range(cols)
            if r < p.top or r >= rows - p.bottom or c < p.left or c >= cols - p.right]


def conv_steps(layer: Convolution) -> dict:
    """Every step of a convolution: the padded input channels, each filter's slices and bias, the
    output channels, the windows, and per step the products of each channel (indices into `terms`),
    each channel's sum, and the total with the bias ("1 + 1 (bias) = 2").

    The products are those of cnnviz.conv.ConvStep.channel_arithmetic, term by term (tests hold
    every step to it and to F.conv2d)."""
    x, weight, bias = layer.x, layer.weight, layer.bias
    d, k = x.shape[0], layer.geometry.kernel
    filters, out_rows, out_cols = layer.out_shape
    padded = layer.padded
    _, rows, cols = padded.shape
    palette = Palette()
    p = layer.geometry.padding
    padded_note = " (padded)" if any((p.top, p.bottom, p.left, p.right)) else ""
    input_bound, weight_bound, output_bound = _bound(x), _bound(weight, bias), _bound(layer.output)

    # Each channel's window as (positions, k·k) rows and the filters as (d', d, k·k): the channel
    # sums of every step at once, (d', positions, d), and the output as the engine computes it.
    windows_values = layer.windows.reshape(-1, d, k * k)
    channel_sums = torch.einsum("pct,fct->fpc", windows_values, weight.reshape(filters, d, k * k))
    outputs = layer.output.reshape(filters, -1)

    input_terms = [[notation.term(v) for v in padded[c].reshape(-1).tolist()] for c in range(d)]
    weight_terms = [[[notation.term(v) for v in weight[f, c].reshape(-1).tolist()] for c in range(d)]
                    for f in range(filters)]
    windows = _windows(layer, cols)
    terms: list[str] = []
    term_index: dict[str, int] = {}

    def product(w: str, v: str) -> int:
        text = f"{w}·{v}"
        if text not in term_index:
            term_index[text] = len(terms)
            terms.append(text)
        return term_index[text]

    products, sums, totals = [], [], []
    for f in range(filters):
        bias_term = notation.term(float(bias[f]))
        for position, cells in enumerate(windows):
            products.append([[product(w, input_terms[c][cell]) for w, cell in zip(weight_terms[f][c], cells)]
                             for c in range(d)])
            step_sums = channel_sums[f, position].tolist()
            sums.append([notation.number(s) for s in step_sums])
            added = " + ".join(notation.term(s) for s in step_sums)
            totals.append(f"{added} + {bias_term} (bias) = {notation.number(outputs[f, position])}")

    return {
        "kind": "conv",
        "count": layer.n_steps,
        "palette": palette.colours,
        "inputs": {"rows": rows, "cols": cols, "padding": _padding_cells(layer),
                   "grids": [_grid(f"Input channel {c + 1}{padded_note}", padded[c], palette, input_bound)
                             for c in range(d)]},
        "filters": [{"title": f"Filter {f + 1}",
                     "slices": [_grid(f"slice {c + 1}" if d > 1 else "", weight[f, c], palette, weight_bound)
                                for c in range(d)],
                     "bias": {"label": notation.number(float(bias[f])),
                              "colour": palette.indices(bias[f], weight_bound)[0]}}
                    for f in range(filters)],
        "kernel": k,
        "outputs": {"rows": out_rows, "cols": out_cols,
                    "grids": [_grid(f"Output channel {f + 1}", layer.output[f], palette, output_bound)
                              for f in range(filters)]},
        "windows": windows,
        **_captions(layer.out_shape),
        "intro": f"the filter's {k}·{k}·{d} = {k * k * d} weights times the input values under them, "
                 "summed, plus the bias.",
        "line_labels": [f"channel {c + 1}" for c in range(d)] if d > 1 else ["products"],
        "terms": terms,
        "products": products,
        "sums": sums,
        "totals": totals,
    }


def pool_steps(layer: Pooling) -> dict:
    """Every step of a pooling layer: the input and output channels (one colour scale, the input's),
    the windows, and per step the crop it pools, the pooled value's explanation ("max(1, 2, 2, −1) = 2",
    or the mean's sum over the count) and, for max pooling, the winning cell and a sentence on it."""
    x = layer.x
    d, rows, cols = x.shape
    k, s = layer.geometry.kernel, layer.geometry.stride
    palette = Palette()
    bound = _bound(x)
    windows = _windows(layer, cols)
    crops, maths, winners, notes = [], [], [], []
    for index in range(layer.n_steps):
        step = layer.step(index)
        row_span = f"rows {step.rows[0] + 1}–{step.rows[-1] + 1}" if k > 1 else f"row {step.rows[0] + 1}"
        col_span = f"columns {step.cols[0] + 1}–{step.cols[-1] + 1}" if k > 1 else f"column {step.cols[0] + 1}"
        crop = f"the {notation.kernel(k)} crop of input channel {step.channel + 1}"
        crops.append(f"from {crop} ({row_span}, {col_span}):")
        maths.append(step.explanation())
        if layer.kind == "max":
            winner_row, winner_col = step.argmax
            winners.append(winner_row * cols + winner_col)
            notes.append(f"The winner is input row {winner_row + 1}, column {winner_col + 1} (ringed in black "
                         "inside the amber window). Mean pooling would use every value in the window.")
    _, out_rows, out_cols = layer.out_shape
    return {
        "kind": "pool",
        "count": layer.n_steps,
        "palette": palette.colours,
        "inputs": {"rows": rows, "cols": cols, "padding": [],
                   "grids": [_grid(f"Input channel {c + 1}", x[c], palette, bound) for c in range(d)]},
        "operation": f"{layer.kind} {notation.kernel(k)}, stride {s} →",
        "outputs": {"rows": out_rows, "cols": out_cols,
                    "grids": [_grid(f"Output channel {c + 1}", layer.output[c], palette, bound) for c in range(d)]},
        "windows": windows,
        **_captions(layer.out_shape),
        "line_label": layer.kind,
        "crops": crops,
        "maths": maths,
        "winners": winners,  # empty for mean pooling
        "notes": notes,
    }
