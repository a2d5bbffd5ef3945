"""Explaining a prediction: the real network unit by unit, and which part of the image made it decide.

- `network_overview(classifier, x)`: the forward pass as the lecture draws it, one column per layer
  (the input, every convolution, activation, pooling, the flattened vector, the scores, the softmax),
  each with its output and its shape. Recorded with forward hooks on the leaf modules in the order
  they run, so it works for nn.Sequential stacks and for torchvision's ResNets and MobileNets alike.
- `unit_at(overview, column, ...)` and behind it `conv_unit`, `pool_unit`, `linear_unit`: one unit's
  computation on the real numbers, in the convolution lesson's notation (cnnviz.conv.ConvStep:
  products, channel sums, bias), followed through the batch norm and activation after it; its
  receptive field in input pixels. Tests hold every value to the activation torch recorded.
- `grad_cam(classifier, x, class_index)`: α_k = mean over space of ∂score/∂A_k on the last
  convolution, map = ReLU(Σ_k α_k A_k), upsampled to the image.
- `occlusion_map(classifier, x, class_index, patch, stride, fill)`: a grey patch slid over the image,
  the class's probability on every patched image (one batch).

Each result carries the sentence that tells how to read it, computed from its values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import notation
from .classify import Classifier, ClassifyError, _first_line, _lock_for
from .conv import ConvStep

MAPS_SHOWN = 8  # maps drawn per column: all of a small layer, else the strongest
SUMS_LISTED = 16  # channel sums written out in a unit's total; beyond, "… (n more)"
PRODUCT_CHANNELS = 2  # channels whose products are written out term by term
TERMS_LISTED = 6  # products of a long dot product written out
# The mean pixel of each data set a cnnviz checkpoint can be trained on: the occlusion patch's grey.
DATASET_MEANS = {"fashion-mnist": (0.2860,), "mnist": (0.1307,), "cifar10": (0.4914, 0.4822, 0.4465)}


class ExplainError(ClassifyError):
    """A unit or class that does not exist, or a layer this module cannot take apart; said in words."""


# --------------------------------------------------------------------------- recording the forward pass

ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Tanh, nn.Sigmoid, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU,
               nn.LeakyReLU)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PASS_THROUGH = (nn.Dropout, nn.Dropout2d, nn.Identity)  # nothing happens at evaluation: no column


def kind_of(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, POOLS):
        return "pool"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, ACTIVATIONS):
        return "activation"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batchnorm"
    if isinstance(module, nn.Flatten):
        return "flatten"
    if isinstance(module, PASS_THROUGH):
        return "identity"
    return "other"


@dataclass
class Record:
    """One call of a leaf module: what it got and what it gave, without the batch axis."""

    name: str  # module name in the model, "features.0"; "" for a column the engine adds
    label: str  # readable
    kind: str  # conv, pool, linear, activation, batchnorm, flatten, identity, other, input, softmax
    module: nn.Module | None
    input: torch.Tensor | None
    output: torch.Tensor
    source: int  # the record whose output is this one's input (-1: the image)
    exact_source: bool  # False: the input was made in between (a residual sum, a product): source is a guess


def _record(classifier: Classifier, x: torch.Tensor) -> list[Record]:
    """Run the model once with hooks on every leaf module; each call becomes a Record in the order they run.

    An input that is the very tensor an earlier call returned (and still holds its values: an in-place
    ReLU changes them) refers to that record's copy instead of being copied again."""
    model = classifier.model
    batch = x.unsqueeze(0).float()
    records: list[Record] = []
    made: dict[int, tuple[int, torch.Tensor]] = {id(batch): (-1, batch)}  # id -> (record, the tensor itself)
    pending: dict[int, list] = {}  # id(module) -> inputs of its calls under way
    image = batch[0].clone()

    def source_of(t: torch.Tensor) -> tuple[int, torch.Tensor, bool]:
        entry = made.get(id(t))
        if entry is not None and entry[1] is t:
            copy = image if entry[0] == -1 else records[entry[0]].output
            if copy.shape == t.shape[1:] and torch.equal(copy, t[0]):
                return entry[0], copy, True
        return len(records) - 1, t[0].detach().clone(), False

    def before(module, args):
        t = args[0] if args and isinstance(args[0], torch.Tensor) else None
        pending.setdefault(id(module), []).append(None if t is None or t.shape[0] != 1 else source_of(t))

    def after(name: str):
        def hook(module, args, out):
            got = pending[id(module)].pop()
            if not isinstance(out, torch.Tensor) or out.shape[0] != 1 or got is None:
                return
            source, inp, exact = got
            records.append(Record(name, classifier.label(name), kind_of(module), module, inp,
                                  out[0].detach().clone(), source, exact))
            made[id(out)] = (len(records) - 1, out)
        return hook

    handles = []
    with _lock_for(model):  # hooks belong to the model, which sessions share: one run at a time
        try:
            for name, module in model.named_modules():
                if next(module.children(), None) is None:
                    handles.append(module.register_forward_pre_hook(before))
                    handles.append(module.register_forward_hook(after(name)))
            with torch.inference_mode():
                model(batch)
        except RuntimeError as error:
            raise ExplainError(f"The model could not process a {notation.shape(x.shape)} input: "
                               f"{_first_line(error)}") from None
        finally:
            for handle in handles:
                handle.remove()
    return records


# --------------------------------------------------------------------------- the overview


