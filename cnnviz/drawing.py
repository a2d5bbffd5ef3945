"""A picture drawn in the browser, made into a network's input the way MNIST made its digits.

The canvas (ui/components/drawing_canvas.js) sends its strokes, not pixels: each stroke is a brush
width and the points the pointer passed, in the canvas's own square coordinates (0 … CANVAS_SIDE).
The strokes are small (a few kilobytes), exact to test with, and redrawn on the canvas after a
remount. This module

- reads the strokes the browser sent (`read_strokes`: untrusted JSON, checked and bounded);
- draws them as dark ink on white paper (`Drawing.render`), with round brush ends like the canvas;
- prepares them for a network (`prepare_drawing`). For a light-on-dark network (Fashion-MNIST,
  MNIST) that is MNIST's own recipe, one visible step each: crop to the ink's bounding box, scale
  the longer side to 20 pixels (20×20 of a 28×28 field, keeping the aspect ratio), move the ink's
  centre of mass to the middle of the field, invert to light ink on black, scale to numbers. For
  any other network the drawing is a picture like an upload and goes through classify.prepare;
- classifies it as each stroke ends (`classify_drawing`: prepared, then one forward pass).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

from . import notation
from .classify import Classifier, ClassifyError, InvertMode, Prediction, Prepared, Recipe, Step, predict, prepare
from .images import LoadedImage

CANVAS_SIDE = 280  # the canvas's coordinates: 10 canvas units per pixel of a 28×28 input
MNIST_FIELD = 28  # MNIST's image side …
MNIST_BOX = 20  # … and the box its digits were scaled to fit, leaving a 4-pixel frame
MAX_STROKES = 400
MAX_POINTS = 20_000  # over all strokes; the canvas thins its points to one per 2 canvas units
MIN_BRUSH, MAX_BRUSH = 1, 80
DISPLAY_SIDE = 224  # small step images are enlarged to about this, pixel by pixel
SMALL_INPUT = 3 * 64 * 64  # numbers of an input that one torch thread classifies fastest
PAPER, INK = 255, 0
FRAME = 200  # the grey of the frame drawn around white paper in the step images (display only)


class DrawingError(ClassifyError):
    """Strokes that cannot be used, said for the student (a crafted or garbled message)."""


class EmptyDrawing(DrawingError):
    """Nothing drawn yet: there is no picture to classify."""


EMPTY_MESSAGE = "Draw something first: the canvas is empty, so there is nothing to classify."


@dataclass(frozen=True)
class Stroke:
    width: int  # the brush's diameter in canvas units
    points: tuple[tuple[int, int], ...]  # where the pointer passed, in order


@dataclass(frozen=True)
class Drawing:
    strokes: tuple[Stroke, ...] = ()
    side: int = CANVAS_SIDE

    @property
    def empty(self) -> bool:
        return not self.strokes

    @property
    def ident(self) -> str:
        """'drawing:<hash>': identifies the picture, for caching what was computed from it."""
        return "drawing:" + hashlib.sha256(json.dumps(self.as_json()).encode()).hexdigest()[:24]

    def as_json(self) -> list[dict]:
        """The strokes as the canvas sends and loads them: [{"w": width, "p": [x0, y0, x1, y1, …]}, …]."""
        return [{"w": s.width, "p": [c for point in s.points for c in point]} for s in self.strokes]

    def render(self) -> Image.Image:
        """Dark ink on white paper, side×side greyscale: each stroke a line with round ends and joints, as
        the canvas draws it (lineCap and lineJoin "round")."""
        img = Image.new("L", (self.side, self.side), PAPER)
        pen = ImageDraw.Draw(img)
        for stroke in self.strokes:
            radius = stroke.width / 2
            if len(stroke.points) > 1:
                # Pillow's joint="curve" rounds every joint in Python (most of a drawing's time); the points
                # are a few canvas units apart, so only the sharp turns need a disc to close the corner.
                pen.line(stroke.points, fill=INK, width=stroke.width)
            for x, y in (stroke.points[0], *_sharp_turns(stroke.points), stroke.points[-1]):
                pen.ellipse((x - radius, y - radius, x + radius, y + radius), fill=INK)
        return img


def _sharp_turns(points: tuple[tuple[int, int], ...], degrees: float = 20.0) -> list[tuple[int, int]]:
    """The inner points where a stroke turns by more than `degrees` (or doubles back on itself)."""
    if len(points) < 3:
        return []
    p = np.asarray(points, dtype=np.float64)
    before, after = p[1:-1] - p[:-2], p[2:] - p[1:-1]
    lengths = np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1)
    cosine = np.einsum("ij,ij->i", before, after) / np.where(lengths > 0, lengths, 1)
    turning = (cosine < math.cos(math.radians(degrees))) | (lengths == 0)
    return [points[i + 1] for i in np.flatnonzero(turning)]


def read_strokes(value, side: int = CANVAS_SIDE) -> Drawing:
    """The strokes the browser sent, checked: a list of {"w": brush width, "p": [x0, y0, x1, y1, …]}.

    Coordinates outside the canvas are clamped onto its edge (a stroke may leave the canvas while
    the pointer is held). Anything else that is not strokes raises DrawingError.
    """
    if value is None:
        return Drawing(side=side)
    if not isinstance(value, list):
        raise DrawingError("The drawing sent by the browser could not be read (not a list of strokes).")
    if len(value) > MAX_STROKES:
        raise DrawingError(f"The drawing has {notation.count(len(value))} strokes; at most "
                           f"{notation.count(MAX_STROKES)} can be classified. Clear it and draw again.")
    strokes, total = [], 0
    for stroke in value:
        flat = stroke.get("p") if isinstance(stroke, dict) else None
        width = stroke.get("w") if isinstance(stroke, dict) else None
        if not (isinstance(flat, list) and flat and len(flat) % 2 == 0 and _is_number(width)
                and all(_is_number(c) for c in flat)):
            raise DrawingError("The drawing sent by the browser could not be read (a stroke is not a brush "
                               "width and a list of x, y points).")
        total += len(flat) // 2
        if total > MAX_POINTS:
            raise DrawingError(f"The drawing has more than {notation.count(MAX_POINTS)} points; clear it and "
                               "draw again.")
        points = tuple((_clamp(flat[i], side), _clamp(flat[i + 1], side)) for i in range(0, len(flat), 2))
        strokes.append(Stroke(min(max(round(width), MIN_BRUSH), MAX_BRUSH), points))
    return Drawing(tuple(strokes), side)


def _clamp(coordinate: float, side: int) -> int:
    return min(max(round(coordinate), 0), side)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --------------------------------------------------------------------------- preprocessing


def ink_box(paper: Image.Image) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) of the pixels darker than the paper, right and bottom exclusive."""
    return ImageOps.invert(paper).getbbox()


