"""The classify engine: pretrained loading through the real torch-cache path, preprocessing
against torchvision's own transforms, the softmax against torch.softmax, activations against
the layers run by hand, and the bundled Fashion-MNIST model against its test images."""

from __future__ import annotations

import hashlib
import io
import math
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.models import get_model

from cnnviz import classify, notation
from cnnviz.checkpoint import Checkpoint, load_checkpoint
from cnnviz.classify import (
    BUNDLED_MODEL,
    PRETRAINED,
    Classifier,
    ClassifyError,
    Recipe,
    WeightsUnavailable,
    number_text,
    predict,
    prepare,
    softmax_breakdown,
)
from cnnviz.classify_figures import activation_grid_image, colour_maps, softmax_figure, top_k_figure
from cnnviz.data import load_images
from cnnviz.images import load_image, sample_image
from cnnviz.network import analyse, build_model, parse_stack

SMALL = "mobilenet_v3_small"  # the smallest registered ImageNet model: quick to build in tests


def random_state_dict(key: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """The real architecture's state dict with random (not default-initialised) values."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in get_model(key, weights=None).state_dict().items():
        if tensor.is_floating_point():
            values = torch.randn(tensor.shape, generator=generator) * 0.1
            if name.endswith("running_var"):
                values = values.abs() + 0.5
            state[name] = values
        else:
            state[name] = tensor
    return state


@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    """An empty torch cache: torch.hub.get_dir() follows $TORCH_HOME."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


@pytest.fixture(scope="module")
def small_state() -> dict[str, torch.Tensor]:
    return random_state_dict(SMALL)


def write_cached(key: str, state: dict) -> None:
    path = PRETRAINED[key].cache_path
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)


# --------------------------------------------------------------------------- pretrained models


def test_cache_path_is_where_torch_hub_looks(torch_home):
    spec = PRETRAINED["vgg16"]
    assert spec.cache_path == torch_home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    assert spec.url == "https://download.pytorch.org/models/vgg16-397923af.pth"
    assert not spec.cached


def test_pretrained_from_the_torch_cache_classifies_like_torchvision(torch_home, small_state):
    write_cached(SMALL, small_state)
    clf = classify.load_pretrained(SMALL)
    weights = PRETRAINED[SMALL].weights
    assert clf.classes == weights.meta["categories"] and len(clf.classes) == 1000
    assert clf.classes[281] == "tabby"

    loaded = sample_image("Cat")
    prepared = prepare(loaded, clf.recipe)
    # torch's own pipeline: the architecture with these weights and the weights' transforms.
    reference = get_model(SMALL, weights=None)
    reference.load_state_dict(small_state)
    expected = reference.eval()(weights.transforms()(loaded.image)[None])[0]
    prediction = predict(clf, prepared.tensor)
    torch.testing.assert_close(prediction.logits, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(prediction.probabilities, torch.softmax(expected, 0), rtol=1e-4, atol=1e-6)
    assert prediction.seconds > 0
    assert prediction.input_shape == (3, 224, 224)


def test_missing_weights_say_in_one_sentence_what_is_missing_where_to_get_it_and_where_it_goes(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / ".cache" / "torch"))  # torch's default, under the home folder
    with pytest.raises(WeightsUnavailable) as excinfo:
        classify.load_pretrained("resnet18")
    # 46,830,571 bytes; torchvision's meta says 44.661 (MiB)
    assert str(excinfo.value) == (
        "The ResNet-18 weights (46.8 MB) are not on this computer. Get "
        "[resnet18-f37072fd.pth](https://download.pytorch.org/models/resnet18-f37072fd.pth) "
        "and put it in `~/.cache/torch/hub/checkpoints`.")