@dataclass
class Column:
    """One column of the overview: a layer's output for this image."""

    number: int  # 0 for the input, then 1, 2, ... in the order the layers run
    title: str  # "conv 3×3, 16 filters"
    label: str  # the layer's readable name ("Layer 1: conv 3×3, 16 filters", "features.0")
    kind: str  # input, conv, activation, pool, batchnorm, flatten, linear, scores, softmax, other
    output: torch.Tensor  # (C, H, W) maps or (N,) a vector
    record: int | None  # index into the overview's records (None: the input, an added flatten, the softmax)
    shown: list[int] = field(default_factory=list)  # maps drawn, strongest first when there are many
    clickable: bool = False  # a unit of it has arithmetic to show (unit_at)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.output.shape)

    @property
    def shape_text(self) -> str:
        return notation.shape(self.shape)

    @property
    def is_maps(self) -> bool:
        return self.output.ndim == 3 and self.output.shape[1] * self.output.shape[2] > 1


@dataclass
class Overview:
    classes: list[str]
    image: torch.Tensor  # the network's input (C, H, W)
    records: list[Record]
    columns: list[Column]
    logits: torch.Tensor
    probabilities: torch.Tensor

    def column(self, number: int) -> Column:
        if not 0 <= number < len(self.columns):
            raise ExplainError(f"There is no layer {number}: this network has layers 0 (the input) to "
                               f"{len(self.columns) - 1}.")
        return self.columns[number]

    @property
    def scores_column(self) -> int:
        return next(c.number for c in self.columns if c.kind == "scores")


def strength(maps: torch.Tensor) -> torch.Tensor:
    """(C,): each map's mean positive part, what a ReLU lets through (as cnnviz.classify.LayerActivation)."""
    return maps.clamp(min=0).mean(dim=(1, 2))


def strongest_maps(maps: torch.Tensor, n: int = MAPS_SHOWN) -> list[int]:
    """All channels in order when there are at most n, else the n strongest, strongest first."""
    channels = maps.shape[0]
    if channels <= n:
        return list(range(channels))
    return torch.topk(strength(maps), n).indices.tolist()


def _title(record: Record) -> str:
    m = record.module
    if isinstance(m, nn.Conv2d):
        k = "×".join(str(v) for v in m.kernel_size)
        extra = "".join([f", stride {m.stride[0]}" if m.stride[0] > 1 else "",
                         ", depthwise" if m.groups == m.in_channels and m.groups > 1 else
                         (f", {m.groups} groups" if m.groups > 1 else "")])
        return f"conv {k}, {m.out_channels} filters{extra}"
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
        s = m.stride if isinstance(m.stride, int) else m.stride[0]
        word = "maxpool" if isinstance(m, nn.MaxPool2d) else "meanpool"
        return f"{word} {notation.kernel(k)}" + (f", stride {s}" if s != k else "")
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        out = record.output.shape[1:]
        word = "average" if isinstance(m, nn.AdaptiveAvgPool2d) else "max"
        return "global average pooling" if tuple(out) == (1, 1) and word == "average" else \
            f"adaptive {word} pooling to {notation.grid(*out)}"
    if isinstance(m, nn.Linear):
        return f"fc, {m.out_features} units"
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "batch norm"
    if isinstance(m, nn.Flatten):
        return "flatten"
    return type(m).__name__ if m is not None else record.kind


def network_overview(classifier: Classifier, x: torch.Tensor) -> Overview:
    """Every layer's output for one prepared image (C, H, W), one column each, in the order they run.

    Layers that do nothing at evaluation (dropout, identity) get no column. A vector made by
    torch.flatten inside a model's forward (VGG, ResNet) gets a "flatten" column of its own, as the
    lecture draws it. The last layer's output is the scores; a softmax column follows."""
    if x.ndim != 3:
        raise ExplainError(f"Expected one image (channels, height, width), not a tensor of shape {tuple(x.shape)}.")
    records = _record(classifier, x)
    if not records:
        raise ExplainError("The model has no layers to show.")
    logits = records[-1].output.flatten().float()
    if logits.numel() != len(classifier.classes):
        raise ExplainError(f"The model gave {logits.numel()} scores but has {len(classifier.classes)} class names.")
    columns = [Column(0, "input", "the image as the network gets it", "input", x.detach().float().clone(), None)]

    def add(title: str, label: str, kind: str, output: torch.Tensor, record: int | None) -> None:
        column = Column(len(columns), title, label, kind, output, record)
        column.clickable = record is not None and _computing_record(records, record) is not None
        if column.is_maps:
            column.shown = strongest_maps(output)
        columns.append(column)

    last = len(records) - 1
    for i, rec in enumerate(records):
        if rec.kind == "identity" and i != last:
            continue
        source_shape = records[rec.source].output.shape if rec.source >= 0 else x.shape
        if rec.input is not None and rec.input.ndim == 1 and len(source_shape) == 3 and rec.kind != "flatten":
            add("flatten", "torch.flatten in the model's forward", "flatten", rec.input, None)
        kind = "scores" if i == last else rec.kind
        add(_title(rec), rec.label, kind, rec.output, i)
    columns[-1].output = columns[-1].output.flatten()
    probabilities = torch.softmax(logits.double(), 0).float()
    add("softmax", "p = e^z / Σ e^z", "softmax", probabilities, None)
    return Overview(list(classifier.classes), x.detach().float().clone(), records, columns, logits, probabilities)


# --------------------------------------------------------------------------- receptive fields

