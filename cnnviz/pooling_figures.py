"""Figures of the pooling lesson, each ONE chart (a plain plotly dict, see cnnviz.figures):
the three ways to halve a map side by side, and flattening versus global
average pooling. Pure functions of the engine's results."""

from __future__ import annotations

import torch

from . import notation
from .conv import Convolution
from .figures import grid_spec, lab_cell_px
from .pictures import symmetric_bound
from .pooling import Pooling, flatten, global_average_pool


def _range(*tensors: torch.Tensor) -> tuple[float, float]:
    bound = symmetric_bound(torch.cat([t.flatten() for t in tensors]).numpy())
    return -bound, bound


def halving_spec(channel: torch.Tensor, weights: torch.Tensor) -> tuple[list[dict], Pooling, Pooling, Convolution]:
    """One m×l channel through 2×2 max pooling, 2×2 mean pooling and a 2×2 convolution with stride 2
    (weights `weights`, bias 0), on one colour scale: four grids (a page lays them out side by side,
    wrapping on a phone); with the three layers."""
    max_pool = Pooling.make(channel, "max", 2, 2)
    mean_pool = Pooling.make(channel, "mean", 2, 2)
    conv = Convolution.make(channel, weights, padding=0, stride=2)
    outputs = [max_pool.output[0], mean_pool.output[0], conv.output[0]]
    value_range = _range(channel, *outputs)
    m, l = channel.shape
    px = lab_cell_px(m, l)
    columns = [[grid_spec(channel, f"Input {notation.grid(m, l)}", value_range=value_range, cell_px=px)]]
    for title, out in zip(("Max pooling", "Mean pooling", "Strided conv"), outputs):
        columns.append([grid_spec(out, f"{title} {notation.grid(*out.shape)}", value_range=value_range, cell_px=px)])
    return [column[0] for column in columns], max_pool, mean_pool, conv


def flatten_gap_spec(tensor: torch.Tensor, channel: int) -> dict:
    """A small m×l×d tensor channel by channel (a grid per channel, the chosen one framed), its flattening
    into m·l·d numbers, and its global average pooling into d numbers (the chosen one marked)."""
    d, m, l = tensor.shape
    value_range = _range(tensor)
    channels = [grid_spec(tensor[c], f"x[·, ·, {c + 1}]", value_range=value_range, cell_px=40,
                          highlight=(range(m), range(l)) if c == channel else None) for c in range(d)]
    flat, gap = flatten(tensor), global_average_pool(tensor)
    flat_px = max(22, min(40, 1000 // flat.numel()))
    flat_grid = grid_spec(flat[None], f"Flattened: 1×1×m·l·d = 1×1×{m}·{l}·{d} = {flat.numel()} numbers",
                          value_range=value_range, cell_px=flat_px)
    gap_grid = grid_spec(gap[None], f"GAP: 1×1×{d}", value_range=value_range,
                         cell_px=max(40, 60 - 5 * d), marked=(0, channel))
    return {"channels": channels, "flat": flat_grid, "gap": gap_grid}
