"""What models learn: a linear classifier, an MLP and a small CNN, trained live on whole tensors.

The lecture's three pictures, computed:

- Linear model f(x) = Wx + b on the flattened image: W has one row per class, and each row,
  reshaped back to the image's H x W x C, is a *class template* (`linear_templates`). The score
  of class i is the dot product w_i . x plus b_i, so the class whose template matches the image
  best wins (`template_match`).
- MLP: each of the k1 hidden units of the first layer computes sigma(w_j . x + b_j), so each
  row of the first weight matrix is a *full-image template* too (`hidden_templates`).
- CNN: each first-layer filter is a small k x k x C template matched against every crop of
  the image (`first_layer_filters`, `activation_maps`). After a few epochs on Fashion-MNIST
  the 5x5 filters are blobs, bars and edges (light against dark), coarse at 5x5 pixels;
  AlexNet's crisp oriented edges took 11x11 filters and 1.2 million photos. Its 64 11x11x3
  filters are shown from torchvision's pretrained weights when they are already in the torch
  hub cache (`alexnet_filters`); nothing is downloaded.

Training is fast on a couple of CPU cores: the whole split is one float tensor, minibatches
are slices of it, and `progress(fraction, text)` is called as it goes. Everything is seeded,
so the same settings give the same model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageSet
from .network import build_model

Progress = Optional[Callable[[float, str], None]]

KINDS = ("linear", "mlp", "cnn")
TITLES = {"linear": "Linear classifier", "mlp": "MLP (one hidden layer)", "cnn": "Small CNN"}

# The small CNN whose first-layer filters the page shows: 5x5 filters are big enough to see
# an edge's orientation, 16 of them fit one screen.
CNN_STACK = "conv5x16/p2,relu,maxpool2,conv3x16/p1,relu,maxpool2,flatten,fc10"
# Its first layer starts from small random weights (this share of torch's default) and zero
# biases, so its picture shows what training put there. From torch's default start, what 4
# epochs add is about half the size of the random start, and the filters look like noise
# (neighbour correlation 0.20); from a tenth of it the change is 7 times the start and the
# filters are blobs, bars and edges (0.54), for the same test accuracy (86.6 % against 86.5 %
# on the bundled subset; benchmarks/learn_speed.py). Zero biases keep every filter's ReLU open
# at the start, so no filter stays dead and unlearned.
FIRST_LAYER_INIT_SCALE = 0.1

DEFAULTS = {
    "linear": dict(epochs=10, batch_size=256, lr=0.005, weight_decay=1e-2),
    "mlp": dict(epochs=10, batch_size=256, lr=0.003, weight_decay=1e-3),
    "cnn": dict(epochs=4, batch_size=128, lr=0.005, weight_decay=0.0),
}
# One thread: these models are tiny and their minibatches small, so extra threads mostly wait
# on each other, and on a shared machine (a server with several students, a busy laptop) more
# threads than free cores slow training down several times (benchmarks/learn_speed.py).
TRAIN_THREADS = 1
MLP_HIDDEN = 32
MAX_HIDDEN = 256
MAX_EPOCHS = 50


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Normalizer:
    """Pixels (0-255) to the model's input: x = (pixel / 255 - mean_c) / std_c per channel c.

    mean and std come from the training images. Standardised inputs make training quick and
    give the templates a meaning: a positive weight means "brighter than usual here is evidence
    for this class".
    """

    mean: torch.Tensor  # (C,)
    std: torch.Tensor  # (C,)

    @classmethod
    def fit(cls, images: torch.Tensor) -> "Normalizer":
        x = images.to(torch.float32) / 255.0
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
        return cls(mean, std)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) or (C, H, W) to float32 of the same shape."""
        x = images.to(torch.float32) / 255.0
        shape = (-1, 1, 1)
        return (x - self.mean.view(shape)) / self.std.view(shape)


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------

