"""What the convolution lab computes once and reuses on every rerun (and for every visitor).

Plain functools caches keyed by the page's URL text: hashing a few short strings costs
microseconds, where st.cache_* would hash its arguments with its own (much slower) hasher.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from cnnviz import grids
from cnnviz.conv import Convolution, ConvError
from cnnviz.examples import CONV_EXAMPLES

LECTURE = "lecture"


def encode_bias(b: torch.Tensor) -> str:
    return ",".join(grids.format_number(v) for v in b)


_ENCODERS = {"x": grids.encode_channels, "weight": grids.encode_filters, "bias": encode_bias}


@lru_cache(maxsize=64)
def example_value(example: str, field: str):
    """A field of the example named `example` (unknown names: the lecture's), tensors as the URL's text."""
    value = getattr(CONV_EXAMPLES.get(example, CONV_EXAMPLES[LECTURE]), field)
    encode = _ENCODERS.get(field)
    return encode(value) if encode else value


@lru_cache(maxsize=256)
def _parsed(x_text: str, w_text: str, b_text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return grids.parse_channels(x_text), grids.parse_filters(w_text), grids.parse_numbers(b_text, "bias")


def parse_tensors(x_text: str, w_text: str, b_text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The page's input, filters and biases from their URL text: fresh copies, the caller may change them."""
    return tuple(t.clone() for t in _parsed(x_text, w_text, b_text))


@lru_cache(maxsize=256)
def make_layer(x_text: str, w_text: str, b_text: str, padding: int | str, stride: int,
               dilation: int) -> Convolution | ConvError:
    """The layer for the page's state (its URL text is the key), or the ConvError that explains why
    there is none. Shared by reruns and sessions, with its windows and output computed once here:
    don't change its tensors."""
    x, w, b = parse_tensors(x_text, w_text, b_text)
    try:
        layer = Convolution.make(x, w, b, padding=padding, stride=stride, dilation=dilation)
    except ConvError as error:
        return error
    layer.output  # noqa: B018 - computes (and caches) the windows and the output
    return layer
