"""Figures of a training run: loss and accuracy curves, the confusion matrix, a row of test
images with the model's predictions, and the first layer's filters.

Pure functions of the numbers in `cnnviz.train` (History, EpochReport), returning plotly.js's
own JSON as plain dicts ({"data": [...], "layout": {...}}): the training page redraws them
several times a second, and `ui.show.chart` hands such a dict to the browser as it is.
`as_figure(spec)` makes a go.Figure of one when needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import plotly.graph_objects as go
import torch

from .pictures import DIVERGING, SEQUENTIAL, data_url, png
from .train import EpochReport, History, TrainProgress

TRAIN_COLOUR = "#2563eb"  # blue
TEST_COLOUR = "#ea580c"  # orange
RIGHT = "#15803d"
WRONG = "#dc2626"
FONT = {"size": 14}


def as_figure(spec: dict) -> go.Figure:
    return go.Figure(data=spec["data"], layout=spec["layout"], _validate=False)


# ---------------------------------------------------------------------------- text


def duration_text(seconds: float | None) -> str:
    """0.43 -> '0.4 s', 3.2 -> '3 s', 75 -> '1 min 15 s', 3720 -> '1 h 2 min'; None -> '…'."""
    if seconds is None or not math.isfinite(seconds):
        return "…"
    if seconds < 0.95:  # a small run on a fast machine: "0 s" would say it did not train at all
        return f"{max(seconds, 0.1):.1f} s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def progress_text(progress: TrainProgress) -> str:
    """'Epoch 1.40 of 3 · step 110 of 235 · 12,300 images/s · about 4 s left'."""
    parts = [f"Epoch {progress.epoch:.2f} of {progress.epochs}", f"step {progress.step:,} of {progress.steps:,}"]
    if progress.images_per_s:
        parts.append(f"{progress.images_per_s:,.0f} images/s")
    if progress.phase == "done":
        parts.append(f"trained for {duration_text(progress.train_seconds)}")
    elif progress.eta_s is not None:
        parts.append(f"about {duration_text(progress.eta_s)} left")
    if progress.phase in ("evaluating", "paused"):
        parts.append(progress.phase)
    return " · ".join(parts)


# ---------------------------------------------------------------------------- curves


CURVES = {  # metric -> its plot's title, axis and number format; one figure each, side by side or stacked
    "loss": ("<b>Loss</b> (lower is better)", "cross-entropy loss", ".3f"),
    "accuracy": ("<b>Accuracy</b> (higher is better)", "accuracy", ".1%"),
}


def curve_spec(history: History, epochs: int, metric: str, classes: int = 10, height_px: int = 330) -> dict:
    """One metric ("loss" or "accuracy") against epochs, train in blue, test in orange; the accuracy plot
    marks chance level (1 / number of classes). Each metric is a figure of its own, so that a phone
    stacks them instead of squeezing two plots into its width."""
    title, axis_title, number = CURVES[metric]
    train_y = history.train_loss if metric == "loss" else history.train_accuracy
    test_y = history.test_loss if metric == "loss" else history.test_accuracy
    data = [
        {"type": "scatter", "x": list(history.train_epoch), "y": list(train_y), "name": "training batches",
         "mode": "lines", "line": {"color": TRAIN_COLOUR, "width": 2},
         "hovertemplate": f"epoch %{{x:.2f}}: %{{y:{number}}}<extra>train</extra>"},
        {"type": "scatter", "x": list(history.test_epoch), "y": list(test_y), "name": "test set",
         "mode": "lines+markers", "line": {"color": TEST_COLOUR, "width": 3}, "marker": {"size": 8},
         "hovertemplate": f"epoch %{{x:.2f}}: %{{y:{number}}}<extra>test</extra>"},
    ]
    x_range = [0, max(epochs, 1)]
    if metric == "loss":
        losses = [v for v in (*history.train_loss, *history.test_loss) if math.isfinite(v)]
        top = max(losses) * 1.05 if losses else math.log(max(classes, 2)) * 1.1
        yaxis = {"range": [0, top], "rangemode": "tozero"}
    else:
        yaxis = {"range": [0, 1], "tickformat": ".0%"}
    layout = {
        "height": height_px, "margin": {"l": 10, "r": 10, "t": 44, "b": 10}, "font": FONT,
        "title": {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 15}},
        "xaxis": {"range": x_range, "title": {"text": "epoch"}},
        "yaxis": {**yaxis, "title": {"text": axis_title}},
        "legend": {"orientation": "h", "x": 0.5, "xanchor": "center", "y": -0.25},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)",
        "uirevision": metric,  # keep the user's zoom while the curves grow
    }
    if metric == "accuracy":
        chance = 1 / max(classes, 1)
        layout["shapes"] = [{"type": "line", "xref": "x", "yref": "y", "x0": 0, "x1": x_range[1], "y0": chance,
                             "y1": chance, "line": {"color": "#6b7280", "dash": "dot", "width": 1.5}}]
        layout["annotations"] = [{"text": f"chance {chance:.0%}", "xref": "x", "yref": "y", "x": x_range[1],
                                  "y": chance, "xanchor": "right", "yanchor": "bottom", "showarrow": False,
                                  "font": {"size": 12, "color": "#6b7280"}}]
    for axis in ("xaxis", "yaxis"):
        layout[axis].update(gridcolor="#e5e7eb", zeroline=False, showline=True, linecolor="#9ca3af")
    return {"data": data, "layout": layout}


# ---------------------------------------------------------------------------- confusion


def confusion_spec(confusion: torch.Tensor, classes: Sequence[str], title: str = "", height_px: int = 460) -> dict:
    """Rows: the true class, columns: the predicted class; counts written in, colour = the
    share of the row (so every class is read on the same scale); the diagonal is correct."""
    counts = confusion.to(torch.int64)
    rows = counts.sum(1, keepdim=True).clamp(min=1)
    share = (counts.double() / rows).tolist()
    names = [str(c) for c in classes]
    text = [[str(v) if v else "" for v in row] for row in counts.tolist()]
    data = [{
        "type": "heatmap", "z": share, "x": names, "y": names, "text": text, "texttemplate": "%{text}",
        "textfont": {"size": 12}, "colorscale": SEQUENTIAL, "zmin": 0, "zmax": 1, "showscale": False, "xgap": 1, "ygap": 1,
        "hovertemplate": "true %{y}, predicted %{x}: %{text} images (%{z:.0%} of the row)<extra></extra>",
    }]
    layout = {
        "height": height_px, "margin": {"l": 10, "r": 10, "t": 50 if title else 20, "b": 10}, "font": FONT,
        "xaxis": {"title": {"text": "predicted class"}, "side": "bottom", "tickangle": -40, "constrain": "domain"},
        "yaxis": {"title": {"text": "true class"}, "autorange": "reversed", "scaleanchor": "x", "constrain": "domain"},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)",
    }
    if title:
        layout["title"] = {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 15}}
    return {"data": data, "layout": layout}


def most_confused(confusion: torch.Tensor, classes: Sequence[str], top: int = 3) -> list[tuple[str, str, int]]:
    """The largest off-diagonal counts: (true class, predicted class, count), largest first."""
    off = confusion.clone().to(torch.int64)
    off.fill_diagonal_(0)
    values, flat = off.flatten().sort(descending=True)
    k = off.shape[1]
    return [(str(classes[int(i) // k]), str(classes[int(i) % k]), int(v))
            for v, i in zip(values[:top], flat[:top]) if int(v) > 0]


# ---------------------------------------------------------------------------- images


def _png_uri(array: torch.Tensor) -> str:
    """uint8 (H, W, 3) -> data: URI of a PNG."""
    return data_url(png(array.contiguous().numpy()))


def _to_rgb(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) with C 1 or 3 -> uint8 (N, H, W, 3); other C: the channel mean in grey."""
    if images.shape[1] == 3:
        return images.permute(0, 2, 3, 1)
    grey = images[:, :1] if images.shape[1] == 1 else images.float().mean(1, keepdim=True).round().to(torch.uint8)
    return grey.permute(0, 2, 3, 1).expand(-1, -1, -1, 3)