Box = tuple[int, int, int, int]  # top, left, bottom, right: inclusive


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _conv_padding(m: nn.Conv2d) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zeros, as torch pads (padding='same': the extra one at the bottom/right)."""
    if isinstance(m.padding, str):
        if m.padding == "valid":
            return 0, 0, 0, 0
        (kh, kw), (dh, dw) = m.kernel_size, m.dilation
        th, tw = dh * (kh - 1), dw * (kw - 1)
        return th // 2, th - th // 2, tw // 2, tw - tw // 2
    ph, pw = m.padding
    return ph, ph, pw, pw


def _window_geometry(m: nn.Module, in_hw: tuple[int, int], out_hw: tuple[int, int]):
    """For a module that slides a window: per axis (kernel, stride, padding before, dilation); None otherwise."""
    if isinstance(m, nn.Conv2d):
        top, _, left, _ = _conv_padding(m)
        return ((m.kernel_size[0], m.stride[0], top, m.dilation[0]), (m.kernel_size[1], m.stride[1], left, m.dilation[1]))
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        k, s, p = _pair(m.kernel_size), _pair(m.stride if m.stride is not None else m.kernel_size), _pair(m.padding)
        d = _pair(getattr(m, "dilation", 1))
        return ((k[0], s[0], p[0], d[0]), (k[1], s[1], p[1], d[1]))
    return None


def _adaptive_span(i: int, n_in: int, n_out: int) -> tuple[int, int]:
    """torch's adaptive pooling window along one axis: [floor(i·n/o), ceil((i+1)·n/o))."""
    return (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)