def centre_of_mass(paper: Image.Image) -> tuple[float, float]:
    """(x, y) of the ink's centre of mass, each pixel weighted by its ink (255 − brightness), pixel
    centres at i + 0.5: the point a 28×28 field's middle (14, 14) is matched with."""
    ink = PAPER - np.asarray(paper, dtype=np.float64)
    total = ink.sum()
    ys, xs = np.indices(ink.shape)
    return float(((xs + 0.5) * ink).sum() / total), float(((ys + 0.5) * ink).sum() / total)


def prepare_drawing(drawing: Drawing, recipe: Recipe, *, invert: InvertMode = "auto") -> Prepared:
    """The drawing as the network's input, step by step (see the module's docstring).

    `invert` is the classify page's setting: "auto" and "yes" invert (a drawing is always dark ink
    on white paper), "no" does not. Raises EmptyDrawing for a blank canvas.
    """
    if drawing.empty:
        raise EmptyDrawing(EMPTY_MESSAGE)
    start = time.perf_counter()
    paper = drawing.render()
    loaded = LoadedImage(paper, "Drawing", "L", paper.size)
    if not recipe.light_on_dark or recipe.resize is not None:  # a network of photos: a picture like any other
        prepared = prepare(loaded, recipe, invert=invert)
        prepared.steps[0] = Step("Your drawing", _framed(prepared.steps[0].image),
                                 f"Drawn at {notation.grid(drawing.side, drawing.side)}, dark ink on white.",
                                 prepared.steps[0].shape)
        prepared.seconds = time.perf_counter() - start
        return prepared

    h, w = recipe.size
    steps = [Step("Your drawing", _framed(paper), f"Drawn at {notation.grid(drawing.side, drawing.side)}, dark "
                  "ink on white.", _shape(paper))]
    box = ink_box(paper)
    if box is None:  # strokes entirely off the canvas leave no ink
        raise EmptyDrawing(EMPTY_MESSAGE)
    cropped = paper.crop(box)
    steps.append(Step("Cropped to the ink", _display(cropped),
                      f"The ink's bounding box, {notation.grid(cropped.height, cropped.width)} pixels: the empty "
                      "paper around it says nothing about the object.", _shape(cropped)))

    fit = max(1, round(min(h, w) * MNIST_BOX / MNIST_FIELD))
    scale = fit / max(cropped.size)
    # Box filter: each new pixel is the mean of the canvas pixels it covers (the ink's coverage, grey at
    # the edges), with none of a Lanczos filter's faint ripples beside the strokes.
    scaled = cropped.resize((max(1, round(cropped.width * scale)), max(1, round(cropped.height * scale))),
                            Image.Resampling.BOX)
    steps.append(Step(f"Scaled to fit {fit}×{fit}", _display(scaled),
                      f"The longer side becomes {fit} pixels (×{notation.number(scale, 3)}), keeping the aspect "
                      "ratio; each new pixel is the mean of the pixels it covers. As MNIST's digits: a frame of "
                      f"about {(min(h, w) - fit) // 2} pixels stays empty.", _shape(scaled)))

    field = Image.new("L", (w, h), PAPER)
    cx, cy = centre_of_mass(scaled)
    left = min(max(round(w / 2 - cx), 0), w - scaled.width)  # as far as the field allows
    top = min(max(round(h / 2 - cy), 0), h - scaled.height)
    field.paste(scaled, (left, top))
    steps.append(Step(f"Centred in {w}×{h}", _framed(_display(field)),
                      f"Placed so that the ink's centre of mass lands on the middle of the {w}×{h} field, as in "
                      "MNIST.", _shape(field)))

    picture = field
    if invert != "no":
        picture = ImageOps.invert(field)
        steps.append(Step("Inverted", _display(picture), "The training images are light objects on black: "
                          "black ↔ white.", _shape(picture)))
    # The last steps (colour if the network wants it, v / 255) are the uploads' own.
    rest = prepare(LoadedImage(picture, "Drawing", "L", picture.size), recipe, invert="no")
    return Prepared(steps + rest.steps[1:], rest.tensor, invert != "no", time.perf_counter() - start)