@dataclass(frozen=True)
class PredictionCard:
    """One test image of an epoch's report, as the training page shows it."""

    picture: str  # PNG data URL, `scale` times the image's pixels
    predicted: str
    probability: float  # the softmax probability of the predicted class
    true: str
    right: bool


def prediction_cards(report: EpochReport, classes: Sequence[str], scale: int = 3) -> list[PredictionCard]:
    """The report's test images (one per class) with the predicted class, its probability and the true
    class: the page lays them out as cards that wrap on a narrow screen."""
    images = _to_rgb(report.sample_images)
    cards = []
    for i in range(images.shape[0]):
        pixels = images[i].repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        pred, true = int(report.sample_predictions[i]), int(report.sample_labels[i])
        cards.append(PredictionCard(_png_uri(pixels), classes[pred], float(report.sample_probabilities[i]),
                                    classes[true], pred == true))
    return cards


def _filter_grid(weights: torch.Tensor, columns: int) -> torch.Tensor:
    """(F, k, k) -> one (rows·(k+1)−1, columns·(k+1)−1) grid with NaN between the filters."""
    f, k, _ = weights.shape
    rows = math.ceil(f / columns)
    grid = torch.full((rows * (k + 1) - 1, columns * (k + 1) - 1), float("nan"))
    for i in range(f):
        r, c = divmod(i, columns)
        grid[r * (k + 1):r * (k + 1) + k, c * (k + 1):c * (k + 1) + k] = weights[i]
    return grid