def make_model(kind: str, in_shape: tuple[int, int, int], n_classes: int = 10,
               hidden: int = MLP_HIDDEN) -> nn.Sequential:
    """The three models of the lecture's pictures, on images of shape (C, H, W)."""
    c, h, w = in_shape
    d = c * h * w
    if kind == "linear":
        return nn.Sequential(nn.Flatten(), nn.Linear(d, n_classes))
    if kind == "mlp":
        if not 1 <= hidden <= MAX_HIDDEN:
            raise ValueError(f"The hidden layer has 1 to {MAX_HIDDEN} units, not {hidden}.")
        return nn.Sequential(nn.Flatten(), nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))
    if kind == "cnn":
        model = build_model(CNN_STACK.replace("fc10", f"fc{n_classes}"), in_shape)
        with torch.no_grad():
            first_conv(model).weight.mul_(FIRST_LAYER_INIT_SCALE)
            first_conv(model).bias.zero_()
        return model
    raise ValueError(f"Unknown model {kind!r}; choose one of {', '.join(KINDS)}.")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(kind: str, in_shape: tuple[int, int, int], n_classes: int = 10, hidden: int = MLP_HIDDEN) -> str:
    """The model in one line, with the lecture's shapes."""
    c, h, w = in_shape
    d = c * h * w
    if kind == "linear":
        return f"f(x) = Wx + b with W ∈ ℝ^{n_classes}×{d}, b ∈ ℝ^{n_classes} ({h}·{w}·{c} = {d} inputs)"
    if kind == "mlp":
        return (f"σ(W₁x + b₁) with W₁ ∈ ℝ^{hidden}×{d} (k₁ = {hidden} hidden units, ReLU), "
                f"then W₂ ∈ ℝ^{n_classes}×{hidden}")
    return f"{CNN_STACK.replace('fc10', f'fc{n_classes}')} (first layer: 16 filters of 5×5×{c})"


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------

@dataclass
class EpochStats:
    epoch: int
    loss: float  # mean training cross-entropy over the epoch
    train_accuracy: float  # on the minibatches as they were trained on
    test_accuracy: float


@dataclass
class TrainResult:
    kind: str
    model: nn.Module  # in eval mode
    normalizer: Normalizer
    dataset: str
    classes: list[str]
    in_shape: tuple[int, int, int]
    n_train: int
    n_test: int
    settings: dict
    history: list[EpochStats] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def test_accuracy(self) -> float:
        return self.history[-1].test_accuracy if self.history else float("nan")

    @property
    def parameters(self) -> int:
        return count_parameters(self.model)

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores for uint8 images (N, C, H, W) or one image (C, H, W)."""
        single = images.dim() == 3
        x = self.normalizer(images[None] if single else images)
        out = self.model(x)
        return out[0] if single else out


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, batch_size: int = 2000) -> float:
    """Fraction of correctly classified images, in batches (bounded memory)."""
    if len(labels) == 0:
        return float("nan")
    correct = 0
    for start in range(0, len(labels), batch_size):
        correct += int((model(x[start:start + batch_size]).argmax(1) == labels[start:start + batch_size]).sum())
    return correct / len(labels)


def train(kind: str, train_set: ImageSet, test_set: ImageSet, *, epochs: int | None = None,
          hidden: int = MLP_HIDDEN, batch_size: int | None = None, lr: float | None = None,
          weight_decay: float | None = None, seed: int = 0, progress: Progress = None,
          threads: int | None = TRAIN_THREADS) -> TrainResult:
    """Train one of the three models with Adam on minibatches sliced from whole tensors.

    `threads`: torch's intra-op threads while training (None: leave torch's setting alone).
    """
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(kind, train_set, test_set, epochs=epochs, hidden=hidden, batch_size=batch_size, lr=lr,
                      weight_decay=weight_decay, seed=seed, progress=progress)
    finally:
        if threads is not None:
            torch.set_num_threads(before)


def _train(kind: str, train_set: ImageSet, test_set: ImageSet, *, epochs, hidden, batch_size, lr,
           weight_decay, seed, progress) -> TrainResult:
    if kind not in KINDS:
        raise ValueError(f"Unknown model {kind!r}; choose one of {', '.join(KINDS)}.")
    settings = dict(DEFAULTS[kind])
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr), ("weight_decay", weight_decay)):
        if value is not None:
            settings[name] = value
    if kind == "mlp":
        settings["hidden"] = hidden
    if not 1 <= settings["epochs"] <= MAX_EPOCHS:
        raise ValueError(f"Train for 1 to {MAX_EPOCHS} epochs, not {settings['epochs']}.")
    if train_set.shape != test_set.shape or train_set.classes != test_set.classes:
        raise ValueError("The training and test images must come from the same data set.")
    if len(train_set) == 0:
        raise ValueError("There are no training images.")
    settings["seed"] = seed

    start = time.perf_counter()
    in_shape = train_set.shape
    normalizer = Normalizer.fit(train_set.images)
    x_train, y_train = normalizer(train_set.images), train_set.labels
    x_test, y_test = normalizer(test_set.images), test_set.labels
    n_classes = len(train_set.classes)

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model(kind, in_shape, n_classes, hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"])

    n = len(y_train)
    size = settings["batch_size"]
    steps_per_epoch = math.ceil(n / size)
    total_steps = settings["epochs"] * steps_per_epoch
    report_every = max(1, total_steps // 50)  # about 50 progress updates in all
    result = TrainResult(kind, model, normalizer, train_set.name, list(train_set.classes), in_shape,
                         n, len(y_test), settings)
    step = 0
    for epoch in range(1, settings["epochs"] + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum, correct = 0.0, 0
        for begin in range(0, n, size):
            index = order[begin:begin + size]
            xb, yb = x_train[index], y_train[index]
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(index)
            correct += int((out.argmax(1) == yb).sum())
            step += 1
            if progress is not None and (step % report_every == 0 or step == total_steps):
                progress(step / total_steps * 0.98,
                         f"{TITLES[kind]}: epoch {epoch} of {settings['epochs']}, loss {float(loss.detach()):.3f}")
        model.eval()
        result.history.append(EpochStats(epoch, loss_sum / n, correct / n, accuracy(model, x_test, y_test)))
    result.seconds = time.perf_counter() - start
    if progress is not None:
        progress(1.0, f"{TITLES[kind]}: test accuracy {result.test_accuracy:.1%} "
                      f"after {settings['epochs']} epochs ({result.seconds:.1f} s)")
    for p in model.parameters():
        p.requires_grad_(False)
    return result


def train_linear(train_set: ImageSet, test_set: ImageSet, epochs: int | None = None, **kwargs) -> TrainResult:
    return train("linear", train_set, test_set, epochs=epochs, **kwargs)


def train_mlp(train_set: ImageSet, test_set: ImageSet, epochs: int | None = None,
              hidden: int = MLP_HIDDEN, **kwargs) -> TrainResult:
    return train("mlp", train_set, test_set, epochs=epochs, hidden=hidden, **kwargs)


def train_cnn(train_set: ImageSet, test_set: ImageSet, epochs: int | None = None, **kwargs) -> TrainResult:
    return train("cnn", train_set, test_set, epochs=epochs, **kwargs)


# ---------------------------------------------------------------------------------------------
# What they learned
# ---------------------------------------------------------------------------------------------

def _first(model: nn.Module, kind: type) -> nn.Module:
    for module in model.modules():
        if isinstance(module, kind):
            return module
    raise ValueError(f"The model has no {kind.__name__} layer.")


def linear_templates(result: TrainResult) -> torch.Tensor:
    """The class templates: row i of W reshaped to (C, H, W), for each class i."""
    layer = _first(result.model, nn.Linear)
    return layer.weight.detach().reshape(-1, *result.in_shape).clone()


def hidden_templates(result: TrainResult) -> torch.Tensor:
    """The MLP's first-layer rows as full-image templates, (k1, C, H, W)."""
    layer = _first(result.model, nn.Linear)
    return layer.weight.detach().reshape(-1, *result.in_shape).clone()


