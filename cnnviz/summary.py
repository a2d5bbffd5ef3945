"""Architecture summaries: per layer, the output shape, parameters, multiply-adds, FLOPs and
activation memory of any torch model for a given input size, without allocating its weights.

The model is built on torch's *meta* device: parameters and activations there carry shapes
and dtypes but no storage, so VGG-16's 138,357,544 weights cost nothing, and a forward pass
with a meta input only propagates shapes (a few milliseconds). Forward hooks on every leaf
module record what each layer receives and returns; the counts follow from the shapes by
formula, layer type by layer type:

- convolution: m'·l'·d'·(k·k·d/groups + 1) multiply-adds, the lecture's formula, which counts
  the bias as one more multiply-add per output (`macs`); without the bias m'·l'·d'·k·k·d/groups
  (`macs_without_bias`). Parameters d'·(k·k·d/groups + 1).
- fully connected: n'·(n + 1) multiply-adds and parameters (n'·n without the bias).
- batch norm: 2·C multiply-adds, torchinfo's convention (one scale and one shift per channel;
  at inference it folds into the convolution before it), C without the shift.
- ReLU, max and mean pooling, dropout, flatten: 0 multiply-adds. The lecture calls ReLU and
  max pooling "maximum operations": comparisons, not multiply-adds.

These are exactly torchinfo's "Mult-Adds" per layer (tests check it layer by layer). FLOPs
are 2 x multiply-adds (one multiplication and one addition each). Activation memory is the
layer's output in float32 for one image.

Run `python -m cnnviz.summary vgg16 --input 224` for a table, `--json` for a list of layers.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import re
import sys
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import torch
from torch import nn

from .notation import approx, megabytes, shape

BYTES_PER_NUMBER = 4  # float32
MAX_INPUT_SIDE = 4096  # meta tensors cost nothing, but the numbers should stay meaningful
MAX_INPUT_CHANNELS = 64

# The lecture's "CNN as Nested Function" slide: approximate figures for VGG-16.
LECTURE_PARAMS = 132_000_000
LECTURE_MULTIPLY_ADDS = 16_000_000_000
LECTURE_INPUT = (3, 224, 224)


class SummaryError(ValueError):
    """A model or input that cannot be analysed; the message says why in plain words and,
    where the input is too small, names the layer where it breaks (`smallest`: the smallest
    square input side the model accepts, when known)."""

    def __init__(self, message: str, smallest: int | None = None):
        super().__init__(message)
        self.smallest = smallest


# --------------------------------------------------------------------------- the models


@dataclass(frozen=True)
class ModelChoice:
    key: str  # short name for URLs and the command line
    title: str
    constructor: str  # torchvision.models.<constructor>
    input_size: int  # the size it was trained at
    note: str


TORCHVISION_MODELS: dict[str, ModelChoice] = {
    "vgg16": ModelChoice("vgg16", "VGG-16", "vgg16", 224,
                         "13 convolutions 3x3 in 5 blocks, 3 fully connected layers (the lecture's example)."),
    "vgg11": ModelChoice("vgg11", "VGG-11", "vgg11", 224, "8 convolutions and 3 fully connected layers."),
    "vgg13": ModelChoice("vgg13", "VGG-13", "vgg13", 224, "10 convolutions and 3 fully connected layers."),
    "vgg19": ModelChoice("vgg19", "VGG-19", "vgg19", 224, "16 convolutions and 3 fully connected layers."),
    "alexnet": ModelChoice("alexnet", "AlexNet", "alexnet", 224,
                           "5 convolutions with large early kernels (11x11, 5x5), 3 fully connected layers."),
    "resnet18": ModelChoice("resnet18", "ResNet-18", "resnet18", 224,
                            "17 convolutions with batch norm and shortcut connections, global average "
                            "pooling, one fully connected layer."),
}


@lru_cache(maxsize=None)
def meta_model(key: str) -> nn.Module:
    """torchvision's architecture `key`, built on the meta device: no weight memory at all.

    Cached per model (building takes ~20 ms, tracing it ~3 ms); `summarize` traces it afresh
    for every input size. Do not run it yourself: its parameters hold no values.
    """
    if key not in TORCHVISION_MODELS:
        raise SummaryError(f"Unknown model {key!r}; choose one of {', '.join(TORCHVISION_MODELS)}.")
    import torchvision  # imported here: it costs about a second, and the stack path never needs it

    with torch.device("meta"):
        model = getattr(torchvision.models, TORCHVISION_MODELS[key].constructor)(weights=None)
    return model.eval()


def stack_meta_model(stack, in_shape: Sequence[int]) -> nn.Module:
    """A cnnviz stack ('conv3x8,relu,maxpool2,...') as a torch model on the meta device."""
    from .network import StackError, build_model

    try:
        with torch.device("meta"):
            return build_model(stack, tuple(in_shape)).eval()
    except StackError as error:
        raise SummaryError(str(error)) from None


# --------------------------------------------------------------------------- one layer

CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOL_TYPES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
ADAPTIVE_TYPES = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                  nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ACTIVATION_TYPES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.GELU, nn.SiLU, nn.ELU,
                    nn.Hardswish, nn.Hardtanh, nn.Identity)


_KIND_OF_TYPE: dict[type, str] = {}


def layer_kind(module: nn.Module) -> str:
    """'conv', 'pool', 'adaptive pool', 'fc', 'batchnorm', 'activation', 'dropout', 'flatten',
    'softmax' or 'other'."""
    cls = type(module)
    kind = _KIND_OF_TYPE.get(cls)
    if kind is None:
        kind = "other"
        for types, name in ((CONV_TYPES, "conv"), (POOL_TYPES, "pool"), (ADAPTIVE_TYPES, "adaptive pool"),
                            ((nn.Linear,), "fc"), (NORM_TYPES, "batchnorm"), (ACTIVATION_TYPES, "activation"),
                            ((nn.Dropout, nn.Dropout2d, nn.Dropout1d), "dropout"), ((nn.Flatten,), "flatten"),
                            ((nn.Softmax, nn.LogSoftmax), "softmax")):
            if issubclass(cls, types):
                kind = name
                break
        _KIND_OF_TYPE[cls] = kind
    return kind


def _pair(value) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _times(values: Sequence[int]) -> str:
    return "×".join(str(v) for v in values)


def describe(module: nn.Module) -> str:
    """Plain words for a layer, e.g. 'conv 3×3, 64 filters, stride 1, padding 1'."""
    kind = layer_kind(module)
    if kind == "conv":
        k = tuple(module.kernel_size)
        text = f"conv {_times(k)}, {module.out_channels} filters"
        stride, padding = tuple(module.stride), module.padding
        if any(s != 1 for s in stride):
            text += f", stride {_times(stride) if len(set(stride)) > 1 else stride[0]}"
        if isinstance(padding, str):
            text += f", padding '{padding}'" if padding != "same" else ""
        elif tuple(padding) != tuple(n // 2 for n in k):  # "same" padding for odd kernels goes unsaid
            text += f", padding {_times(padding) if len(set(padding)) > 1 else padding[0]}"
        if module.groups != 1:
            text += f", {module.groups} groups"
        return text
    if kind == "pool":
        what = "max pool" if "Max" in type(module).__name__ else "mean pool"
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        text = f"{what} {_times(k)}, stride {s[0] if len(set(s)) == 1 else _times(s)}"
        if any(_pair(module.padding)):
            text += f", padding {_pair(module.padding)[0]}"
        return text
    if kind == "adaptive pool":
        what = "max" if "Max" in type(module).__name__ else "average"
        size = module.output_size
        size = _pair(size) if not isinstance(size, int) else (size, size)
        return f"adaptive {what} pool to {_times(size)}"
    if kind == "fc":
        return f"fully connected, {module.out_features:,} units"
    if kind == "batchnorm":
        return "batch norm"
    if kind == "dropout":
        return f"dropout p={module.p:g}"
    if kind == "activation":
        return type(module).__name__ if not isinstance(module, nn.ReLU) else "ReLU"
    return type(module).__name__


def _geometry(module: nn.Module) -> str:
    """'kernel 3×3, stride 1, padding 1' (square values written once)."""
    def one(value):
        value = _pair(value)
        return str(value[0]) if len(set(value)) == 1 else _times(value)

    stride = module.stride if module.stride is not None else module.kernel_size
    padding = module.padding  # a number, a pair, or a word such as 'same'
    return (f"kernel {_times(_pair(module.kernel_size))}, stride {one(stride)}, "
            f"padding {padding if isinstance(padding, str) else one(padding)}")


def _counts(module: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(parameters, multiply-adds with bias, multiply-adds without bias) for one call, batch 1."""
    params = sum(p.numel() for p in module.parameters(recurse=False))
    kind = layer_kind(module)
    if kind == "conv":
        outputs = math.prod(out_shape)
        per_output = module.weight.numel() // module.out_channels  # k·k·d/groups
        without = outputs * per_output
        return params, without + (outputs if module.bias is not None else 0), without
    if kind == "fc":
        rows = math.prod(out_shape[:-1])  # 1 for a vector
        without = rows * module.in_features * module.out_features
        return params, without + (rows * module.out_features if module.bias is not None else 0), without
    if kind == "batchnorm":
        weight = module.weight.numel() if module.weight is not None else 0
        return params, params, weight
    # Anything else with parameters: one multiply-add per parameter (torchinfo's rule).
    return params, params, params


