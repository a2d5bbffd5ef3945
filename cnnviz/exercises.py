"""'Your turn': questions on every lesson, generated from a seed.

Each kind of question is one row of GENERATORS: the lesson page it belongs to, its title, and
`make(seed) -> Question`. The same kind and seed give the same question, so a link
(`?q=conv-size.17`) reproduces it, and there are as many questions as seeds. The numbers come from
the engine's own functions (cnnviz.conv, cnnviz.pooling, cnnviz.network, cnnviz.summary,
cnnviz.classify's softmax); tests/test_exercises.py holds every generator to torch on hundreds of
seeds. Sizes stay small enough for a hall to answer by hand.

What a student types is read in one place (`parse_number`, `parse_shape`, `parse_cells`,
`parse_choice`): "1,792", "−3", "3/4", "0,75", "74.3%", "4x4x16", "4 × 4 × 16", "(4, 4, 16)",
"row 5, column 5", "(1, 4), (4, 1)", "Cat". Text that cannot be read is explained (Feedback with
understood=False), never marked wrong.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import torch
import torch.nn.functional as F

from . import notation
from .classify import softmax_breakdown
from .conv import ConvCounts, Padding, output_size, output_size_formula
from .figures import grid_spec, grids_side_by_side
from .network import LayerSpec, analyse, format_stack, unit_receptive_field
from .notation import count, grid, kernel, number, percent, term
from .pooling import HeadCounts, Pooling, coverage, pool_output_size, pool_output_size_formula

MAX_SEED = 999_999
RELATIVE_TOLERANCE = 1e-3  # a typed decimal this close to the answer (relative) is right, whatever its digits


class AnswerError(ValueError):
    """Typed text that cannot be read as the kind of answer asked for; the message says what is expected."""


@dataclass(frozen=True)
class Feedback:
    right: bool
    message: str  # what was understood, and whether it is right (never the answer itself)
    understood: bool = True  # False: the text could not be read; it is neither right nor wrong


# --------------------------------------------------------------------------- reading what was typed

_MINUS_SIGNS = str.maketrans({"−": "-", "–": "-", "—": "-", "‐": "-", "‒": "-", "\u00a0": " ", "\u202f": " ",
                              "\u2009": " "})
_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(,\d{3})+(\.\d+)?")
_DECIMAL_COMMA = re.compile(r"[-+]?\d*,\d+")
_FRACTION = re.compile(r"([-+]?\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)")
NUMBER_FORMS = "a number, like 12, −0.75, 3/4 or 1,792"


def _plain(text: str) -> str:
    return str(text).translate(_MINUS_SIGNS).strip()


def parse_number(text: str) -> tuple[float, bool]:
    """(value, typed as a percentage) of a typed number: '1,792', '1 792', '−3', '0.75', '0,75',
    '3/4', '74.3%', '1e-3'. Commas in groups of three are thousands (as the app writes them);
    another single comma is a decimal comma."""
    raw = _plain(text)
    is_percent = raw.endswith("%")
    body = re.sub(r"\s+", "", raw.removesuffix("%"))
    if not body:
        raise AnswerError(f"Type {NUMBER_FORMS}.")
    if _THOUSANDS.fullmatch(body):
        body = body.replace(",", "")
    elif _DECIMAL_COMMA.fullmatch(body):
        body = body.replace(",", ".")
    fraction = _FRACTION.fullmatch(body)
    if fraction and float(fraction.group(2)) == 0:
        raise AnswerError("A fraction cannot divide by 0.")
    try:
        if fraction:
            value = float(fraction.group(1)) / float(fraction.group(2))
        else:
            value = float(body)
    except ValueError:
        raise AnswerError(f"“{str(text).strip()[:40]}” is not a number. Type {NUMBER_FORMS}.") from None
    if not math.isfinite(value):
        raise AnswerError(f"Type {NUMBER_FORMS}.")
    return (value / 100 if is_percent else value), is_percent


SHAPE_FORMS = "height×width×channels, like 4×4×16 (x, × or * between the numbers)"


def parse_shape(text: str) -> tuple[int, ...]:
    """The numbers of a typed shape in the order typed: '4x4x16', '4 × 4 × 16', '4*4*16', '(4, 4, 16)'."""
    body = _plain(text).strip("()[] ")
    parts = [part.strip() for part in re.split(r"\s*[x×X*,]\s*|\s+", body) if part.strip()]
    if len(parts) < 2 or not all(re.fullmatch(r"\d+", part) for part in parts):
        raise AnswerError(f"Type a shape as {SHAPE_FORMS}.")
    return tuple(int(part) for part in parts)


_NONE_WORDS = {"none", "no cells", "no cell", "nothing", "no", "0", "-", "∅", "{}", "empty"}
_CELL = re.compile(r"\(\s*(\d+)\s*[,;]\s*(\d+)\s*\)|\brows?\s*(\d+)\s+(?:cols?|columns?)\s*(\d+)\b|\br(\d+)\s*c(\d+)\b")
_LINES = re.compile(r"\b(rows?|cols?|columns?)\s*((?:\d+\s*(?:,|;|and|&|\+|\s)\s*)*\d+)")
_COUNT_NOTE = re.compile(r"\(\s*\d+\s*cells?\s*\)")  # describe_cells' own "(13 cells)"
_FILLER = re.compile(r"\b(and|all|of|the|cells?|in|whole|entire|plus|also)\b|[,;&+.\s]")
CELL_FORMS = ("rows and columns (“row 5, column 5”), cells (“(1, 4), (4, 1)” or “row 1 col 4”), "
              "or “none”")


def parse_cells(text: str, rows: int, cols: int) -> frozenset[tuple[int, int]]:
    """Cells (row, column), counted from 1, of a rows×cols grid: '(1, 4), (4, 1)', 'row 1 col 4', 'r1c4';
    whole rows and columns: 'row 5', 'rows 6 and 7', 'column 5'; 'none' for no cell."""
    body = _COUNT_NOTE.sub(" ", _plain(text).lower()).strip()
    if body in _NONE_WORDS:
        return frozenset()
    cells: set[tuple[int, int]] = set()
    for match in _CELL.finditer(body):
        numbers = [int(g) for g in match.groups() if g is not None]
        cells.add((numbers[0], numbers[1]))
    rest = _CELL.sub(" ", body)
    for match in _LINES.finditer(rest):
        numbers = [int(n) for n in re.findall(r"\d+", match.group(2))]
        if match.group(1).startswith("row"):
            cells.update((r, c) for r in numbers for c in range(1, cols + 1))
        else:
            cells.update((r, c) for c in numbers for r in range(1, rows + 1))
    rest = _LINES.sub(" ", rest)
    if _FILLER.sub("", rest) or not cells:
        raise AnswerError(f"Name the cells as {CELL_FORMS}.")
    outside = sorted((r, c) for r, c in cells if not (1 <= r <= rows and 1 <= c <= cols))
    if outside:
        r, c = outside[0]
        raise AnswerError(f"There is no cell ({r}, {c}): the input has rows 1–{rows} and columns 1–{cols}.")
    return frozenset(cells)


def parse_choice(text: str, options: Sequence[str]) -> str:
    """One of `options`, whatever the case and spacing; 'the cat' and 'class cat' are 'cat'."""
    typed = re.sub(r"\s+", " ", _plain(text).lower())
    typed = re.sub(r"^(the |class )+", "", typed).strip(" .!")
    for option in options:
        if typed == option.lower():
            return option
    raise AnswerError(f"Type one of: {', '.join(options)}.")


def describe_cells(cells: Iterable[tuple[int, int]], rows: int, cols: int) -> str:
    """'row 7 and column 7 (13 cells)', '(1, 4) and (4, 1)', 'none': whole rows and columns named as such."""
    cells = set(cells)
    if not cells:
        return "none"
    full_rows = [r for r in range(1, rows + 1) if all((r, c) in cells for c in range(1, cols + 1))]
    full_cols = [c for c in range(1, cols + 1) if all((r, c) in cells for r in range(1, rows + 1))]
    covered = {(r, c) for r in full_rows for c in range(1, cols + 1)} | {(r, c) for c in full_cols
                                                                          for r in range(1, rows + 1)}
    parts = []
    if full_rows:
        parts.append(f"row{'s' if len(full_rows) > 1 else ''} {', '.join(str(r) for r in full_rows)}")
    if full_cols:
        parts.append(f"column{'s' if len(full_cols) > 1 else ''} {', '.join(str(c) for c in full_cols)}")
    parts += [f"({r}, {c})" for r, c in sorted(cells - covered)]
    text = _and(parts)
    return f"{text} ({len(cells)} cell{'s' if len(cells) != 1 else ''})" if full_rows or full_cols else text


def _and(words: Sequence[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# --------------------------------------------------------------------------- answers


class Answer:
    """The right answer to a question, and how a typed response is judged against it."""

    text: str  # the answer as the app writes it

    def judge(self, response: str) -> Feedback:
        raise NotImplementedError

    def check(self, response: str) -> Feedback:
        if not str(response or "").strip():
            return Feedback(False, "Type an answer first.", understood=False)
        try:
            return self.judge(str(response))
        except AnswerError as error:
            return Feedback(False, str(error), understood=False)


def _verdict(right: bool, understood_as: str) -> Feedback:
    return Feedback(right, f"{'Right' if right else 'Not right'}: you answered {understood_as}.")


@dataclass(frozen=True)
class Whole(Answer):
    """A whole number, exactly. side: the side of a square, so '5×5' is read as 5."""

    value: int
    side: bool = False

    @property
    def text(self) -> str:
        return count(self.value) if self.value >= 0 else notation.number(self.value)

    def judge(self, response: str) -> Feedback:
        if self.side and re.search(r"\d\s*[x×X*]\s*\d", response):
            dims = parse_shape(response)
            if len(dims) != 2:
                raise AnswerError("Type the number of rows, like 5 (or 5×5).")
            if dims[0] != dims[1]:
                return Feedback(False, f"Not right: you answered {grid(*dims)}, but the output is square.")
            value = dims[0]
        else:
            value, _ = parse_number(response)
        shown = count(round(value)) if float(value).is_integer() and value >= 0 else notation.number(value)
        return _verdict(float(value) == self.value, shown)


@dataclass(frozen=True)
class Decimal(Answer):
    """A real number, right to `places` decimals (of the percentage, for a share): a typed value within
    half a unit of the last place, or within RELATIVE_TOLERANCE of it, is right. share: the answer is a
    fraction written as a percentage; '74.3%', '74.3' and '0.743' are all read as 0.743."""

    value: float
    places: int = 2
    share: bool = False

    @property
    def tolerance(self) -> float:
        unit = 0.5 * 10.0 ** -self.places
        return max(unit / 100 if self.share else unit, RELATIVE_TOLERANCE * abs(self.value))

    @property
    def text(self) -> str:
        # as the worked arithmetic writes it (3 decimals), even where fewer are enough
        return percent(self.value, max(1, self.places)) if self.share else notation.number(self.value, max(3, self.places))

    def judge(self, response: str) -> Feedback:
        value, typed_percent = parse_number(response)
        if self.share and not typed_percent and abs(value) > 1:
            value /= 100  # '74.3' for a share is a percentage
        shown = percent(value, max(1, self.places)) if self.share else notation.number(value, 4)
        return _verdict(abs(value - self.value) <= self.tolerance + 1e-12, shown)


@dataclass(frozen=True)
class Shape(Answer):
    """A tensor's shape, stored as torch has it ((d, m, l) or (m, l)), typed as the lecture writes it: m×l×d."""

    dims: tuple[int, ...]

    @property
    def lecture_order(self) -> tuple[int, ...]:
        return (self.dims[1], self.dims[2], self.dims[0]) if len(self.dims) == 3 else self.dims

    @property
    def text(self) -> str:
        return notation.shape(self.dims)

    def judge(self, response: str) -> Feedback:
        typed = parse_shape(response)
        shown = notation.TIMES.join(str(n) for n in typed)
        if len(typed) != len(self.dims):
            what = "height×width×channels" if len(self.dims) == 3 else "rows×columns"
            raise AnswerError(f"Type {len(self.dims)} numbers, {what}, like "
                              f"{'4×4×16' if len(self.dims) == 3 else '4×4'}.")
        if typed == self.lecture_order:
            return _verdict(True, shown)
        if len(typed) == 3 and typed == self.dims:
            return Feedback(False, f"Not right: {shown} is torch's order, channels first; the lecture writes "
                                   "height×width×channels.")
        return _verdict(False, shown)