@dataclass
class TemplateMatch:
    """Why the linear classifier picks a class: score_i = w_i . x + b_i."""

    x: torch.Tensor  # the normalised image (C, H, W): what the model sees
    dots: torch.Tensor  # (classes,) w_i . x
    bias: torch.Tensor  # (classes,) b_i
    scores: torch.Tensor  # (classes,) dots + bias
    probabilities: torch.Tensor  # softmax of the scores

    @property
    def predicted(self) -> int:
        return int(self.scores.argmax())


@torch.no_grad()
def template_match(result: TrainResult, image: torch.Tensor) -> TemplateMatch:
    """Score one uint8 image (C, H, W) against every class template."""
    layer = _first(result.model, nn.Linear)
    x = result.normalizer(image)
    dots = layer.weight @ x.reshape(-1)
    bias = layer.bias.detach().clone()
    scores = dots + bias
    return TemplateMatch(x, dots, bias, scores, torch.softmax(scores, 0))


def contributions(result: TrainResult, match: TemplateMatch, classes: Sequence[int]) -> torch.Tensor:
    """Per-pixel terms of the dot products w_k . x for each class k in `classes`, shape
    (len(classes), H, W), summed over channels.

    Each map adds up to match.dots[k]: where the image agrees with the template the terms are
    positive, where it disagrees negative.
    """
    return (linear_templates(result)[list(classes)] * match.x).sum(1)


@torch.no_grad()
def hidden_activations(result: TrainResult, image: torch.Tensor) -> torch.Tensor:
    """The k1 hidden-unit activations sigma(W1 x + b1) of the MLP for one uint8 image."""
    layer = _first(result.model, nn.Linear)
    return torch.relu(layer(result.normalizer(image).reshape(1, -1)))[0]