def test_offline_download_gives_a_clear_message_and_leaves_nothing(torch_home, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(classify.urllib.request, "urlopen", offline)
    spec = PRETRAINED["resnet18"]
    with pytest.raises(WeightsUnavailable) as excinfo:
        classify.load_pretrained("resnet18", download=True)
    assert str(excinfo.value) == (
        "The ResNet-18 weights could not be downloaded ([Errno -3] Temporary failure in name resolution). "
        f"On a computer with internet, get [resnet18-f37072fd.pth]({spec.url}) and put it in "
        f"`{spec.cache_path.parent}` here.")
    assert not any(spec.cache_path.parent.iterdir())


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_download_checks_the_hash_reports_progress_then_loads(torch_home, monkeypatch, small_state):
    buffer = io.BytesIO()
    torch.save(small_state, buffer)
    payload = buffer.getvalue()  # about 10 MB: ten 1 MB chunks
    digest = hashlib.sha256(payload).hexdigest()
    url = f"https://download.example/mobilenet_v3_small-{digest[:8]}.pth"
    monkeypatch.setattr(classify.Pretrained, "url", property(lambda self: url))
    monkeypatch.setattr(classify.urllib.request, "urlopen", lambda u, timeout: FakeResponse(payload))
    seen = []
    clf = classify.load_pretrained(SMALL, download=True, progress=lambda f, text: seen.append((f, text)))
    assert PRETRAINED[SMALL].cache_path.read_bytes() == payload
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and len(fractions) >= 4 and fractions[-1] == 1.0
    assert "Downloading MobileNet v3 small" in seen[0][1]
    assert isinstance(clf.model, nn.Module) and len(clf.classes) == 1000

    # A payload whose checksum does not match the name is refused and not kept.
    monkeypatch.setattr(classify.Pretrained, "url", property(lambda self: url.replace(digest[:8], "00000000")))
    with pytest.raises(WeightsUnavailable, match="checksum"):
        classify.download_weights(SMALL)
    assert not PRETRAINED[SMALL].cache_path.exists()
    assert not list(PRETRAINED[SMALL].cache_path.parent.glob("*.partial"))


def test_broken_cached_file_says_to_delete_it(torch_home):
    path = PRETRAINED[SMALL].cache_path
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not weights at all")
    with pytest.raises(ClassifyError, match="Delete it"):
        classify.load_pretrained(SMALL)
    torch.save({"weight": torch.zeros(3)}, path)  # readable, but not this architecture
    with pytest.raises(ClassifyError, match="does not hold"):
        classify.load_pretrained(SMALL)


@pytest.mark.parametrize("key", list(PRETRAINED))
def test_preprocessing_is_exactly_the_weights_transforms(key):
    weights = PRETRAINED[key].weights
    recipe = Recipe.from_weights(weights)
    for name in ("Cat", "Rocket"):
        loaded = sample_image(name)
        prepared = prepare(loaded, recipe)
        torch.testing.assert_close(prepared.tensor, weights.transforms()(loaded.image), rtol=0, atol=0)
        titles = [step.title for step in prepared.steps]
        assert titles[1] == f"Shorter side resized to {weights.transforms().resize_size[0]}"
        assert titles[2:] == ["Centre crop 224×224", "Normalised"]
        assert prepared.steps[2].shape == (3, 224, 224)
        w, h = loaded.image.size
        short = weights.transforms().resize_size[0]
        assert prepared.steps[1].shape[1:] == ((short, int(short * w / h)) if h < w else (int(short * h / w), short))


# --------------------------------------------------------------------------- small-model preprocessing

FASHION = Recipe.for_dataset("fashion-mnist", (1, 28, 28))


def test_dark_object_on_light_background_is_inverted_and_padded():
    img = Image.new("RGB", (60, 30), (240, 240, 240))
    img.paste((20, 20, 20), (25, 5, 35, 25))
    prepared = prepare(img, FASHION)
    assert prepared.inverted
    titles = [step.title for step in prepared.steps]
    assert titles == ["Your image", "Greyscale", "Inverted", "Padded to a square", "Resized to 28×28",
                      "Scaled to numbers"]
    assert prepared.steps[3].shape == (1, 60, 60)
    # The same by hand: grey, invert, pad with the (now dark) border value, resize, / 255.
    grey = 255 - np.asarray(img.convert("L"), dtype=np.int32)
    square = np.full((60, 60), 255 - 240, dtype=np.uint8)
    square[15:45] = grey
    expected = np.asarray(Image.fromarray(square).resize((28, 28), Image.Resampling.LANCZOS)) / 255
    torch.testing.assert_close(prepared.tensor[0], torch.tensor(expected, dtype=torch.float32))
    assert prepared.tensor.shape == (1, 28, 28)
    assert float(prepared.tensor[0, 14, 14]) > 0.9 and float(prepared.tensor[0, 1, 1]) < 0.1


def test_inversion_can_be_forced_or_refused():
    dark = Image.new("L", (28, 28), 10)
    assert not prepare(dark, FASHION).inverted
    assert prepare(dark, FASHION, invert="yes").inverted
    light = Image.new("L", (28, 28), 250)
    assert prepare(light, FASHION).inverted
    kept = prepare(light, FASHION, invert="no")
    assert not kept.inverted
    torch.testing.assert_close(kept.tensor, torch.full((1, 28, 28), 250 / 255))
    assert [s.title for s in kept.steps] == ["Your image", "Scaled to numbers"]  # already 28x28 grey


def test_colour_dataset_recipe_crops_without_inverting():
    recipe = Recipe.for_dataset("cifar10", (3, 32, 32))
    img = Image.new("RGB", (64, 48), (250, 250, 250))
    prepared = prepare(img, recipe)
    assert not prepared.inverted and prepared.tensor.shape == (3, 32, 32)
    assert prepared.steps[-2].title == "Resized to 32×32"
    with pytest.raises(ClassifyError, match="2-channel"):
        Recipe.for_dataset("x", (2, 28, 28))


def exif_jpeg(orientation: int) -> bytes:
    img = Image.new("RGB", (40, 20), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 10, 20))  # red stripe on the stored left
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", exif=exif, quality=95)
    return buffer.getvalue()