@dataclass(frozen=True)
class LayerRow:
    """One call of a leaf module during the forward pass of one image.

    Shapes are channels first and without the batch: (C, H, W) for feature maps, (N,) for
    vectors. A module called twice (ResNet's ReLU) gives two rows; the second has params 0
    (the weights are the same) but its own multiply-adds.
    """

    index: int  # 0-based, in the order the layers run
    name: str  # module path, as in model.named_modules(): 'features.0'
    label: str  # short name for charts: 'conv1_1', 'fc1', 'layer1.0.conv1'
    type: str  # the module's class: 'Conv2d'
    kind: str  # see layer_kind
    description: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int
    macs: int  # multiply-adds, bias included (the lecture's count; torchinfo's "Mult-Adds")
    macs_without_bias: int
    repeated: bool = False
    kernel: tuple[int, ...] | None = None  # conv / pool
    groups: int = 1
    bias: bool = False

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def outputs(self) -> int:
        return math.prod(self.out_shape)

    @property
    def activation_bytes(self) -> int:
        return self.outputs * BYTES_PER_NUMBER

    geometry: str = ""  # 'kernel 3×3, stride 1, padding 1' for conv and pool

    def formulas(self) -> list[tuple[str, str, int]]:
        """(what, formula with this layer's numbers, value), in the lecture's notation:
        input m×l×d, output m′×l′×d′, kernel k×k."""
        if self.kind == "conv" and len(self.out_shape) == 3:
            d_out, m, l = self.out_shape
            d = self.in_shape[0] // self.groups
            k = "·".join(str(v) for v in self.kernel)
            b = " + 1" if self.bias else ""
            dd = f"d/{self.groups}" if self.groups != 1 else "d"
            return [
                ("parameters", f"d′·(k·k·{dd}{' + 1' if self.bias else ''}) = {d_out}·({k}·{d}{b})", self.params),
                ("multiply-adds", f"m′·l′·d′·(k·k·{dd}{' + 1' if self.bias else ''}) = "
                                              f"{m}·{l}·{d_out}·({k}·{d}{b})", self.macs),
                ("without bias", f"m′·l′·d′·k·k·{dd} = {m}·{l}·{d_out}·{k}·{d}", self.macs_without_bias),
                ("FLOPs", f"2 × multiply-adds = 2 × {self.macs:,}", self.flops),
            ]
        if self.kind == "fc" and len(self.out_shape) == 1:
            n_out, n_in = self.out_shape[0], self.in_shape[-1]
            b = " + 1" if self.bias else ""
            return [
                ("parameters", f"n′·(n{b}) = {n_out}·({n_in}{b})", self.params),
                ("multiply-adds", f"n′·(n{b}) = {n_out}·({n_in}{b})", self.macs),
                ("without bias", f"n′·n = {n_out}·{n_in}", self.macs_without_bias),
                ("FLOPs", f"2 × multiply-adds = 2 × {self.macs:,}", self.flops),
            ]
        if self.kind == "batchnorm":
            c = self.out_shape[0]
            return [("parameters", f"2·C = 2·{c} (a scale and a shift per channel)", self.params),
                    ("multiply-adds", f"2·C = 2·{c} (torchinfo's convention)", self.macs)]
        if self.kind in ("pool", "adaptive pool", "activation") and self.macs == 0:
            what = ("maximum operations (comparisons), no multiply-adds" if "max" in self.description.lower()
                    or self.description == "ReLU" else "no weights; not counted as multiply-adds")
            return [("parameters", "none", 0), ("multiply-adds", what, 0)]
        return [("parameters", "", self.params), ("multiply-adds", "", self.macs)]