@dataclass(frozen=True)
class Choice(Answer):
    """One of a few names (a class), in any case."""

    value: str
    options: tuple[str, ...]

    @property
    def text(self) -> str:
        return self.value

    def judge(self, response: str) -> Feedback:
        typed = parse_choice(response, self.options)
        return _verdict(typed == self.value, typed)


@dataclass(frozen=True)
class Cells(Answer):
    """A set of cells (row, column), counted from 1, of a rows×cols grid."""

    cells: frozenset[tuple[int, int]]
    rows: int
    cols: int

    @property
    def text(self) -> str:
        return describe_cells(self.cells, self.rows, self.cols)

    def judge(self, response: str) -> Feedback:
        typed = parse_cells(response, self.rows, self.cols)
        return _verdict(typed == self.cells, describe_cells(typed, self.rows, self.cols))


# --------------------------------------------------------------------------- questions


@dataclass(frozen=True)
class Question:
    kind: str
    seed: int
    prompt: str  # markdown
    answer: Answer
    hint: str  # markdown: how to get there, without the answer
    worked: tuple[tuple[str, str], ...]  # (label, expression): the arithmetic, as ui.show.arithmetic draws it
    figure: dict | None = None  # a plain plotly dict (cnnviz.figures), or None
    given: dict[str, Any] = field(default_factory=dict)  # the question's numbers, plain values (tests feed torch)

    @property
    def code(self) -> str:
        """'conv-size.17': what a link carries."""
        return f"{self.kind}.{self.seed}"

    @property
    def lesson(self) -> str:
        return GENERATORS[self.kind].lesson

    @property
    def title(self) -> str:
        return GENERATORS[self.kind].title

    def check(self, response: str) -> Feedback:
        return self.answer.check(response)


