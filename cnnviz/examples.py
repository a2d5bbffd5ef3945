"""The lecture's worked examples and the classic filters, as tensors.

Numbers marked 'lecture' are copied from the slides; the app must reproduce what the
slides show from them (tests check it). Layout: inputs (d, m, l), filters (d', d, k, k).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# "4 x 4 x 1 image padded with zeros" (lecture, slide "Convolution: Example").
LECTURE_INPUT = torch.tensor([[1, 2, 1, 1],
                              [2, -1, 0, 1],
                              [0, 2, 1, 1],
                              [1, 0, -2, 2]], dtype=torch.float64)
# "3 x 3 x 1 filter + bias", bias +1; with zero padding 1 the output starts with 2.
LECTURE_FILTER = torch.tensor([[1, -1, 1],
                               [2, 0, -1],
                               [-2, 2, 1]], dtype=torch.float64)
LECTURE_BIAS = 1.0

# "Single channel in activation map before pooling (4 x 4)" (lecture, "Pooling Layers");
# 2x2 max pooling with stride 2 gives [[2, 1], [3, -1]].
LECTURE_POOLING_INPUT = torch.tensor([[1, 2, 1, 1],
                                      [2, -1, 0, 1],
                                      [0, 3, -1, -1],
                                      [1, 0, -2, -5]], dtype=torch.float64)


@dataclass(frozen=True)
class ConvExample:
    title: str
    note: str
    x: torch.Tensor  # (d, m, l)
    weight: torch.Tensor  # (d', d, k, k)
    bias: torch.Tensor  # (d',)
    padding: int | str
    stride: int = 1
    dilation: int = 1


def _second_channel() -> torch.Tensor:
    # Our own numbers for the lecture's 2-channel slide, which shows the idea but no values.
    return torch.tensor([[0, 1, -1, 2],
                         [1, 0, 2, -1],
                         [-1, 1, 0, 1],
                         [2, -2, 1, 0]], dtype=torch.float64)


CONV_EXAMPLES: dict[str, ConvExample] = {
    "lecture": ConvExample(
        "Lecture: 4×4 input, 3×3 filter, padding 1",
        "The slide's example: zero padding 1 keeps the output 4×4; its first value is 2.",
        LECTURE_INPUT[None], LECTURE_FILTER[None, None], torch.tensor([LECTURE_BIAS], dtype=torch.float64),
        padding=1),
    "no-padding": ConvExample(
        "Lecture: the same without padding",
        "Without padding the output shrinks by k − 1: a 3×3 filter turns 4×4 into 2×2.",
        LECTURE_INPUT[None], LECTURE_FILTER[None, None], torch.tensor([LECTURE_BIAS], dtype=torch.float64),
        padding=0),
    "two-channels": ConvExample(
        "Two input channels",
        "One 3×3 slice of the filter per input channel; the channel sums are added, then the bias.",
        torch.stack([LECTURE_INPUT, _second_channel()]),
        torch.stack([LECTURE_FILTER, torch.tensor([[0, 1, 0], [1, -1, 1], [0, 1, 0]], dtype=torch.float64)])[None],
        torch.tensor([LECTURE_BIAS], dtype=torch.float64), padding=1),
    "two-filters": ConvExample(
        "Two filters, two output channels",
        "d′ filters give an m×l×d′ output: each filter makes its own activation map.",
        LECTURE_INPUT[None],
        torch.stack([LECTURE_FILTER[None], torch.tensor([[[1, 0, -1], [2, 0, -2], [1, 0, -1]]], dtype=torch.float64)]),
        torch.tensor([LECTURE_BIAS, 0.0], dtype=torch.float64), padding=1),
    "strided": ConvExample(
        "Lecture: 2×2 kernel, stride 2",
        "A strided convolution moves the filter by 2: the output has half the height and width.",
        LECTURE_POOLING_INPUT[None], torch.tensor([[[[1, 0], [0, 1]]]], dtype=torch.float64),
        torch.tensor([0.0], dtype=torch.float64), padding=0, stride=2),
}


def _sobel_x() -> torch.Tensor:
    return torch.tensor([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=torch.float64)


def _prewitt_x() -> torch.Tensor:
    return torch.tensor([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=torch.float64)


def _identity(kernel: int, seed: int) -> torch.Tensor:
    w = torch.zeros(kernel, kernel, dtype=torch.float64)
    # The tap that 'same' padding lines up with the output pixel; for an even kernel torch
    # pads the extra zero after, so that is (k - 1) // 2, not k // 2.
    c = (kernel - 1) // 2
    w[c, c] = 1
    return w


def _fixed(make):
    """A 3x3 filter defined by its numbers."""
    def filter_of(kernel: int, seed: int) -> torch.Tensor:
        if kernel != 3:
            raise ValueError("This filter is defined as 3×3; set the kernel size to 3 to use it.")
        return make()
    return filter_of


@dataclass(frozen=True)
class FilterPreset:
    """A named k×k filter with the bias that belongs to it: the lecture's filter comes with its
    bias +1; an edge detector has bias 0 (a bias would only shift the whole edge map)."""

    make: object  # (kernel, seed) -> (k, k) tensor; ValueError when it has no k×k form
    bias: float = 0.0
    note: str = ""


FILTER_PRESETS: dict[str, FilterPreset] = {
    "lecture": FilterPreset(_fixed(lambda: LECTURE_FILTER.clone()), LECTURE_BIAS, "the slide's filter, bias +1"),
    "identity": FilterPreset(_identity, 0.0, "copies the input"),
    "box blur": FilterPreset(lambda k, seed: torch.full((k, k), 1.0 / (k * k), dtype=torch.float64), 0.0,
                             "the mean of the window"),
    "sharpen": FilterPreset(_fixed(lambda: torch.tensor([[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
                                                        dtype=torch.float64))),
    "sobel (vertical edges)": FilterPreset(_fixed(_sobel_x)),
    "sobel (horizontal edges)": FilterPreset(_fixed(lambda: _sobel_x().T.contiguous())),
    "prewitt (vertical edges)": FilterPreset(_fixed(_prewitt_x)),
    "prewitt (horizontal edges)": FilterPreset(_fixed(lambda: _prewitt_x().T.contiguous())),
    "random": FilterPreset(lambda k, seed: torch.randint(-2, 3, (k, k), generator=torch.Generator().manual_seed(seed))
                           .to(torch.float64)),
}


def filter_preset(name: str, kernel: int, seed: int = 0) -> torch.Tensor:
    """A k x k filter by name (FILTER_PRESETS). Sharpen, Sobel, Prewitt and the lecture's filter are
    defined for k = 3 only: ValueError otherwise, with what to do."""
    if name not in FILTER_PRESETS:
        raise KeyError(f"Unknown filter preset {name!r}.")
    try:
        return FILTER_PRESETS[name].make(kernel, seed)
    except ValueError:
        raise ValueError(f"The {name} filter is defined as 3×3; set the kernel size to 3 to use it.") from None


def random_grid(channels: int, height: int, width: int, seed: int = 0, low: int = -2, high: int = 3) -> torch.Tensor:
    """Small integers, so the arithmetic stays readable."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(low, high, (channels, height, width), generator=generator).to(torch.float64)