# --------------------------------------------------------------------------- a whole model


@dataclass(frozen=True)
class Summary:
    key: str  # 'vgg16', or 'stack' for a cnnviz stack
    title: str
    in_shape: tuple[int, int, int]  # (C, H, W)
    layers: tuple[LayerRow, ...]
    params: int  # every parameter of the model, each counted once

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def macs_without_bias(self) -> int:
        return sum(r.macs_without_bias for r in self.layers)

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def layer_params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def activations(self) -> int:
        """Numbers a forward pass of one image produces: the input plus every layer's output
        (an upper bound: in-place ReLUs reuse their input's memory)."""
        return math.prod(self.in_shape) + sum(r.outputs for r in self.layers)

    @property
    def activation_bytes(self) -> int:
        return self.activations * BYTES_PER_NUMBER

    @property
    def max_operations(self) -> int:
        """The lecture's "maximum operations", which are not multiply-adds: one comparison per
        ReLU output, k·k − 1 per max-pooling output."""
        total = 0
        for r in self.layers:
            if r.type == "ReLU":
                total += r.outputs
            elif r.type.startswith("MaxPool") and r.kernel:
                total += r.outputs * (math.prod(r.kernel) - 1)
        return total

    @property
    def param_bytes(self) -> int:
        return self.params * BYTES_PER_NUMBER

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.layers[-1].out_shape if self.layers else self.in_shape

    def share(self, kind: str, what: str = "params") -> float:
        """Fraction of the parameters (or 'macs') held by layers of one kind."""
        total = getattr(self, what)
        return sum(getattr(r, what) for r in self.layers if r.kind == kind) / total if total else 0.0

    def largest(self, what: str = "params", kind: str | None = None) -> LayerRow | None:
        """The layer with the most parameters (or 'macs'); of one kind only if `kind` is given
        (None if the model has no layer of that kind)."""
        rows = [r for r in self.layers if kind is None or r.kind == kind]
        return max(rows, key=lambda r: getattr(r, what)) if rows else None

    def row(self, index: int) -> LayerRow:
        return self.layers[index]

    def as_dicts(self) -> list[dict]:
        """The layers for JSON: output_shape channels first (torch's order), without the batch."""
        return [{"name": r.name, "label": r.label, "type": r.type, "description": r.description,
                 "output_shape": list(r.out_shape), "params": r.params, "macs": r.macs,
                 "macs_without_bias": r.macs_without_bias, "flops": r.flops,
                 "activation_bytes": r.activation_bytes} for r in self.layers]