def _box_through(rec: Record, box: Box) -> Box:
    """The part of a record's input that its output `box` depends on."""
    inp = rec.input
    if inp is None or inp.ndim != 3:
        return box
    _, h, w = inp.shape
    whole = (0, 0, h - 1, w - 1)
    out = rec.output
    if out.ndim != 3:
        return whole
    geometry = _window_geometry(rec.module, (h, w), tuple(out.shape[1:])) if rec.module is not None else None
    if geometry is not None:
        (kh, sh, ph, dh), (kw, sw, pw, dw) = geometry
        top, left, bottom, right = box
        return (max(0, top * sh - ph), max(0, left * sw - pw),
                min(h - 1, bottom * sh - ph + dh * (kh - 1)), min(w - 1, right * sw - pw + dw * (kw - 1)))
    if isinstance(rec.module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        oh, ow = out.shape[1:]
        top, left, bottom, right = box
        return (_adaptive_span(top, h, oh)[0], _adaptive_span(left, w, ow)[0],
                _adaptive_span(bottom, h, oh)[1] - 1, _adaptive_span(right, w, ow)[1] - 1)
    if tuple(out.shape[1:]) == (h, w):
        return box  # element-wise (activation, batch norm) or 1×1 in effect
    return whole


def receptive_field(overview: Overview, record: int, box: Box) -> Box:
    """The input pixels (top, left, bottom, right, inclusive) that `box` of a record's output depends on,
    followed back along the path the data took (the main branch where a residual sum joins two),
    clipped to every map: padding is never counted."""
    records = overview.records
    i = record
    while i >= 0:
        rec = records[i]
        if rec.output.ndim != 3 or (rec.input is not None and rec.input.ndim != 3):
            _, h, w = overview.image.shape
            return (0, 0, h - 1, w - 1)  # a vector mixes everything before it
        _, h, w = rec.output.shape  # a guessed source (a residual sum, a gate) may be smaller: clip to it
        top, left, bottom, right = box
        box = _box_through(rec, (min(top, h - 1), min(left, w - 1), min(bottom, h - 1), min(right, w - 1)))
        i = rec.source
    return box


# --------------------------------------------------------------------------- one unit


@dataclass
class Unit:
    """One unit's computation, ready to show: the arithmetic lines (label, expression), the values,
    the receptive field, and the pictures' numbers."""

    column: int
    kind: str  # conv, pool, linear
    title: str  # "Unit (channel 5, row 3, column 7) of layer 4: conv 3×3, 32 filters"
    lines: list[tuple[str, str]]
    value: float  # what the engine computed for the layer's own output (before what follows)
    torch_value: float  # what torch's forward pass gave for it
    final: float  # after the batch norm / activation that follow
    final_column: int  # the column whose output `final` is
    sentence: str
    receptive_field: Box | None = None  # in input pixels
    position: tuple[int, int, int] | None = None  # channel, row, col of the unit in its layer's output (0-based)
    index: int | None = None  # for a vector unit
    window: torch.Tensor | None = None  # (d, kh, kw) the input under the window, padding zeros included
    weights: torch.Tensor | None = None  # (d, kh, kw)
    channels: list[int] = field(default_factory=list)  # input channels the window covers
    window_box: Box | None = None  # in the layer's input map, unpadded coordinates (may run into padding)
    padding: torch.Tensor | None = None  # (kh, kw) bool: the window's taps that fall on padding zeros
    following: list[tuple[str, str]] = field(default_factory=list)
    contributions: list[tuple[str, float]] = field(default_factory=list)  # a dot product's largest products


def _unit_title(overview: Overview, column: int, where: str) -> str:
    col = overview.columns[column]
    return f"{where} of layer {column}: {col.title}"


def _check_position(column: Column, channel: int, row: int, col: int) -> None:
    c, h, w = column.shape
    if not 0 <= channel < c:
        raise ExplainError(f"Layer {column.number} ({column.title}) has {c} channels; there is no channel {channel + 1}.")
    if not (0 <= row < h and 0 <= col < w):
        raise ExplainError(f"Layer {column.number} ({column.title}) has {notation.grid(h, w)} maps; there is no "
                           f"unit at row {row + 1}, column {col + 1}.")


def _activation_step(module: nn.Module, x: float) -> tuple[str, float] | None:
    """An activation of one number, written out: ('max(0, −1.2)', 0.0)."""
    t = notation.number(x)
    if isinstance(module, nn.ReLU):
        return f"max(0, {t})", max(0.0, x)
    if isinstance(module, nn.ReLU6):
        return f"min(max(0, {t}), 6)", min(max(0.0, x), 6.0)
    if isinstance(module, nn.LeakyReLU):
        s = module.negative_slope
        return f"max({t}, {notation.number(s)}·{notation.term(x)})", x if x >= 0 else s * x
    if isinstance(module, nn.Tanh):
        return f"tanh({t})", math.tanh(x)
    if isinstance(module, nn.Sigmoid):
        return f"1 / (1 + e^({notation.number(-x)}))", 1 / (1 + math.exp(-x)) if x > -700 else 0.0
    if isinstance(module, nn.Hardswish):
        return f"{notation.term(x)}·min(max(0, {t} + 3), 6) / 6", x * min(max(0.0, x + 3), 6.0) / 6
    if isinstance(module, nn.Hardsigmoid):
        return f"min(max(0, {t} + 3), 6) / 6", min(max(0.0, x + 3), 6.0) / 6
    if isinstance(module, nn.SiLU):
        return f"{notation.term(x)} / (1 + e^({notation.number(-x)}))", x / (1 + math.exp(-x)) if x > -700 else 0.0
    return None


def _follow(overview: Overview, record: int, value: float, at: tuple) -> tuple[list[tuple[str, str]], float, int]:
    """The batch norm and activation that take this unit's value next (each the very tensor the previous
    one gave), as arithmetic lines; the final value and the record it belongs to."""
    lines: list[tuple[str, str]] = []
    records = overview.records
    i = record
    while i + 1 < len(records):
        nxt = records[i + 1]
        if nxt.source != i or not nxt.exact_source:
            break
        m = nxt.module
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.running_mean is not None:
            c = at[0]
            mean, var = float(m.running_mean[c]), float(m.running_var[c])
            gamma = float(m.weight.detach()[c]) if m.weight is not None else 1.0
            beta = float(m.bias.detach()[c]) if m.bias is not None else 0.0
            new = gamma * (value - mean) / math.sqrt(var + m.eps) + beta
            formula = (f"γ·(x − μ)/√(σ² + ε) + β = {notation.term(gamma)}·({notation.number(value)} − "
                       f"{notation.term(mean)})/√({notation.number(var)} + {notation.number(m.eps)}) + "
                       f"{notation.term(beta)} = {notation.number(new)}")
            lines.append(("batch norm", formula))
        elif isinstance(m, ACTIVATIONS) and (step := _activation_step(m, value)) is not None:
            text, new = step
            lines.append((type(m).__name__, f"{text} = {notation.number(new)}"))
        else:
            break
        value, i = new, i + 1
    return lines, value, i


def _column_of_record(overview: Overview, record: int) -> int:
    return next(c.number for c in overview.columns if c.record == record)


def input_column(overview: Overview, column: int) -> int:
    """The column whose output a layer reads (0: the image; for a residual sum, the branch it follows)."""
    record = overview.column(column).record
    before = overview.columns[column - 1] if column > 0 else None
    if before is not None and before.kind == "flatten" and before.record is None:  # torch.flatten in forward
        return before.number
    source = overview.records[record].source if record is not None else -1
    while source >= 0 and not any(c.record == source for c in overview.columns):  # dropout, identity: no column
        source = overview.records[source].source
    return 0 if source < 0 else _column_of_record(overview, source)


def conv_unit(overview: Overview, column: int, channel: int, row: int, col: int) -> Unit:
    """Unit (channel, row, col) of a convolution column (0-based), as the convolution lesson computes it:
    the window of every input channel the filter reads (zeros where it runs into the padding), the
    filter, the products, each channel's sum, the bias; then the batch norm and activation that follow."""
    column_ = overview.column(column)
    rec = overview.records[column_.record] if column_.record is not None else None
    if rec is None or not isinstance(rec.module, nn.Conv2d):
        raise ExplainError(f"Layer {column} ({column_.title}) is not a convolution.")
    _check_position(column_, channel, row, col)
    m: nn.Conv2d = rec.module
    if m.padding_mode != "zeros":
        raise ExplainError(f"Layer {column} pads with '{m.padding_mode}', not zeros; its windows are not shown.")
    inp = rec.input
    per_group = m.in_channels // m.groups
    group = channel // (m.out_channels // m.groups)
    channels = list(range(group * per_group, (group + 1) * per_group))
    top, bottom, left, right = _conv_padding(m)
    padded = F.pad(inp[channels], (left, right, top, bottom))
    (kh, kw), (sh, sw), (dh, dw) = m.kernel_size, m.stride, m.dilation
    rows = tuple(row * sh + a * dh for a in range(kh))
    cols = tuple(col * sw + b * dw for b in range(kw))
    window = padded[:, list(rows)][:, :, list(cols)]
    weights = m.weight.detach()[channel].float()
    bias = float(m.bias.detach()[channel]) if m.bias is not None else 0.0
    step = ConvStep(0, channel, row, col, rows, cols, window, weights, bias)
    value = step.value
    torch_value = float(rec.output[channel, row, col])
    d = len(channels)
    lines = []
    for c in range(min(d, PRODUCT_CHANNELS)):
        label = f"channel {channels[c] + 1}" if d > 1 else "products"
        lines.append((label, step.channel_arithmetic(c)))
    if d > PRODUCT_CHANNELS:
        lines.append(("", f"… and the same for the other {notation.count(d - PRODUCT_CHANNELS)} input channels"))
    if d <= SUMS_LISTED:
        lines.append(("sum + bias", step.total_arithmetic()))
    else:
        sums = step.channel_sums.tolist()
        listed = " + ".join(notation.term(s) for s in sums[:SUMS_LISTED])
        lines.append((f"Σ {notation.count(d)} channel sums",
                      f"{listed} + … ({notation.count(d - SUMS_LISTED)} more) = {notation.number(sum(sums))}"))
        lines.append(("+ bias", f"{notation.number(sum(sums))} + {notation.term(bias)} (bias) = {notation.number(value)}"))
    following, final, last = _follow(overview, column_.record, value, (channel, row, col))
    lines += following
    k = notation.grid(kh, kw)
    sentence = (f"This unit looked at a {k} window of {'all ' if d > 1 and m.groups == 1 else ''}{d} input "
                f"channel{'s' if d > 1 else ''} ({notation.count(kh * kw * d)} numbers), multiplied each by the "
                f"filter's weight and added them up with the bias: {notation.number(value)}"
                + (f", then {final_words(following)} made it {notation.number(final)}." if following else "."))
    box_in = (row * sh - top, col * sw - left, row * sh - top + dh * (kh - 1), col * sw - left + dw * (kw - 1))
    h, w = inp.shape[1:]
    tap_rows = torch.tensor([r - top for r in rows])[:, None]
    tap_cols = torch.tensor([q - left for q in cols])[None, :]
    padding = (tap_rows < 0) | (tap_rows >= h) | (tap_cols < 0) | (tap_cols >= w)
    return Unit(column, "conv", _unit_title(overview, column, f"Unit (channel {channel + 1}, row {row + 1}, "
                                                              f"column {col + 1})"),
                lines, value, torch_value, final, _column_of_record(overview, last), sentence,
                receptive_field(overview, column_.record, (row, col, row, col)), (channel, row, col), None,
                window, weights, channels, box_in, padding, following)


def final_words(following: list[tuple[str, str]]) -> str:
    names = [("the batch norm" if label == "batch norm" else f"the {label}") for label, _ in following]
    return " and ".join(names)


def pool_unit(overview: Overview, column: int, channel: int, row: int, col: int) -> Unit:
    """Unit (channel, row, col) of a pooling column: its window of the input channel and the max or mean."""
    column_ = overview.column(column)
    rec = overview.records[column_.record] if column_.record is not None else None
    if rec is None or not isinstance(rec.module, POOLS):
        raise ExplainError(f"Layer {column} ({column_.title}) is not a pooling layer.")
    _check_position(column_, channel, row, col)
    m = rec.module
    inp = rec.input[channel]
    h, w = inp.shape
    is_max = isinstance(m, (nn.MaxPool2d, nn.AdaptiveMaxPool2d))
    if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        oh, ow = column_.shape[1:]
        (r0, r1), (c0, c1) = _adaptive_span(row, h, oh), _adaptive_span(col, w, ow)
        rows, cols = list(range(r0, r1)), list(range(c0, c1))
        count = len(rows) * len(cols)
    else:
        (kh, kw), (sh, sw), (ph, pw) = _pair(m.kernel_size), _pair(m.stride or m.kernel_size), _pair(m.padding)
        dh, dw = _pair(getattr(m, "dilation", 1))
        all_rows = [row * sh - ph + a * dh for a in range(kh)]
        all_cols = [col * sw - pw + b * dw for b in range(kw)]
        rows = [r for r in all_rows if 0 <= r < h]
        cols = [c for c in all_cols if 0 <= c < w]
        count = len(rows) * len(cols)
        if isinstance(m, nn.AvgPool2d):
            if m.divisor_override:
                count = m.divisor_override
            elif m.count_include_pad:  # the padding's zeros count, not what ceil_mode adds beyond it
                count = (sum(1 for r in all_rows if r < h + ph) * sum(1 for c in all_cols if c < w + pw))
    window = inp[rows][:, cols]
    values = window.flatten().tolist()
    if is_max:
        value = max(values)
    else:
        value = float(window.sum()) / count  # the mean as torch takes it: the sum over its divisor
    shown = values if len(values) <= 16 else values[:16]
    more = f", … ({notation.count(len(values) - 16)} more)" if len(values) > 16 else ""
    if is_max:
        text = f"max({', '.join(notation.number(v) for v in shown)}{more}) = {notation.number(value)}"
    else:
        terms = " + ".join(notation.term(v) for v in shown) + (f" + … ({notation.count(len(values) - 16)} more)"
                                                               if len(values) > 16 else "")
        text = f"({terms}) / {count} = {notation.number(float(window.sum()))} / {count} = {notation.number(value)}"
    lines = [("max" if is_max else "mean", text)]
    following, final, last = _follow(overview, column_.record, value, (channel, row, col))
    lines += following
    k = notation.grid(len(rows), len(cols))
    if is_max:
        flat = int(window.flatten().argmax())
        winner = (rows[flat // len(cols)], cols[flat % len(cols)])
        sentence = (f"The largest of the {notation.count(len(values))} values in its {k} window of input channel "
                    f"{channel + 1} is at row {winner[0] + 1}, column {winner[1] + 1}: {notation.number(value)}.")
    else:
        sentence = (f"The mean of the {k} window of input channel {channel + 1}: {notation.number(value)}.")
    return Unit(column, "pool", _unit_title(overview, column, f"Unit (channel {channel + 1}, row {row + 1}, "
                                                              f"column {col + 1})"),
                lines, value, float(rec.output[channel, row, col]), final, _column_of_record(overview, last),
                sentence, receptive_field(overview, column_.record, (row, col, row, col)), (channel, row, col), None,
                window[None], None, [channel], (rows[0], cols[0], rows[-1], cols[-1]), None, following)


def _computing_record(records: list[Record], i: int) -> int | None:
    """The record whose units a click on record i's output explains: i itself for a convolution, pooling
    or fully connected layer; for an activation or batch norm of maps, the convolution or pooling whose
    output it takes (directly or through others like it); for a flatten of 1×1 maps (global average
    pooling's), that pooling. None when there is nothing to compute unit by unit."""
    rec = records[i]
    if rec.kind == "flatten" and rec.exact_source and rec.source >= 0 and rec.input.ndim == 3 \
            and rec.input.shape[1:].numel() == 1:
        i, rec = rec.source, records[rec.source]
    while rec.kind in ("activation", "batchnorm") and rec.output.ndim == 3 and rec.exact_source and rec.source >= 0:
        i, rec = rec.source, records[rec.source]
    return i if isinstance(rec.module, (nn.Conv2d, nn.Linear, *POOLS)) else None


def _map_before(overview: Overview, record: int) -> torch.Tensor | None:
    """The maps a vector input was flattened from: followed back through flatten, dropout and identity."""
    records = overview.records
    i = records[record].source
    while i >= 0 and records[i].output.ndim == 1 and records[i].kind in ("flatten", "identity"):
        if records[i].input is not None and records[i].input.ndim == 3:
            return records[i].input
        i = records[i].source
    source = records[i].output if i >= 0 else overview.image
    return source if source.ndim == 3 else None


def _input_position(overview: Overview, record: int, index: int) -> str:
    """Where entry `index` of a fully connected layer's input came from: 'channel 5, row 2, column 3' when it
    is a flattened map, else 'entry 12'."""
    rec = overview.records[record]
    source = _map_before(overview, record)
    if source is not None and source.numel() == rec.input.numel():
        _, h, w = source.shape
        channel, rest = divmod(index, h * w)
        r, q = divmod(rest, w)
        return f"channel {channel + 1}, row {r + 1}, column {q + 1}"
    return f"entry {notation.count(index + 1)}"


def linear_unit(overview: Overview, column: int, index: int) -> Unit:
    """Unit `index` of a fully connected column (the scores: one per class): the dot product of its input
    vector with the unit's row of weights, plus its bias."""
    column_ = overview.column(column)
    rec = overview.records[column_.record] if column_.record is not None else None
    if rec is None or not isinstance(rec.module, nn.Linear):
        raise ExplainError(f"Layer {column} ({column_.title}) is not a fully connected layer.")
    m: nn.Linear = rec.module
    if not 0 <= index < m.out_features:
        raise ExplainError(f"Layer {column} has {m.out_features} units; there is no unit {index + 1}.")
    x = rec.input.flatten().float()
    wrow = m.weight.detach()[index].float()
    bias = float(m.bias.detach()[index]) if m.bias is not None else 0.0
    products = wrow * x
    dot = float(products.sum())
    value = dot + bias
    n = x.numel()
    is_score = column_.kind == "scores"
    who = f"the score of '{overview.classes[index]}'" if is_score else f"unit {index + 1}"
    terms = " + ".join(f"{notation.term(w)}·{notation.term(v)}" for w, v in
                       zip(wrow[:TERMS_LISTED].tolist(), x[:TERMS_LISTED].tolist()))
    more = f" + … ({notation.count(n - TERMS_LISTED)} more)" if n > TERMS_LISTED else ""
    lines = [(f"w·x, {notation.count(n)} products", f"{terms}{more} = {notation.number(dot)}"),
             ("+ bias", f"{notation.number(dot)} + {notation.term(bias)} (bias) = {notation.number(value)}")]
    top = torch.topk(products.abs(), min(5, n)).indices.tolist()
    contributions = [(_input_position(overview, column_.record, i), float(products[i])) for i in top]
    following, final, last = _follow(overview, column_.record, value, (index,))
    lines += following
    raised = [name for name, p in contributions if p > 0][:2]
    sentence = (f"{who[0].upper()}{who[1:]} is the sum of {notation.count(n)} products: each number of the "
                f"{'flattened maps' if _map_before(overview, column_.record) is not None else 'vector'} "
                f"times the weight the class gives it, plus a bias: {notation.number(value)}."
                if is_score else f"{who[0].upper()}{who[1:]}: {notation.count(n)} products plus a bias, "
                f"{notation.number(value)}.")
    if raised and is_score:
        sentence += f" The largest push up came from {raised[0]}" + (" of the maps." if "channel" in raised[0] else ".")
    return Unit(column, "linear", _unit_title(overview, column, f"Unit {index + 1}" if not is_score else
                                              f"The score of '{overview.classes[index]}'"),
                lines, value, float(rec.output[index]), final, _column_of_record(overview, last), sentence,
                None, None, index, None, None, [], None, None, following, contributions)


def unit_at(overview: Overview, column: int, channel: int, row: int = 0, col: int = 0) -> Unit:
    """The unit a click (or a link) names: a map cell (channel, row, col) of a convolution or pooling
    column, or entry `channel` of a vector column (the scores). A cell of an activation or batch norm
    column is the unit of the convolution or pooling before it, followed through to this column."""
    column_ = overview.column(column)
    records = overview.records
    if column_.record is None:
        raise ExplainError(f"Layer {column} ({column_.title}) computes nothing unit by unit; choose a convolution, "
                           "pooling or score.")
    i = _computing_record(records, column_.record)
    if i is None:
        raise ExplainError(f"Layer {column} ({column_.title}) computes nothing unit by unit that can be shown; "
                           "choose a convolution, pooling or score.")
    rec = records[i]
    if i != column_.record:
        if rec.output.ndim == 3 and column_.output.ndim == 1:  # a flattened 1×1 map: entry `channel`
            row, col = 0, 0
        column = _column_of_record(overview, i)
    if isinstance(rec.module, nn.Conv2d):
        return conv_unit(overview, column, channel, row, col)
    if isinstance(rec.module, POOLS):
        return pool_unit(overview, column, channel, row, col)
    if isinstance(rec.module, nn.Linear):
        return linear_unit(overview, column, channel)
    raise ExplainError(f"Layer {column} ({column_.title}) computes nothing unit by unit; choose a convolution, "
                       "pooling or score.")


def default_unit(overview: Overview) -> tuple[int, int, int, int]:
    """(column, channel, row, col) to show before a click: the first convolution's strongest map, at its peak."""
    for column in overview.columns:
        if column.kind == "conv" and column.is_maps:
            channel = column.shown[0]
            flat = int(column.output[channel].argmax())
            return column.number, channel, *divmod(flat, column.shape[2])
    return overview.scores_column, int(overview.logits.argmax()), 0, 0


# --------------------------------------------------------------------------- where in the image


def where(row_fraction: float, col_fraction: float) -> str:
    """'the top left', 'the centre', 'the bottom' ... of the image, by thirds."""
    vertical = ("top", "middle", "bottom")[min(2, int(row_fraction * 3))]
    horizontal = ("left", "centre", "right")[min(2, int(col_fraction * 3))]
    if vertical == "middle" and horizontal == "centre":
        return "the centre"
    if vertical == "middle":
        return f"the {horizontal}"
    if horizontal == "centre":
        return f"the {vertical}"
    return f"the {vertical} {horizontal}"


# --------------------------------------------------------------------------- Grad-CAM


@dataclass
class GradCam:
    class_index: int
    class_name: str
    layer: str  # the module's readable name
    layer_name: str  # module name in the model
    activations: torch.Tensor  # A: (K, h, w)
    gradients: torch.Tensor  # ∂score/∂A: (K, h, w)
    weights: torch.Tensor  # α: (K,)
    coarse: torch.Tensor  # ReLU(Σ α_k A_k): (h, w)
    heatmap: torch.Tensor  # coarse, bilinearly upsampled to the image: (H, W)
    score: float
    sentence: str


def last_conv_name(model: nn.Module, x: torch.Tensor) -> str:
    """The last nn.Conv2d to run whose output has more than one position (squeeze-and-excitation gates
    are 1×1)."""
    names: list[str] = []
    handles = []

    def note(name):
        def hook(module, args, out):
            if out.shape[-2:].numel() > 1:
                names.append(name)
        return hook

    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(note(name)))
    try:
        with torch.inference_mode():
            model(x.unsqueeze(0).float())
    finally:
        for handle in handles:
            handle.remove()
    if not names:
        raise ExplainError("This model has no convolution layer with maps; Grad-CAM needs one.")
    return names[-1]


def grad_cam(classifier: Classifier, x: torch.Tensor, class_index: int, layer: str | None = None) -> GradCam:
    """Grad-CAM of one class on a convolution layer (the last one by default): the gradient of the class's
    score (before the softmax) with respect to each map A_k, averaged over the map's positions, weighs
    the map: ReLU(Σ_k α_k A_k) is where the layer saw what raised the score."""
    model = classifier.model
    if not 0 <= class_index < len(classifier.classes):
        raise ExplainError(f"There is no class {class_index + 1}; the model has {len(classifier.classes)}.")
    modules = dict(model.named_modules())
    with _lock_for(model):
        name = layer if layer is not None else last_conv_name(model, x)
        if name not in modules or not isinstance(modules[name], nn.Conv2d):
            raise ExplainError(f"{name!r} is not a convolution layer of this model.")
        kept: list[torch.Tensor] = []

        def keep(module, args, out):
            kept.append(out)
            return out.clone()  # what follows (an in-place ReLU) changes the clone; A stays as it was

        handle = modules[name].register_forward_hook(keep)
        try:
            with torch.enable_grad():
                scores = model(x.unsqueeze(0).float().requires_grad_(False))[0]
                activations = kept[-1]
                (gradients,) = torch.autograd.grad(scores[class_index], activations)
        finally:
            handle.remove()
    a, g = activations[0].detach(), gradients[0].detach()
    alpha = g.mean(dim=(1, 2))
    coarse = torch.relu((alpha[:, None, None] * a).sum(0))
    h, w = x.shape[1:]
    heatmap = F.interpolate(coarse[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    class_name = classifier.classes[class_index]
    return GradCam(class_index, class_name, classifier.label(name), name, a, g, alpha, coarse, heatmap,
                   float(scores[class_index].detach()), _grad_cam_sentence(heatmap, class_name))


def _grad_cam_sentence(heatmap: torch.Tensor, class_name: str) -> str:
    peak = float(heatmap.max())
    if peak <= 0:
        return (f"No region raised the score of '{class_name}': every position's weighted sum of maps is negative, "
                "so the map is zero everywhere.")
    flat = int(heatmap.argmax())
    h, w = heatmap.shape
    r, q = divmod(flat, w)
    hot = float((heatmap >= peak / 2).float().mean())
    return (f"Red regions raised the score of '{class_name}' the most, strongest in {where(r / h, q / w)} of the "
            f"image; {notation.percent(hot)} of the image is at least half as red as the peak.")


# --------------------------------------------------------------------------- occlusion


@dataclass
class Occlusion:
    class_index: int
    class_name: str
    patch: int
    stride: int
    fill: tuple[float, ...]  # per channel, in the network's input units
    tops: list[int]
    lefts: list[int]
    probabilities: torch.Tensor  # (len(tops), len(lefts)): p(class) with the patch at each position
    base: float  # p(class) on the image itself
    drop: torch.Tensor  # (H, W): base − mean p(class) of the patches covering each pixel
    sentence: str


def default_fill(classifier: Classifier) -> tuple[float, ...]:
    """The grey of the patch: the data set's mean pixel, in the network's input units (0 after ImageNet's
    normalisation, which subtracts that mean)."""
    recipe = classifier.recipe
    if recipe.mean is not None:
        return (0.0,) * recipe.channels
    return DATASET_MEANS.get(recipe.dataset, (0.5,) * recipe.channels)[:recipe.channels]


def default_patch(h: int, w: int) -> tuple[int, int]:
    """(patch, stride): a 6×6 patch moved by 2 on a 28×28 image (144 places); on larger images a sixth of the
    side, moved by half a patch (a 37×37 patch by 18 on 224×224: 144 places)."""
    side = min(h, w)
    if side <= 32:
        return max(2, round(side * 0.22)), 2
    patch = max(8, side // 6)
    return patch, max(4, patch // 2)


def patch_positions(n: int, patch: int, stride: int) -> list[int]:
    """Where a patch starts along one axis: every `stride`, and the last one flush with the edge."""
    if patch > n:
        raise ExplainError(f"The patch ({patch} pixels) is larger than the image ({n} pixels).")
    starts = list(range(0, n - patch + 1, stride))
    if starts[-1] != n - patch:
        starts.append(n - patch)
    return starts


def occlusion_map(classifier: Classifier, x: torch.Tensor, class_index: int, patch: int, stride: int,
                  fill: tuple[float, ...] | None = None, batch_size: int = 64) -> Occlusion:
    """Cover the image with a grey patch at every position, and record the class's probability each time
    (the patched images run through the model in batches)."""
    if not 0 <= class_index < len(classifier.classes):
        raise ExplainError(f"There is no class {class_index + 1}; the model has {len(classifier.classes)}.")
    if patch < 1 or stride < 1:
        raise ExplainError("The patch and its stride are at least 1 pixel.")
    c, h, w = x.shape
    fill = tuple(default_fill(classifier) if fill is None else fill)
    if len(fill) == 1 and c > 1:
        fill = fill * c
    tops, lefts = patch_positions(h, patch, stride), patch_positions(w, patch, stride)
    grey = torch.tensor(fill, dtype=torch.float32).view(-1, 1, 1)
    x = x.float()
    positions = [(t, q) for t in tops for q in lefts]
    probabilities = []
    model = classifier.model
    with _lock_for(model), torch.inference_mode():
        base = float(torch.softmax(model(x[None])[0].double(), 0)[class_index])
        for start in range(0, len(positions), batch_size):
            images = x.repeat(len(positions[start:start + batch_size]), 1, 1, 1)
            for i, (t, q) in enumerate(positions[start:start + batch_size]):
                images[i, :, t:t + patch, q:q + patch] = grey
            probabilities.append(torch.softmax(model(images).double(), 1)[:, class_index])
    probs = torch.cat(probabilities).float().view(len(tops), len(lefts))
    covered_sum = torch.zeros(h, w, dtype=torch.float64)
    covered = torch.zeros(h, w, dtype=torch.float64)
    for i, t in enumerate(tops):
        for j, q in enumerate(lefts):
            covered_sum[t:t + patch, q:q + patch] += float(probs[i, j])
            covered[t:t + patch, q:q + patch] += 1
    drop = (base - covered_sum / covered.clamp(min=1)).float()
    drop[covered == 0] = 0
    name = classifier.classes[class_index]
    return Occlusion(class_index, name, patch, stride, fill, tops, lefts, probs, base, drop,
                     _occlusion_sentence(probs, base, tops, lefts, patch, h, w, name))


def _occlusion_sentence(probs, base, tops, lefts, patch, h, w, name) -> str:
    flat = int(probs.argmin())
    i, j = divmod(flat, probs.shape[1])
    lowest = float(probs[i, j])
    place = where((tops[i] + patch / 2) / h, (lefts[j] + patch / 2) / w)
    if base - lowest < 0.02:
        return (f"No single {notation.grid(patch, patch)} patch lowered p({name}) by even 2 points "
                f"(from {notation.percent(base)} at most to {notation.percent(lowest)}): the network does not "
                "rely on any one small part of the image.")
    return (f"Covering {place} (rows {tops[i] + 1}–{tops[i] + patch}, columns {lefts[j] + 1}–{lefts[j] + patch}) "
            f"lowered p({name}) from {notation.percent(base)} to {notation.percent(lowest)}. Red: covering it "
            "lowered the probability; blue: covering it raised it.")
