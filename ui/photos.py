"""Pick a bundled sample photo or upload one; bad files become a message, not a traceback.

Everything derived from a photo (its tensor, the filter's activation map on it, the PNGs the
browser shows) is cached: a rerun that changes nothing about the photo or the filter redraws
the section from the cache instead of convolving and encoding 256x256 pixels again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import streamlit as st
import torch

from cnnviz import images, pictures
from cnnviz.conv import conv_on_image
from cnnviz.figures import feature_map_spec

PHOTO_SIDE = 256  # big enough to see edges, small enough to convolve on a click
MAP_LEVELS = 256  # colours in an activation map: a palette PNG, a third of the bytes of exact RGB
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]


@dataclass(frozen=True)
class Photo:
    pixels: torch.Tensor  # (3, H, W) in [0, 1]; shared by the cache: never change it in place
    name: str  # what to call it on the page
    key: str  # identifies the pixels: the sample's name or the upload's id (and the side)


# functools caches where the key is a few short values: st.cache_* hashes its arguments with its
# own hasher, which costs about a millisecond a call on every rerun.
@lru_cache(maxsize=32)
def _sample_tensor(name: str, side: int) -> torch.Tensor:
    return images.to_tensor(images.sample_image(name).image, side)


@st.cache_resource(max_entries=8, show_spinner=False)
def _upload_tensor(file_id: str, side: int, _data: bytes) -> tuple[torch.Tensor, list[str]]:
    """Keyed by the upload's id (a new one for every upload), not by hashing megabytes of file."""
    loaded = images.load_image(_data)
    return images.to_tensor(loaded.image, side), loaded.notes


def pick_photo(state, param: str, key: str, side: int = PHOTO_SIDE, where=None) -> Photo | None:
    """A sample (kept in the URL under `param`) or an upload; None (with a message shown) for a bad file.

    where: two containers (left, right) for the sample box and the upload box; None: two new columns."""
    names = list(images.SAMPLES)  # the URL state holds one of them (its parser says when a link does not)
    left, right = st.columns(2) if where is None else where
    left.selectbox("Sample photo", names, key=state.key(param))
    upload = right.file_uploader("…or upload your own", type=UPLOAD_TYPES, key=f"{key}.upload",
                                 max_upload_size=math.ceil(images.MAX_BYTES / 2**20))
    if upload is None:
        return Photo(_sample_tensor(state[param], side), state[param], f"sample:{state[param]}:{side}")
    try:
        pixels, notes = _upload_tensor(upload.file_id, side, upload.getvalue())
    except images.ImageError as error:
        right.error(f"**{upload.name}** can't be used: {error}", icon="🖼️")
        return None
    for note in notes:
        right.caption(f"ℹ️ {note}")
    return Photo(pixels, upload.name, f"upload:{upload.file_id}:{side}")


def png_bytes(pixels: torch.Tensor) -> bytes:
    """A (1 or 3, H, W) tensor in [0, 1] as PNG bytes (what st.image would encode on every rerun).

    numpy rather than torch for the element-wise work (see cnnviz.pictures)."""
    array = np.rint(np.clip(pixels.detach().cpu().numpy(), 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)
    return pictures.png(array)


@dataclass(frozen=True)
class FilteredPhoto:
    seen_png: bytes  # the photo as the filter sees it (grey for a one-slice filter)
    colour: bool
    width: int
    height: int
    map_spec: dict  # the activation map, a plain plotly figure (ui.show.chart); shared: don't change it
    map_width: int
    map_height: int


class _Unhashed:
    """Passes a value through an lru_cache without being part of its key."""

    def __init__(self, value):
        self.value = value

    def __hash__(self) -> int:
        return 0

    def __eq__(self, other) -> bool:
        return isinstance(other, _Unhashed)


@lru_cache(maxsize=16)
def _seen(photo_key: str, colour: bool, pixels: _Unhashed) -> tuple[torch.Tensor, bytes]:
    """The photo as a filter with 3 slices (colour) or 1 slice (grey: the channels' mean) sees it."""
    pixels = pixels.value
    seen = pixels if colour else torch.from_numpy(pixels.numpy().mean(0, keepdims=True))
    return seen, png_bytes(seen)


@lru_cache(maxsize=32)
def _unbiased_map(photo_key: str, weight_key: tuple, padding: int | str, stride: int, dilation: int,
                  pixels: _Unhashed, weight: _Unhashed) -> torch.Tensor:
    """The filter's map without its bias: typing a new bias only shifts it, no new convolution."""
    weight = weight.value.to(torch.float32)  # a picture, not a worked example: float32 is plenty
    seen, _ = _seen(photo_key, weight.shape[0] == 3, pixels)
    return conv_on_image(seen, weight, padding=padding, stride=stride, dilation=dilation)[0]


@lru_cache(maxsize=64)
def _filtered(photo_key: str, weight_key: tuple, bias: float, padding: int | str, stride: int,
              dilation: int, title: str, width_px: int, pixels: _Unhashed, weight: _Unhashed) -> FilteredPhoto:
    seen, seen_png = _seen(photo_key, weight.value.shape[0] == 3, pixels)
    fmap = _unbiased_map(photo_key, weight_key, padding, stride, dilation, pixels, weight) + bias
    title = title.format(width=fmap.shape[1], height=fmap.shape[0])
    spec = feature_map_spec(fmap, title, width_px=width_px, levels=MAP_LEVELS)
    return FilteredPhoto(seen_png, seen.shape[0] == 3, seen.shape[2], seen.shape[1], spec, fmap.shape[1], fmap.shape[0])


def filtered_photo(photo: Photo, weight: torch.Tensor, bias: float, *, padding: int | str = 0, stride: int = 1,
                   dilation: int = 1, title: str = "Activation map ({width}×{height})",
                   width_px: int = 520) -> FilteredPhoto:
    """One filter (d, k, k), d = 1 (on the grey photo) or 3, applied to the photo; cached by what
    it depends on. `title` may use {width} and {height} of the map. Raises ConvError when the
    layer does not fit the photo."""
    weight = weight.detach().cpu()
    weight_key = (str(weight.dtype), tuple(weight.shape), tuple(weight.flatten().tolist()))
    return _filtered(photo.key, weight_key, float(bias), padding, stride, dilation, title, width_px,
                     _Unhashed(photo.pixels), _Unhashed(weight))