_TRACE_LOCK = threading.RLock()  # cached meta models are shared; hooks must not see another trace


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    if isinstance(value, dict):
        return _first_tensor(list(value.values()))
    return None


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if next(m.children(), None) is None]


def _linear_shape(module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """What nn.Linear returns, as a meta tensor, without running torch's meta matmul (which
    goes through Python decompositions and costs ~0.4 ms per call, most of a VGG trace)."""
    if x.shape[-1] != module.in_features:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied "
                           f"({math.prod(x.shape[:-1])}x{x.shape[-1]} and {module.in_features}x{module.out_features})")
    return x.new_empty((*x.shape[:-1], module.out_features))


@dataclass
class _Failure:
    name: str
    module: nn.Module | None
    in_shape: tuple[int, ...] | None
    inside: bool  # the error came from this leaf (else: from code after it)
    error: Exception


def _trace(model: nn.Module, in_shape: tuple[int, ...]):
    """Run a meta forward pass; returns (records, failure or None)."""
    records: list[tuple[str, nn.Module, tuple, tuple]] = []
    state = {"last": None}
    handles = []

    def pre_hook(name):
        def hook(module, args):
            x = _first_tensor(args)
            state["last"] = (name, module, tuple(x.shape[1:]) if x is not None else None, False)
        return hook

    def post_hook(name):
        def hook(module, args, output):
            x, y = _first_tensor(args), _first_tensor(output)
            shape_in = tuple(x.shape[1:]) if x is not None else ()
            records.append((name, module, shape_in, tuple(y.shape[1:]) if y is not None else ()))
            last = state["last"]
            state["last"] = (name, module, last[2] if last else None, True)
        return hook

    _TRACE_LOCK.acquire()
    patched = []
    for name, module in _leaves(model):
        handles.append(module.register_forward_pre_hook(pre_hook(name)))
        handles.append(module.register_forward_hook(post_hook(name)))
        if type(module) is nn.Linear and "forward" not in module.__dict__:
            module.forward = _linear_shape.__get__(module)
            patched.append(module)
    try:
        with torch.no_grad():
            model(torch.empty((1, *in_shape), device="meta"))
    except Exception as error:  # torch reports impossible shapes as RuntimeError / ValueError
        last = state["last"]
        if last is None:
            return records, _Failure("", None, tuple(in_shape), True, error)
        name, module, shape, done = last
        return records, _Failure(name, module, shape, not done, error)
    finally:
        for handle in handles:
            handle.remove()
        for module in patched:
            del module.forward
        _TRACE_LOCK.release()
    return records, None


