"""Convolution as the lecture draws it: a filter slides over the (padded) input and
each output is a dot product plus a bias.

Layout follows torch: an input is (d, m, l), channels first; a layer's filters are
(d', d, k, k); biases are (d',). The output is computed the way a student would by
hand (cut out each window, multiply, add) and tests hold it to F.conv2d.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F

from .notation import number, term


class ConvError(ValueError):
    """A layer setting that cannot work; the message explains why in the lecture's terms."""


@dataclass(frozen=True)
class Padding:
    """Zeros added on each side. 'same' for an even kernel is uneven, as in torch."""

    top: int
    bottom: int
    left: int
    right: int

    @classmethod
    def resolve(cls, padding: int | str, kernel: int, dilation: int = 1, stride: int = 1) -> Padding:
        """Turn a user's choice ('valid', 'same' or a number p) into four sides."""
        if padding == "valid":
            return cls(0, 0, 0, 0)
        if padding == "same":
            if stride != 1:
                raise ConvError(
                    "'same' padding keeps the output as large as the input only with stride 1; "
                    f"with stride {stride} choose a number for the padding instead."
                )
            total = dilation * (kernel - 1)
            before = total // 2
            return cls(before, total - before, before, total - before)
        p = int(padding)
        if p < 0:
            raise ConvError(f"Padding must be 0 or more, not {p}.")
        return cls(p, p, p, p)


def output_size(n: int, kernel: int, padding: int = 0, stride: int = 1, dilation: int = 1,
                extra_padding: int = 0) -> int:
    """floor((n + 2p - d(k-1) - 1) / s) + 1; extra_padding adds to one side only (uneven 'same').

    Returns 0 or less when the kernel does not fit at all.
    """
    span = dilation * (kernel - 1) + 1
    room = n + 2 * padding + extra_padding - span
    return room // stride + 1 if room >= 0 else 0


def output_size_formula(n: int, kernel: int, padding: Padding, stride: int, dilation: int,
                        axis: str = "height") -> str:
    """The formula with this layer's numbers written in, for the page to show."""
    before, after = (padding.top, padding.bottom) if axis == "height" else (padding.left, padding.right)
    pad_term = f"2·{before}" if before == after else f"{before} + {after}"
    size = output_size(n, kernel, 0, stride, dilation, extra_padding=before + after)
    return (f"⌊({n} + {pad_term} − {dilation}·({kernel} − 1) − 1) / {stride}⌋ + 1 = {size}"
            if size > 0 else f"⌊({n} + {pad_term} − {dilation}·({kernel} − 1) − 1) / {stride}⌋ + 1 ≤ 0")


