"""Building up a network, as the lecture does: convolution layers learn features, pooling
(or strided convolution) shrinks the maps, the channels grow, and at the end flattening or
global average pooling hands a vector to fully connected layers.

This module is the single source for a stack's shapes, parameter and multiply-add counts
and receptive fields. A stack is a list of `LayerSpec`s, written compactly as text for URLs
and presets (`parse_stack` / `format_stack`):

    conv3x16,relu,maxpool2,conv3x32,relu,maxpool2,gap,fc10

`analyse` walks the stack and either explains in plain words why it cannot work
(`StackError`, before torch ever sees it) or returns one `LayerInfo` per layer.
`build_model` turns the same stack into a trainable `torch.nn.Sequential` with exactly one
module per layer, so `model[i]` is the layer `analyse(...)[i]` describes.

Shapes are channels first, as in torch: (C, H, W) for feature maps, (N,) for vectors.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import nn

from . import notation
from .conv import ConvCounts, output_size
from .pooling import pool_output_size

# Limits against abuse: a URL is user input, and the training page builds what it says.
MAX_LAYERS = 48  # VGG-19 with its ReLUs has 43
MAX_KERNEL = 11
MAX_STRIDE = 8
MAX_OUT = 4096  # filters of a conv, units of an fc
MAX_INPUT_CHANNELS = 16  # hyperspectral inputs have more than 3 channels
MAX_INPUT_SIDE = 512
MAX_PARAMS = 50_000_000
MAX_ACTIVATION_MB = 32.0  # forward activations of one image, float32
MAX_MULTIPLY_ADDS = 10_000_000_000
BYTES_PER_NUMBER = 4  # float32


class StackError(ValueError):
    """A stack that cannot work; the message names the layer and explains why."""


# --------------------------------------------------------------------------- the kinds of layer
# One row per kind of layer: how it is written, which settings it takes, what it does to a
# shape and costs, and the torch module it becomes. Everything below reads this table.

Shape = tuple[int, ...]
Costs = tuple[Shape, int, int, int]  # output shape, parameters, multiply-adds, multiply-adds without bias


@dataclass(frozen=True)
class LayerKind:
    name: str  # 'conv', 'maxpool', ...
    numbers: str | None  # the text form's numbers after the name: r"(\d+)x(\d+)" for conv3x16; None: a bare word
    form: str  # how to write it, for messages
    options: str  # the '/s<stride>' and '/p<padding>' options it takes
    settings: tuple[str, ...]  # the LayerSpec fields it uses
    takes: str  # its input: "map" (C, H, W), "vector" (N,) or "any"
    window: bool  # slides a k×k window: the receptive field grows through it
    costs: Callable[[LayerSpec, Shape], Costs]
    module: Callable[[LayerSpec, Shape], nn.Module]
    aliases: tuple[str, ...] = ()  # other spellings accepted in text


def _conv_costs(spec: LayerSpec, shape: Shape) -> Costs:
    c, h, w = shape
    counts = ConvCounts(spec.kernel, c, spec.out, output_size(h, spec.kernel, spec.padding, spec.stride),
                        output_size(w, spec.kernel, spec.padding, spec.stride))
    return (spec.out, counts.out_height, counts.out_width), counts.params, counts.macs, counts.macs_without_bias


def _pool_costs(spec: LayerSpec, shape: Shape) -> Costs:
    c, h, w = shape
    return (c, pool_output_size(h, spec.kernel, spec.stride), pool_output_size(w, spec.kernel, spec.stride)), 0, 0, 0


def _fc_costs(spec: LayerSpec, shape: Shape) -> Costs:
    n = shape[0]
    return (spec.out,), n * spec.out + spec.out, spec.out * (n + 1), spec.out * n


def _same_costs(spec: LayerSpec, shape: Shape) -> Costs:
    return shape, 0, 0, 0


def _batchnorm_costs(spec: LayerSpec, shape: Shape) -> Costs:
    return shape, 2 * shape[0], 0, 0  # a scale and a shift per channel


def _batchnorm_module(spec: LayerSpec, shape: Shape) -> nn.Module:
    return (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(shape[0])


LAYER_KINDS: dict[str, LayerKind] = {kind.name: kind for kind in [
    LayerKind("conv", r"(\d+)x(\d+)", "write conv<kernel>x<filters>, e.g. conv3x16, optionally with /s<stride> "
              "and /p<padding>, e.g. conv5x32/s2/p0", "sp", ("kernel", "stride", "padding", "out"), "map", True,
              _conv_costs, lambda spec, shape: nn.Conv2d(shape[0], spec.out, spec.kernel, stride=spec.stride,
                                                         padding=spec.padding)),
    LayerKind("maxpool", r"(\d+)", "write maxpool<kernel>, e.g. maxpool2, optionally with /s<stride>, e.g. "
              "maxpool3/s2", "s", ("kernel", "stride", "padding"), "map", True,
              _pool_costs, lambda spec, shape: nn.MaxPool2d(spec.kernel, stride=spec.stride)),
    LayerKind("meanpool", r"(\d+)", "write meanpool<kernel>, e.g. meanpool2, optionally with /s<stride>, e.g. "
              "meanpool3/s2", "s", ("kernel", "stride", "padding"), "map", True,
              _pool_costs, lambda spec, shape: nn.AvgPool2d(spec.kernel, stride=spec.stride), aliases=("avgpool",)),
    LayerKind("relu", None, "write just relu", "", (), "any", False, _same_costs, lambda spec, shape: nn.ReLU()),
    LayerKind("tanh", None, "write just tanh", "", (), "any", False, _same_costs, lambda spec, shape: nn.Tanh()),
    LayerKind("batchnorm", None, "write just bn", "", (), "any", False, _batchnorm_costs, _batchnorm_module,
              aliases=("bn",)),
    LayerKind("flatten", None, "write just flatten", "", (), "map", False,
              lambda spec, shape: ((math.prod(shape),), 0, 0, 0), lambda spec, shape: nn.Flatten()),
    LayerKind("gap", None, "write just gap", "", (), "map", False,
              lambda spec, shape: ((shape[0],), 0, 0, 0),
              lambda spec, shape: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())),
    LayerKind("fc", r"(\d+)", "write fc<units>, e.g. fc10", "", ("out",), "vector", False,
              _fc_costs, lambda spec, shape: nn.Linear(shape[0], spec.out)),
]}
KINDS = tuple(LAYER_KINDS)
POOL_KINDS = ("maxpool", "meanpool")
ACTIVATION_KINDS = ("relu", "tanh")
TO_VECTOR_KINDS = ("flatten", "gap")
TOKEN_HELP = "conv<kernel>x<filters>, maxpool<kernel>, meanpool<kernel>, relu, tanh, bn, flatten, gap, fc<units>"


# --------------------------------------------------------------------------- layer specs


@dataclass(frozen=True)
class LayerSpec:
    """One layer. Fields that do not apply to a kind are None.

    conv: kernel k, stride (default 1), padding (default (k-1)//2, "same" for odd k), out = filters.
    maxpool / meanpool: kernel k, stride (default k), padding 0.
    fc: out = units. relu, tanh, batchnorm, flatten, gap: no settings.
    """

    kind: str
    kernel: int | None = None
    stride: int | None = None
    padding: int | None = None
    out: int | None = None

    def __post_init__(self) -> None:
        kind = LAYER_KINDS.get(self.kind)
        if kind is None:
            raise StackError(f"unknown layer kind {self.kind!r}; use one of {', '.join(KINDS)}.")
        unused = [name for name in ("kernel", "stride", "padding", "out")
                  if name not in kind.settings and getattr(self, name) is not None]
        if unused:
            raise StackError(_NO_SETTING.get((self.kind, unused[0])) or _NO_SETTING.get(self.kind)
                             or f"{self.kind} has no settings.")
        if "kernel" in kind.settings:
            what = "the kernel size" if self.kind == "conv" else "the pooling kernel size"
            k = _check_int(what, self.kernel, 1, MAX_KERNEL)
            default_stride = 1 if self.kind == "conv" else k
            object.__setattr__(self, "stride", _check_int(
                "the stride", default_stride if self.stride is None else self.stride, 1, MAX_STRIDE))
            if self.kind == "conv":
                padding = (k - 1) // 2 if self.padding is None else self.padding
                _check_int("the padding", padding, 0, k - 1,
                           why=" (more padding than kernel − 1 only adds outputs that see nothing but zeros)")
            elif self.padding not in (None, 0):
                raise StackError("pooling layers here use no padding.")
            else:
                padding = 0
            object.__setattr__(self, "padding", padding)
        if "out" in kind.settings:
            _check_int("the number of filters" if self.kind == "conv" else "the number of units", self.out, 1, MAX_OUT)

    @property
    def layer_kind(self) -> LayerKind:
        return LAYER_KINDS[self.kind]

    # Short constructors for code (the pages mostly parse text).
    @classmethod
    def conv(cls, kernel: int, filters: int, stride: int = 1, padding: int | None = None) -> LayerSpec:
        return cls("conv", kernel, stride, padding, filters)

    @classmethod
    def pool(cls, kernel: int = 2, stride: int | None = None, kind: str = "max") -> LayerSpec:
        return cls(f"{kind}pool", kernel, stride)

    @classmethod
    def fc(cls, units: int) -> LayerSpec:
        return cls("fc", out=units)

    @property
    def default_padding(self) -> bool:
        return self.kind != "conv" or self.padding == (self.kernel - 1) // 2

    def _options(self) -> list[tuple[str, str, int]]:
        """The options that differ from the defaults: (text option, words, value)."""
        found = []
        if self.kernel is not None and self.stride != (1 if self.kind == "conv" else self.kernel):
            found.append(("s", "stride", self.stride))
        if not self.default_padding:
            found.append(("p", "padding", self.padding))
        return found

    @property
    def token(self) -> str:
        """This layer in the compact text form (the canonical spelling)."""
        head = {"conv": f"conv{self.kernel}x{self.out}", "fc": f"fc{self.out}", "batchnorm": "bn"}.get(
            self.kind, f"{self.kind}{self.kernel}" if self.kind in POOL_KINDS else self.kind)
        return head + "".join(f"/{option}{value}" for option, _, value in self._options())

    @property
    def name(self) -> str:
        """Plain words for tables and messages, e.g. 'conv 3×3, 16 filters'."""
        if self.kind == "conv":
            words = f"conv {kernel_words(self.kernel)}, {self.out} filter{'s' if self.out != 1 else ''}"
        elif self.kind in POOL_KINDS:
            words = f"{self.kind} {kernel_words(self.kernel)}"
        elif self.kind == "fc":
            words = f"fc, {self.out} unit{'s' if self.out != 1 else ''}"
        else:
            words = {"relu": "ReLU", "batchnorm": "batch norm", "gap": "global average pooling"}.get(
                self.kind, self.kind)
        return words + "".join(f", {what} {value}" for _, what, value in self._options())


_NO_SETTING = {
    ("maxpool", "out"): "a pooling layer keeps the number of channels; it takes no 'out'.",
    ("meanpool", "out"): "a pooling layer keeps the number of channels; it takes no 'out'.",
    "fc": "a fully connected layer has no kernel, stride or padding.",
}


def kernel_words(k: int) -> str:
    return notation.kernel(k)


def _check_int(what: str, value, low: int, high: int, why: str = "") -> int:
    if value is None or isinstance(value, bool) or not isinstance(value, int):
        raise StackError(f"{what} must be a whole number, not {value!r}.")
    if not low <= value <= high:
        raise StackError(f"{what} must be from {low} to {high}, not {value}{why}.")
    return value


# --------------------------------------------------------------------------- text form

_OPTION = re.compile(r"([sp])(\d+)")
_SPELLINGS = {alias: kind.name for kind in LAYER_KINDS.values() for alias in (kind.name, *kind.aliases)}


def _token_kind(head: str) -> LayerKind | None:
    """Which kind a (possibly misspelt) token is trying to be, from its letters."""
    letters = re.match(r"[a-z]*", head).group()
    if letters in _SPELLINGS:
        return LAYER_KINDS[_SPELLINGS[letters]]
    for kind in LAYER_KINDS.values():
        if kind.numbers is not None and letters.startswith(kind.name):  # 'convx16': a conv missing its kernel size
            return kind
    return None


def _parse_token(token: str) -> LayerSpec:
    head, *options = token.split("/")
    kind = _token_kind(head)
    if kind is None:
        raise StackError(f"unknown layer; use one of {TOKEN_HELP}.")
    if kind.numbers is None:
        if head not in (kind.name, *kind.aliases) or options:
            raise StackError(f"{kind.form} (it has no settings).")
        return LayerSpec(kind.name)
    spelling = next(word for word in (kind.name, *kind.aliases) if head.startswith(word))
    match = re.fullmatch(kind.numbers, head[len(spelling):])
    if match is None:
        raise StackError(kind.form + ".")
    settings: dict[str, int] = {}
    for option in options:
        opt = _OPTION.fullmatch(option)
        if opt is None or opt.group(1) not in kind.options:
            raise StackError(f"'/{option}' is not an option here; {kind.form}.")
        key = {"s": "stride", "p": "padding"}[opt.group(1)]
        if key in settings:
            raise StackError(f"the {key} is given twice.")
        settings[key] = int(opt.group(2))
    numbers = [int(g) for g in match.groups()]
    if kind.name == "conv":
        return LayerSpec("conv", numbers[0], out=numbers[1], **settings)
    if kind.name == "fc":
        return LayerSpec("fc", out=numbers[0])
    return LayerSpec(kind.name, numbers[0], **settings)


def parse_stack(text: str) -> list[LayerSpec]:
    """'conv3x16,relu,maxpool2,...' -> layer specs. Spaces and upper case are tolerated.

    Raises StackError naming the layer number, the token and the expected form.
    """
    if not isinstance(text, str):
        raise StackError("The stack must be text such as 'conv3x16,relu,maxpool2,gap,fc10'.")
    if len(text) > 40 * MAX_LAYERS:
        raise StackError(f"The stack text is {len(text)} characters long; that is more than "
                         f"{MAX_LAYERS} layers can need.")
    body = text.strip().lower()
    if not body:
        raise StackError(f"The stack is empty: write layers separated by commas, e.g. {DEFAULT_STACK}.")
    tokens = [t.strip().replace(" ", "") for t in body.split(",")]
    if len(tokens) > MAX_LAYERS:
        raise StackError(f"The stack has {len(tokens)} layers; at most {MAX_LAYERS} are allowed.")
    specs = []
    for number, token in enumerate(tokens, start=1):
        if not token:
            raise StackError(f"Layer {number} is empty: remove the extra comma.")
        try:
            specs.append(_parse_token(token))
        except StackError as error:
            raise StackError(f"Layer {number} '{token}': {error}") from None
    return specs


def format_stack(specs: Sequence[LayerSpec]) -> str:
    """Layer specs -> the canonical text; parse_stack(format_stack(s)) == s."""
    return ",".join(spec.token for spec in specs)


# --------------------------------------------------------------------------- analysis


@dataclass(frozen=True)
class LayerInfo:
    """What one layer does to the shapes, what it costs, and what one of its units sees.

    Receptive field, along each axis, in input pixels (integer coordinates, pixel 0 first):
    rf_size pixels wide, neighbouring units rf_jump pixels apart, the first unit's field
    centred at rf_start (a half-integer for even sizes); unit u covers
    [rf_start + u·rf_jump − (rf_size − 1)/2, rf_start + u·rf_jump + (rf_size − 1)/2] before
    clipping to the image. For flatten every unit is one position of the map before it, so
    the numbers carry over; after gap or fc (rf_global) every unit sees all of the input that
    the last feature map sees.
    """

    index: int  # 0-based position in the stack
    spec: LayerSpec
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    multiply_adds: int  # the lecture's count, bias counted as one multiply-add
    multiply_adds_without_bias: int
    rf_size: int
    rf_jump: int
    rf_start: float
    rf_global: bool = False

    @property
    def number(self) -> int:
        """1-based, as the messages and tables say 'Layer 3'."""
        return self.index + 1

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def spatial(self) -> bool:
        """Whether the output is still a (C, H, W) feature map."""
        return len(self.out_shape) == 3

    @property
    def outputs(self) -> int:
        return math.prod(self.out_shape)

    @property
    def rf_first_left(self) -> int:
        """Input pixel where the field of unit 0 begins (negative: it starts in the padding)."""
        return round(self.rf_start - (self.rf_size - 1) / 2)


@dataclass(frozen=True)
class StackTotals:
    params: int
    multiply_adds: int
    activations: int  # numbers held in the forward pass of one image, the input included


def shape_text(shape: Sequence[int]) -> str:
    """Deprecated: cnnviz.notation.shape writes shapes as the lecture does. (16, 14, 14) -> '16x14x14'."""
    return "x".join(str(n) for n in shape)


def _check_in_shape(in_shape) -> tuple[int, int, int]:
    try:
        d, m, l = (int(n) for n in in_shape)
    except (TypeError, ValueError):
        raise StackError(f"The input shape must be (channels, height, width), not {in_shape!r}.") from None
    if not 1 <= d <= MAX_INPUT_CHANNELS:
        raise StackError(f"The input must have 1 to {MAX_INPUT_CHANNELS} channels, not {d}.")
    for what, n in (("height", m), ("width", l)):
        if not 1 <= n <= MAX_INPUT_SIDE:
            raise StackError(f"The input {what} must be from 1 to {MAX_INPUT_SIDE} pixels, not {n}.")
    return d, m, l


def _megabytes(numbers: int) -> str:
    return notation.megabytes(numbers * BYTES_PER_NUMBER)


def analyse(specs: Sequence[LayerSpec], in_shape: Sequence[int] = (1, 28, 28)) -> list[LayerInfo]:
    """Shapes, counts and receptive fields of every layer for an input (d, m, l).

    Raises StackError, naming the first layer that cannot work, when a window does not fit,
    a conv or pool comes after flatten/gap, fc meets a feature map, flatten/gap appear
    twice, or the model grows beyond the limits (parameters, activation memory, multiply-adds).
    """
    specs = list(specs)
    if not specs:
        raise StackError("The stack is empty: add at least one layer.")
    if len(specs) > MAX_LAYERS:
        raise StackError(f"The stack has {len(specs)} layers; at most {MAX_LAYERS} are allowed.")
    shape: tuple[int, ...] = _check_in_shape(in_shape)
    size, jump, start, is_global = 1, 1, 0.0, False
    flattened_at: LayerInfo | None = None
    total_params = total_macs = 0
    total_activations = math.prod(shape)
    infos: list[LayerInfo] = []
    for index, spec in enumerate(specs):
        if not isinstance(spec, LayerSpec):
            raise StackError(f"Layer {index + 1}: expected a LayerSpec, not {type(spec).__name__}.")
        label = f"Layer {index + 1} {spec.name}"
        kind = spec.layer_kind
        if kind.takes == "map" and flattened_at is not None:
            if kind.name in TO_VECTOR_KINDS:
                raise StackError(
                    f"{label}: the input is already a vector of {shape[0]:,} numbers after layer "
                    f"{flattened_at.number} {flattened_at.name}; use flatten or gap only once.")
            what = "pooling" if kind.name in POOL_KINDS else "a convolution"
            raise StackError(
                f"{label}: it comes after layer {flattened_at.number} {flattened_at.name}, which turned "
                f"the feature maps into a vector of {shape[0]:,} numbers, but {what} needs a "
                f"(height, width, channels) feature map. Move it before the {flattened_at.spec.token}.")
        if kind.takes == "vector" and len(shape) == 3:
            c, h, w = shape
            raise StackError(
                f"{label}: its input is still a {notation.shape(shape)} feature map; add flatten or gap before "
                f"fc (flatten gives {c * h * w:,} numbers, gap gives {c}).")
        if kind.window:
            _, h, w = shape
            k, s, p = spec.kernel, spec.stride, spec.padding
            if h + 2 * p < k or w + 2 * p < k:
                padded = f" ({notation.grid(h + 2 * p, w + 2 * p)} with padding {p})" if p else ""
                fix = ("Remove a pooling layer or use padding." if kind.name in POOL_KINDS else
                       "Remove a pooling layer, use a smaller kernel, or more padding.")
                raise StackError(f"{label}: its input is {notation.grid(h, w)}{padded}, smaller than the "
                                 f"{notation.kernel(k)} window. {fix}")
            start = start + ((k - 1) / 2 - p) * jump
            size = size + (k - 1) * jump
            jump = jump * s
        out_shape, params, macs, macs_plain = kind.costs(spec, shape)
        is_global = is_global or kind.name in ("gap", "fc")
        info = LayerInfo(index, spec, tuple(shape), tuple(out_shape), params, macs, macs_plain,
                         size, jump, start, is_global)
        if kind.name in TO_VECTOR_KINDS:
            flattened_at = info
        total_params += params
        total_macs += macs
        total_activations += math.prod(out_shape)
        if total_params > MAX_PARAMS:
            raise StackError(
                f"{label}: with its {params:,} parameters the model reaches {total_params:,} parameters "
                f"({_megabytes(total_params)} as float32), more than the {MAX_PARAMS:,} "
                f"({_megabytes(MAX_PARAMS)}) this app allows. Use fewer filters or units, or pool more before fc.")
        if total_activations * BYTES_PER_NUMBER / 1e6 > MAX_ACTIVATION_MB:
            raise StackError(
                f"{label}: its {notation.shape(out_shape)} output brings the activations of one image to "
                f"{_megabytes(total_activations)}, more than the {MAX_ACTIVATION_MB:g} MB this app allows. "
                f"Use a smaller input, fewer filters, or pool earlier.")
        if total_macs > MAX_MULTIPLY_ADDS:
            raise StackError(
                f"{label}: the model reaches {total_macs:,} multiply-adds per image here, more than the "
                f"{MAX_MULTIPLY_ADDS:,} this app allows. Use fewer filters, or pool earlier.")
        infos.append(info)
        shape = tuple(out_shape)
    return infos


def spatial_window_layers(infos: Sequence[LayerInfo]) -> list[LayerInfo]:
    """The conv and pooling layers (those that slide a window over a feature map)."""
    return [info for info in infos if info.spec.layer_kind.window]


def head_problem(infos: Sequence[LayerInfo], n_classes: int, data_name: str = "the data") -> str | None:
    """Why an analysed stack cannot be trained as a classifier of n_classes (one score per class), or None."""
    out = infos[-1].out_shape
    if out == (n_classes,):
        return None
    return (f"The stack ends in {notation.shape(out)} outputs, but {data_name} has {n_classes} classes: end the "
            f"stack with fc{n_classes} (or a conv1x{n_classes} and gap) so that there is one score per class.")


def totals(infos: Sequence[LayerInfo]) -> StackTotals:
    """Parameters and multiply-adds of the whole stack, and the forward activations of one image."""
    activations = (math.prod(infos[0].in_shape) if infos else 0) + sum(i.outputs for i in infos)
    return StackTotals(sum(i.params for i in infos), sum(i.multiply_adds for i in infos), activations)


def _as_infos(infos_or_specs, in_shape) -> list[LayerInfo]:
    items = list(infos_or_specs)
    if items and all(isinstance(i, LayerInfo) for i in items):
        if in_shape is not None and tuple(in_shape) != items[0].in_shape:
            raise StackError(f"The layers were analysed for a {notation.shape(items[0].in_shape)} input, "
                             f"not {notation.shape(in_shape)}.")
        return items
    if isinstance(infos_or_specs, str):
        items = parse_stack(infos_or_specs)
    return analyse(items, in_shape if in_shape is not None else (1, 28, 28))


def unit_receptive_field(infos_or_specs, in_shape: Sequence[int] | None, layer_index: int,
                         row: int = 0, col: int = 0) -> tuple[int, int, int, int]:
    """(top, left, bottom, right), inclusive, of the input pixels that the unit at (row, col)
    of layer `layer_index`'s output (0-based) depends on, clipped to the input.

    The window is followed back layer by layer and clipped to each map's real positions, so
    padding and the pixels a floor-rounded stride leaves out are never counted. For a layer
    whose output is a vector, `row` is the unit's index and `col` must be 0: a flatten unit
    sees what its map position sees, a gap or fc unit all that the last map sees.
    """
    infos = _as_infos(infos_or_specs, in_shape)
    if not 0 <= layer_index < len(infos):
        raise StackError(f"There is no layer {layer_index} (0-based) in a stack of {len(infos)} layers.")
    target = infos[layer_index]
    shape = target.out_shape
    if len(shape) == 3:
        if not (0 <= row < shape[1] and 0 <= col < shape[2]):
            raise StackError(f"Layer {target.number} {target.name} outputs {notation.grid(*shape[1:])} maps; "
                             f"there is no unit at row {row}, column {col}.")
    elif not (0 <= row < shape[0] and col == 0):
        raise StackError(f"Layer {target.number} {target.name} outputs a vector of {shape[0]}; "
                         f"give the unit's index as row (0 to {shape[0] - 1}) and column 0.")
    if len(shape) == 3:
        box, i = [row, col, row, col], layer_index + 1
    else:
        # i: the flatten or gap layer that turned the maps into a vector; box in its input.
        i = next(j for j in range(layer_index + 1) if len(infos[j].out_shape) == 1)
        _, h, w = infos[i].in_shape
        mixed = infos[i].kind == "gap" or any(info.kind == "fc" for info in infos[i:layer_index + 1])
        if mixed:
            box = [0, 0, h - 1, w - 1]
        else:  # flatten, then only relu/tanh/bn: unit `row` is one position of one channel
            r, q = divmod(row % (h * w), w)
            box = [r, q, r, q]
    # box now lies in the input of layer i (i.e. the output of layer i-1); walk down.
    for info in reversed(infos[:i]):
        if info.spec.layer_kind.window:
            k, s, p = info.spec.kernel, info.spec.stride, info.spec.padding
            _, h, w = info.in_shape
            top, left, bottom, right = box
            box = [max(0, top * s - p), max(0, left * s - p),
                   min(h - 1, bottom * s - p + k - 1), min(w - 1, right * s - p + k - 1)]
    return tuple(box)


# --------------------------------------------------------------------------- torch model


def _activation_module(name: str) -> nn.Module:
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}[name]()


def build_model(specs: Sequence[LayerSpec] | str, in_shape: Sequence[int] = (1, 28, 28),
                activation: str | None = None) -> nn.Sequential:
    """The stack as a trainable torch model, one module per layer (model[i] is layer i).

    `analyse` runs first, so an impossible stack raises StackError, never a torch error.
    activation=None keeps the stack's own ReLU/tanh layers; 'relu', 'tanh' or 'identity'
    replaces every activation layer by that one (identity: a purely linear stack).
    """
    if isinstance(specs, str):
        specs = parse_stack(specs)
    if activation not in (None, "relu", "tanh", "identity"):
        raise StackError(f"The activation is 'relu', 'tanh' or 'identity', not {activation!r}.")
    infos = analyse(specs, in_shape)
    return nn.Sequential(*(
        _activation_module(activation) if activation and info.kind in ACTIVATION_KINDS
        else info.spec.layer_kind.module(info.spec, info.in_shape) for info in infos))


def with_mean_pooling(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    """The same stack with every max pool replaced by a mean pool of the same geometry."""
    return [dataclasses.replace(s, kind="meanpool") if s.kind == "maxpool" else s for s in specs]


# --------------------------------------------------------------------------- editing a stack
# The builders' buttons (pooling page, training page) grow the feature part of a stack and
# leave its head alone: everything from the first flatten, gap or fc on.


def split_head(specs: Sequence[LayerSpec]) -> tuple[list[LayerSpec], list[LayerSpec]]:
    """(feature layers, head): the head starts at the first flatten, gap or fc."""
    specs = list(specs)
    at = next((i for i, spec in enumerate(specs) if spec.kind in TO_VECTOR_KINDS + ("fc",)), len(specs))
    return specs[:at], specs[at:]


def add_conv_block(specs: Sequence[LayerSpec], max_filters: int = 256, first_filters: int = 8) -> list[LayerSpec]:
    """A 3x3 conv with twice the channels of the last conv (first_filters if none), then ReLU, before the head."""
    body, head = split_head(specs)
    channels = next((spec.out for spec in reversed(body) if spec.kind == "conv"), first_filters // 2)
    return body + [LayerSpec.conv(3, min(channels * 2, max_filters)), LayerSpec("relu")] + head


def add_pooling(specs: Sequence[LayerSpec], kind: str = "maxpool", kernel: int = 2) -> list[LayerSpec]:
    """A k x k pooling layer with stride k before the head."""
    body, head = split_head(specs)
    return body + [LayerSpec(kind, kernel)] + head


def add_batchnorm(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    """Batch norm right after the last conv, unless it already has one."""
    body, head = split_head(specs)
    last_conv = next((i for i in range(len(body) - 1, -1, -1) if body[i].kind == "conv"), None)
    if last_conv is not None and (last_conv + 1 >= len(body) or body[last_conv + 1].kind != "batchnorm"):
        body.insert(last_conv + 1, LayerSpec("batchnorm"))
    return body + head


def remove_last_block(specs: Sequence[LayerSpec]) -> list[LayerSpec]:
    """Drop the last conv or pooling layer before the head, with the activation and batch norm around it."""
    body, head = split_head(specs)
    while body and body[-1].kind in ACTIVATION_KINDS + ("batchnorm",):
        body.pop()
    if body:
        body.pop()
    while body and body[-1].kind == "batchnorm":
        body.pop()
    return body + head


def with_head(specs: Sequence[LayerSpec], kind: str, classes: int = 10) -> list[LayerSpec]:
    """The stack ending in flatten or gap, then its fully connected layers (fc<classes> if it had none)."""
    if kind not in TO_VECTOR_KINDS:
        raise StackError(f"The head starts with flatten or gap, not {kind!r}.")
    body, head = split_head(specs)
    tail = [spec for spec in head if spec.kind not in TO_VECTOR_KINDS]
    if not any(spec.kind == "fc" for spec in tail):
        tail.append(LayerSpec.fc(classes))
    return body + [LayerSpec(kind)] + tail


# --------------------------------------------------------------------------- presets

@dataclass(frozen=True)
class Preset:
    """A ready-made stack and the input it is built for (its fully connected layers fix the size)."""

    stack: str
    in_shape: tuple[int, int, int]  # (channels, height, width)


FASHION, CIFAR = (1, 28, 28), (3, 32, 32)
# Inputs the builders offer, by the key a link carries: (channels, height, width) and what has it.
INPUT_CHOICES: dict[str, tuple[tuple[int, int, int], str]] = {
    "28": (FASHION, "Fashion-MNIST"),
    "32": (CIFAR, "CIFAR-10"),
    "64": ((3, 64, 64), "small photo"),
    "128": ((3, 128, 128), "photo"),
    # More than 3 channels, as the lecture says hyperspectral images have: one per band of wavelengths.
    "hyper64": ((10, 64, 64), "hyperspectral, 10 bands"),
}
STACK_PRESETS: dict[str, Preset] = {
    "Tiny CNN (Fashion-MNIST)": Preset("conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,flatten,fc10", FASHION),
    "Lecture-style: conv, pool, repeat": Preset(
        "conv3x16,relu,maxpool2,conv3x32,relu,maxpool2,conv3x64,relu,maxpool2,flatten,fc10", FASHION),
    "VGG-like block (32x32x3)": Preset(
        "conv3x32,relu,conv3x32,relu,maxpool2,conv3x64,relu,conv3x64,relu,maxpool2,flatten,fc128,relu,fc10", CIFAR),
    "All-convolutional with strided convs": Preset(
        "conv3x16,relu,conv3x32/s2,relu,conv3x32,relu,conv3x64/s2,relu,conv1x10,gap", FASHION),
    "Global average pooling head": Preset(
        "conv3x16,relu,maxpool2,conv3x32,relu,maxpool2,conv3x64,relu,gap,fc10", FASHION),
    "With batch normalization": Preset("conv3x16,bn,relu,maxpool2,conv3x32,bn,relu,maxpool2,gap,fc10", FASHION),
}
DEFAULT_STACK = STACK_PRESETS["Tiny CNN (Fashion-MNIST)"].stack
LECTURE_STACK = STACK_PRESETS["Lecture-style: conv, pool, repeat"].stack