def _labels(records, vgg_style: bool) -> list[str]:
    """Short names: VGG's conv<block>_<n>, pool<block>, fc<n>; indexed Sequential models
    conv<n>, pool<n>, fc<n>; models with named modules (ResNet) keep their module paths.
    Activations, dropout and batch norm are named after the layer they follow."""
    labels: list[str] = []
    counts: dict[str, int] = {}
    block, in_block, main = 1, 0, ""
    map_before = False  # did the layer before output a feature map?
    for name, module, shape_in, shape_out in records:
        kind = layer_kind(module)
        if map_before and len(shape_in) == 1:  # flattened in forward(): AlexNet's dropout follows "flatten"
            main = "flatten"
        map_before = len(shape_out) == 3
        indexed = re.fullmatch(r"(\w+\.)?\d+", name) is not None or name == ""  # features.3, classifier.0
        if not indexed:
            labels.append(name)
            main = name
            continue
        if kind == "conv":
            if vgg_style:
                in_block += 1
                main = f"conv{block}_{in_block}"
            else:
                counts["conv"] = counts.get("conv", 0) + 1
                main = f"conv{counts['conv']}"
            labels.append(main)
        elif kind == "pool":
            counts["pool"] = counts.get("pool", 0) + 1
            main = f"pool{block if vgg_style else counts['pool']}"
            labels.append(main)
            if vgg_style:
                block, in_block = block + 1, 0
        elif kind == "fc":
            counts["fc"] = counts.get("fc", 0) + 1
            main = f"fc{counts['fc']}"
            labels.append(main)
        elif kind in ("activation", "dropout", "batchnorm"):
            word = {"activation": describe(module), "dropout": "dropout", "batchnorm": "bn"}[kind]
            labels.append(f"{word} ({main})" if main else word)
        else:
            labels.append(kind if kind != "other" else type(module).__name__)
            if kind == "flatten":
                main = "flatten"
    return labels


def _check_input(in_shape) -> tuple[int, int, int]:
    try:
        c, h, w = (int(n) for n in in_shape)
    except (TypeError, ValueError):
        raise SummaryError(f"The input shape must be (channels, height, width), not {in_shape!r}.") from None
    if not 1 <= c <= MAX_INPUT_CHANNELS:
        raise SummaryError(f"The input must have 1 to {MAX_INPUT_CHANNELS} channels, not {c}.")
    for what, n in (("height", h), ("width", w)):
        if not 1 <= n <= MAX_INPUT_SIDE:
            raise SummaryError(f"The input {what} must be from 1 to {MAX_INPUT_SIDE} pixels, not {n}.")
    return c, h, w


def _meta_copy(model: nn.Module) -> nn.Module:
    """The same structure with every parameter and buffer replaced by a meta tensor of its
    shape: the weights are never copied (deepcopy's memo hands it the replacements)."""
    memo: dict[int, object] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
    for b in model.buffers():
        memo[id(b)] = torch.empty_like(b, device="meta")
    return copy.deepcopy(model, memo)


def summarize_module(model: nn.Module, in_shape: Sequence[int], *, key: str = "model",
                     title: str | None = None, vgg_style: bool = False) -> Summary:
    """Summarise any torch model for one image of shape (C, H, W).

    A model on the meta device is traced as it is (nothing allocated). A model with real
    weights is traced through a meta copy of its structure (its weights are not copied).
    """
    in_shape = _check_input(in_shape)
    title = title or type(model).__name__
    if any(not p.is_meta for p in model.parameters()) or any(not b.is_meta for b in model.buffers()):
        model = _meta_copy(model)
    records, failure = _trace(model, in_shape)
    if failure is not None:
        message, smallest = _explain(failure, title, in_shape, records, model, vgg_style)
        raise SummaryError(message, smallest)
    labels = _labels(records, vgg_style)
    rows, seen = [], set()
    for i, ((name, module, shape_in, shape_out), label) in enumerate(zip(records, labels)):
        params, macs, without = _counts(module, shape_in, shape_out)
        repeated = id(module) in seen
        seen.add(id(module))
        kind = layer_kind(module)
        kernel = None
        if kind == "conv":
            kernel = tuple(module.kernel_size)
        elif kind == "pool":
            kernel = _pair(module.kernel_size)
        rows.append(LayerRow(
            i, name, label, type(module).__name__, kind, describe(module), shape_in, shape_out,
            0 if repeated else params, macs, without, repeated, kernel,
            getattr(module, "groups", 1) if kind == "conv" else 1,
            getattr(module, "bias", None) is not None if kind in ("conv", "fc") else False,
            _geometry(module) if kind in ("conv", "pool") else ""))
    total = sum(p.numel() for p in model.parameters())
    return Summary(key, title, in_shape, tuple(rows), total)


def summarize(model: str, input_size: int | Sequence[int] = 224, *, channels: int = 3) -> Summary:
    """Summarise torchvision's `model` ('vgg16', 'vgg11', 'vgg13', 'vgg19', 'alexnet',
    'resnet18') or a cnnviz stack text for a square input of `input_size` pixels (or an
    (H, W) pair). Raises SummaryError with a message naming the layer where a too-small
    input breaks."""
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    in_shape = _check_input((channels, *size))
    if model in TORCHVISION_MODELS:
        choice = TORCHVISION_MODELS[model]
        return summarize_module(meta_model(model), in_shape, key=model, title=choice.title,
                                vgg_style=model.startswith("vgg"))
    if isinstance(model, str) and re.fullmatch(r"[a-z0-9/,\s]+", model.strip().lower() or "?") and "," in model:
        return summarize_stack(model, in_shape)
    raise SummaryError(f"Unknown model {model!r}: choose one of {', '.join(TORCHVISION_MODELS)}, "
                       "or give a stack such as 'conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,flatten,fc10'.")