@dataclass(frozen=True)
class Generator:
    lesson: str  # the page file under pages/ whose "Your turn" asks it
    title: str
    make: Callable[[int], Question]


def _numbered(spec: dict) -> dict:
    """A grid_spec figure with its rows and columns numbered from 1 (left and top), for questions that
    name cells."""
    layout = spec["layout"]
    rows, cols = len(spec["data"][0]["z"]), len(spec["data"][0]["z"][0])
    tick = {"visible": True, "showgrid": False, "zeroline": False, "ticks": "", "tickfont": {"size": 13}}
    layout["xaxis"] = {**layout["xaxis"], **tick, "side": "top", "tickvals": list(range(cols)),
                       "ticktext": [str(c + 1) for c in range(cols)]}
    layout["yaxis"] = {**layout["yaxis"], **tick, "tickvals": list(range(rows)),
                       "ticktext": [str(r + 1) for r in range(rows)]}
    layout["margin"] = {**layout["margin"], "l": 26, "t": layout["margin"]["t"] + 20}
    layout["width"] += 20
    layout["height"] += 20
    if "title" in layout:
        layout["title"] = {**layout["title"], "y": 0.99, "yanchor": "top"}
    return spec


# ---- 1. Convolution


def conv_size(seed: int) -> Question:
    rng = random.Random(seed)
    while True:
        n, k = rng.randint(5, 32), rng.choice((1, 2, 3, 3, 3, 5, 5, 7))
        dilation = rng.choice((1, 1, 1, 2)) if k > 1 else 1
        stride, padding = rng.choice((1, 1, 2, 2, 3)), rng.randint(0, max(1, (dilation * (k - 1)) // 2 + 1))
        size = output_size(n, k, padding, stride, dilation)
        if size >= 1:
            break
    formula = output_size_formula(n, k, Padding(padding, padding, padding, padding), stride, dilation)
    return Question(
        "conv-size", seed,
        f"A convolution layer with a **{kernel(k)}** kernel, padding **p = {padding}**, stride **s = {stride}** "
        f"and dilation **r = {dilation}** slides over a **{grid(n, n)}** input. How many rows does its output "
        "have? (The output is square: as many columns as rows.)",
        Whole(size, side=True),
        "n′ = ⌊(n + 2p − r(k − 1) − 1) / s⌋ + 1: the padded input, minus the span of the (dilated) kernel, "
        "divided by the stride and rounded down, plus the first position.",
        (("Output size", formula),),
        given={"n": n, "k": k, "padding": padding, "stride": stride, "dilation": dilation})


def conv_params(seed: int) -> Question:
    rng = random.Random(seed)
    d, k = rng.choice((1, 3, 3, 8, 16, 32, 64)), rng.choice((1, 3, 3, 5, 7))
    filters, m = rng.choice((4, 8, 16, 32, 64, 128)), rng.choice((8, 16, 28, 32, 64, 224))
    counts = ConvCounts(k, d, filters, m, m)
    lines = counts.formulas()[:2]
    return Question(
        "conv-params", seed,
        f"A convolution layer with **{filters} filters** of size **{kernel(k)}** takes a "
        f"**{notation.shape((d, m, m))}** input (padding keeps the size). How many **parameters** (weights and "
        "biases) does it learn?",
        Whole(counts.params),
        "Each filter has k·k·d weights (one k×k slice per input channel) and one bias; the layer has d′ filters.",
        tuple((what, f"{formula} = {count(value)}") for what, formula, value in lines),
        given={"in_channels": d, "kernel": k, "filters": filters, "size": m})


def conv_macs(seed: int) -> Question:
    rng = random.Random(seed)
    m, d = rng.choice((4, 6, 8, 14, 16, 28, 32)), rng.choice((1, 3, 8, 16))
    filters, k, stride = rng.choice((2, 4, 8, 16, 32)), rng.choice((1, 3, 3, 5)), rng.choice((1, 1, 2))
    padding = (k - 1) // 2
    out = output_size(m, k, padding, stride)
    counts = ConvCounts(k, d, filters, out, out)
    what, formula, value = counts.formulas()[2]
    return Question(
        "conv-macs", seed,
        f"A convolution layer with **{filters} filters** of size **{kernel(k)}**, padding **{padding}** and stride "
        f"**{stride}** takes a **{notation.shape((d, m, m))}** input. How many **multiply-adds** does it do for one "
        "image? (Count the bias as one more multiply-add per output, as the lecture does.)",
        Whole(value),
        "First the output size m′ × l′; each of the m′·l′·d′ outputs costs k·k·d + 1 multiply-adds.",
        (("Output size", output_size_formula(m, k, Padding(padding, padding, padding, padding), stride, 1)),
         ("Output", notation.shape((filters, out, out))),
         (what, f"{formula} = {count(value)}")),
        given={"size": m, "in_channels": d, "filters": filters, "kernel": k, "padding": padding, "stride": stride})


# ---- 2. Pooling


KIND_WORDS = {"max": "Max pooling", "mean": "Mean pooling"}


def pool_value(seed: int) -> Question:
    rng = random.Random(seed)
    while True:
        h, w = rng.randint(4, 6), rng.randint(4, 6)
        k = rng.choice((2, 2, 3))
        stride = rng.choice((k, k, 1, 2))
        if pool_output_size(h, k, stride) >= 1 and pool_output_size(w, k, stride) >= 1:
            break
    kind = rng.choice(("max", "max", "mean"))
    x = torch.tensor([[rng.randint(-4, 9) for _ in range(w)] for _ in range(h)], dtype=torch.float64)
    layer = Pooling.make(x, kind, k, stride)
    _, out_h, out_w = layer.out_shape
    row, col = rng.randrange(out_h), rng.randrange(out_w)
    step = layer.step(row * out_w + col)
    answer = Whole(int(step.value)) if kind == "max" else Decimal(step.value, places=2)
    where = f"input rows {step.rows[0] + 1}–{step.rows[-1] + 1} and columns {step.cols[0] + 1}–{step.cols[-1] + 1}"
    return Question(
        "pool-value", seed,
        f"**{KIND_WORDS[kind]}** with a **{kernel(k)}** window and stride **{stride}** on the {grid(h, w)} input "
        f"below. What is the output in **row {row + 1}, column {col + 1}**?"
        + (" (Two decimals are enough.)" if kind == "mean" else ""),
        answer,
        f"Output row r starts at input row (r − 1)·s + 1 and takes k rows; the same for columns. "
        f"Then take the {'largest value' if kind == 'max' else 'mean of the values'} in that window.",
        (("Window", where), (KIND_WORDS[kind], step.explanation())),
        _numbered(grid_spec(x, f"Input {grid(h, w)}", cell_px=40)),
        given={"x": x.tolist(), "kind": kind, "kernel": k, "stride": stride, "row": row, "col": col})


def _window_starts(n: int, k: int, stride: int) -> list[int]:
    return list(range(0, pool_output_size(n, k, stride) * stride, stride))


def pool_unseen(seed: int) -> Question:
    rng = random.Random(seed)
    while True:
        h, w = rng.randint(4, 8), rng.randint(4, 8)
        k, stride = rng.choice((1, 2, 2, 3, 3)), rng.choice((2, 2, 3, 4))
        if min(pool_output_size(h, k, stride), pool_output_size(w, k, stride)) < 1:
            continue
        seen = coverage(h, w, k, stride)
        rows_missed = int((~seen.any(dim=1)).sum())
        cols_missed = int((~seen.any(dim=0)).sum())
        if rows_missed + cols_missed <= 4 and (rows_missed + cols_missed > 0 or rng.random() < 0.15):
            break
    unseen = frozenset((r + 1, c + 1) for r, c in (~seen).nonzero().tolist())
    answer = Cells(unseen, h, w)

    def starts(n: int) -> str:
        return ", ".join(str(s + 1) for s in _window_starts(n, k, stride))

    return Question(
        "pool-unseen", seed,
        f"**Max pooling** with a **{kernel(k)}** window and stride **{stride}** on a **{grid(h, w)}** input. "
        "Which input cells does **no window** ever see? Name whole rows and columns (“row 5, column 5”), "
        "single cells (“(1, 4), (4, 1)”), or type *none*.",
        answer,
        "Windows start at rows 1, 1 + s, 1 + 2s, … as long as a whole window still fits, and each covers k rows; "
        "the same for columns. A row or column that no window covers is never seen.",
        (("Windows start at rows", f"{starts(h)} (each {k} row{'s' if k > 1 else ''} tall: "
                                   f"{pool_output_size_formula(h, k, stride)} windows)"),
         ("Windows start at columns", f"{starts(w)} ({pool_output_size_formula(w, k, stride)} windows)"),
         ("No window sees", answer.text)),
        _numbered(grid_spec(torch.zeros(h, w), f"Input {grid(h, w)}", cell_px=34, show_values=False)),
        given={"height": h, "width": w, "kernel": k, "stride": stride})


def pool_head(seed: int) -> Question:
    rng = random.Random(seed)
    m, d = rng.choice((2, 3, 4, 5, 7)), rng.choice((16, 32, 64, 128, 256, 512))
    units, how = rng.choice((10, 64, 100, 128, 256, 1000, 4096)), rng.choice(("flatten", "gap"))
    counts = HeadCounts(m, m, d, units)
    value = counts.flatten_params if how == "flatten" else counts.gap_params
    words = "flattening" if how == "flatten" else "global average pooling"
    return Question(
        "pool-head", seed,
        f"The last pooling layer outputs **{notation.shape((d, m, m))}**. After **{words}**, a fully connected "
        f"layer of **{count(units)} units** follows. How many parameters does that layer have?",
        Whole(value),
        "A fully connected layer has (inputs)·n weights and n biases. Flattening hands it m·l·d inputs, "
        "global average pooling d.",
        # short labels: the page's own ("Flatten, then fully connected") squeeze the arithmetic on a phone
        tuple((label, f"{formula} = {count(v)}")
              for label, (_, formula, v) in zip(("After flattening", "After GAP"), counts.formulas())),
        given={"size": m, "channels": d, "units": units, "head": how})


# ---- 3. Stacking layers

STACK_INPUTS = ((1, 28, 28), (3, 32, 32), (3, 64, 64))


def _layer_words(spec: LayerSpec) -> str:
    if spec.kind == "conv":
        return (f"convolution {kernel(spec.kernel)}, {spec.out} filters, padding {spec.padding}, "
                f"stride {spec.stride}")
    return f"{'max' if spec.kind == 'maxpool' else 'mean'} pooling {kernel(spec.kernel)}, stride {spec.stride}"


def _random_stack(rng: random.Random, layers: int, in_shape: tuple[int, int, int],
                  max_field: int | None = None) -> list[LayerSpec]:
    """conv and pool layers that fit `in_shape` (and keep the receptive field readable)."""
    while True:
        specs = []
        for _ in range(layers):
            if specs and specs[-1].kind == "conv" and rng.random() < 0.4:
                specs.append(LayerSpec.pool(rng.choice((2, 2, 3)), 2))
            else:
                k = rng.choice((1, 3, 3, 5)) if max_field is None else rng.choice((3, 3, 5))
                padding = (k - 1) // 2 if rng.random() < 0.6 else 0
                specs.append(LayerSpec.conv(k, rng.choice((8, 16, 32, 64)), rng.choice((1, 1, 1, 2)), padding))
        try:
            infos = analyse(specs, in_shape)
        except ValueError:
            continue
        if max_field is None or infos[-1].rf_size <= max_field:
            return specs


def _stack_prompt(specs: Sequence[LayerSpec], in_shape: tuple[int, int, int]) -> str:
    lines = "\n".join(f"{i}. {_layer_words(spec)}" for i, spec in enumerate(specs, start=1))
    return f"A **{notation.shape(in_shape)}** input goes through\n\n{lines}\n\n"


def _size_line(info) -> tuple[str, str]:
    spec, (_, n, _) = info.spec, info.in_shape
    if spec.kind == "conv":
        p = spec.padding
        formula = output_size_formula(n, spec.kernel, Padding(p, p, p, p), spec.stride, 1)
    else:
        formula = pool_output_size_formula(n, spec.kernel, spec.stride)
    return f"{info.number}. {spec.token}", f"{formula} → {notation.shape(info.out_shape)}"


def stack_shape(seed: int) -> Question:
    rng = random.Random(seed)
    in_shape = rng.choice(STACK_INPUTS)
    specs = _random_stack(rng, rng.randint(2, 4), in_shape)
    infos = analyse(specs, in_shape)
    return Question(
        "stack-shape", seed,
        _stack_prompt(specs, in_shape) + "What is the shape of the last layer's output (height×width×channels)?",
        Shape(infos[-1].out_shape),
        "Follow the size layer by layer: a convolution gives ⌊(n + 2p − k) / s⌋ + 1 and as many channels as "
        "filters; pooling gives ⌊(n − k) / s⌋ + 1 and keeps the channels.",
        tuple(_size_line(info) for info in infos),
        given={"stack": format_stack(specs), "in_shape": list(in_shape)})


def stack_rf(seed: int) -> Question:
    rng = random.Random(seed)
    in_shape = rng.choice(STACK_INPUTS)
    specs = _random_stack(rng, rng.randint(2, 4), in_shape, max_field=40)
    infos = analyse(specs, in_shape)
    lines, size, jump = [], 1, 1
    for info in infos:
        k, s = info.spec.kernel, info.spec.stride
        lines.append((f"{info.number}. {info.spec.token}",
                      f"r = {size} + ({k} − 1)·{jump} = {info.rf_size}, j = {jump}·{s} = {info.rf_jump}"))
        size, jump = info.rf_size, info.rf_jump
    return Question(
        "stack-rf", seed,
        _stack_prompt(specs, in_shape) + "A unit of the last layer, away from the border, depends on an r×r patch "
        "of input pixels: its **receptive field**. How large is r?",
        Whole(infos[-1].rf_size, side=True),
        "Start with r = 1 and j = 1 (the distance, in input pixels, between neighbouring units). Each layer with a "
        "k×k window and stride s adds (k − 1)·j to r, then multiplies j by s.",
        tuple(lines),
        given={"stack": format_stack(specs), "in_shape": list(in_shape)})


# ---- 4. What models learn

CIFAR_CLASSES = ("airplane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def linear_scores(weights: torch.Tensor, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """The lecture's linear classifier: scores = W x + b, with W one (flattened) template per class."""
    return F.linear(x.reshape(-1).to(torch.float64), weights.reshape(len(weights), -1).to(torch.float64),
                    bias.to(torch.float64))


def learn_template(seed: int) -> Question:
    rng = random.Random(seed)
    classes = tuple(rng.sample(CIFAR_CLASSES, 3))
    while True:
        x = torch.tensor([[rng.randint(-1, 3) for _ in range(2)] for _ in range(2)], dtype=torch.float64)
        templates = torch.tensor([[[rng.randint(-2, 2) for _ in range(2)] for _ in range(2)] for _ in classes],
                                 dtype=torch.float64)
        bias = torch.tensor([rng.randint(-1, 1) for _ in classes], dtype=torch.float64)
        scores = linear_scores(templates, x, bias)
        if int((scores == scores.max()).sum()) == 1:
            break
    winner = classes[int(scores.argmax())]
    pixels = x.flatten().tolist()
    lines = tuple((name, " + ".join(f"{term(w)}·{term(v)}" for w, v in zip(t.flatten().tolist(), pixels))
                   + f" + {term(float(b))} = {number(float(s))}")
                  for name, t, b, s in zip(classes, templates, bias, scores))
    value_range = (-3.0, 3.0)
    columns = [[grid_spec(x, "Image x", value_range=value_range, cell_px=56)]] + [
        [grid_spec(t, f"{name}", value_range=value_range, cell_px=56)] for name, t in zip(classes, templates)]
    notes = [None] + [f"b = {number(float(b))}" for b in bias]
    return Question(
        "learn-template", seed,
        "A linear classifier scores the tiny 2×2 image x with one **template** per class: score = w·x + b, every "
        "pixel times the template's weight at the same place, summed, plus the class's bias. Which class wins "
        f"({', '.join(classes)})?",
        Choice(winner, classes),
        "Multiply each pixel of x by the template's number at the same place, add the four products and the bias. "
        "The highest score wins: the template that matches the image best.",
        lines,
        grids_side_by_side(columns, notes),
        given={"x": x.tolist(), "templates": templates.tolist(), "bias": bias.tolist(), "classes": list(classes)})


LEARN_INPUTS = ((1, 28, 28), (3, 32, 32), (3, 64, 64), (1, 32, 32))


def learn_params(seed: int) -> Question:
    rng = random.Random(seed)
    in_shape = rng.choice(LEARN_INPUTS)
    mlp = rng.random() < 0.4
    units = rng.choice((32, 64, 128, 256, 512)) if mlp else rng.choice((10, 10, 100, 1000))
    infos = analyse([LayerSpec("flatten"), LayerSpec.fc(units)], in_shape)
    inputs, params = infos[0].out_shape[0], infos[1].params
    d, m, l = in_shape
    what = (f"The first hidden layer of a multilayer perceptron, with **{units} units**, sees" if mlp else
            f"A linear classifier for **{units} classes** sees")
    return Question(
        "learn-params", seed,
        f"{what} **{notation.shape(in_shape)}** images, flattened into a vector. How many parameters (the "
        "entries of W and b) does it have?",
        Whole(params),
        "W has one row per output (class or unit) and one column per input number; b one entry per output.",
        (("Inputs", f"m·l·d = {m}·{l}·{d} = {count(inputs)}"),
         ("Parameters", f"n·(m·l·d) + n = {units}·{count(inputs)} + {units} = {count(params)}")),
        given={"in_shape": list(in_shape), "units": units})


# ---- 5. Training


def sgd_step(w: float, x: float, y: float, lr: float) -> tuple[float, float, float]:
    """One step of gradient descent for the prediction ŷ = w·x and the loss L = ½(ŷ − y)²:
    (ŷ, ∂L/∂w = (ŷ − y)·x, the new w = w − lr·∂L/∂w)."""
    prediction = w * x
    gradient = (prediction - y) * x
    return prediction, gradient, w - lr * gradient


def train_sgd(seed: int) -> Question:
    rng = random.Random(seed)
    w, x = rng.choice((-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)), float(rng.choice((-2, -1, 1, 2, 3)))
    y, lr = float(rng.randint(-3, 4)), rng.choice((0.1, 0.1, 0.05, 0.01, 0.2))
    prediction, gradient, new = sgd_step(w, x, y, lr)
    return Question(
        "train-sgd", seed,
        f"A one-weight model predicts ŷ = w·x, with **w = {number(w)}**. One training example has "
        f"**x = {number(x)}** and target **y = {number(y)}**; the loss is L = ½(ŷ − y)². What is w after one "
        f"step of gradient descent with learning rate **η = {number(lr)}**?",
        Decimal(new, places=3),
        "The gradient is ∂L/∂w = (ŷ − y)·x; the step goes against it: w − η·∂L/∂w.",
        (("Prediction", f"ŷ = w·x = {term(w)}·{term(x)} = {number(prediction)}"),
         ("Gradient", f"∂L/∂w = (ŷ − y)·x = ({number(prediction)} − {term(y)})·{term(x)} = {number(gradient)}"),
         ("Step", f"w − η·∂L/∂w = {number(w)} − {number(lr)}·{term(gradient)} = {number(new)}")),
        given={"w": w, "x": x, "y": y, "lr": lr})


FASHION_CLASSES = ("shirt", "trouser", "sneaker", "bag", "coat", "dress", "sandal", "boot")


def _exp_text(score: float) -> str:
    return f"e^{term(score)}"


def train_loss(seed: int) -> Question:
    rng = random.Random(seed)
    classes = tuple(rng.sample(FASHION_CLASSES, 3))
    scores = torch.tensor([rng.randint(-1, 4) for _ in classes], dtype=torch.float64)
    true = rng.randrange(len(classes))
    breakdown = softmax_breakdown(scores, list(classes), k=len(classes))
    p = float(breakdown.probabilities[breakdown.indices.index(true)])
    loss = -math.log(p)
    total = " + ".join(_exp_text(float(s)) for s in scores)
    return Question(
        "train-loss", seed,
        "A network gives the scores " + ", ".join(f"**{name} {number(float(s))}**" for name, s in zip(classes, scores))
        + f" for an image of a **{classes[true]}**. What is the cross-entropy loss, −ln p({classes[true]})? "
        "(Two decimals are enough.)",
        Decimal(loss, places=2),
        "The softmax turns scores into probabilities: p = e^z / Σ e^z. The loss is minus the natural logarithm of "
        "the true class's probability.",
        ((f"p({classes[true]})", f"{_exp_text(float(scores[true]))} / ({total}) = "
                                  f"{number(math.exp(float(scores[true])))} / {number(breakdown.total)} = {number(p, 4)}"),
         ("Loss", f"−ln {number(p, 4)} = {number(loss)}")),
        given={"scores": scores.tolist(), "target": true, "classes": list(classes)})


# ---- 6. VGG-16

VGG_MODELS = {"vgg16": "VGG-16", "vgg11": "VGG-11", "vgg13": "VGG-13", "vgg19": "VGG-19"}
VGG_SIZES = (224, 224, 224, 64, 96, 128, 160, 192, 256)


@lru_cache(maxsize=32)
def vgg_summary(model: str = "vgg16", size: int = 224):
    """cnnviz.summary's table of a VGG for a square input (built on the meta device; cached)."""
    from .summary import summarize  # torchvision is imported only when a VGG question is asked

    return summarize(model, size)


def vgg_shape(seed: int) -> Question:
    rng = random.Random(seed)
    size = rng.choice(VGG_SIZES)
    summary = vgg_summary("vgg16", size)
    rows = [r for r in summary.layers if r.kind in ("conv", "pool")]
    row = rng.choice(rows)
    lines = [("Input", notation.shape(summary.in_shape))]
    for r in rows:
        if r.kind == "pool" and r.index <= row.index:
            lines.append((r.label, f"2×2, stride 2 halves: {notation.shape(r.in_shape)} → {notation.shape(r.out_shape)}"))
    if row.kind == "conv":
        lines.append((row.label, f"3×3 with padding 1 keeps {grid(*row.in_shape[1:])}; {row.out_shape[0]} filters → "
                                 f"{notation.shape(row.out_shape)}"))
    return Question(
        "vgg-shape", seed,
        f"VGG-16 gets a **{notation.shape(summary.in_shape)}** image. What is the output shape of **{row.label}** "
        "(height×width×channels)?" + ("" if size == 224 else " (Not the usual 224×224: the layers are the same.)"),
        Shape(row.out_shape),
        "Every convolution is 3×3 with padding 1: it keeps height and width, and its filters give the channels "
        "(64, 128, 256, 512, 512 in blocks 1–5). Every pooling layer halves height and width.",
        tuple(lines),
        given={"size": size, "layer": row.name})


def vgg_params(seed: int) -> Question:
    rng = random.Random(seed)
    model = rng.choice(("vgg16", "vgg16", "vgg16", "vgg11", "vgg13", "vgg19"))
    summary = vgg_summary(model)
    row = rng.choice([r for r in summary.layers if r.kind in ("conv", "fc")])
    what, formula, value = row.formulas()[0]
    shapes = (f"{notation.shape(row.in_shape)} → {notation.shape(row.out_shape)}")
    return Question(
        "vgg-params", seed,
        f"How many **parameters** does **{row.label}** of {VGG_MODELS[model]} have? It maps {shapes}"
        + (" with 3×3 filters." if row.kind == "conv" else " (a fully connected layer)."),
        Whole(value),
        "A convolution: d′·(k·k·d + 1), one bias per filter. A fully connected layer: n′·(n + 1).",
        ((row.label, f"{formula} = {count(value)}"),),
        given={"model": model, "layer": row.name})


def _vgg_parts(summary) -> list[tuple[str, list]]:
    """Parts of a VGG whose share of the parameters a question can ask for (each at least 1%)."""
    convs = [r for r in summary.layers if r.kind == "conv"]
    fcs = [r for r in summary.layers if r.kind == "fc"]
    last_block = convs[-1].label.split("_")[0]
    parts = [(f"**{r.label}**", [r]) for r in fcs]
    parts += [("**all fully connected layers** together", fcs),
              (f"**all {len(convs)} convolution layers** together", convs),
              (f"**block {last_block[4:]}'s convolutions** ({last_block}_1 …)",
               [r for r in convs if r.label.startswith(last_block + "_")])]
    return [(name, rows) for name, rows in parts if sum(r.params for r in rows) >= 0.01 * summary.params]


def vgg_share(seed: int) -> Question:
    rng = random.Random(seed)
    model = rng.choice(("vgg16", "vgg16", "vgg16", "vgg11", "vgg13", "vgg19"))
    summary = vgg_summary(model)
    name, rows = rng.choice(_vgg_parts(summary))
    part = sum(r.params for r in rows)
    share = part / summary.params
    return Question(
        "vgg-share", seed,
        f"{VGG_MODELS[model]} has **{count(summary.params)}** parameters. What share of them do {name} hold? "
        "(In percent, to one decimal.)",
        Decimal(share, places=1, share=True),
        "Add up the part's parameters (d′·(k·k·d + 1) for a convolution, n′·(n + 1) for a fully connected layer) "
        "and divide by the total.",
        tuple((r.label, f"{r.formulas()[0][1]} = {count(r.params)}") for r in rows[:4])
        + ((("…", f"{len(rows) - 4} more"),) if len(rows) > 4 else ())
        + (("Share", f"{count(part)} / {count(summary.params)} = {percent(share)}"),),
        given={"model": model, "layers": [r.name for r in rows]})


# ---- 7. Softmax

SOFTMAX_CLASSES = ("cat", "dog", "fox", "wolf", "lynx", "tiger", "bear", "horse")


def _probability_lines(breakdown) -> tuple[tuple[str, str], ...]:
    """The sum of every e^z once, then each class's share of it."""
    total = " + ".join(number(float(e)) for e in breakdown.exps)
    return ((("Σ e^z", f"{total} = {number(breakdown.total)}"),)
            + tuple((f"p({name})", f"{_exp_text(float(z))} / Σ = {number(float(e))} / {number(breakdown.total)} = "
                                   f"{percent(float(p))}")
                    for name, z, e, p in zip(breakdown.names, breakdown.scores, breakdown.exps,
                                             breakdown.probabilities)))


def softmax_largest(seed: int) -> Question:
    rng = random.Random(seed)
    classes = tuple(rng.sample(SOFTMAX_CLASSES, rng.randint(3, 5)))
    while True:
        scores = torch.tensor([rng.randint(-30, 50) / 10 for _ in classes], dtype=torch.float64)
        if int((scores == scores.max()).sum()) == 1:
            break
    breakdown = softmax_breakdown(scores, list(classes), k=len(classes))
    return Question(
        "softmax-largest", seed,
        "A network's scores: " + ", ".join(f"**{name} {number(float(s))}**" for name, s in zip(classes, scores))
        + ". After the softmax, which class has the **largest probability**?",
        Choice(breakdown.names[0], classes),
        "The softmax divides every e^z by the same sum, and e^z grows with z.",
        _probability_lines(breakdown),
        given={"scores": scores.tolist(), "classes": list(classes)})


def softmax_prob(seed: int) -> Question:
    rng = random.Random(seed)
    classes = tuple(rng.sample(SOFTMAX_CLASSES, 3))
    scores = torch.tensor([rng.randint(-1, 4) for _ in classes], dtype=torch.float64)
    asked = rng.randrange(len(classes))
    breakdown = softmax_breakdown(scores, list(classes), k=len(classes))
    p = float(breakdown.probabilities[breakdown.indices.index(asked)])
    return Question(
        "softmax-prob", seed,
        "A network's scores: " + ", ".join(f"**{name} {number(float(s))}**" for name, s in zip(classes, scores))
        + f". What probability does the softmax give **{classes[asked]}**? (In percent, to the nearest percent.)",
        Decimal(p, places=0, share=True),
        "p = e^z / Σ e^z: exponentiate every score, divide the class's by the sum (e ≈ 2.718).",
        _probability_lines(breakdown),
        given={"scores": scores.tolist(), "classes": list(classes), "asked": asked})


# --------------------------------------------------------------------------- the table

GENERATORS: dict[str, Generator] = {
    "conv-size": Generator("1_Convolution.py", "Output size", conv_size),
    "conv-params": Generator("1_Convolution.py", "Parameters of a layer", conv_params),
    "conv-macs": Generator("1_Convolution.py", "Multiply-adds of a layer", conv_macs),
    "pool-value": Generator("2_Pooling.py", "A pooled value", pool_value),
    "pool-unseen": Generator("2_Pooling.py", "Cells no window sees", pool_unseen),
    "pool-head": Generator("2_Pooling.py", "Flatten or GAP: the next layer's parameters", pool_head),
    "stack-shape": Generator("3_Stacking_layers.py", "Output shape", stack_shape),
    "stack-rf": Generator("3_Stacking_layers.py", "Receptive field", stack_rf),
    "learn-template": Generator("4_What_models_learn.py", "Which template wins", learn_template),
    "learn-params": Generator("4_What_models_learn.py", "Parameters of W and b", learn_params),
    "train-sgd": Generator("5_Train_a_CNN.py", "One gradient step", train_sgd),
    "train-loss": Generator("5_Train_a_CNN.py", "Cross-entropy loss", train_loss),
    "vgg-shape": Generator("6_VGG16_explorer.py", "A layer's output shape", vgg_shape),
    "vgg-params": Generator("6_VGG16_explorer.py", "A layer's parameters", vgg_params),
    "vgg-share": Generator("6_VGG16_explorer.py", "Share of the parameters", vgg_share),
    "softmax-largest": Generator("7_Classify_an_image.py", "The largest probability", softmax_largest),
    "softmax-prob": Generator("7_Classify_an_image.py", "A probability from scores", softmax_prob),
}


def lesson_kinds(lesson: str) -> list[str]:
    """The kinds of question a lesson page asks, in table order."""
    return [kind for kind, generator in GENERATORS.items() if generator.lesson == lesson]


def make(kind: str, seed: int) -> Question:
    return GENERATORS[kind].make(seed)


def parse_code(text: str, lesson: str | None = None) -> tuple[str, int]:
    """'conv-size.17' -> ('conv-size', 17); ValueError saying what a link's value must be. With `lesson`,
    the kind must be one of that lesson's."""
    kinds = lesson_kinds(lesson) if lesson is not None else list(GENERATORS)
    kind, _, seed = str(text).strip().rpartition(".")
    if kind not in kinds or not re.fullmatch(r"\d{1,6}", seed):
        raise ValueError(f"it must be a question like {kinds[0]}.17: one of {', '.join(kinds)}, a dot and a "
                         f"whole number from 0 to {MAX_SEED}")
    return kind, int(seed)