def test_exif_rotation_is_shown_as_stored_then_upright():
    data = exif_jpeg(6)
    loaded = load_image(data)
    assert classify.exif_orientation(data) == 6
    prepared = prepare(loaded, FASHION, orientation=classify.exif_orientation(data))
    stored, upright = prepared.steps[0], prepared.steps[1]
    assert stored.title == "As stored in the file" and stored.shape == (3, 20, 40)
    assert upright.title == "Turned upright" and upright.shape == (3, 40, 20)
    assert "Rotated 90° clockwise" in upright.note
    raw = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int32)
    np.testing.assert_allclose(np.asarray(stored.image, dtype=np.int32), raw, atol=2)
    assert classify.exif_orientation(b"not an image") == 1


# --------------------------------------------------------------------------- softmax


def test_softmax_breakdown_matches_torch():
    torch.manual_seed(0)
    logits = torch.randn(1000) * 3
    classes = [f"class {i}" for i in range(1000)]
    b = softmax_breakdown(logits, classes, k=5)
    expected = torch.softmax(logits.double(), 0)
    top = torch.topk(logits, 5).indices.tolist()
    assert b.indices == top and b.names == [classes[i] for i in top]
    torch.testing.assert_close(b.probabilities, expected[top])
    torch.testing.assert_close(b.exps, torch.exp(logits.double())[top])
    assert b.total == pytest.approx(float(torch.exp(logits.double()).sum()))
    assert b.rest_probability == pytest.approx(1 - float(expected[top].sum()))
    assert b.rest_count == 995 and b.n_classes == 1000 and b.shift == 0


def test_softmax_breakdown_of_huge_scores_subtracts_the_largest():
    logits = torch.tensor([1000.0, 998.0, 990.0])
    b = softmax_breakdown(logits, ["a", "b", "c"], k=3)
    assert b.shift == 1000.0 and b.rest_count == 0
    torch.testing.assert_close(b.probabilities, torch.softmax(logits.double(), 0))
    torch.testing.assert_close(b.exps, torch.exp(torch.tensor([0.0, -2.0, -10.0], dtype=torch.float64)))
    with pytest.raises(ClassifyError, match="not finite"):
        softmax_breakdown(torch.tensor([1.0, float("nan")]), ["a", "b"])