def classify_drawing(drawing: Drawing, classifier: Classifier, *, invert: InvertMode = "auto"
                     ) -> tuple[Prepared, Prediction]:
    """What a stroke's end costs: the drawing prepared, and the network run once (no maps recorded, no
    timing runs). A small input (Fashion-MNIST's 28×28) runs on one torch thread: it gains nothing from a
    second, and on a busy machine a team of two waits for the one that was descheduled (measured on 2
    shared cores under a load of 6: the bundled CNN's forward pass p90 22–270 ms with two threads, 0.5 ms
    with one). torch's setting is this thread's own and is put back."""
    prepared = prepare_drawing(drawing, classifier.recipe, invert=invert)
    before = torch.get_num_threads()
    if prepared.tensor.numel() <= SMALL_INPUT:
        torch.set_num_threads(1)
    try:
        return prepared, predict(classifier, prepared.tensor, record=False, repeats=0)
    finally:
        torch.set_num_threads(before)


def _shape(img: Image.Image) -> tuple[int, int, int]:
    return (len(img.getbands()), img.height, img.width)


def _framed(img: Image.Image) -> Image.Image:
    """A copy with a thin grey frame, so white paper shows where it ends on a white page."""
    framed = img.copy()
    ImageDraw.Draw(framed).rectangle((0, 0, img.width - 1, img.height - 1), outline=FRAME)
    return framed


def _display(img: Image.Image) -> Image.Image:
    """Small step images enlarged with visible pixels (a 20×14 crop is a stamp otherwise)."""
    factor = DISPLAY_SIDE // max(img.size)
    if factor < 2:
        return img
    return img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)


__all__ = [
    "CANVAS_SIDE",
    "EMPTY_MESSAGE",
    "Drawing",
    "DrawingError",
    "EmptyDrawing",
    "Stroke",
    "centre_of_mass",
    "classify_drawing",
    "ink_box",
    "prepare_drawing",
    "read_strokes",
]