def summarize_stack(stack, in_shape: Sequence[int], *, built_for: Sequence[int] | None = None,
                    title: str = "CNN") -> Summary:
    """Summarise a cnnviz stack (text or LayerSpecs) for an input of shape (C, H, W).

    built_for: the input shape the stack was made for (its fully connected layers fix it);
    defaults to in_shape. Feeding it another size gives the SummaryError torch would.
    """
    in_shape = _check_input(in_shape)
    model = stack_meta_model(stack, built_for or in_shape)
    return summarize_module(model, in_shape, key="stack", title=title)


# --------------------------------------------------------------------------- explaining failures


def _explain(failure: _Failure, title: str, in_shape, records, model,
             vgg_style: bool) -> tuple[str, int | None]:
    """(message, smallest working input side or None)."""
    c, h, w = in_shape
    start = f"{title} cannot take a {h}×{w}×{c} input"
    module = failure.module
    if module is None:
        return f"{start}: {failure.error}", None
    labels = _labels(records + [(failure.name, module, (), ())], vgg_style) if failure.inside else None
    where = (f"layer {len(records) + 1}, {labels[-1]} ({describe(module)}, module '{failure.name}')"
             if failure.inside else None)
    arriving = failure.in_shape
    kind = layer_kind(module)
    if failure.inside and kind in ("conv", "pool") and arriving is not None and len(arriving) == 3:
        k = tuple(module.kernel_size) if kind == "conv" else _pair(module.kernel_size)
        pad = module.padding if not isinstance(module.padding, str) else (0, 0)
        pad = _pair(pad)
        smallest = smallest_input(model, c, max(in_shape[1:]))
        text = (f"{start}: at {where} the maps are only {shape(arriving)}, smaller than its "
                f"{_times(k)} window" + (f" even with padding {pad[0]}" if any(pad) else "") + ".")
        if smallest is not None:
            text += f" The smallest input {title} accepts is {smallest}×{smallest}."
        return text, smallest
    if failure.inside and kind == "fc" and arriving:
        return (f"{start}: at {where} the fully connected layer expects {module.in_features:,} inputs, "
                f"but this input size gives it {arriving[-1]:,}. A network that flattens its feature maps "
                f"into a fully connected layer only takes the input size it was built for."), None
    if failure.inside:
        return f"{start}: at {where}, whose input is {shape(arriving or ())}, torch reports: {failure.error}", None
    after = labels[-1] if (labels := _labels(records, vgg_style)) else failure.name
    return (f"{start}: after layer {len(records)}, {after} (module '{failure.name}'), torch reports: "
            f"{failure.error}"), None


def smallest_input(model: nn.Module, channels: int, start: int = 1) -> int | None:
    """The smallest square side (pixels) this model runs on, found on meta forward passes:
    doubling from `start` until one works, then bisecting. None if nothing up to
    MAX_INPUT_SIDE works (e.g. a fully connected layer that fixes the size)."""
    def works(n: int) -> bool:
        return _trace(model, (channels, n, n))[1] is None

    low, high = 0, max(1, start)
    while not works(high):
        if high >= MAX_INPUT_SIDE:
            return None
        low, high = high, min(MAX_INPUT_SIDE, high * 2)
    while high - low > 1:
        mid = (low + high) // 2
        if works(mid):
            high = mid
        else:
            low = mid
    return high


# --------------------------------------------------------------------------- the lecture's walk-through


@dataclass(frozen=True)
class Box:
    """One box of the block diagram: a layer that changes what the network holds, with the
    activations, batch norms and dropouts that follow it folded in."""

    kind: str  # 'input', 'conv', 'pool', 'flatten', 'fc', 'softmax', 'other'
    label: str
    shape: tuple[int, ...]  # what the box outputs (C, H, W) or (N,)
    rows: tuple[int, ...]  # indices of the layers it stands for (none for input/flatten/softmax)
    description: str

    @property
    def spatial(self) -> bool:
        return len(self.shape) == 3


FOLDED = ("activation", "batchnorm", "dropout")


