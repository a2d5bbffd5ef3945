"""One step of stochastic gradient descent on a convolution layer, computed the way a student would.

The lecture trains a network by gradient descent on a loss. Here the network is one convolution
layer (cnnviz.conv.Convolution) and the loss compares its output y with a target T:

    L = ½ Σ (y − T)²                      summed over every output value
    ∂L/∂y = y − T                          one number per output value
    ∂L/∂w[f, c, i, j] = Σ ∂L/∂y[f, p, q] · x[c, p·s + i·r, q·s + j·r]   over the output positions (p, q)
    ∂L/∂b[f] = Σ ∂L/∂y[f, p, q]
    w ← w − η·∂L/∂w,  b ← b − η·∂L/∂b

with x the padded input, s the stride and r the dilation. A weight's gradient adds up, over every
position the filter visited, the output's gradient there times the input value under that weight:
it is itself a correlation, of the input channel with the output's gradient as the filter (its taps
s apart, moved r at a time). `touched` lists the input cells one weight saw. Tests hold every number
to torch's autograd (loss.backward() through F.conv2d).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from .conv import Convolution

TARGET_LOW, TARGET_HIGH = -3, 3  # a seeded target's values: small integers, like the lecture's grids
LEARNING_RATES = (0.001, 0.003, 0.01, 0.03, 0.1)


class SgdError(ValueError):
    """A target or learning rate that cannot be used; the message says why."""


def seeded_target(out_shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    """Small integers from TARGET_LOW to TARGET_HIGH in the output's shape (d′, m′, l′), the same for a seed."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(TARGET_LOW, TARGET_HIGH + 1, tuple(out_shape), generator=generator).to(torch.float64)


def sum_of_squares(y: torch.Tensor, target: torch.Tensor) -> float:
    """Σ (y − T)², over every output value: twice the loss."""
    return float(((y - target) ** 2).sum())


@dataclass(frozen=True)
class GradientStep:
    """One gradient descent step of `layer`'s filters and biases towards `target` with learning rate η."""

    layer: Convolution
    target: torch.Tensor  # (d′, m′, l′), the output's shape
    learning_rate: float

    @classmethod
    def make(cls, layer: Convolution, target: torch.Tensor, learning_rate: float) -> GradientStep:
        if tuple(target.shape) != tuple(layer.out_shape):
            raise SgdError(f"The target must have the output's shape {tuple(layer.out_shape)}, "
                           f"not {tuple(target.shape)}.")
        if not learning_rate > 0:
            raise SgdError(f"The learning rate must be more than 0, not {learning_rate}.")
        return cls(layer, target.to(layer.output.dtype), float(learning_rate))

    # ---- the loss and the output's gradient

    @property
    def output(self) -> torch.Tensor:
        return self.layer.output

    @cached_property
    def sum_of_squares(self) -> float:
        return sum_of_squares(self.output, self.target)

    @property
    def loss(self) -> float:
        """L = ½ Σ (y − T)²."""
        return 0.5 * self.sum_of_squares

    @cached_property
    def output_grad(self) -> torch.Tensor:
        """∂L/∂y = y − T, (d′, m′, l′)."""
        return self.output - self.target

    # ---- the parameters' gradients

    @cached_property
    def weight_grad(self) -> torch.Tensor:
        """∂L/∂w, (d′, d, k, k): for every weight, Σ over the output positions of ∂L/∂y times the input
        value under that weight there (every window, as the forward pass cut it out)."""
        filters = self.layer.weight.shape[0]
        per_position = self.output_grad.reshape(filters, -1)  # (d′, positions), in the windows' order
        return (per_position @ self.layer.windows).reshape(self.layer.weight.shape)

    @cached_property
    def bias_grad(self) -> torch.Tensor:
        """∂L/∂b, (d′,): each output's bias is added once per output value, so its gradient is Σ ∂L/∂y."""
        return self.output_grad.sum(dim=(1, 2))

    def touched(self, i: int, j: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The padded input's rows and columns that weight (i, j) of every filter slice multiplied: one per
        output position, s apart (the stride), starting at i·r and j·r (the dilation)."""
        geometry = self.layer.geometry
        _, out_rows, out_cols = self.layer.out_shape
        return (tuple(i * geometry.dilation + p * geometry.stride for p in range(out_rows)),
                tuple(j * geometry.dilation + q * geometry.stride for q in range(out_cols)))

    def touched_values(self, c: int, i: int, j: int) -> torch.Tensor:
        """(m′, l′): the input values of channel c under weight (i, j) at each output position."""
        rows, cols = self.touched(i, j)
        return self.layer.padded[c][list(rows)][:, list(cols)]

    # ---- the step

    @cached_property
    def new_weight(self) -> torch.Tensor:
        return self.layer.weight - self.learning_rate * self.weight_grad

    @cached_property
    def new_bias(self) -> torch.Tensor:
        return self.layer.bias - self.learning_rate * self.bias_grad

    @cached_property
    def updated(self) -> Convolution:
        """The same layer with the new filters and biases, on the same input."""
        geometry = self.layer.geometry
        return Convolution(self.layer.x, self.new_weight, self.new_bias, geometry)

    @cached_property
    def new_loss(self) -> float:
        """L after the step: the new filters' output against the same target."""
        return 0.5 * sum_of_squares(self.updated.output, self.target)

    @property
    def n_steps(self) -> int:
        """One per weight and one per bias: filter by filter, each filter's weights slice by slice, row by
        row, then its bias."""
        return self.layer.weight.numel() + self.layer.weight.shape[0]

    def parameter(self, index: int) -> tuple[int, int | None, int | None, int | None]:
        """(filter, slice, row, column) of the weight step `index` computes, or (filter, None, None, None)
        for a bias."""
        _, d, k, _ = self.layer.weight.shape
        f, rest = divmod(index, d * k * k + 1)
        if rest == d * k * k:
            return f, None, None, None
        c, rest = divmod(rest, k * k)
        return (f, c, *divmod(rest, k))
