"""Turning a user's upload (or a bundled sample photo) into a clean 8-bit image and a tensor.

Uploads are untrusted: they can be empty, not images at all, cut off half-way, declare a
gigantic size to exhaust memory (a "decompression bomb"), be animated, lie on their side
with an EXIF rotation tag, or use modes a network never sees (CMYK, 16-bit, float,
palettes, transparency). `load_image` handles all of these, turns every failure into an
`ImageError` whose message can be shown to a student as is, and records each step it took
in plain sentences so the app can show the preprocessing instead of hiding it.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
from PIL import Image, ImageOps

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"

SAMPLES: dict[str, Path] = {
    "Cat": SAMPLES_DIR / "cat.jpg",
    "Coffee": SAMPLES_DIR / "coffee.jpg",
    "Astronaut": SAMPLES_DIR / "astronaut.jpg",
    "Rocket": SAMPLES_DIR / "rocket.jpg",
    "Cameraman": SAMPLES_DIR / "camera.jpg",
    "Brick wall": SAMPLES_DIR / "brick.jpg",
}

MAX_BYTES = 20_000_000
MAX_PIXELS = 40_000_000

# Only formats a student plausibly uploads. Pillow would otherwise also try exotic readers,
# some of which guess at random bytes (TGA) or run external programs (EPS via Ghostscript).
# Phone photos with extra images (MPO) still open: Pillow reads them through "JPEG".
FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
ANIMATED_FORMATS = {"PNG", "GIF", "WEBP"}

MODE_NAMES = {
    "1": "black-and-white (1-bit)",
    "L": "greyscale",
    "LA": "greyscale with transparency (LA)",
    "P": "palette colours (P)",
    "PA": "palette colours with transparency (PA)",
    "RGBA": "RGB with transparency (RGBA)",
    "CMYK": "CMYK",
    "I;16": "16-bit greyscale (I;16)",
    "I;16B": "16-bit greyscale (I;16B)",
    "I;16L": "16-bit greyscale (I;16L)",
    "I": "32-bit integer greyscale (I)",
    "F": "floating-point greyscale (F)",
}

EXIF_ORIENTATION = 0x0112
EXIF_STEPS = {
    2: "Mirrored left-right",
    3: "Rotated 180°",
    4: "Mirrored top-bottom",
    5: "Rotated and mirrored",
    6: "Rotated 90° clockwise",
    7: "Rotated and mirrored",
    8: "Rotated 90° anticlockwise",
}


# catch_warnings swaps process-wide state; Streamlit runs sessions in threads, and two
# interleaved swaps could leave our "error" filter installed for good.
_WARNINGS_LOCK = threading.Lock()


class ImageError(ValueError):
    """An image that cannot be used; the message is written for the person who uploaded it."""


@dataclass(frozen=True)
class LoadedImage:
    """A decoded 8-bit image plus what the file was and what was done to it.

    `original_mode` and `original_size` (width, height) describe the file as stored, before
    any EXIF rotation; `notes` are the preprocessing steps, in order, as sentences.
    """

    image: Image.Image
    original_format: str | None
    original_mode: str
    original_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


def load_image(
    data: bytes | bytearray | str | os.PathLike | BinaryIO,
    *,
    mode: Literal["RGB", "L"] = "RGB",
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> LoadedImage:
    """Decode raw bytes, a path or an open binary file into an 8-bit "RGB" or "L" image.

    Raises ImageError with a friendly message for anything that cannot be used. Pillow's
    global Image.MAX_IMAGE_PIXELS still applies as an outer limit and is left untouched.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    raw = _read_bytes(data, max_bytes)
    if not raw:
        raise ImageError("The file is empty (0 bytes), so there is no picture in it.")

    # Pillow only warns about sizes between its limit and twice its limit; for an upload
    # that is as dangerous as an error. The filter lives only inside this block.
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(raw), formats=FORMATS)
        except Image.UnidentifiedImageError:
            raise ImageError(
                "This file is not an image that can be read here. "
                "Please upload a PNG, JPEG, GIF, WebP, BMP or TIFF picture."
            ) from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise _too_many_pixels(None, max_pixels) from None
        except Exception as exc:  # a recognised header that is itself broken
            raise _damaged(exc) from exc

        # Opening read only the header; refuse a huge canvas before a single pixel is decoded.
        if img.width * img.height > max_pixels:
            raise _too_many_pixels(img.size, max_pixels)

        original_format, original_mode, original_size = img.format, img.mode, img.size
        try:
            frames = getattr(img, "n_frames", 1)
            img.load()
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
            img = ImageOps.exif_transpose(img)
        except Exception as exc:  # Pillow's decoders raise many types on bad data
            raise _damaged(exc) from exc

    notes: list[str] = []
    if frames > 1:
        animated = original_format in ANIMATED_FORMATS
        what = f"animated {original_format}" if animated else f"{original_format} file"
        notes.append(f"Used the first of {frames} frames of the {what}")
    if orientation in EXIF_STEPS:
        notes.append(f"{EXIF_STEPS[orientation]} according to the EXIF orientation tag")

    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img, note = _to_8bit(img)
        notes.append(note)
    if img.mode in ("LA", "PA", "RGBA", "La", "RGBa") or "transparency" in img.info:
        img = _flatten_alpha(img, notes)
    if img.mode != mode:
        try:
            img = img.convert(mode)
        except ValueError:
            raise ImageError(
                f"This image uses the colour mode {original_mode}, which cannot be converted. "
                "Please save it as an ordinary RGB PNG or JPEG and upload that."
            ) from None
    if original_mode != mode:
        target = "RGB" if mode == "RGB" else "greyscale"
        notes.append(f"Converted from {MODE_NAMES.get(original_mode, original_mode)} to {target}")

    return LoadedImage(img, original_format, original_mode, original_size, notes)