def filter_columns(count: int) -> int:
    """Columns of the filter grid: about twice as wide as high (8 filters: 4x2, 32: 8x4)."""
    return max(1, min(count, max(4, math.ceil(math.sqrt(2 * count)))))


def filters_spec(weights: torch.Tensor, title: str = "", columns: int | None = None, cell_px: int | None = None,
                 width_px: int = 420) -> dict:
    """The first conv layer's filters (F, C, k, k) side by side.

    One input channel: each filter as a heatmap, blue negative, red positive, white zero, on
    one colour scale for all filters (so a filter that has grown looks stronger). Three input
    channels: each filter as a small colour picture, stretched to its own min-max (as filter
    pictures usually are shown). Other channel counts: the mean over the channels.
    """
    weights = weights.detach().float().cpu()
    f, c, k, _ = weights.shape
    columns = columns or filter_columns(f)
    rows = math.ceil(f / columns)
    width = columns * (k + 1) - 1
    height = rows * (k + 1) - 1
    if cell_px is None:  # fill about width_px, cells from 6 to 40 pixels
        cell_px = max(6, min(40, width_px // max(width, 1)))
    if c == 3:
        low = weights.amin(dim=(1, 2, 3), keepdim=True)
        high = weights.amax(dim=(1, 2, 3), keepdim=True)
        scaled = ((weights - low) / (high - low).clamp(min=1e-12) * 255).round().to(torch.uint8)
        canvas = torch.full((height, width, 3), 255, dtype=torch.uint8)
        for i in range(f):
            r, col = divmod(i, columns)
            canvas[r * (k + 1):r * (k + 1) + k, col * (k + 1):col * (k + 1) + k] = scaled[i].permute(1, 2, 0)
        zoom = max(1, cell_px)
        canvas = canvas.repeat_interleave(zoom, 0).repeat_interleave(zoom, 1)
        data = [{"type": "image", "source": _png_uri(canvas), "x0": 0, "y0": 0, "dx": 1 / zoom, "dy": 1 / zoom,
                 "hoverinfo": "skip"}]
    else:
        plane = weights[:, 0] if c == 1 else weights.mean(1)
        bound = float(plane.abs().max()) or 1.0
        grid = _filter_grid(plane, columns)
        z = [[None if v != v else round(v, 4) for v in row] for row in grid.tolist()]
        data = [{"type": "heatmap", "z": z, "colorscale": DIVERGING, "zmin": -bound, "zmax": bound,
                 "showscale": True, "colorbar": {"thickness": 12, "len": 1, "tickformat": ".2~f",
                                                 "tickfont": {"size": 11}},
                 "hovertemplate": "weight %{z:.3f}<extra></extra>", "x0": 0, "y0": 0}]
    layout = {
        "height": max(120, height * cell_px + (52 if title else 12)),
        "margin": {"l": 0, "r": 0, "t": 46 if title else 6, "b": 6}, "font": FONT,
        "xaxis": {"visible": False, "range": [-0.5, width - 0.5], "constrain": "domain"},
        "yaxis": {"visible": False, "range": [height - 0.5, -0.5], "scaleanchor": "x", "constrain": "domain"},
        "plot_bgcolor": "white", "paper_bgcolor": "rgba(0,0,0,0)",
    }
    if title:
        layout["title"] = {"text": title, "x": 0.5, "xanchor": "center", "font": {"size": 15}}
    return {"data": data, "layout": layout}