def boxes(summary: Summary, softmax: bool = True) -> list[Box]:
    """The diagram's boxes: input, every conv / pool / fc layer, a 'flatten' where a map
    becomes a vector, and (for a classifier) the softmax the lecture draws at the end.

    The flatten is drawn whether it is a module (nn.Flatten) or happens in the model's
    forward() (torchvision's torch.flatten), whatever layer comes next: a fully connected
    one (VGG), a dropout (AlexNet) or an activation. An adaptive pool that leaves the shape
    unchanged (VGG's at 224×224) is folded into the box before it, as the lecture does not
    draw it.
    """
    out: list[Box] = [Box("input", "input", summary.in_shape, (), f"input image {shape(summary.in_shape)}")]
    for row in summary.layers:
        if row.kind != "flatten" and len(row.in_shape) == 1 and out[-1].spatial:
            out.append(_flatten_box(out[-1].shape, ()))  # flattened in forward(): no module of its own
        prev = out[-1]
        same = row.out_shape == prev.shape
        if (row.kind in FOLDED or row.kind == "flatten" or (row.kind == "adaptive pool" and same)) \
                and same and prev.kind != "input":
            quiet = row.kind == "adaptive pool"  # changes nothing here; the lecture does not draw it
            out[-1] = Box(prev.kind, prev.label, prev.shape, prev.rows + (row.index,),
                          prev.description + ("" if quiet else f" + {row.description}"))
            continue
        if row.kind == "flatten":
            out.append(_flatten_box(row.in_shape, (row.index,)))
            continue
        kind = {"conv": "conv", "pool": "pool", "adaptive pool": "pool", "fc": "fc"}.get(row.kind, "other")
        out.append(Box(kind, row.label, row.out_shape, (row.index,), row.description))
    if softmax and out[-1].kind == "fc":
        out.append(Box("softmax", "softmax", out[-1].shape, (),
                       f"softmax: {out[-1].shape[0]:,} scores → probabilities"))
    return out


def _flatten_box(map_shape: tuple[int, ...], rows: tuple[int, ...]) -> Box:
    n = math.prod(map_shape)
    return Box("flatten", "flatten", (n,), rows, f"flatten {shape(map_shape)} → {n:,}")


def _folded(summary: Summary, box: Box) -> str:
    """' + batch norm + ReLU': what follows the box's main layer (dropout left out)."""
    words = []
    for r in box.rows[1:]:
        row = summary.row(r)
        if row.kind in ("activation", "batchnorm") and row.description not in words:
            words.append(row.description)
    return "".join(f" + {w}" for w in words)


def walkthrough(summary: Summary) -> list[str]:
    """The lecture's walk-through in words, one line per step, from the real shapes:
    'Input: 224×224×3 = 150,528 numbers', '2 convolutions 3×3 with 64 filters (+ ReLU) → 224×224×64', ..."""
    lines = [f"Input: {shape(summary.in_shape)} = {math.prod(summary.in_shape):,} numbers"]
    items = boxes(summary)
    i = 1
    while i < len(items):
        box = items[i]
        if box.kind == "conv":
            j = i
            while (j + 1 < len(items) and items[j + 1].kind == "conv" and items[j + 1].shape == box.shape
                   and items[j + 1].description.split(",")[0] == box.description.split(",")[0]):
                j += 1
            n = j - i + 1
            row = summary.row(box.rows[0])
            k = _times(row.kernel)
            extra = _folded(summary, box)
            word = "convolution" if n == 1 else f"{n} convolutions"
            lines.append(f"{word} {k} with {box.shape[0]:,} filters{extra} → {shape(box.shape)}")
            i = j + 1
            continue
        if box.kind == "pool":
            lines.append(f"{box.description} → {shape(box.shape)}")
        elif box.kind == "flatten":
            lines.append(f"flatten {shape(items[i - 1].shape)} → {box.shape[0]:,}-dimensional vector")
        elif box.kind == "fc":
            lines.append(f"fully connected, {box.shape[0]:,} neurons{_folded(summary, box)}")
        elif box.kind == "softmax":
            lines.append(f"softmax → {box.shape[0]:,} class probabilities")
        else:
            lines.append(f"{box.description} → {shape(box.shape)}")
        i += 1
    return lines