@dataclass(frozen=True)
class Geometry:
    kernel: int
    padding: Padding
    stride: int = 1
    dilation: int = 1

    @classmethod
    def make(cls, kernel: int, padding: int | str = 0, stride: int = 1, dilation: int = 1) -> Geometry:
        if kernel < 1:
            raise ConvError(f"The kernel size must be at least 1, not {kernel}.")
        if stride < 1:
            raise ConvError(f"The stride must be at least 1, not {stride}.")
        if dilation < 1:
            raise ConvError(f"The dilation must be at least 1, not {dilation}.")
        return cls(kernel, Padding.resolve(padding, kernel, dilation, stride), stride, dilation)

    def window(self, row: int, col: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Rows and columns of the padded input under the taps for output (row, col)."""
        return (tuple(row * self.stride + a * self.dilation for a in range(self.kernel)),
                tuple(col * self.stride + b * self.dilation for b in range(self.kernel)))

    def unfold(self, padded: torch.Tensor) -> torch.Tensor:
        """Every window of a padded (d, H, W) input as a row (positions, d·k·k), row-major."""
        return F.unfold(padded[None], self.kernel, dilation=self.dilation, stride=self.stride)[0].T

    @property
    def span(self) -> int:
        """How many input pixels a dilated kernel covers along one axis."""
        return self.dilation * (self.kernel - 1) + 1

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        p = self.padding
        return (output_size(height, self.kernel, 0, self.stride, self.dilation, p.top + p.bottom),
                output_size(width, self.kernel, 0, self.stride, self.dilation, p.left + p.right))

    def check_fits(self, height: int, width: int) -> None:
        """Raise ConvError with an explanation when no window position exists."""
        p = self.padding
        padded = (height + p.top + p.bottom, width + p.left + p.right)
        for axis, size in zip(("tall", "wide"), padded):
            if size < self.span:
                dilated = (f" (dilation {self.dilation} spreads the {self.kernel} taps over "
                           f"{self.dilation}·({self.kernel} − 1) + 1 = {self.span} pixels)"
                           if self.dilation > 1 else "")
                raise ConvError(
                    f"No output: the padded input is only {size} pixels {axis}, but the filter "
                    f"window needs {self.span}{dilated}. Use a smaller kernel or dilation, or more padding."
                )


@dataclass(frozen=True)
class ConvCounts:
    """The lecture's counts for one layer: k·k·d + 1 per filter, d'(k·k·d + 1) per layer,
    and one multiply-add per weight (the bias counted as one) for each output."""

    kernel: int
    in_channels: int
    out_channels: int
    out_height: int
    out_width: int

    @property
    def params_per_filter(self) -> int:
        return self.kernel * self.kernel * self.in_channels + 1

    @property
    def params(self) -> int:
        return self.out_channels * self.params_per_filter

    @property
    def outputs(self) -> int:
        return self.out_height * self.out_width * self.out_channels

    @property
    def macs(self) -> int:
        return self.outputs * self.params_per_filter

    @property
    def macs_without_bias(self) -> int:
        return self.outputs * (self.params_per_filter - 1)

    def formulas(self) -> list[tuple[str, str, int]]:
        """(what, the lecture's formula with this layer's numbers, value) for each count."""
        k, d, dd, m, l = self.kernel, self.in_channels, self.out_channels, self.out_height, self.out_width
        return [
            ("Parameters per filter", f"k·k·d + 1 = {k}·{k}·{d} + 1", self.params_per_filter),
            ("Parameters in the layer", f"d′·(k·k·d + 1) = {dd}·({k}·{k}·{d} + 1)", self.params),
            ("Multiply-adds", f"m′·l′·d′·(k·k·d + 1) = {m}·{l}·{dd}·({k}·{k}·{d} + 1)", self.macs),
            ("Multiply-adds without the bias", f"m′·l′·d′·k·k·d = {m}·{l}·{dd}·{k}·{k}·{d}",
             self.macs_without_bias),
        ]


@dataclass(frozen=True)
class ConvStep:
    """One output value, taken apart: the window it saw and every product."""

    index: int
    filter: int
    row: int
    col: int
    rows: tuple[int, ...]  # padded-input rows the taps touch
    cols: tuple[int, ...]
    window: torch.Tensor  # (d, k, k) input values under the taps
    weights: torch.Tensor  # (d, k, k)
    bias: float

    @property
    def channel_sums(self) -> torch.Tensor:
        return (self.window * self.weights).sum(dim=(1, 2))

    @property
    def value(self) -> float:
        return float(self.channel_sums.sum()) + self.bias

    def channel_arithmetic(self, channel: int) -> str:
        """'1·0 + (−1)·0 + … = 1' for one channel's slice of the filter."""
        terms = [f"{term(w)}·{term(x)}" for w, x in
                 zip(self.weights[channel].flatten().tolist(), self.window[channel].flatten().tolist())]
        return " + ".join(terms) + f" = {number(self.channel_sums[channel])}"

    def total_arithmetic(self) -> str:
        sums = " + ".join(term(s) for s in self.channel_sums.tolist())
        return f"{sums} + {term(self.bias)} (bias) = {number(self.value)}"


@dataclass(frozen=True)
class Convolution:
    """A convolution layer applied to one input, inspectable step by step.

    Steps run filter by filter, and within a filter row by row, as the lecture slides
    the window: left to right, then down by the stride.
    """

    x: torch.Tensor  # (d, m, l)
    weight: torch.Tensor  # (d', d, k, k)
    bias: torch.Tensor  # (d',)
    geometry: Geometry

    @classmethod
    def make(cls, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
             padding: int | str = 0, stride: int = 1, dilation: int = 1) -> Convolution:
        if x.dim() == 2:
            x = x[None]
        if weight.dim() == 2:
            weight = weight[None, None]
        elif weight.dim() == 3:
            weight = weight[None]
        if x.dim() != 3 or weight.dim() != 4:
            raise ConvError("The input must be (channels, height, width) and the filters "
                            "(filters, channels, k, k).")
        if weight.shape[-1] != weight.shape[-2]:
            raise ConvError(f"Filters are square (k x k); got {weight.shape[-2]}x{weight.shape[-1]}.")
        if weight.shape[1] != x.shape[0]:
            raise ConvError(
                f"The input has {x.shape[0]} channel(s) but each filter has {weight.shape[1]} slice(s): "
                "a filter needs one k x k slice per input channel."
            )
        if bias is None:
            bias = torch.zeros(weight.shape[0], dtype=weight.dtype)
        bias = bias.reshape(-1)
        if bias.numel() != weight.shape[0]:
            raise ConvError(f"There are {weight.shape[0]} filter(s) but {bias.numel()} bias value(s): "
                            "each filter has exactly one bias.")
        geometry = Geometry.make(weight.shape[-1], padding, stride, dilation)
        geometry.check_fits(x.shape[1], x.shape[2])
        return cls(x, weight, bias.to(weight.dtype), geometry)

    @cached_property
    def padded(self) -> torch.Tensor:
        p = self.geometry.padding
        return F.pad(self.x, (p.left, p.right, p.top, p.bottom))

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.weight.shape[0], *self.geometry.output_shape(self.x.shape[1], self.x.shape[2]))

    @cached_property
    def windows(self) -> torch.Tensor:
        """Every window as a row: (positions, d·k·k), in the order the steps visit them."""
        return self.geometry.unfold(self.padded)

    @cached_property
    def output(self) -> torch.Tensor:
        """(d', m', l'): each window's dot product with each filter, plus its bias."""
        flat = self.windows @ self.weight.flatten(1).T + self.bias  # (positions, d')
        return flat.T.reshape(self.out_shape)

    @property
    def counts(self) -> ConvCounts:
        filters, height, width = self.out_shape
        return ConvCounts(self.geometry.kernel, self.x.shape[0], filters, height, width)

    @property
    def n_steps(self) -> int:
        filters, height, width = self.out_shape
        return filters * height * width

    def step(self, index: int) -> ConvStep:
        index, f, row, col = step_position(index, self.out_shape)
        rows, cols = self.geometry.window(row, col)
        window = self.padded[:, list(rows)][:, :, list(cols)]
        return ConvStep(index, f, row, col, rows, cols, window, self.weight[f], float(self.bias[f]))

    def filled(self, index: int) -> torch.Tensor:
        return filled_until(self.output, index)


