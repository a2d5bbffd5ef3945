"""Classifying one image, with everything in between made visible.

The lecture's "CNN as Nested Function": a trained network is a function f(image) -> one
score per class, and the final "softmax" box turns the scores into probabilities by
exponentiating them and dividing by the sum of all exponentiated scores. This module

- knows the models a student can classify with (`Classifier`): the small Fashion-MNIST CNN
  bundled in assets/, any cnnviz checkpoint (the one trained on the training page, or an
  uploaded file), and pretrained torchvision ImageNet models (`PRETRAINED`), whose weights
  are read from the torch cache, downloaded on request, or explained when neither works;
- turns an image into the network's input in visible steps (`prepare`: orientation, colour
  mode, greyscale, inversion, resize, crop, normalise), each with an image to show;
- runs the network once (`predict`), timing it and recording, through forward hooks, the
  activation maps of every convolution layer and the shape after every layer;
- spells out the softmax (`softmax_breakdown`): scores, exponentiated, normalised.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import nn

from . import notation
from .images import MODE_NAMES, LoadedImage

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL = ROOT / "assets" / "models" / "fashion_cnn.pt"

Progress = Callable[[float, str], None]
InvertMode = Literal["auto", "yes", "no"]

DISPLAY_SIDE = 448  # longest side of the step images sent to the browser
SMALL_DISPLAY = 224  # tiny network inputs (28x28) are blown up to this, pixel by pixel
LIGHT_ON_DARK = ("fashion-mnist", "mnist")  # data sets of bright items on a black background
GREY_MODES = {"1", "L", "LA", "La", "I", "F", "I;16", "I;16B", "I;16L"}  # Pillow modes without colour


class ClassifyError(ValueError):
    """Something the student can fix or should know; the message is shown as is."""


class WeightsUnavailable(ClassifyError):
    """Pretrained weights that are neither in the torch cache nor downloadable right now."""


# --------------------------------------------------------------------------- pretrained models


@dataclass(frozen=True)
class Pretrained:
    """A torchvision ImageNet model, by its torchvision name and its weights enum's name."""

    key: str  # torchvision.models.get_model name, e.g. "vgg16"
    title: str
    weights_name: str  # e.g. "VGG16_Weights.IMAGENET1K_V1"

    @property
    def weights(self):
        from torchvision.models import get_weight

        return get_weight(self.weights_name)

    @property
    def url(self) -> str:
        return self.weights.url

    @property
    def file_name(self) -> str:
        return os.path.basename(self.url)

    @property
    def cache_path(self) -> Path:
        """Where torch.hub keeps (and looks for) the weights: $TORCH_HOME/hub/checkpoints/<file>."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.file_name

    @property
    def cached(self) -> bool:
        return self.cache_path.is_file()

    @property
    def size_bytes(self) -> float:
        """The weights file's size (torchvision's meta gives it in MiB)."""
        return float(self.weights.meta.get("_file_size", 0.0)) * 1024 * 1024

    @property
    def params(self) -> int:
        return int(self.weights.meta.get("num_params", 0))

    @property
    def gflops(self) -> float:
        return float(self.weights.meta.get("_ops", 0.0))

    @property
    def top1(self) -> float | None:
        metrics = self.weights.meta.get("_metrics", {}).get("ImageNet-1K", {})
        return metrics.get("acc@1")

    @property
    def classes(self) -> list[str]:
        return list(self.weights.meta["categories"])

    def missing_message(self) -> str:
        """What is missing, where to get it and where it goes, in one short markdown sentence."""
        return (f"The {self.title} weights ({notation.megabytes(self.size_bytes)}) are not on this computer. "
                f"Get [{self.file_name}]({self.url}) and put it in `{_short_path(self.cache_path.parent)}`.")


def _short_path(path: Path) -> str:
    """A path as short as it can be written: the home folder as ~."""
    try:
        return str(Path("~") / path.relative_to(Path.home()))
    except ValueError:
        return str(path)


PRETRAINED: dict[str, Pretrained] = {p.key: p for p in [
    Pretrained("vgg16", "VGG-16", "VGG16_Weights.IMAGENET1K_V1"),
    Pretrained("resnet18", "ResNet-18", "ResNet18_Weights.IMAGENET1K_V1"),
    Pretrained("mobilenet_v3_small", "MobileNet v3 small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1"),
    Pretrained("mobilenet_v3_large", "MobileNet v3 large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2"),
    Pretrained("resnet50", "ResNet-50", "ResNet50_Weights.IMAGENET1K_V2"),
    Pretrained("alexnet", "AlexNet", "AlexNet_Weights.IMAGENET1K_V1"),
]}

_HASH_PREFIX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub's convention: name-<sha256 prefix>.pth


def download_weights(key: str, progress: Progress | None = None, *, timeout: float = 30.0) -> Path:
    """Fetch a pretrained model's weights into the torch cache, reporting progress(fraction, text).

    The file is written next to its target and renamed only once complete and its SHA-256
    matches the prefix in its name (as torch.hub checks), so an interrupted download never
    leaves a broken file where the loader looks. Raises WeightsUnavailable when offline.
    """
    spec = PRETRAINED[key]
    target = spec.cache_path
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(spec.url, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or int(spec.size_bytes) or None
            done = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    fraction = min(done / total, 1.0) if total else 0.0
                    progress(fraction, f"Downloading {spec.title}: {notation.megabytes(done)} of "
                                       f"{notation.megabytes(total or done)}")
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        partial.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise WeightsUnavailable(
            f"The {spec.title} weights could not be downloaded ({reason}). On a computer with internet, get "
            f"[{spec.file_name}]({spec.url}) and put it in `{_short_path(target.parent)}` here.") from None
    match = _HASH_PREFIX.search(spec.file_name)
    if match and not digest.hexdigest().startswith(match.group(1)):
        partial.unlink(missing_ok=True)
        raise WeightsUnavailable(f"The downloaded {spec.title} weights are damaged (their checksum is wrong); "
                                 "please try again.")
    os.replace(partial, target)
    return target


def load_pretrained(key: str, *, download: bool = False, progress: Progress | None = None) -> Classifier:
    """A torchvision ImageNet model with its weights, from the torch cache (or downloaded first).

    Raises WeightsUnavailable (with the URL and the path to put the file) when the weights are
    not cached and `download` is False or fails, and ClassifyError when the cached file is broken.
    """
    if key not in PRETRAINED:
        raise ClassifyError(f"There is no pretrained model {key!r}; choose one of {', '.join(PRETRAINED)}.")
    spec = PRETRAINED[key]
    if not spec.cached:
        if not download:
            raise WeightsUnavailable(spec.missing_message())
        download_weights(key, progress)
    from torchvision.models import get_model

    if progress is not None:
        progress(1.0, f"Loading {spec.title} from {spec.cache_path.name}")
    try:
        state = torch.load(spec.cache_path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file; torch raises many kinds
        raise ClassifyError(
            f"The cached file {spec.cache_path} cannot be read as {spec.title} weights ({_first_line(error)}). "
            "Delete it and download it again.") from None
    model = get_model(key, weights=None)
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ClassifyError(
            f"The cached file {spec.cache_path} does not hold {spec.title} weights ({_first_line(error)}). "
            "Delete it and download it again.") from None
    weights = spec.weights
    top1 = spec.top1
    note = (f"Pretrained on ImageNet (1,000 classes), {notation.approx(spec.params)} parameters, "
            f"{notation.approx(spec.gflops * 1e9)} multiply-adds"
            + (f", top-1 accuracy {notation.percent(top1 / 100)}" if top1 else ""))
    return Classifier(key, spec.title, model.eval(), spec.classes, Recipe.from_weights(weights),
                      f"torchvision weights {spec.weights_name} ({spec.cache_path})", note)


# --------------------------------------------------------------------------- classifiers


@dataclass
class Classifier:
    """A model in eval mode with its class names and the preprocessing it expects."""

    key: str
    title: str
    model: nn.Module
    classes: list[str]
    recipe: Recipe
    source: str  # where the weights came from, for a caption
    note: str = ""  # accuracy, size
    layer_labels: dict[str, str] = field(default_factory=dict)  # module name -> readable name

    def label(self, module_name: str) -> str:
        return self.layer_labels.get(module_name, module_name)


def from_checkpoint(ckpt, key: str = "checkpoint", title: str | None = None) -> Classifier:
    """A cnnviz checkpoint (cnnviz.checkpoint.Checkpoint) as a classifier.

    Module i of the built nn.Sequential is layer i of the stack, so the layers get the
    stack's names ("Layer 1: conv 3x3, 16 filters").
    """
    from .checkpoint import CheckpointError

    try:
        model = ckpt.build_model()
    except CheckpointError as error:
        raise ClassifyError(str(error)) from None
    labels = {str(i): f"Layer {i + 1}: {spec.name}" for i, spec in enumerate(ckpt.specs)}
    acc = ckpt.test_accuracy
    note = f"{ckpt.stack} · trained on {ckpt.dataset}" + (f" · test accuracy {notation.percent(acc)}"
                                                          if acc is not None else "")
    return Classifier(key, title or f"CNN trained on {ckpt.dataset}", model, list(ckpt.classes),
                      Recipe.for_dataset(ckpt.dataset, ckpt.in_shape), "cnnviz checkpoint", note, labels)


def load_bundled(path: str | os.PathLike = BUNDLED_MODEL) -> Classifier:
    """The small Fashion-MNIST CNN in assets/ (made by scripts/train_bundled_model.py)."""
    from .checkpoint import CheckpointError, load_checkpoint

    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as error:
        raise ClassifyError(f"The bundled model {Path(path).name} cannot be loaded: {error} "
                            "Recreate it with `python scripts/train_bundled_model.py`.") from None
    classifier = from_checkpoint(ckpt, "bundled", "Small CNN trained on Fashion-MNIST (bundled)")
    classifier.source = f"assets/models/{Path(path).name}"
    return classifier


# --------------------------------------------------------------------------- preprocessing


@dataclass(frozen=True)
class Recipe:
    """How an image becomes the network's input.

    ImageNet models (torchvision's ImageClassification transform): resize the shorter side to
    `resize`, centre-crop `size`, scale to [0, 1], normalise each channel with mean and std.
    Small models: optionally greyscale and invert (Fashion-MNIST is light on black), pad to a
    square with the background colour (Fashion-MNIST fitted each product's longer side into
    the square) or centre-crop, resize to `size`, scale to [0, 1].
    """

    channels: int  # 1 (greyscale) or 3 (RGB)
    size: tuple[int, int]  # (height, width) of the input
    resize: int | None = None  # shorter side before the crop (ImageNet recipe)
    fit: Literal["crop", "pad"] = "crop"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str = "bilinear"
    light_on_dark: bool = False  # the training images are bright objects on black
    dataset: str = field(default="", compare=False)  # what a cnnviz checkpoint was trained on ("" for ImageNet)

    @classmethod
    def from_weights(cls, weights) -> Recipe:
        """The recipe of torchvision weights: weights.transforms() with its settings read out."""
        t = weights.transforms()
        crop = t.crop_size[0] if isinstance(t.crop_size, (list, tuple)) else t.crop_size
        resize = t.resize_size[0] if isinstance(t.resize_size, (list, tuple)) else t.resize_size
        return cls(3, (crop, crop), resize, "crop", tuple(t.mean), tuple(t.std), t.interpolation.value)

    @classmethod
    def for_dataset(cls, dataset: str, in_shape) -> Recipe:
        c, h, w = (int(n) for n in in_shape)
        if c not in (1, 3):
            raise ClassifyError(f"The model takes {c}-channel images; a photo can be given as 1 (grey) or "
                                "3 (colour) channels only.")
        light = dataset.lower() in LIGHT_ON_DARK
        return cls(c, (h, w), None, "pad" if light else "crop", light_on_dark=light, dataset=dataset.lower())


@dataclass
class Step:
    """One preprocessing step: what it did, the image after it (for display) and the data's shape."""

    title: str
    image: Image.Image
    note: str
    shape: tuple[int, ...]  # (C, H, W) of the data after this step


@dataclass
class Prepared:
    steps: list[Step]
    tensor: torch.Tensor  # (C, H, W) float32, exactly what the model gets (without the batch axis)
    inverted: bool = False
    seconds: float = 0.0


_TRANSPOSE_INVERSE = {  # EXIF orientation -> how to turn the upright picture back into the stored one
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag (1 = upright) of an image file that load_image accepted."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - only a display detail; load_image has the real checks
        return 1


def _display(img: Image.Image, small: bool = False) -> Image.Image:
    """A copy to show: big photos shrunk, tiny network inputs enlarged with visible pixels."""
    if small and max(img.size) < SMALL_DISPLAY:
        factor = max(1, SMALL_DISPLAY // max(img.size))
        return img.resize((img.width * factor, img.height * factor), Image.Resampling.NEAREST)
    if max(img.size) > DISPLAY_SIDE:
        img = img.copy()
        img.thumbnail((DISPLAY_SIDE, DISPLAY_SIDE), Image.Resampling.BILINEAR)
    return img


def _shape(img: Image.Image) -> tuple[int, int, int]:
    return (len(img.getbands()), img.height, img.width)


def border_brightness(grey: Image.Image) -> float:
    """Mean brightness (0-255) of the outer 5 % frame of a greyscale image: its background."""
    a = np.asarray(grey, dtype=np.float64)
    h, w = a.shape
    band = max(1, round(0.05 * min(h, w)))
    mask = np.zeros_like(a, dtype=bool)
    mask[:band], mask[-band:], mask[:, :band], mask[:, -band:] = True, True, True, True
    return float(a[mask].mean())


def prepare(loaded: LoadedImage | Image.Image, recipe: Recipe, *, invert: InvertMode = "auto",
            orientation: int = 1) -> Prepared:
    """The image as the network's input, step by step.

    `loaded` comes from cnnviz.images.load_image (upright, 8-bit RGB); its notes (frames,
    EXIF rotation, colour mode, transparency) become the first steps. `orientation` is the
    file's EXIF tag (see exif_orientation), to show the picture as stored before turning it.
    `invert` applies to light-on-dark recipes: "auto" inverts when the background is light.
    """
    if recipe.resize is not None:
        import torchvision.transforms.functional  # noqa: F401 - imported before the clock starts
    start = time.perf_counter()
    if isinstance(loaded, LoadedImage):
        img, notes = loaded.image, list(loaded.notes)
        width, height = loaded.original_size
        original = (f"{loaded.original_format or 'Image'} · {width}×{height} · "
                    f"{MODE_NAMES.get(loaded.original_mode, loaded.original_mode)}")
    else:
        img, notes, original = loaded, [], f"{loaded.width}×{loaded.height} · {MODE_NAMES.get(loaded.mode, loaded.mode)}"
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    orientation_notes = [n for n in notes if "EXIF" in n]
    other_notes = [n for n in notes if "EXIF" not in n]
    if (recipe.resize is None and recipe.channels == 1 and isinstance(loaded, LoadedImage)
            and loaded.original_mode in GREY_MODES):
        # A grey file for a grey network: load_image's RGB copy has R = G = B; take one channel back.
        img = img.convert("L")
        other_notes = [n for n in other_notes if not n.startswith("Converted from")]
    steps: list[Step] = []
    if orientation in _TRANSPOSE_INVERSE and orientation_notes:
        stored = img.transpose(_TRANSPOSE_INVERSE[orientation])
        steps.append(Step("As stored in the file", _display(stored), original, _shape(stored)))
        steps.append(Step("Turned upright", _display(img), orientation_notes[0] + ".", _shape(img)))
    else:
        steps.append(Step("Your image", _display(img), original + ".", _shape(img)))
    if other_notes:
        steps.append(Step("Decoded to 8-bit " + ("RGB" if img.mode == "RGB" else "grey"), _display(img),
                          ". ".join(other_notes) + ".", _shape(img)))

    inverted = False
    if recipe.resize is not None:  # the ImageNet recipe, exactly as weights.transforms() does it
        tensor = _imagenet_steps(img.convert("RGB"), recipe, steps)
    else:
        if recipe.channels == 1 and img.mode != "L":
            img = img.convert("L")
            steps.append(Step("Greyscale", _display(img), "The network was trained on grey images: "
                              "one channel, L = 0.299 R + 0.587 G + 0.114 B.", _shape(img)))
        elif recipe.channels == 3 and img.mode != "RGB":
            img = img.convert("RGB")
            steps.append(Step("Colour", _display(img), "Copied the grey channel into R, G and B.", _shape(img)))
        if recipe.light_on_dark:
            background = border_brightness(img if img.mode == "L" else img.convert("L"))
            inverted = invert == "yes" or (invert == "auto" and background > 127.5)
            if inverted:
                img = ImageOps.invert(img)
                why = (f"The background is light (border brightness {background:.0f} of 255), but "
                       "the training images are light objects on black" if invert == "auto" else
                       "Inverted as you asked")
                steps.append(Step("Inverted", _display(img), why + ": black ↔ white.", _shape(img)))
        h, w = recipe.size
        if recipe.fit == "pad":
            side = max(img.size)
            fill = round(border_brightness(img if img.mode == "L" else img.convert("L")))
            if img.width != img.height:
                square = Image.new(img.mode, (side, side), fill if img.mode == "L" else (fill,) * 3)
                square.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
                img = square
                steps.append(Step("Padded to a square", _display(img),
                                  f"Filled with the background's brightness ({fill}), so the whole object "
                                  "stays in the picture, as in Fashion-MNIST.", _shape(img)))
            if img.size != (w, h):  # already the network's size: nothing to do
                img = img.resize((w, h), Image.Resampling.LANCZOS)
        else:
            scale = max(w / img.width, h / img.height)
            img = img.resize((max(w, round(img.width * scale)), max(h, round(img.height * scale))),
                             Image.Resampling.LANCZOS)
            left, top = (img.width - w) // 2, (img.height - h) // 2
            img = img.crop((left, top, left + w, top + h))
        if steps[-1].shape[1:] != (h, w):
            steps.append(Step(f"Resized to {w}×{h}", _display(img, small=True),
                              f"The network's input is {w}×{h} pixels: this is all it sees.", _shape(img)))
        pixels = torch.from_numpy(np.array(img, dtype=np.uint8))
        pixels = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)
        tensor = pixels.float() / 255.0
        note = "Each pixel value v becomes v / 255, a number from 0 (black) to 1 (white)."
        if recipe.mean is not None:
            mean = torch.tensor(recipe.mean).view(-1, 1, 1)
            std = torch.tensor(recipe.std).view(-1, 1, 1)
            tensor = (tensor - mean) / std
            note += f" Then (x − mean) / std with mean {recipe.mean} and std {recipe.std}."
        steps.append(Step("Scaled to numbers", _tensor_image(tensor, small=True, stretch=recipe.mean is not None),
                          note, tuple(tensor.shape)))
    return Prepared(steps, tensor.contiguous(), inverted, time.perf_counter() - start)


def _imagenet_steps(img: Image.Image, recipe: Recipe, steps: list[Step]) -> torch.Tensor:
    """torchvision's ImageClassification transform, one operation at a time (same order, same calls)."""
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    mode = InterpolationMode(recipe.interpolation)
    # On a PIL image torchvision resizes and crops with Pillow, then converts to a tensor.
    resized = TF.resize(img, [recipe.resize], interpolation=mode, antialias=True)
    steps.append(Step(f"Shorter side resized to {recipe.resize}", _display(resized),
                      f"{img.width}×{img.height} → {resized.width}×{resized.height} ({recipe.interpolation}, "
                      "antialiased), keeping the aspect ratio.", _shape(resized)))
    h, w = recipe.size
    cropped = TF.center_crop(resized, [h, w])
    steps.append(Step(f"Centre crop {w}×{h}", _display(cropped),
                      f"The network takes {notation.shape((3, h, w))} = {notation.count(w * h * 3)} numbers; "
                      "the edges are cut off.",
                      _shape(cropped)))
    x = TF.pil_to_tensor(cropped)
    x = TF.convert_image_dtype(x, torch.float)
    x = TF.normalize(x, list(recipe.mean), list(recipe.std))
    mean = ", ".join(notation.number(m) for m in recipe.mean)
    std = ", ".join(notation.number(s) for s in recipe.std)
    low, high = notation.number(float(x.min()), 2), notation.number(float(x.max()), 2)
    steps.append(Step("Normalised", _tensor_image(x),
                      f"v / 255, then per channel (x − mean) / std with mean ({mean}) and std ({std}) of "
                      f"ImageNet's R, G, B: values now from {low} to {high}, "
                      "around 0. Shown stretched to black…white.", tuple(x.shape)))
    return x


def _tensor_image(x: torch.Tensor, small: bool = False, stretch: bool = True) -> Image.Image:
    """A (C, H, W) float tensor for display: stretched min..max onto 0..255, or 0..1 shown as is."""
    lo, hi = (float(x.min()), float(x.max())) if stretch else (0.0, 1.0)
    scaled = ((x - lo) / ((hi - lo) or 1.0) * 255).round().clamp(0, 255).to(torch.uint8)
    array = scaled[0].numpy() if scaled.shape[0] == 1 else scaled.permute(1, 2, 0).numpy()
    return _display(Image.fromarray(array), small=small)


# --------------------------------------------------------------------------- prediction


@dataclass
class LayerActivation:
    """The output of one convolution layer for the image: one map per filter (channel)."""

    name: str  # module name in the model, e.g. "features.0"
    label: str  # readable, e.g. "Layer 1: conv 3x3, 16 filters"
    maps: torch.Tensor  # (C, H, W) float32

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.maps.shape)

    @property
    def strength(self) -> torch.Tensor:
        """(C,): how strongly each channel responds to this image, the mean of its positive part
        (what a ReLU after the convolution lets through)."""
        return self.maps.clamp(min=0).mean(dim=(1, 2))

    def strongest(self, n: int = 8) -> list[int]:
        """Indices of the n channels with the largest strength, strongest first."""
        n = max(0, min(n, self.maps.shape[0]))
        return torch.topk(self.strength, n).indices.tolist()


@dataclass(frozen=True)
class ShapeRow:
    """The data after one layer (module call) of the forward pass."""

    name: str
    label: str
    kind: str  # the module's class name
    shape: tuple[int, ...]  # without the batch axis
    params: int


@dataclass
class Prediction:
    logits: torch.Tensor  # (K,) the class scores
    probabilities: torch.Tensor  # (K,) softmax of the scores
    seconds: float  # one forward pass f(x): fastest of `timed_runs` runs without the recording hooks
    input_shape: tuple[int, ...]
    activations: list[LayerActivation]
    shapes: list[ShapeRow]
    skipped_convs: int = 0  # convolutions with 1x1 outputs (e.g. squeeze-and-excitation), not shown
    timed_runs: int = 0  # how many runs `seconds` is the fastest of

    def top(self, k: int = 5) -> list[tuple[int, float]]:
        values, indices = torch.topk(self.probabilities, min(k, self.probabilities.numel()))
        return list(zip(indices.tolist(), values.tolist()))


_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_for(model: nn.Module) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(model, threading.Lock())


def predict(classifier: Classifier, x: torch.Tensor, *, record: bool = True, repeats: int = 5,
            budget_s: float = 1.0) -> Prediction:
    """Run the network on one prepared image (C, H, W) and record what flows through it.

    With `record`, forward hooks copy the output of every nn.Conv2d (the activation maps;
    copied because an in-place ReLU may overwrite them next) and note the output shape of
    every leaf module, in the order they run.
    """
    model = classifier.model
    if x.ndim != 3:
        raise ClassifyError(f"Expected one image (channels, height, width), not a tensor of shape {tuple(x.shape)}.")
    activations: list[LayerActivation] = []
    shapes: list[ShapeRow] = []
    skipped = 0
    runs = 0
    handles = []
    batch = x.unsqueeze(0).float()

    def save_maps(name: str):
        def hook(mod, args, out):
            nonlocal skipped
            if out.shape[-2:].numel() > 1:
                activations.append(LayerActivation(name, classifier.label(name), out[0].detach().clone()))
            else:
                skipped += 1
        return hook

    def save_shape(name: str):
        def hook(mod, args, out):
            if isinstance(out, torch.Tensor):
                params = sum(p.numel() for p in mod.parameters())
                shapes.append(ShapeRow(name, classifier.label(name), type(mod).__name__, tuple(out.shape[1:]), params))
        return hook

    # Hooks belong to the model, which a cached resource shares between sessions: one run at a time.
    with _lock_for(model):
        try:
            if record:
                for name, module in model.named_modules():
                    if isinstance(module, nn.Conv2d):
                        handles.append(module.register_forward_hook(save_maps(name)))
                    if next(module.children(), None) is None:  # a leaf: one row of the shapes table
                        handles.append(module.register_forward_hook(save_shape(name)))
            with torch.inference_mode():
                start = time.perf_counter()
                logits = model(batch)[0]
                seconds = time.perf_counter() - start
                for handle in handles:
                    handle.remove()
                # Time f(x) alone, without the copying hooks: the fastest of up to `repeats` runs within
                # about a second (as timeit does: slower runs measure other programs and torch's set-up).
                times = []
                while len(times) < repeats and (not times or sum(times) < budget_s):
                    start = time.perf_counter()
                    model(batch)
                    times.append(time.perf_counter() - start)
                seconds = min(times) if times else seconds
                runs = len(times)
        except RuntimeError as error:
            raise ClassifyError(f"The model could not process a {notation.shape(x.shape)} input: "
                                f"{_first_line(error)}") from None
        finally:
            for handle in handles:
                handle.remove()
    if logits.ndim != 1 or logits.numel() != len(classifier.classes):
        raise ClassifyError(f"The model gave {logits.numel()} scores but has {len(classifier.classes)} class names.")
    logits = logits.float()
    return Prediction(logits, torch.softmax(logits, 0), seconds, tuple(x.shape), activations, shapes, skipped, runs)


# --------------------------------------------------------------------------- softmax


@dataclass(frozen=True)
class SoftmaxBreakdown:
    """The lecture's softmax box for the k best classes: p_i = e^(z_i) / sum_j e^(z_j).

    All in float64. When a score is so large that e^z would overflow, every score is first
    reduced by the largest one (`shift`); that cancels in the division and does not change p.
    """

    indices: list[int]
    names: list[str]
    scores: torch.Tensor  # (k,) z_i
    exps: torch.Tensor  # (k,) e^(z_i - shift)
    probabilities: torch.Tensor  # (k,)
    total: float  # sum over all classes of e^(z_j - shift)
    rest_exp: float  # the part of `total` from the classes not listed
    rest_count: int
    shift: float = 0.0

    @property
    def rest_probability(self) -> float:
        return self.rest_exp / self.total

    @property
    def n_classes(self) -> int:
        return len(self.indices) + self.rest_count


def softmax_breakdown(logits: torch.Tensor, classes: list[str], k: int = 5) -> SoftmaxBreakdown:
    z = logits.detach().to(torch.float64).flatten()
    if z.numel() != len(classes):
        raise ValueError(f"{z.numel()} scores but {len(classes)} class names")
    if not bool(torch.isfinite(z).all()):
        raise ClassifyError("The model produced scores that are not finite numbers (NaN or infinity).")
    k = max(1, min(k, z.numel()))
    top = torch.topk(z, k).indices
    shift = float(z.max()) if float(z.max()) > 700 or float(z.min()) < -700 else 0.0
    exps = torch.exp(z - shift)
    total = float(exps.sum())
    rest = total - float(exps[top].sum())
    return SoftmaxBreakdown(top.tolist(), [classes[i] for i in top.tolist()], z[top], exps[top],
                            exps[top] / total, total, max(rest, 0.0), z.numel() - k, shift)


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else type(error).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def number_text(value: float) -> str:
    """A number of the softmax arithmetic to 4 significant digits, written by cnnviz.notation:
    0.01235, −4.568, 1.235e8 (the scores' exponentials span many orders of magnitude)."""
    value = float(value)
    if value == 0 or not math.isfinite(value) or 1e-3 <= abs(value) < 1e5:
        return notation.number(float(f"{value:.4g}"), digits=6)
    mantissa, exponent = f"{value:.3e}".split("e")
    return f"{notation.number(float(mantissa))}e{notation.number(int(exponent))}"


__all__ = [
    "BUNDLED_MODEL",
    "PRETRAINED",
    "Classifier",
    "ClassifyError",
    "LayerActivation",
    "Prediction",
    "Prepared",
    "Pretrained",
    "Recipe",
    "ShapeRow",
    "SoftmaxBreakdown",
    "Step",
    "WeightsUnavailable",
    "border_brightness",
    "download_weights",
    "exif_orientation",
    "from_checkpoint",
    "load_bundled",
    "load_pretrained",
    "number_text",
    "parameter_count",
    "predict",
    "prepare",
    "softmax_breakdown",
]


# --------------------------------------------------------------------------- bundled test images

FASHION_PREFIX = "Fashion-MNIST: "


def fashion_test_images() -> dict[str, tuple[LoadedImage, int]]:
    """One image per class from the bundled Fashion-MNIST test subset (never seen in training),
    by name ("Fashion-MNIST: Ankle boot"), with the index of its true class."""
    from .data import load_images

    test = load_images("fashion-mnist", "test", source="bundled")
    found: dict[str, tuple[LoadedImage, int]] = {}
    for label, name in enumerate(test.classes):
        index = int(torch.nonzero(test.labels == label)[0, 0])
        img = Image.fromarray(test.images[index, 0].numpy())
        found[FASHION_PREFIX + name] = (LoadedImage(img, f"Fashion-MNIST test image {index}", "L", img.size), label)
    return found