# --------------------------------------------------------------------------- activations


def test_activations_are_every_conv_output_before_an_inplace_relu():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                          nn.Conv2d(4, 6, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(6, 2)).eval()
    clf = Classifier("t", "test", model, ["yes", "no"], Recipe(3, (16, 16)), "test")
    x = torch.randn(3, 16, 16)
    prediction = predict(clf, x)
    first = F.conv2d(x[None], model[0].weight, model[0].bias, padding=1)[0]
    second = F.conv2d(F.max_pool2d(first.clamp(min=0)[None], 2), model[3].weight, model[3].bias)[0]
    assert [a.name for a in prediction.activations] == ["0", "3"]
    torch.testing.assert_close(prediction.activations[0].maps, first)  # negatives kept: copied before the ReLU
    assert float(prediction.activations[0].maps.min()) < 0
    torch.testing.assert_close(prediction.activations[1].maps, second)
    assert [row.shape for row in prediction.shapes] == [(4, 16, 16), (4, 16, 16), (4, 8, 8), (6, 6, 6),
                                                        (6, 6, 6), (6, 1, 1), (6,), (2,)]
    assert prediction.shapes[0].params == 4 * 3 * 9 + 4
    act = prediction.activations[1]
    strength = second.clamp(min=0).mean(dim=(1, 2))
    torch.testing.assert_close(act.strength, strength)
    assert act.strongest(3) == torch.argsort(strength, descending=True)[:3].tolist()
    assert not model._forward_hooks and not model[0]._forward_hooks  # hooks removed


def test_squeeze_excitation_convs_with_1x1_outputs_are_counted_not_shown(torch_home, small_state):
    write_cached(SMALL, small_state)
    clf = classify.load_pretrained(SMALL)
    prediction = predict(clf, torch.rand(3, 224, 224))
    convs = [m for m in clf.model.modules() if isinstance(m, nn.Conv2d)]
    assert len(prediction.activations) + prediction.skipped_convs == len(convs) == 52
    assert prediction.skipped_convs == 18  # 9 squeeze-and-excitation blocks, 2 convs each
    assert prediction.activations[0].shape == (16, 112, 112)
    assert all(a.shape[1] * a.shape[2] > 1 for a in prediction.activations)


# --------------------------------------------------------------------------- the bundled model


@pytest.fixture(scope="module")
def bundled() -> Classifier:
    return classify.load_bundled()


def test_bundled_model_file_is_a_small_checkpoint_with_its_accuracy():
    assert BUNDLED_MODEL.stat().st_size < 1_000_000
    ckpt = load_checkpoint(BUNDLED_MODEL)
    assert ckpt.dataset == "fashion-mnist" and ckpt.in_shape == (1, 28, 28)
    assert ckpt.test_accuracy > 0.85  # on the full 10,000 test images, recorded when trained


def test_bundled_model_classifies_the_bundled_test_images_well_above_chance(bundled):
    test = load_images("fashion-mnist", "test", source="bundled")
    assert bundled.classes == test.classes
    with torch.inference_mode():
        predicted = bundled.model(test.images.float() / 255).argmax(1)
    accuracy = float((predicted == test.labels).float().mean())
    assert len(test) == 1000 and accuracy > 0.8, accuracy  # chance: 0.1


def test_bundled_model_through_the_page_path(bundled):
    samples = classify.fashion_test_images()
    assert len(samples) == 10
    correct = 0
    for name, (loaded, label) in samples.items():
        prepared = prepare(loaded, bundled.recipe)
        torch.testing.assert_close(prepared.tensor, torch.from_numpy(np.asarray(loaded.image) / 255).float()[None])
        prediction = predict(bundled, prepared.tensor)
        correct += prediction.top(1)[0][0] == label
    assert correct >= 8
    infos = analyse(parse_stack(load_checkpoint(BUNDLED_MODEL).stack), (1, 28, 28))
    assert [row.shape for row in prediction.shapes] == [i.out_shape for i in infos]
    assert [a.label for a in prediction.activations] == [f"Layer {i.number}: {i.name}" for i in infos
                                                          if i.kind == "conv"]