def sample_image(name: str, *, mode: Literal["RGB", "L"] = "RGB") -> LoadedImage:
    """Load one of the bundled photos by its friendly name (a key of SAMPLES)."""
    if name not in SAMPLES:
        raise KeyError(f"No sample called {name!r}; choose one of {', '.join(SAMPLES)}")
    return load_image(SAMPLES[name], mode=mode)


def to_tensor(image: Image.Image | LoadedImage, size: int | None = None) -> torch.Tensor:
    """A float32 tensor in [0, 1], channels first: (3, H, W) for RGB, (1, H, W) for L.

    With `size`, the image is first resized so its longer side is `size` pixels, keeping
    the aspect ratio; Pillow's filters widen when shrinking, so this is antialiased.
    """
    if isinstance(image, LoadedImage):
        image = image.image
    if image.mode not in ("RGB", "L"):
        raise ValueError(f"to_tensor needs an RGB or L image, not {image.mode}; use load_image")
    if size is not None:
        if size < 1:
            raise ValueError(f"size must be a positive number of pixels, not {size}")
        scale = size / max(image.size)
        new_size = tuple(max(1, round(side * scale)) for side in image.size)
        image = image.resize(new_size, Image.Resampling.LANCZOS)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8))
    if pixels.ndim == 2:
        pixels = pixels.unsqueeze(-1)
    return pixels.permute(2, 0, 1).float().div(255)


def _read_bytes(data: bytes | bytearray | str | os.PathLike | BinaryIO, max_bytes: int) -> bytes:
    """The upload's bytes, refusing anything over max_bytes without reading all of it."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif isinstance(data, (str, os.PathLike)):
        path = Path(data)
        try:
            if (n := path.stat().st_size) > max_bytes:
                raise _too_many_bytes(n, max_bytes)
            raw = path.read_bytes()
        except OSError as exc:
            reason = exc.strerror or "unknown reason"
            raise ImageError(f"The file {path.name!r} could not be read: {reason}.") from exc
    else:  # an open file, e.g. Streamlit's UploadedFile, which a rerun may have read already
        if data.seekable():
            data.seek(0)
        raw = data.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise _too_many_bytes(len(raw), max_bytes)
    return raw


def _to_8bit(img: Image.Image) -> tuple[Image.Image, str]:
    """Map 16-bit, 32-bit or float greyscale onto 0..255, saying which range was used."""
    values = np.nan_to_num(np.asarray(img, dtype=np.float64))
    lo, hi = float(values.min()), float(values.max())
    if img.mode.startswith("I;16"):
        lo, hi, note = 0.0, 65535.0, "Scaled 16-bit values (0–65535) down to 8-bit (0–255)"
    elif img.mode == "F" and 0 <= lo and hi <= 1:
        lo, hi, note = 0.0, 1.0, "Scaled floating-point values (0–1) to 8-bit (0–255)"
    elif 0 <= lo and hi <= 255:
        lo, hi, note = 0.0, 255.0, "Stored the values (already 0–255) as 8-bit"
    elif 0 <= lo and hi <= 65535:
        lo, hi, note = 0.0, 65535.0, "Scaled 16-bit values (0–65535) down to 8-bit (0–255)"
    else:  # no standard range fits: stretch what is there
        note = f"Stretched the values {lo:g} to {hi:g} onto 8-bit (0–255)"
        hi = max(hi, lo + 1)
    scaled = np.clip(np.round((values - lo) / (hi - lo) * 255), 0, 255).astype(np.uint8)
    return Image.fromarray(scaled), note


def _flatten_alpha(img: Image.Image, notes: list[str]) -> Image.Image:
    """Composite onto white (how a viewer shows transparency); a network has no alpha input."""
    rgba = img.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] == 255:  # nothing is actually transparent
        return rgba.convert("RGB")
    notes.append("Composited transparency onto white")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _too_many_bytes(n: int, max_bytes: int) -> ImageError:
    return ImageError(
        f"The file is too large ({n / 1e6:.3g} MB); the limit is {max_bytes / 1e6:.3g} MB. "
        "Please upload a smaller picture."
    )


def _too_many_pixels(size: tuple[int, int] | None, max_pixels: int) -> ImageError:
    declared = f"{size[0]} × {size[1]} pixels" if size else "far too many pixels"
    return ImageError(
        f"The image is too large: it declares {declared}, and the limit is "
        f"{max_pixels / 1e6:g} megapixels. Please upload a smaller picture."
    )


def _damaged(exc: Exception) -> ImageError:
    if "truncated" in str(exc):
        return ImageError(
            "The image file is truncated: it ends before all of the picture was stored, "
            "perhaps because an upload or download was interrupted."
        )
    return ImageError("The image file is damaged or truncated, so the picture cannot be decoded.")