def step_position(index: int, out_shape: tuple[int, int, int]) -> tuple[int, int, int, int]:
    """(index clamped to the steps, output channel, row, column) of a step: the output is filled
    channel by channel, each row by row, as the labs step through it."""
    channels, height, width = out_shape
    index = max(0, min(index, channels * height * width - 1))
    channel, rest = divmod(index, height * width)
    return (index, channel, *divmod(rest, width))


def filled_until(output: torch.Tensor, index: int) -> torch.Tensor:
    """Output with the values not yet computed at step `index` set to NaN (drawn empty).

    Steps visit the output in its memory order: channel by channel, row by row."""
    flat = output.flatten().clone()
    flat[index + 1:] = float("nan")
    return flat.reshape(output.shape)


def conv_on_image(image: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                  padding: int | str = 0, stride: int = 1, dilation: int = 1) -> torch.Tensor:
    """The same layer on a whole photo (d, H, W): torch's conv2d, since nobody steps 10^5 windows.

    A filter with one slice is applied to each channel's mean (the photo in grey), so a 3x3
    edge filter from the grid works on colour photos too.
    """
    if weight.dim() == 2:
        weight = weight[None, None]
    elif weight.dim() == 3:
        weight = weight[None]
    if weight.shape[1] == 1 and image.shape[0] != 1:
        image = image.mean(dim=0, keepdim=True)
    if weight.shape[1] != image.shape[0]:
        raise ConvError(f"The filter has {weight.shape[1]} slices but the photo has {image.shape[0]} "
                        "channels: use 1 slice (grey) or 3 (red, green, blue).")
    geometry = Geometry.make(weight.shape[-1], padding, stride, dilation)
    geometry.check_fits(image.shape[1], image.shape[2])
    p = geometry.padding
    padded = F.pad(image.to(weight.dtype)[None], (p.left, p.right, p.top, p.bottom))
    return F.conv2d(padded, weight, bias, stride=stride, dilation=dilation)[0]