def test_broken_bundled_file_is_explained(tmp_path):
    bad = tmp_path / "fashion_cnn.pt"
    bad.write_bytes(b"\0" * 100)
    with pytest.raises(ClassifyError, match="train_bundled_model.py"):
        classify.load_bundled(bad)


def test_checkpoint_classifier_names_layers_after_the_stack():
    stack = "conv3x4,relu,maxpool2,gap,fc3"
    model = build_model(stack, (3, 16, 16))
    clf = classify.from_checkpoint(Checkpoint.from_model(model, stack, (3, 16, 16), list("abc"), "cifar10"))
    assert clf.label("0") == "Layer 1: conv 3×3, 4 filters"
    assert clf.recipe == Recipe(3, (16, 16))
    assert len(predict(clf, torch.rand(3, 16, 16)).probabilities) == 3


# --------------------------------------------------------------------------- figures


def test_top_k_and_softmax_figures_show_the_numbers():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, 3.0, 0.5, -2.0])
    b = softmax_breakdown(logits, list("abcdefg"), k=5)
    fig = top_k_figure(b.names, b.probabilities.tolist())
    bars = fig.data[0]
    assert list(bars.y) == ["e", "a", "b", "f", "c"][::-1]
    np.testing.assert_allclose(list(bars.x), (b.probabilities.numpy() * 100)[::-1])
    fig = softmax_figure(b)
    scores, exps, probs = fig.data
    assert list(scores.y) == ["other 2 classes", "c", "f", "b", "a", "e"]
    np.testing.assert_allclose(list(exps.x)[:0:-1], np.exp(logits.numpy()[[4, 0, 1, 5, 2]]), rtol=1e-6)
    assert sum(probs.x) == pytest.approx(100)  # the listed classes plus the others: all of it
    assert list(scores.x)[0] is None and list(scores.x)[1:] == [0.0, 0.5, 1.0, 2.0, 3.0]


def test_figure_labels_and_softmax_numbers_are_written_as_the_app_writes_numbers():
    logits = torch.tensor([2.0, -1.25, 24.0, -30.0])
    b = softmax_breakdown(logits, ["shirt", "bag", "boot", "coat"], k=4)
    scores, exps, probs = softmax_figure(b).data
    # best at the bottom of the lists (plotly draws the first row at the bottom)
    assert list(scores.text) == ["−30", "−1.25", "2", "24"]
    assert list(exps.text) == ["9.358e−14", "0.2865", "7.389", "2.649e10"]
    assert list(probs.text) == [notation.percent(float(p)) for p in b.probabilities][::-1]
    assert probs.text[0] == notation.percent(float(torch.softmax(logits.double(), 0)[3]))
    top = top_k_figure(["boot", "shirt"], [0.9999, 0.0001]).data[0]
    assert list(top.text) == ["0.01%", "99.99%"]
    assert number_text(0) == "0" and number_text(-0.0123456) == "−0.01235" and number_text(123456.7) == "1.235e5"


