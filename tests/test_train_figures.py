"""Figures of a training run, inspected as data: curves carry the history's numbers, the
confusion matrix its counts, the prediction row its labels and colours, the filter grid the
weights in their places."""

from __future__ import annotations

import base64
import io
import math

import pytest
import torch
from PIL import Image

from cnnviz.train import EpochReport, History, TrainProgress
from cnnviz.train_figures import (
    as_figure,
    confusion_spec,
    curve_spec,
    duration_text,
    filters_spec,
    most_confused,
    prediction_cards,
    progress_text,
)


def history() -> History:
    return History(train_epoch=[0.25, 0.5, 0.75, 1.0], train_loss=[2.1, 1.2, 0.9, 0.7],
                   train_accuracy=[0.2, 0.55, 0.7, 0.75], test_epoch=[0.0, 1.0], test_loss=[2.3, 0.65],
                   test_accuracy=[0.1, 0.78], test_seconds=[0.0, 3.5])


def decode(uri: str) -> torch.Tensor:
    data = base64.b64decode(uri.split(",", 1)[1])
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).reshape(-1, 3)


def test_text_helpers():
    assert [duration_text(s) for s in (None, 0.01, 0.43, 3.2, 59.6, 75, 120, 3720)] == \
        ["…", "0.1 s", "0.4 s", "3 s", "1 min", "1 min 15 s", "2 min", "1 h 2 min"]
    progress = TrainProgress(epoch=1.4, epochs=3, step=110, steps=235, images_seen=7040, images_per_s=12345.6,
                             train_seconds=2.0, elapsed_s=2.5, eta_s=4.2, phase="training")
    assert progress_text(progress) == "Epoch 1.40 of 3 · step 110 of 235 · 12,346 images/s · about 4 s left"
    assert progress.fraction == pytest.approx(110 / 235)
    done = TrainProgress(3, 3, 235, 235, 15000, 12000, 61.0, 65.0, None, "done")
    assert progress_text(done).endswith("trained for 1 min 1 s")


def test_curves_carry_the_history():
    loss = curve_spec(history(), epochs=3, metric="loss", classes=10)
    train_loss, test_loss = loss["data"]
    assert train_loss["x"] == [0.25, 0.5, 0.75, 1.0] and train_loss["y"] == [2.1, 1.2, 0.9, 0.7]
    assert test_loss["y"] == [2.3, 0.65]
    assert loss["layout"]["xaxis"]["range"] == [0, 3]
    assert loss["layout"]["yaxis"]["range"][1] == pytest.approx(2.3 * 1.05)
    assert "Loss" in loss["layout"]["title"]["text"] and "shapes" not in loss["layout"]
    accuracy = curve_spec(history(), epochs=3, metric="accuracy", classes=10)
    train_acc, test_acc = accuracy["data"]
    assert test_acc["y"] == [0.1, 0.78] and train_acc["y"][-1] == 0.75
    assert accuracy["layout"]["yaxis"]["range"] == [0, 1]
    chance = accuracy["layout"]["shapes"][0]
    assert chance["y0"] == chance["y1"] == pytest.approx(0.1)
    as_figure(loss), as_figure(accuracy)  # valid for plotly too
    empty = curve_spec(History(), epochs=2, metric="loss", classes=4)
    assert empty["layout"]["yaxis"]["range"][1] == pytest.approx(math.log(4) * 1.1)
    assert curve_spec(History(), epochs=2, metric="accuracy", classes=4)["layout"]["shapes"][0]["y0"] == 0.25


def test_confusion_matrix_counts_and_row_shares():
    confusion = torch.tensor([[8, 2, 0], [1, 9, 0], [0, 5, 5]])
    spec = confusion_spec(confusion, ["cat", "dog", "fox"], title="after epoch 1")
    heat = spec["data"][0]
    assert heat["text"] == [["8", "2", ""], ["1", "9", ""], ["", "5", "5"]]
    assert heat["z"][2] == [0.0, 0.5, 0.5] and heat["z"][0][0] == pytest.approx(0.8)
    assert heat["x"] == heat["y"] == ["cat", "dog", "fox"]
    assert spec["layout"]["yaxis"]["autorange"] == "reversed"
    assert most_confused(confusion, ["cat", "dog", "fox"], top=2) == [("fox", "dog", 5), ("cat", "dog", 2)]
    as_figure(spec)


def test_prediction_cards_name_classes_probabilities_and_pixels():
    images = torch.zeros(3, 1, 4, 4, dtype=torch.uint8)
    images[1] = 200
    images[2, 0, 0, 0] = 255
    report = EpochReport(1, 0.5, 0.66, torch.eye(3, dtype=torch.int64), images, torch.tensor([0, 1, 2]),
                         torch.tensor([0, 2, 2]), torch.tensor([0.9, 0.6, 0.51]), None)
    cards = prediction_cards(report, ["a", "b", "c"], scale=2)
    assert [(c.predicted, c.true, c.right) for c in cards] == [("a", "a", True), ("c", "b", False), ("c", "c", True)]
    assert [c.probability for c in cards] == pytest.approx([0.9, 0.6, 0.51])
    # each picture: the image's pixels, grey as RGB, each pixel 2×2 at scale 2
    assert decode(cards[0].picture).reshape(8, 8, 3).eq(0).all()
    assert decode(cards[1].picture).reshape(8, 8, 3).eq(200).all()
    third = decode(cards[2].picture).reshape(8, 8, 3)
    assert third[:2, :2].eq(255).all() and third[2:, :].eq(0).all() and third[:2, 2:].eq(0).all()


def test_filter_grid_places_every_weight():
    torch.manual_seed(0)
    weights = torch.randn(5, 1, 3, 3)
    spec = filters_spec(weights, title="epoch 2", columns=3)
    heat = spec["data"][0]
    z = heat["z"]
    assert len(z) == 2 * 4 - 1 and len(z[0]) == 3 * 4 - 1
    for i in range(5):
        r, c = divmod(i, 3)
        block = [row[c * 4:c * 4 + 3] for row in z[r * 4:r * 4 + 3]]
        assert torch.allclose(torch.tensor(block), weights[i, 0], atol=1e-4)
    assert z[3][0] is None and z[0][3] is None  # gaps between filters
    assert z[4][8] is None  # the empty sixth place
    bound = float(weights.abs().max())
    assert heat["zmin"] == -bound and heat["zmax"] == bound

    colour = filters_spec(torch.randn(4, 3, 5, 5), cell_px=2)
    assert colour["data"][0]["type"] == "image"
    pixels = decode(colour["data"][0]["source"])
    assert pixels.numel() == (5 * 2) * ((4 * 6 - 1) * 2) * 3
