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

Every kind also carries, per step, the value that step computes (`answers`, exact, and
`answer_labels`, as the page writes it) and a `predict_hint`: in predict mode the browser hides the
value until the student has typed a guess, and compares the guess with that number only.

Besides "conv" and "pool", a generic kind, "grids", describes any stepped computation on grids
(`sgd_steps`, one step of gradient descent, is one):

- groups: columns of figures, left to right; a group has one or more sets (title, figures), and
  a group with several shows only the step's set (`sets[step]`), as the conv kind shows one filter;
- figures: {title, rows, cols, labels, colours, padding} drawn at once, or with `fills` true, empty
  until the step that computes a cell; figures are numbered in the order they appear (groups, sets,
  figures), and steps name them by that number;
- per step: `outline` [figure, window] pairs (a window: cells in `windows`), `compute` [figure, cell]
  pairs (the cells this step computes, ringed; the first is the one a guess is about), a caption, an
  intro (an index into `intros`) and arithmetic lines [label, term ids, tail], written as the terms
  joined with " + " followed by the tail.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from . import notation, pictures
from .conv import Convolution
from .pooling import Pooling
from .sgd import GradientStep

GRID_DIGITS = 2  # a cell's label: short enough to fit a cell (the arithmetic shows 3 decimals)
ANSWER_DECIMALS = 9  # a guess is compared with this: float noise (0.30000000000000004) gone, integers exact
MAX_TERMS = 36  # products written out in one line (a 6×6 output); a longer sum says how many it left out
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


def _answers(values: torch.Tensor) -> dict:
    """The value of each step, in step order: exact (for comparing a guess with) and as the page writes it."""
    flat = values.detach().to(torch.float64).reshape(-1).tolist()
    return {"answers": [round(v, ANSWER_DECIMALS) + 0.0 for v in flat],  # + 0.0: never −0.0
            "answer_labels": [notation.number(v) for v in flat]}


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
        **_answers(layer.output),
        "predict_hint": f"What does it come to? The filter's {k * k * d} weights times the input values under them "
                        "(amber), summed, plus the bias.",
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
        **_answers(layer.output),
        "predict_hint": ("What is the largest value in the amber window?" if layer.kind == "max" else
                         "What is the mean of the values in the amber window?"),
    }


# ---------------------------------------------------------------- the generic kind: one step of gradient descent


def _figure(title: str, values: torch.Tensor, palette: Palette, bound: float, *, padding: Sequence[int] = (),
            fills: bool = False) -> dict:
    """A figure of the "grids" kind: drawn at once, or (fills) cell by cell as steps compute them."""
    rows, cols = values.shape
    spec = {**_grid(title, values, palette, bound), "rows": rows, "cols": cols}
    if padding:
        spec["padding"] = list(padding)
    if fills:
        spec["fills"] = True
    return spec