def test_activation_grid_tiles_have_their_own_scale_and_sign_colours():
    maps = torch.zeros(3, 6, 6)
    maps[0] = 5.0  # positive everywhere: the darkest red
    maps[1] = -0.01  # negative everywhere, however small: the darkest blue
    maps[2, :, :3] = 1.0  # half positive, half zero (white)
    label = 18
    mosaic = np.asarray(activation_grid_image(maps, [0, 1, 2], columns=3, label_px=label))
    tile = math.ceil(48 / 6) * 6
    assert mosaic.shape == (tile + label + 3, 3 * (tile + 3) - 3, 3)
    red, blue, white = colour_maps(torch.tensor([[[1.0]], [[-1.0]], [[0.0]]]))[:, 0, 0]
    assert (mosaic[label:label + tile, :tile] == red).all()
    assert (mosaic[label:label + tile, tile + 3:2 * tile + 3] == blue).all()
    third = 2 * (tile + 3)
    assert (mosaic[label + 5, third] == red).all() and (mosaic[label + 5, third + tile - 1] == white).all()
    assert (mosaic[label:label + tile, third + tile // 2:third + tile] == white).all()
    assert (mosaic[:label - 1] != 255).any()  # the channel numbers are written above the tiles
    # big maps are shrunk: a VGG first layer of 64 maps of 224x224 stays a light picture
    big = activation_grid_image(torch.randn(64, 224, 224), list(range(64)), columns=8)
    assert big.size == (8 * (96 + 3) - 3, 8 * (96 + 18 + 3))


def test_sessions_sharing_one_model_get_their_own_activations(bundled):
    """The page caches a model for all sessions; hooks of two runs at once must not mix."""
    import threading

    inputs = [torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(s)) for s in range(4)]
    results: dict[int, classify.Prediction] = {}

    def run(i: int) -> None:
        results[i] = predict(bundled, inputs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, x in enumerate(inputs):
        assert len(results[i].activations) == 3 and len(results[i].shapes) == 11
        torch.testing.assert_close(results[i].activations[0].maps,
                                   F.conv2d(x[None], bundled.model[0].weight, bundled.model[0].bias, padding=1)[0])


def test_a_grey_file_for_a_grey_network_is_not_turned_into_colour_and_back():
    grey = Image.fromarray(np.arange(40 * 30, dtype=np.uint32).reshape(30, 40).astype(np.uint8))
    buffer = io.BytesIO()
    grey.save(buffer, "PNG")
    loaded = load_image(buffer.getvalue())  # RGB, with the note "Converted from greyscale to RGB"
    assert loaded.image.mode == "RGB" and any("Converted from" in n for n in loaded.notes)
    prepared = prepare(loaded, FASHION, invert="no")
    assert [s.title for s in prepared.steps] == ["Your image", "Padded to a square", "Resized to 28×28",
                                                 "Scaled to numbers"]
    assert prepared.steps[0].shape == (1, 30, 40)
    deep = io.BytesIO()
    Image.fromarray(np.full((28, 28), 65535, dtype=np.uint16)).save(deep, "PNG")
    prepared = prepare(load_image(deep.getvalue()), FASHION, invert="no")
    assert [s.title for s in prepared.steps] == ["Your image", "Decoded to 8-bit grey", "Scaled to numbers"]
    assert "Scaled 16-bit values" in prepared.steps[1].note and "Converted" not in prepared.steps[1].note
    torch.testing.assert_close(prepared.tensor, torch.ones(1, 28, 28))


def test_the_stacked_softmax_figure_carries_the_same_numbers_on_three_axes():
    logits = torch.tensor([2.0, -1.25, 24.0, -30.0, 0.5, 1.5, -3.0])
    b = softmax_breakdown(logits, list("abcdefg"), k=5)
    wide, stacked = softmax_figure(b), softmax_figure(b, stacked=True)
    for side, tall in zip(wide.data, stacked.data):
        assert list(side.y) == list(tall.y) and list(side.text) == list(tall.text)
        assert list(side.x) == list(tall.x)
    assert [t.yaxis for t in wide.data] == ["y", "y", "y"] and [t.yaxis for t in stacked.data] == ["y", "y2", "y3"]
    domains = [stacked.layout[f"yaxis{s}"].domain for s in ("", "2", "3")]
    assert all(0 <= low < high <= 1 for low, high in domains)
    assert domains[0][0] > domains[1][1] and domains[1][0] > domains[2][1]  # one above the other, apart
    assert all(stacked.layout[f"xaxis{s}"].domain == (0.0, 1.0) for s in ("", "2", "3"))  # each the whole width
    assert stacked.layout.height > wide.layout.height