def overview(summary: Summary) -> str:
    """The model in one sentence, from its layers: 'maps a 224×224×3 image to 1,000 class
    scores through 13 convolution layers (3×3 kernels), 5 max-pooling layers and 3 fully
    connected layers'. Layers that change nothing (VGG's adaptive pool at 224×224) and those
    without weights or pooling (ReLU, dropout, flatten) go unsaid."""
    def layers(n: int, what: str) -> str:
        return f"{n} {what} layer" + ("s" if n != 1 else "")

    parts = []
    convs = [r for r in summary.layers if r.kind == "conv"]
    if convs:
        kernels = list(dict.fromkeys(_times(r.kernel) for r in convs))
        text = f"{layers(len(convs), 'convolution')} ({_and(kernels)} kernels)"
        norms = sum(r.kind == "batchnorm" for r in summary.layers)
        parts.append(text + (f" with {norms} batch norm" + ("s" if norms != 1 else "") if norms else ""))
    pools: dict[str, int] = {}
    for r in summary.layers:
        if r.kind == "pool":
            what = "max-pooling" if r.type.startswith("Max") else "average-pooling"
        elif r.kind == "adaptive pool" and r.out_shape != r.in_shape:
            average = "Avg" in r.type
            what = (("global average-pooling" if average else "global max-pooling") if r.out_shape[1:] == (1, 1)
                    else f"adaptive {'average' if average else 'max'}-pooling (to {_times(r.out_shape[1:])})")
        else:
            continue
        pools[what] = pools.get(what, 0) + 1
    parts += [layers(n, what) for what, n in pools.items()]
    fcs = sum(r.kind == "fc" for r in summary.layers)
    if fcs:
        parts.append(layers(fcs, "fully connected"))
    out = summary.out_shape
    result = f"{out[0]:,} class scores" if len(out) == 1 else f"a {shape(out)} map"
    through = f" through {_and(parts)}" if parts else ""
    return f"maps a {shape(summary.in_shape)} image to {result}{through}"


def _and(words: Sequence[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


# --------------------------------------------------------------------------- numbers for people


def table_text(summary: Summary) -> str:
    """The summary as a fixed-width table with totals, for a terminal or a slide."""
    headers = ["#", "layer", "module", "what", "output", "params", "mult-adds", "w/o bias", "activation"]
    body = [[str(r.number), r.label, r.name, r.description, shape(r.out_shape), f"{r.params:,}",
             f"{r.macs:,}", f"{r.macs_without_bias:,}", megabytes(r.activation_bytes)] for r in summary.layers]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]
    right = {0, 5, 6, 7, 8}

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    out = [f"{summary.title}, input {shape(summary.in_shape)} (one image, float32)",
           line(headers), "  ".join("-" * w for w in widths), *(line(r) for r in body), ""]
    out.append(f"Parameters:          {summary.params:>18,}  ({approx(summary.params)}, "
               f"{megabytes(summary.param_bytes)})")
    out.append(f"Multiply-adds:       {summary.macs:>18,}  ({approx(summary.macs)}; bias counted, as in the lecture)")
    out.append(f"  without bias:      {summary.macs_without_bias:>18,}")
    out.append(f"FLOPs (2 × MACs):    {summary.flops:>18,}  ({approx(summary.flops)})")
    out.append(f"Activations:         {summary.activations:>18,}  numbers, input included "
               f"({megabytes(summary.activation_bytes)})")
    if summary.key == "vgg16" and summary.in_shape == LECTURE_INPUT:
        out.append(f"Lecture (approx.):   parameters ≈ {LECTURE_PARAMS:,}, multiply-adds ≈ {LECTURE_MULTIPLY_ADDS:,}")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cnnviz.summary",
        description="Per-layer output shapes, parameters and multiply-adds of a CNN, computed on torch's "
                    "meta device (no weights allocated).",
        epilog="Examples: python -m cnnviz.summary vgg16 --input 224 | "
               "python -m cnnviz.summary resnet18 --json | "
               "python -m cnnviz.summary 'conv3x8,relu,maxpool2,flatten,fc10' --input 28 --channels 1")
    parser.add_argument("model", help=f"{', '.join(TORCHVISION_MODELS)}, or a cnnviz stack text")
    parser.add_argument("--input", type=int, default=None, metavar="PIXELS",
                        help="side of the square input (default: 224; 28 for a stack)")
    parser.add_argument("--channels", type=int, default=None, help="input channels (default: 3; 1 for a stack)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of layers: name, label, type, description, output_shape "
                             "(C, H, W), params, macs, macs_without_bias, flops, activation_bytes")
    args = parser.parse_args(argv)
    stack = args.model not in TORCHVISION_MODELS
    size = args.input if args.input is not None else (28 if stack else 224)
    channels = args.channels if args.channels is not None else (1 if stack else 3)
    try:
        summary = summarize(args.model, size, channels=channels)
    except SummaryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        _print(summary, args.json)
    except BrokenPipeError:  # `| head` closed the pipe: fine
        sys.stderr.close()
    return 0


def _print(summary: Summary, as_json: bool) -> None:
    if as_json:
        # One layer per line: easy to read, to diff and to paste into a slide's notes.
        print("[\n" + ",\n".join(" " + json.dumps(d, ensure_ascii=False) for d in summary.as_dicts()) + "\n]")
    else:
        print(table_text(summary))


if __name__ == "__main__":
    sys.exit(main())
