"""One colour scale and one PNG encoder for every picture the app draws.

Signed numbers (weights, activations, grid values) are blue below zero, white at zero and
red above, on every page and in every figure, so the sign can be read from the back of a
lecture hall. Pictures go to the browser as PNG (tens of times smaller than a heatmap's
JSON, and every pixel stays sharp).

numpy rather than torch for the element-wise work: torch would run these passes in
parallel, and a parallel region started from a fresh thread (Streamlit runs every rerun in
a new one) costs more than the work on a busy machine.
"""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image
from plotly.colors import get_colorscale, hex_to_rgb, unlabel_rgb

# Explicit stops (figures skip plotly's validation, and plotly.js knows no "_r" names).
DIVERGING = get_colorscale("RdBu_r")
SEQUENTIAL = get_colorscale("Blues")  # counts (a confusion matrix): white for none


def _stops(scale: list) -> tuple[np.ndarray, np.ndarray]:
    positions = np.array([float(p) for p, _ in scale], dtype=np.float64)
    colours = np.array([unlabel_rgb(c) if c.startswith("rgb") else hex_to_rgb(c) for _, c in scale],
                       dtype=np.float64)
    return positions, colours


_STOPS = {id(DIVERGING): _stops(DIVERGING), id(SEQUENTIAL): _stops(SEQUENTIAL)}


def symmetric_bound(values) -> float:
    """The largest finite magnitude (1 when there is none or it is 0): a signed scale's ±range."""
    array = np.asarray(values, dtype=np.float64)
    finite = np.abs(array[np.isfinite(array)])
    bound = float(finite.max()) if finite.size else 1.0
    return bound or 1.0


def colorize(values, low: float, high: float, scale: list = DIVERGING) -> np.ndarray:
    """Values of any shape through a colour scale: uint8 RGB of shape (*values.shape, 3)."""
    positions, colours = _STOPS.get(id(scale)) or _stops(scale)
    t = np.clip((np.asarray(values, dtype=np.float64) - low) / ((high - low) or 1.0), 0.0, 1.0)
    rgb = np.stack([np.interp(t, positions, colours[:, k]) for k in range(3)], axis=-1)
    return np.rint(rgb).astype(np.uint8)


def colorize_signed(values, bound: float | None = None) -> np.ndarray:
    """Signed values on the diverging scale, zero white, ±bound full colour (default: ±max|value|)."""
    bound = symmetric_bound(values) if bound is None else (bound or 1.0)
    return colorize(values, -bound, bound)


def palette_png(values, low: float, high: float, levels: int = 256, scale: list = DIVERGING) -> bytes:
    """A 2-D array as a palette PNG of `levels` colours of the scale: a third of the bytes of
    exact RGB and quicker to encode, at most half a step (1/(2·(levels − 1)) of the range) off."""
    if not 2 <= levels <= 256:
        raise ValueError(f"levels must be between 2 and 256, not {levels}")
    positions, colours = _STOPS.get(id(scale)) or _stops(scale)
    array = np.asarray(values, dtype=np.float64)
    t = np.clip((array - low) / ((high - low) or 1.0), 0, 1)
    steps = np.linspace(0, 1, levels)
    palette = np.rint(np.stack([np.interp(steps, positions, colours[:, i]) for i in range(3)], axis=1))
    image = Image.fromarray(np.rint(t * (levels - 1)).astype(np.uint8), mode="P")
    image.putpalette(palette.astype(np.uint8).ravel().tolist())
    return png(image)


def png(picture, compress_level: int = 1) -> bytes:
    """A PIL image, or uint8 pixels (H, W), (H, W, 1) or (H, W, 3), as PNG bytes.

    compress_level 1: these PNGs are made on a click and sent once; speed beats size."""
    if not isinstance(picture, Image.Image):
        array = np.ascontiguousarray(np.asarray(picture))
        if array.dtype != np.uint8:
            raise ValueError(f"PNG pixels are uint8, not {array.dtype}")
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        picture = Image.fromarray(array)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def data_url(png_bytes: bytes) -> str:
    """PNG bytes as a data: URL, for plotly image traces and components."""
    return "data:image/png;base64," + base64.b64encode(png_bytes).decode("ascii")


def decode_data_url(url: str) -> np.ndarray:
    """The pixels of a PNG data: URL (for tests and checks): uint8 (H, W, 3) or (H, W)."""
    raw = base64.b64decode(url.split(",", 1)[1])
    image = Image.open(io.BytesIO(raw))
    return np.asarray(image.convert("RGB") if image.mode == "P" else image)
