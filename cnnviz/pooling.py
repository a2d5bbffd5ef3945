"""Pooling, flattening and global average pooling, as the lecture describes them.

Pooling looks at a k x k crop of one channel, keeps its max (or mean), and moves the
crop by the stride; every channel is pooled on its own. Results are held to torch's
max_pool2d, avg_pool2d, flatten and adaptive_avg_pool2d by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .conv import ConvError, Geometry, filled_until, step_position
from .notation import number, term

KINDS = ("max", "mean")


def pool_output_size(n: int, kernel: int, stride: int) -> int:
    """floor((n - k) / s) + 1, the convolution formula with p = 0 and d = 1."""
    return (n - kernel) // stride + 1 if n >= kernel else 0


def pool_output_size_formula(n: int, kernel: int, stride: int) -> str:
    size = pool_output_size(n, kernel, stride)
    return f"⌊({n} − {kernel}) / {stride}⌋ + 1 = {size}"


def coverage(height: int, width: int, kernel: int, stride: int) -> torch.Tensor:
    """(height, width) bools: True where at least one pooling window covers the input cell.

    With a stride larger than the kernel, or a last window that does not reach the border,
    some inputs never influence the output."""
    def axis(n: int) -> torch.Tensor:
        covered = torch.zeros(n, dtype=torch.bool)
        for start in range(0, pool_output_size(n, kernel, stride) * stride, stride):
            covered[start:start + kernel] = True
        return covered
    return axis(height)[:, None] & axis(width)[None, :]


def unseen_count(height: int, width: int, kernel: int, stride: int) -> int:
    """How many input cells of one channel no pooling window ever looks at."""
    return int((~coverage(height, width, kernel, stride)).sum())


@dataclass(frozen=True)
class PoolStep:
    index: int
    channel: int
    row: int
    col: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    window: torch.Tensor  # (k, k)
    kind: str

    @property
    def value(self) -> float:
        return float(self.window.max() if self.kind == "max" else self.window.mean())

    @property
    def argmax(self) -> tuple[int, int]:
        """Input row and column of the winning value (the first one, if tied)."""
        flat = int(self.window.flatten().argmax())
        return self.rows[flat // len(self.cols)], self.cols[flat % len(self.cols)]

    def explanation(self) -> str:
        values = self.window.flatten().tolist()
        if self.kind == "max":
            return f"max({', '.join(number(v) for v in values)}) = {number(self.value)}"
        total = number(self.window.sum())
        terms = " + ".join(term(v) for v in values)
        return f"({terms}) / {self.window.numel()} = {total} / {self.window.numel()} = {number(self.value)}"


@dataclass(frozen=True)
class Pooling:
    """Max or mean pooling of a (d, m, l) tensor, one channel at a time."""

    x: torch.Tensor
    kind: str
    geometry: Geometry

    @classmethod
    def make(cls, x: torch.Tensor, kind: str = "max", kernel: int = 2, stride: int | None = None) -> Pooling:
        if x.dim() == 2:
            x = x[None]
        if kind not in KINDS:
            raise ConvError(f"Pooling is 'max' or 'mean', not {kind!r}.")
        geometry = Geometry.make(kernel, 0, kernel if stride is None else stride)
        if x.shape[1] < kernel or x.shape[2] < kernel:
            raise ConvError(f"No output: the pooling window is {kernel}x{kernel} but the input is only "
                            f"{x.shape[1]}x{x.shape[2]}. Use a smaller kernel.")
        return cls(x, kind, geometry)

    @property
    def out_shape(self) -> tuple[int, int, int]:
        return (self.x.shape[0], *self.geometry.output_shape(self.x.shape[1], self.x.shape[2]))

    @cached_property
    def output(self) -> torch.Tensor:
        # Each channel is unfolded on its own: pooling never mixes channels.
        per_channel = [self.geometry.unfold(channel[None]) for channel in self.x]  # (positions, k·k)
        reduce = (lambda w: w.max(dim=1).values) if self.kind == "max" else (lambda w: w.mean(dim=1))
        return torch.stack([reduce(w) for w in per_channel]).reshape(self.out_shape)

    @property
    def n_steps(self) -> int:
        d, h, w = self.out_shape
        return d * h * w

    def step(self, index: int) -> PoolStep:
        index, channel, row, col = step_position(index, self.out_shape)
        rows, cols = self.geometry.window(row, col)
        window = self.x[channel][list(rows)][:, list(cols)]
        return PoolStep(index, channel, row, col, rows, cols, window, self.kind)

    def filled(self, index: int) -> torch.Tensor:
        return filled_until(self.output, index)


def flatten(x: torch.Tensor) -> torch.Tensor:
    """(d, m, l) -> (d·m·l,) in torch's order: channel 1's rows first, then channel 2's."""
    return x.reshape(-1)


def global_average_pool(x: torch.Tensor) -> torch.Tensor:
    """z[c] = 1/(m·l) Σ_a Σ_b x[a, b, c] for every channel c: (d, m, l) -> (d,)."""
    return x.mean(dim=(1, 2))


def gap_formula(x: torch.Tensor, channel: int) -> str:
    """The lecture's formula for one channel with the numbers written in (1-based channel in the text)."""
    _, m, l = x.shape
    values = x[channel].flatten().tolist()
    shown = values if len(values) <= 16 else values[:6]
    terms = " + ".join(term(v) for v in shown)
    if len(values) > len(shown):
        terms += f" + … ({len(values) - len(shown)} more)"
    total = float(x[channel].sum())
    return (f"z[{channel + 1}] = 1/({m}·{l}) · ({terms}) = {number(total)} / {m * l} "
            f"= {number(total / (m * l))}")


@dataclass(frozen=True)
class HeadCounts:
    """Parameters of the fully connected layer after flattening versus after global average pooling."""

    height: int
    width: int
    channels: int
    units: int

    @property
    def flat_features(self) -> int:
        return self.height * self.width * self.channels

    @property
    def flatten_params(self) -> int:
        return self.flat_features * self.units + self.units

    @property
    def gap_params(self) -> int:
        return self.channels * self.units + self.units

    @property
    def saving(self) -> float:
        """How many times more parameters the flattening head has."""
        return self.flatten_params / self.gap_params

    def formulas(self) -> list[tuple[str, str, int]]:
        m, l, d, n = self.height, self.width, self.channels, self.units
        return [
            ("Flatten, then fully connected", f"(m·l·d)·n + n = ({m}·{l}·{d})·{n} + {n} = {self.flat_features:,}·{n:,} + {n:,}",
             self.flatten_params),
            ("Global average pooling, then fully connected", f"d·n + n = {d}·{n:,} + {n:,}", self.gap_params),
        ]
