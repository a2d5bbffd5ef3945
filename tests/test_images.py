"""Uploads are untrusted: every broken or unusual file here is made in memory by the test."""

from __future__ import annotations

import io
import struct
import time
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from cnnviz.images import (
    SAMPLES,
    ImageError,
    LoadedImage,
    load_image,
    sample_image,
    to_tensor,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width: int = 64, height: int = 64) -> Image.Image:
    """Random pixels, so that half of the encoded file really is half of the picture."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def png_declaring(width: int, height: int) -> bytes:
    """A real 1x1 black-and-white PNG whose IHDR is patched to claim another size."""
    png = encode(Image.new("1", (1, 1)), "PNG")
    assert png[12:16] == b"IHDR"
    ihdr = b"IHDR" + struct.pack(">II", width, height) + png[24:29]
    return png[:12] + ihdr + struct.pack(">I", zlib.crc32(ihdr)) + png[33:]


def pixels(loaded: LoadedImage) -> np.ndarray:
    return np.asarray(loaded.image)


def assert_friendly(excinfo: pytest.ExceptionInfo, *words: str) -> None:
    """The message names the problem in plain words and shows nothing of Python or Pillow."""
    message = str(excinfo.value)
    assert any(word in message.lower() for word in words), message
    for raw in ("Error", "Traceback", "errno", "PIL", "cannot identify", "BytesIO", "decoder"):
        assert raw not in message, message
    assert message[0].isupper() and message.endswith("."), message


# --- files that cannot be used ------------------------------------------------------------


def test_zero_byte_upload_is_rejected_as_empty(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for source in (b"", empty, str(empty), io.BytesIO(b"")):
        with pytest.raises(ImageError) as excinfo:
            load_image(source)
        assert_friendly(excinfo, "empty")


@pytest.mark.parametrize(
    "data",
    [
        np.random.default_rng(1).bytes(2000),
        b"Dear student,\nthis is a text file, not a picture.\n" * 20,
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n",  # never handed to Ghostscript
    ],
    ids=["random-bytes", "text", "pdf", "eps"],
)
def test_files_that_are_not_images_are_rejected(data):
    with pytest.raises(ImageError) as excinfo:
        load_image(data)
    assert_friendly(excinfo, "not an image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files_are_rejected(fmt):
    data = encode(noise(), fmt)
    with pytest.raises(ImageError) as excinfo:
        load_image(data[: len(data) // 2])
    assert_friendly(excinfo, "truncated")


def test_decompression_bomb_is_rejected_before_any_pixel_is_decoded(monkeypatch):
    bomb = png_declaring(50_000, 50_000)
    assert len(bomb) < 100  # tiny on disk, 2.5 gigapixels once decoded
    limit_before, filters_before = Image.MAX_IMAGE_PIXELS, list(warnings.filters)
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels decoded"))

    start = time.perf_counter()
    with pytest.raises(ImageError) as excinfo:
        load_image(bomb)
    assert time.perf_counter() - start < 1
    assert_friendly(excinfo, "too large")
    assert Image.MAX_IMAGE_PIXELS == limit_before
    assert warnings.filters == filters_before


def test_size_over_our_limit_but_under_pillows_is_rejected_from_the_header(monkeypatch):
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: pytest.fail("pixels decoded"))
    with pytest.raises(ImageError) as excinfo:
        load_image(png_declaring(8000, 6000))  # 48 megapixels: over 40, under Pillow's 89
    assert_friendly(excinfo, "too large")
    assert "8000 × 6000" in str(excinfo.value)


def test_pixel_limit_is_per_call():
    data = encode(Image.new("RGB", (100, 100)), "PNG")
    with pytest.raises(ImageError) as excinfo:
        load_image(data, max_pixels=5000)
    assert_friendly(excinfo, "too large")
    assert load_image(data).image.size == (100, 100)


def test_pillows_bomb_warning_counts_as_an_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    warning_size = encode(Image.new("RGB", (150, 100)), "PNG")  # between the limit and twice it
    error_size = encode(Image.new("RGB", (300, 100)), "PNG")
    for data in (warning_size, error_size):
        with pytest.raises(ImageError) as excinfo:
            load_image(data, max_pixels=10**9)
        assert_friendly(excinfo, "too large")


def test_file_over_max_bytes_is_rejected(tmp_path):
    data = encode(noise(), "PNG")
    path = tmp_path / "big.png"
    path.write_bytes(data)
    for source in (data, path, io.BytesIO(data)):
        with pytest.raises(ImageError) as excinfo:
            load_image(source, max_bytes=len(data) - 1)
        assert_friendly(excinfo, "too large")
    assert load_image(data, max_bytes=len(data)).image.size == (64, 64)


def test_missing_file_gives_a_friendly_error(tmp_path):
    with pytest.raises(ImageError) as excinfo:
        load_image(tmp_path / "nowhere.png")
    assert_friendly(excinfo, "could not be read")


# --- unusual but usable files ---------------------------------------------------------------


def test_cmyk_jpeg_becomes_rgb():
    loaded = load_image(encode(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), "JPEG", quality=95))
    assert loaded.original_mode == "CMYK" and loaded.original_format == "JPEG"
    assert loaded.image.mode == "RGB"
    assert np.abs(pixels(loaded)[8, 8].astype(int) - RED).max() <= 3
    assert "Converted from CMYK to RGB" in loaded.notes


def test_16_bit_greyscale_png_is_scaled_to_8_bit():
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    loaded = load_image(encode(Image.fromarray(values), "PNG"))
    assert loaded.original_mode.startswith("I;16")
    assert loaded.image.mode == "RGB"
    grey = pixels(loaded)[0, :, 0]
    assert grey[0] == 0 and grey[1] == 1 and abs(int(grey[2]) - 128) <= 1 and grey[3] == 255
    assert (pixels(loaded) == grey[:, None]).all()  # the same grey in all three channels
    assert any("16-bit" in note for note in loaded.notes)
    assert load_image(encode(Image.fromarray(values), "PNG"), mode="L").image.mode == "L"


def test_32_bit_integer_greyscale_in_0_255_is_kept():
    loaded = load_image(encode(Image.fromarray(np.array([[0, 7, 255]], dtype=np.int32)), "TIFF"))
    assert loaded.original_mode == "I"
    assert pixels(loaded)[0, :, 0].tolist() == [0, 7, 255]


def test_float_image_in_0_1_is_scaled_and_other_ranges_are_stretched():
    unit = load_image(encode(Image.fromarray(np.array([[0, 0.5, 1]], dtype=np.float32)), "TIFF"))
    assert unit.original_mode == "F"
    assert pixels(unit)[0, :, 0].tolist() == [0, 128, 255]

    wide = np.array([[-1.0, 0.0, 3.0]], dtype=np.float32)
    stretched = load_image(encode(Image.fromarray(wide), "TIFF"), mode="L")
    assert pixels(stretched)[0].tolist() == [0, 64, 255]
    assert any("Stretched the values -1 to 3" in note for note in stretched.notes)


def test_palette_png_with_transparency_is_composited_onto_white():
    img = Image.new("P", (2, 1))
    img.putpalette([*RED, *BLUE])
    img.putpixel((0, 0), 0)
    img.putpixel((1, 0), 1)
    loaded = load_image(encode(img, "PNG", transparency=1))
    assert loaded.original_mode == "P"
    assert pixels(loaded).tolist() == [[list(RED), list(WHITE)]]
    assert "Composited transparency onto white" in loaded.notes


def test_rgba_png_transparent_pixel_becomes_white():
    img = Image.new("RGBA", (3, 1))
    img.putdata([(*RED, 255), (0, 0, 0, 0), (*RED, 128)])
    loaded = load_image(encode(img, "PNG"))
    row = pixels(loaded)[0].astype(int)
    assert row[0].tolist() == list(RED)
    assert row[1].tolist() == list(WHITE)
    assert row[2][0] == 255 and abs(row[2][1] - 127) <= 1 and row[2][1] == row[2][2]
    assert "Composited transparency onto white" in loaded.notes


def test_opaque_rgba_is_not_reported_as_transparent():
    loaded = load_image(encode(Image.new("RGBA", (4, 4), (*GREEN, 255)), "PNG"))
    assert pixels(loaded)[0, 0].tolist() == list(GREEN)
    assert loaded.notes == ["Converted from RGB with transparency (RGBA) to RGB"]


def test_la_image_is_composited_onto_white():
    img = Image.new("LA", (2, 1))
    img.putdata([(100, 255), (100, 0)])
    loaded = load_image(encode(img, "PNG"), mode="L")
    assert loaded.image.mode == "L"
    assert pixels(loaded).tolist() == [[100, 255]]


def test_one_bit_image_becomes_0_and_255():
    img = Image.new("1", (2, 1))
    img.putpixel((1, 0), 1)
    loaded = load_image(encode(img, "PNG"))
    assert loaded.original_mode == "1"
    assert pixels(loaded).tolist() == [[[0, 0, 0], list(WHITE)]]
    assert any("black-and-white" in note for note in loaded.notes)


@pytest.mark.parametrize(
    "fmt, options",
    [("GIF", {}), ("WEBP", {"lossless": True}), ("PNG", {})],
    ids=["gif", "webp", "apng"],
)
def test_animation_uses_the_first_frame(fmt, options):
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, GREEN, BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **options)
    loaded = load_image(data)
    assert loaded.image.mode == "RGB" and loaded.image.size == (8, 8)
    assert (pixels(loaded) == RED).all()
    assert f"Used the first of 3 frames of the animated {fmt}" in loaded.notes


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 8, 8))  # mark the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    loaded = load_image(encode(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert loaded.original_size == (40, 20)
    assert loaded.image.size == (20, 40)
    top_right, top_left = pixels(loaded)[3, 16].astype(int), pixels(loaded)[3, 3].astype(int)
    assert np.abs(top_right - RED).max() < 40  # the corner turned with the picture
    assert np.abs(top_left - BLUE).max() < 40
    assert "Rotated 90° clockwise according to the EXIF orientation tag" in loaded.notes


@pytest.mark.parametrize(
    "fmt, options",
    [("WEBP", {"lossless": True}), ("BMP", {}), ("TIFF", {}), ("PNG", {})],
)
def test_common_formats_round_trip_exactly(fmt, options):
    original = noise(13, 7)
    loaded = load_image(encode(original, fmt, **options))
    assert loaded.original_format == fmt
    assert loaded.original_size == (13, 7)
    assert loaded.notes == []
    assert np.array_equal(pixels(loaded), np.asarray(original))


def test_colour_to_greyscale_on_request():
    loaded = load_image(encode(Image.new("RGB", (4, 4), (200, 100, 50)), "PNG"), mode="L")
    assert loaded.image.mode == "L"
    assert loaded.notes == ["Converted from RGB to greyscale"]


def test_paths_and_open_files_are_accepted(tmp_path):
    data = encode(noise(), "PNG")
    path = tmp_path / "noise.png"
    path.write_bytes(data)
    stream = io.BytesIO(data)
    stream.read()  # as if an earlier rerun had consumed the upload
    for source in (data, bytearray(data), path, str(path), stream):
        assert np.array_equal(pixels(load_image(source)), np.asarray(noise()))


# --- samples and tensors --------------------------------------------------------------------


def test_samples_exist_and_load_as_rgb():
    assert list(SAMPLES) == ["Cat", "Coffee", "Astronaut", "Rocket", "Cameraman", "Brick wall"]
    for name, path in SAMPLES.items():
        assert path.is_file(), path
        loaded = sample_image(name)
        assert loaded.image.mode == "RGB"
        assert max(loaded.image.size) <= 400
        tensor = to_tensor(loaded)
        width, height = loaded.image.size
        assert tensor.shape == (3, height, width) and tensor.dtype == torch.float32
        assert 0 <= tensor.min() and tensor.max() <= 1 and tensor.max() > 0.5


def test_greyscale_samples_can_stay_greyscale():
    for name in ("Cameraman", "Brick wall"):
        assert sample_image(name).original_mode == "L"
        assert to_tensor(sample_image(name, mode="L")).shape == (1, 400, 400)


def test_unknown_sample_names_the_choices():
    with pytest.raises(KeyError, match="Cat"):
        sample_image("Dog")


def test_to_tensor_resizes_the_longer_side_and_keeps_the_aspect_ratio():
    cat = sample_image("Cat")  # 400 x 266
    small = to_tensor(cat, size=64)
    assert small.shape == (3, 43, 64)
    assert 0 <= small.min() and small.max() <= 1
    tall = Image.new("L", (30, 90), 255)
    assert to_tensor(tall, size=180).shape == (1, 180, 60)
    assert torch.equal(to_tensor(tall, size=180), torch.ones(1, 180, 60))


def test_to_tensor_values_and_layout():
    img = Image.new("RGB", (3, 2), (0, 0, 0))
    img.putpixel((2, 1), (255, 51, 0))
    tensor = to_tensor(img)
    assert tensor.shape == (3, 2, 3)
    assert tensor[:, 1, 2].tolist() == pytest.approx([1.0, 0.2, 0.0])
    assert tensor.sum().item() == pytest.approx(1.2)


def test_to_tensor_refuses_modes_load_image_would_have_converted():
    with pytest.raises(ValueError, match="load_image"):
        to_tensor(Image.new("RGBA", (2, 2)))

