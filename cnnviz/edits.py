"""What happens to a lab's tensors when the student changes a size.

The convolution and pooling labs keep an input (d, m, l), filters (d′, d, k, k) and biases (d′,).
Changing the kernel size, the number of input channels or the number of filters must keep
everything the student made that still fits, and fill what is new with small seeded integers
(the arithmetic stays readable, and the same link always shows the same numbers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .examples import random_grid


def resize_kernel(weight: torch.Tensor, k: int) -> torch.Tensor:
    """Filters (..., k0, k0) grown with zeros around them or cropped around their centre, so a
    hand-made filter keeps its middle."""
    old = weight.shape[-1]
    if k > old:
        before = (k - old) // 2
        after = k - old - before
        return F.pad(weight, (before, after, before, after))
    start = (old - k) // 2
    return weight[..., start:start + k, start:start + k].contiguous()


def fit_input_channels(x: torch.Tensor, d: int, seed: int = 7) -> torch.Tensor:
    """The input with d channels: the first d kept, new ones seeded random (channel c from seed + c)."""
    if d <= x.shape[0]:
        return x[:d].clone()
    extra = [random_grid(1, x.shape[1], x.shape[2], seed=seed + c).to(x.dtype) for c in range(x.shape[0], d)]
    return torch.cat([x, *extra])


def fit_filter_channels(weight: torch.Tensor, d: int, seed: int = 10) -> torch.Tensor:
    """Filters with one k×k slice per input channel, d slices: a filter needs one slice for each
    channel of its input. New slices are seeded random."""
    filters, have, k, _ = weight.shape
    if d <= have:
        return weight[:, :d].clone()
    extra = random_grid(filters * (d - have), k, k, seed=seed + d).reshape(filters, d - have, k, k).to(weight.dtype)
    return torch.cat([weight, extra], dim=1)


def fit_filters(weight: torch.Tensor, bias: torch.Tensor, n: int, seed: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """n filters and their biases: the first n kept, new filters seeded random with bias 0."""
    have = weight.shape[0]
    if n <= have:
        return weight[:n].clone(), bias[:n].clone()
    extra = random_grid((n - have) * weight.shape[1], *weight.shape[2:], seed=seed + n)
    extra = extra.reshape(n - have, *weight.shape[1:]).to(weight.dtype)
    return torch.cat([weight, extra]), torch.cat([bias, torch.zeros(n - have, dtype=bias.dtype)])