def most_active(activations: torch.Tensor, n: int = 5) -> list[tuple[int, float]]:
    """The n most active units, strongest first: (unit index, activation)."""
    values, units = activations.topk(min(n, len(activations)))
    return list(zip(units.tolist(), values.tolist()))


def first_conv(result_or_model) -> nn.Conv2d:
    model = result_or_model.model if isinstance(result_or_model, TrainResult) else result_or_model
    return _first(model, nn.Conv2d)


def first_layer_filters(result: TrainResult) -> torch.Tensor:
    """The first convolution layer's filters, (filters, C, k, k)."""
    return first_conv(result).weight.detach().clone()


def neighbour_correlation(filters: torch.Tensor) -> torch.Tensor:
    """How smooth each filter (N, C, k, k) looks: 1 − (mean squared difference of neighbouring
    weights, across and down) / (2 · the weights' variance). About 0 for random noise, near 1
    for a smooth picture, −1 for a checkerboard (benchmarks/learn_speed.py, tests)."""
    w = filters.detach() - filters.detach().mean(dim=(2, 3), keepdim=True)
    variance = (w ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    across = ((w[..., 1:] - w[..., :-1]) ** 2).mean(dim=(1, 2, 3))
    down = ((w[..., 1:, :] - w[..., :-1, :]) ** 2).mean(dim=(1, 2, 3))
    return 1 - (across + down) / 2 / (2 * variance)


@torch.no_grad()
def activation_maps(result: TrainResult, image: torch.Tensor) -> torch.Tensor:
    """Each first-layer filter applied to one uint8 image: its activation map (filters, H', W'),
    before the ReLU (positive where the crop matches the filter, negative where it is the opposite)."""
    return first_conv(result)(result.normalizer(image)[None])[0]


@dataclass
class ComparisonRow:
    kind: str
    title: str
    parameters: int
    test_accuracy: float
    seconds: float
    learned: str


LEARNED = {
    "linear": "one template per class (10 in all), each a whole image",
    "mlp": "k₁ full-image templates used as features by the next layer",
    "cnn": "small local filters (blobs, bars, edges) matched at every position",
}


def comparison(results: dict[str, TrainResult]) -> list[ComparisonRow]:
    """The models side by side, in the lecture's order."""
    return [ComparisonRow(k, TITLES[k], results[k].parameters, results[k].test_accuracy, results[k].seconds,
                          LEARNED[k]) for k in KINDS if k in results]


# ---------------------------------------------------------------------------------------------
# AlexNet's first layer, from torchvision's pretrained weights in the local cache
# ---------------------------------------------------------------------------------------------

# Where the weights live, in words: a visitor of a shared server must not learn its folders.
TORCH_CACHE = "torch's cache (hub/checkpoints in $TORCH_HOME, by default ~/.cache/torch)"
ALEXNET_HOW_TO = (
    "AlexNet's pretrained weights (233 MB) are not in " + TORCH_CACHE + ". To show them, run "
    "`python -c \"import torchvision; torchvision.models.alexnet(weights='IMAGENET1K_V1')\"` once, online, "
    "on the machine that runs the app; they are shown here from then on."
)


def alexnet_weights_file() -> Path:
    """Where torchvision keeps AlexNet's IMAGENET1K_V1 weights: torch.hub's checkpoints folder."""
    from torchvision.models import AlexNet_Weights

    url = AlexNet_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


class WeightsUnavailable(Exception):
    """AlexNet's weights are missing or unreadable; the message says what to do."""


def alexnet_filters() -> torch.Tensor:
    """AlexNet's 64 first-layer filters (64, 3, 11, 11), read from the cache; never downloads."""
    path = alexnet_weights_file()
    if not path.is_file():
        raise WeightsUnavailable(ALEXNET_HOW_TO)
    shown = f"{path.name} in {TORCH_CACHE}"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # truncated, not a checkpoint, crafted
        raise WeightsUnavailable(f"{shown} could not be read ({type(error).__name__}); it is probably corrupt. "
                                 "Delete it and fetch it again. " + ALEXNET_HOW_TO) from None
    weight = state.get("features.0.weight") if isinstance(state, dict) else None
    if not isinstance(weight, torch.Tensor) or tuple(weight.shape) != (64, 3, 11, 11):
        raise WeightsUnavailable(f"{shown} does not hold AlexNet's first layer (64 filters of 11x11x3). "
                                 "Delete it and fetch it again. " + ALEXNET_HOW_TO)
    return weight.detach().to(torch.float32).clone()