class _Terms:
    """Each distinct term of the arithmetic once; lines name them by index (a term recurs in many steps)."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        if text not in self._index:
            self._index[text] = len(self.texts)
            self.texts.append(text)
        return self._index[text]


def _sum_line(label: str, ids: list[int], value: float) -> list:
    """[label, term ids, tail]: the terms joined with " + " then " = value"; past MAX_TERMS terms, the
    line says how many it left out (the value is still the whole sum's)."""
    left_out = len(ids) - MAX_TERMS
    tail = (f" + … ({left_out} more)" if left_out > 0 else "") + f" = {notation.number(value)}"
    return [label, ids[:MAX_TERMS], tail]


def _update_line(label: str, name: str, old: float, eta: str, gradient: float, new: float) -> list:
    """[label, no terms, "w − η·∂L/∂w = 1 − 0.01·(−5) = 1.05"]: a parameter's step."""
    text = f"{name} − η·∂L/∂{name} = {notation.number(old)} − {eta}·{notation.term(gradient)} = {notation.number(new)}"
    return [label, [], text]


def sgd_steps(step: GradientStep) -> dict:
    """One step of gradient descent as the generic "grids" kind, one parameter per step: each weight's
    gradient (the input cells it touched, outlined on its input channel, times the output's gradient,
    summed) and its update w − η·∂L/∂w, then the filter's bias (the output gradient's sum).

    Groups: the padded input channels; ∂L/∂y = y − T (one grid per output channel); the current
    filter's ∂L/∂w slices and ∂L/∂b, filling up; its updated slices and bias, filling up."""
    layer = step.layer
    weight, bias = layer.weight, layer.bias
    filters, d, k, _ = weight.shape
    _, out_rows, out_cols = layer.out_shape
    positions = out_rows * out_cols
    padded = layer.padded
    cols = padded.shape[2]
    geometry = layer.geometry
    palette = Palette()
    eta = notation.number(step.learning_rate, 6)
    p = geometry.padding
    padded_note = " (padded)" if any((p.top, p.bottom, p.left, p.right)) else ""
    input_bound, grad_bound = _bound(layer.x), _bound(step.output_grad)
    weight_grad_bound = _bound(step.weight_grad, step.bias_grad)
    weight_bound = _bound(weight, bias, step.new_weight, step.new_bias)

    def per_filter(title: str, weights: torch.Tensor, biases: torch.Tensor, bias_title: str, bound: float) -> list:
        return [{"title": f"{title} of filter {f + 1}" if filters > 1 else title,
                 "figures": [*(_figure(f"slice {c + 1}" if d > 1 else "", weights[f, c], palette, bound, fills=True)
                               for c in range(d)),
                             _figure(bias_title, biases[f].reshape(1, 1), palette, bound, fills=True)]}
                for f in range(filters)]

    groups = [
        {"sets": [{"title": "", "figures": [_figure(f"Input channel {c + 1}{padded_note}", padded[c], palette,
                                                    input_bound, padding=_padding_cells(layer)) for c in range(d)]}]},
        {"sets": [{"title": "∂L/∂y = y − T",
                   "figures": [_figure(f"output channel {f + 1}" if filters > 1 else "", step.output_grad[f], palette,
                                       grad_bound) for f in range(filters)]}]},
        {"sets": per_filter("∂L/∂w", step.weight_grad, step.bias_grad, "∂L/∂b", weight_grad_bound)},
        {"sets": per_filter(f"w − {eta}·∂L/∂w", step.new_weight, step.new_bias, f"b − {eta}·∂L/∂b", weight_bound)},
    ]
    # Figures by number, in the order the groups list them.
    output_grad_figure = d
    gradient_figure = d + filters  # filter f's slice c: + f·(d + 1) + c; its bias: + f·(d + 1) + d
    updated_figure = gradient_figure + filters * (d + 1)

    # The cells each weight (i, j) touched on its input channel, then every cell of an output gradient grid.
    windows = []
    for i in range(k):
        for j in range(k):
            touched_rows, touched_cols = step.touched(i, j)
            windows.append([r * cols + c for r in touched_rows for c in touched_cols])
    whole_output = len(windows)
    windows.append(list(range(positions)))

    apart = f", {geometry.stride} apart" if geometry.stride > 1 else ""
    intros = [(f"∂L/∂y times the input value this weight met (amber{apart}) at each of the {positions} output "
               "positions, summed: the input correlated with ∂L/∂y. Then w − η·∂L/∂w."),
              ("the bias was added to every value of its output channel, so ∂L/∂b is the sum of that channel's "
               "∂L/∂y. Then b − η·∂L/∂b.")]
    terms = _Terms()
    gradient_terms = [[terms(notation.term(v)) for v in step.output_grad[f].reshape(-1).tolist()]
                      for f in range(filters)]
    outline, compute, sets, captions, intro_of, lines = [], [], [], [], [], []
    for index in range(step.n_steps):
        f, c, i, j = step.parameter(index)
        filter_name = f", filter {f + 1}" if filters > 1 else ""
        sets.append(f)
        if c is None:  # the filter's bias
            outline.append([[output_grad_figure + f, whole_output]])
            compute.append([[gradient_figure + f * (d + 1) + d, 0], [updated_figure + f * (d + 1) + d, 0]])
            captions.append(f"∂L/∂b of filter {f + 1}" if filters > 1 else "∂L/∂b")
            intro_of.append(1)
            gradient, old, new = float(step.bias_grad[f]), float(bias[f]), float(step.new_bias[f])
            lines.append([_sum_line("∂L/∂b", gradient_terms[f], gradient),
                          _update_line("new bias", "b", old, eta, gradient, new)])
            continue
        outline.append([[c, i * k + j], [output_grad_figure + f, whole_output]])
        cell = i * k + j
        compute.append([[gradient_figure + f * (d + 1) + c, cell], [updated_figure + f * (d + 1) + c, cell]])
        slice_name = f", slice {c + 1}" if d > 1 else ""
        captions.append(f"∂L/∂w at row {i + 1}, column {j + 1}{slice_name}{filter_name}")
        intro_of.append(0)
        touched = step.touched_values(c, i, j).reshape(-1).tolist()
        products = [terms(f"{g}·{notation.term(v)}") for g, v in
                    zip((terms.texts[t] for t in gradient_terms[f]), touched)]
        gradient = float(step.weight_grad[f, c, i, j])
        old, new = float(weight[f, c, i, j]), float(step.new_weight[f, c, i, j])
        lines.append([_sum_line("∂L/∂w", products, gradient),
                      _update_line("new weight", "w", old, eta, gradient, new)])

    answers = torch.cat([torch.cat([step.weight_grad[f].reshape(-1), step.bias_grad[f].reshape(1)])
                         for f in range(filters)])
    return {
        "kind": "grids",
        "count": step.n_steps,
        "palette": palette.colours,
        "groups": groups,
        "windows": windows,
        "outline": outline,
        "compute": compute,
        "sets": sets,
        "captions": captions,
        "intros": intros,
        "intro_of": intro_of,
        "terms": terms.texts,
        "lines": lines,
        **_answers(answers),
    }
