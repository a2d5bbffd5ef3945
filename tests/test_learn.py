"""What models learn: templates are W's rows, scores are Wx + b, trained models beat chance,
AlexNet's filters come from the torch cache only, and the figures show exactly those numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnviz import learn
from cnnviz.data import ImageSet, load_images
from cnnviz.learn_figures import (DIVERGING, PREDICTED, TRUE, colorize, decode_png, image_grid_figure, image_png,
                                  mosaic, score_bars_figure, to_rgb)


@pytest.fixture(scope="module")
def fashion():
    return load_images("fashion-mnist", "train", source="bundled"), load_images("fashion-mnist", "test",
                                                                                 source="bundled")


@pytest.fixture(scope="module")
def linear(fashion):
    return learn.train_linear(*fashion, seed=0)


@pytest.fixture(scope="module")
def mlp(fashion):
    return learn.train_mlp(*fashion, epochs=4, hidden=16, seed=0)


@pytest.fixture(scope="module")
def cnn(fashion):
    train, test = fashion
    return learn.train_cnn(train.take(2000, seed=1), test, epochs=2, seed=0)


def random_set(n: int, shape=(3, 32, 32), seed: int = 0, split="train") -> ImageSet:
    g = torch.Generator().manual_seed(seed)
    return ImageSet("cifar10", split, torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8),
                    torch.randint(0, 10, (n,), generator=g), [str(i) for i in range(10)], "test")


# ---- inputs and models -----------------------------------------------------------------------

def test_normalizer_standardises_each_channel():
    images = random_set(50).images
    norm = learn.Normalizer.fit(images)
    x = images.double() / 255
    assert torch.allclose(norm.mean.double(), x.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(norm.std.double(), x.std(dim=(0, 2, 3)), atol=1e-6)
    out = norm(images)
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert torch.allclose(out.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(norm(images[7]), out[7])


@pytest.mark.parametrize("shape, linear_params", [((1, 28, 28), 784 * 10 + 10), ((3, 32, 32), 3072 * 10 + 10)])
def test_parameter_counts_follow_the_lecture(shape, linear_params):
    d = shape[0] * shape[1] * shape[2]
    assert learn.count_parameters(learn.make_model("linear", shape)) == linear_params
    assert learn.count_parameters(learn.make_model("mlp", shape, hidden=20)) == d * 20 + 20 + 20 * 10 + 10
    cnn = learn.make_model("cnn", shape)
    first = learn.first_conv(cnn)
    assert tuple(first.weight.shape) == (16, shape[0], 5, 5)
    side = shape[1] // 4
    expected = (16 * 25 * shape[0] + 16) + (16 * 9 * 16 + 16) + (16 * side * side * 10 + 10)
    assert learn.count_parameters(cnn) == expected
    assert cnn(torch.zeros(2, *shape)).shape == (2, 10)


def test_bad_settings_are_value_errors(fashion):
    with pytest.raises(ValueError, match="epochs"):
        learn.train("linear", *fashion, epochs=0)
    with pytest.raises(ValueError, match="Unknown model"):
        learn.train("svm", *fashion)
    with pytest.raises(ValueError, match="same data set"):
        learn.train("linear", fashion[0], random_set(10, split="test"))
    with pytest.raises(ValueError, match="hidden layer"):
        learn.make_model("mlp", (1, 28, 28), hidden=0)


# ---- linear model: templates and template matching ----------------------------------------

def test_templates_are_exactly_the_reshaped_weight_rows(linear):
    W = linear.model[1].weight
    templates = learn.linear_templates(linear)
    assert templates.shape == (10, 1, 28, 28)
    for i in range(10):
        assert torch.equal(templates[i], W[i].reshape(1, 28, 28))
    assert torch.equal(templates.flatten(1), W)


def test_scores_equal_wx_plus_b_and_the_model(linear, fashion):
    test = fashion[1]
    W, b = linear.model[1].weight, linear.model[1].bias
    for index in (0, 17, 999):
        match = learn.template_match(linear, test.images[index])
        x = linear.normalizer(test.images[index]).reshape(-1)
        assert torch.allclose(match.dots, torch.mv(W, x), atol=1e-5)
        assert torch.allclose(match.scores, torch.addmv(b, W, x), atol=1e-5)
        assert torch.allclose(match.scores, linear.logits(test.images[index]), atol=1e-5)
        assert match.predicted == int(torch.argmax(torch.addmv(b, W, x)))
        # the dot product with the template image, computed the other way round
        templates = learn.linear_templates(linear)
        assert torch.allclose(match.dots, (templates * match.x).flatten(1).sum(1), atol=1e-4)
        assert torch.allclose(match.probabilities.sum(), torch.tensor(1.0))
        shown = [match.predicted, int(test.labels[index])]
        terms = learn.contributions(linear, match, shown)
        assert terms.shape == (2, 28, 28)
        assert torch.allclose(terms.sum(dim=(1, 2)), match.dots[shown], atol=1e-4)


def test_colour_templates_keep_the_channel_layout():
    """For 32x32x3 images, template i's channel c is W[i, c*1024:(c+1)*1024] as 32x32."""
    train, test = random_set(64, seed=1), random_set(16, seed=2, split="test")
    result = learn.train_linear(train, test, epochs=1)
    W = result.model[1].weight
    templates = learn.linear_templates(result)
    assert templates.shape == (10, 3, 32, 32)
    assert torch.equal(templates[4, 2], W[4, 2048:3072].reshape(32, 32))
    match = learn.template_match(result, test.images[3])
    assert torch.allclose(match.scores, result.logits(test.images[3]), atol=1e-4)


def test_trained_models_beat_chance_by_a_wide_margin(linear, mlp, cnn):
    # 10 balanced classes: chance is 10%
    assert linear.test_accuracy > 0.75
    assert mlp.test_accuracy > 0.75
    assert cnn.test_accuracy > 0.6
    for result, epochs in ((linear, 10), (mlp, 4), (cnn, 2)):
        assert len(result.history) == epochs and result.settings["epochs"] == epochs
        assert result.history[-1].loss < result.history[0].loss * 1.05


def test_reported_accuracy_is_the_models_own(linear, fashion):
    test = fashion[1]
    predictions = linear.logits(test.images).argmax(1)
    assert linear.test_accuracy == pytest.approx(float((predictions == test.labels).float().mean()))


def test_training_is_reproducible_and_reports_progress(fashion):
    train, test = fashion
    small = train.take(1000, seed=3)
    calls = []
    a = learn.train_linear(small, test, epochs=2, seed=5, progress=lambda f, text: calls.append((f, text)))
    b = learn.train_linear(small, test, epochs=2, seed=5)
    c = learn.train_linear(small, test, epochs=2, seed=6)
    assert torch.equal(a.model[1].weight, b.model[1].weight)
    assert not torch.equal(a.model[1].weight, c.model[1].weight)
    fractions = [f for f, _ in calls]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(calls) >= 3
    assert "epoch 2 of 2" in calls[-2][1] and "test accuracy" in calls[-1][1]
    assert torch.get_num_threads() >= 1


# ---- MLP and CNN ---------------------------------------------------------------------------

def test_mlp_templates_and_activations(mlp, fashion):
    first = mlp.model[1]
    templates = learn.hidden_templates(mlp)
    assert templates.shape == (16, 1, 28, 28)
    assert torch.equal(templates.flatten(1), first.weight)
    image = fashion[1].images[5]
    seen = {}
    mlp.model[2].register_forward_hook(lambda module, inputs, output: seen.setdefault("h", output))
    mlp.logits(image)
    assert torch.allclose(learn.hidden_activations(mlp, image), seen["h"][0], atol=1e-6)
    x = mlp.normalizer(image).reshape(-1)
    assert torch.allclose(learn.hidden_activations(mlp, image), torch.relu(first.weight @ x + first.bias), atol=1e-5)


def test_cnn_filters_and_activation_maps_match_conv2d(cnn, fashion):
    filters = learn.first_layer_filters(cnn)
    conv = cnn.model[0]
    assert filters.shape == (16, 1, 5, 5) and torch.equal(filters, conv.weight)
    image = fashion[1].images[3]
    maps = learn.activation_maps(cnn, image)
    expected = F.conv2d(cnn.normalizer(image)[None], conv.weight, conv.bias, padding=2)[0]
    assert maps.shape == (16, 28, 28)
    assert torch.allclose(maps, expected, atol=1e-5)


def test_neighbour_correlation_tells_smooth_pictures_from_noise():
    ramp = torch.arange(25.0).reshape(1, 1, 5, 5)  # steps of 1 across, 5 down
    w = ramp - ramp.mean()
    expected = 1 - (1 + 25) / 2 / (2 * float((w ** 2).mean()))
    checkerboard = (torch.arange(25).reshape(5, 5) % 2 * 2 - 1.0)[None, None]
    noise = torch.randn(2000, 1, 5, 5, generator=torch.Generator().manual_seed(0))
    assert float(learn.neighbour_correlation(ramp)) == pytest.approx(expected)
    assert float(learn.neighbour_correlation(checkerboard)) == pytest.approx(-1, abs=0.1)
    assert float(learn.neighbour_correlation(noise).mean()) == pytest.approx(-1 / 24, abs=0.01)  # 25 numbers, centred


def test_the_cnn_filters_shown_are_learned_smooth_shapes_not_the_random_start(fashion):
    """The page's CNN with its default settings: the picture is what training put there
    (blobs, bars and edges), not the random start, which is noise."""
    start = learn.first_conv(learn.make_model("cnn", (1, 28, 28)))
    assert float(learn.neighbour_correlation(start.weight).mean()) < 0.15  # noise: neighbours unalike
    assert not start.bias.detach().any()
    result = learn.train_cnn(*fashion, seed=0)
    assert result.settings["epochs"] == learn.DEFAULTS["cnn"]["epochs"] == 4
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        start = learn.first_conv(learn.make_model("cnn", (1, 28, 28))).weight.detach()  # this run's start
    filters = learn.first_layer_filters(result)
    assert float((filters - start).norm()) > 3 * float(start.norm())  # what training added dominates
    per_filter = learn.neighbour_correlation(filters)
    assert float(per_filter.mean()) > 0.4 and int((per_filter > 0.3).sum()) >= 12, per_filter
    assert result.test_accuracy > 0.8


def test_most_active_units_strongest_first():
    activations = torch.tensor([0.5, 3.0, 0.0, 2.0, 1.0])
    assert learn.most_active(activations, 3) == [(1, 3.0), (3, 2.0), (4, 1.0)]
    assert len(learn.most_active(activations, 9)) == 5


def test_comparison_rows(linear, mlp, cnn):
    rows = learn.comparison({"cnn": cnn, "linear": linear, "mlp": mlp})
    assert [r.kind for r in rows] == ["linear", "mlp", "cnn"]
    assert rows[0].parameters == 7850 and rows[1].parameters == 784 * 16 + 16 + 16 * 10 + 10
    assert rows[2].test_accuracy == cnn.test_accuracy


# ---- AlexNet from the torch cache ------------------------------------------------------------

def test_alexnet_filters_only_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"  # torchvision's file name
    assert learn.alexnet_weights_file() == path
    with pytest.raises(learn.WeightsUnavailable, match="IMAGENET1K_V1") as info:
        learn.alexnet_filters()
    # where torch keeps them, in words: a page must not show the server's folders
    assert str(tmp_path) not in str(info.value) and "TORCH_HOME" in str(info.value)
    assert not path.exists()  # nothing was downloaded

    path.parent.mkdir(parents=True)
    weight = torch.randn(64, 3, 11, 11)
    torch.save({"features.0.weight": weight, "features.0.bias": torch.zeros(64),
                "classifier.6.weight": torch.zeros(1000, 4096)}, path)
    assert torch.equal(learn.alexnet_filters(), weight)

    torch.save({"features.0.weight": torch.randn(64, 3, 3, 3)}, path)
    with pytest.raises(learn.WeightsUnavailable, match="does not hold AlexNet's first layer"):
        learn.alexnet_filters()
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(learn.WeightsUnavailable, match="corrupt") as info:
        learn.alexnet_filters()
    assert "alexnet-owt-7be5be79.pth in torch's cache" in str(info.value) and str(tmp_path) not in str(info.value)


def test_alexnet_file_crafted_with_code_is_refused(tmp_path, monkeypatch):
    """weights_only=True: a pickle that would run code is not loaded."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = learn.alexnet_weights_file()
    path.parent.mkdir(parents=True)
    torch.save({"features.0.weight": Evil()}, path, pickle_module=pickle)
    with pytest.raises(learn.WeightsUnavailable, match="corrupt"):
        learn.alexnet_filters()


# ---- figures -----------------------------------------------------------------------------------

def test_signed_colouring_white_zero_red_positive_blue_negative():
    values = torch.tensor([[[[0.0, 2.0], [-2.0, 1.0]]]])
    rgb = to_rgb(values, "signed")[0]
    middle = colorize(np.array([0.0]), -1, 1)[0]
    assert np.array_equal(rgb[0, 0], middle) and middle.min() > 230  # near white
    assert rgb[0, 1, 0] > 100 and rgb[0, 1, 2] < 60  # red
    assert rgb[1, 0, 2] > 50 and rgb[1, 0, 0] < 20  # blue
    end = colorize(np.array([1.0]), -1, 1)[0]
    assert np.array_equal(rgb[0, 1], end)
    assert DIVERGING[-1][1] in (f"rgb({end[0]},{end[1]},{end[2]})", "#%02x%02x%02x" % tuple(end))


def test_colour_cells_are_rescaled_min_black_max_white():
    values = torch.randn(2, 3, 4, 4)
    rgb = to_rgb(values, "signed")
    for i in range(2):
        flat = values[i].flatten()
        lo, hi = int(flat.argmin()), int(flat.argmax())
        c_lo, r_lo, k_lo = lo // 16, (lo % 16) // 4, lo % 4
        c_hi, r_hi, k_hi = hi // 16, (hi % 16) // 4, hi % 4
        assert rgb[i, r_lo, k_lo, c_lo] == 0 and rgb[i, r_hi, k_hi, c_hi] == 255


def test_pixels_mode_shows_the_bytes():
    images = torch.randint(0, 256, (3, 1, 5, 6), dtype=torch.uint8)
    rgb = to_rgb(images, "pixels")
    assert rgb.shape == (3, 5, 6, 3)
    assert np.array_equal(rgb[..., 1], images[:, 0].numpy())


def test_test_image_picture_is_the_image_enlarged_by_whole_pixels():
    import io

    from PIL import Image

    for shape, zoom in (((1, 28, 28), 8), ((3, 32, 32), 7)):
        image = torch.randint(0, 256, shape, dtype=torch.uint8)
        shown = np.asarray(Image.open(io.BytesIO(image_png(image))))
        expected = F.interpolate(image[None].float(), scale_factor=zoom, mode="nearest")[0].to(torch.uint8)
        if shape[0] == 1:
            assert np.array_equal(shown, expected[0].numpy())
        else:
            assert np.array_equal(shown, expected.permute(1, 2, 0).numpy())


def test_one_channel_maps_draw_like_single_channel_images():
    maps = torch.randn(4, 6, 6)
    assert decode_png(image_grid_figure(maps, mode="signed").data[0].source).tolist() == \
        decode_png(image_grid_figure(maps[:, None], mode="signed").data[0].source).tolist()


def test_mosaic_and_grid_figure_carry_every_cell():
    images = torch.randint(0, 256, (7, 1, 4, 3), dtype=torch.uint8)
    m = mosaic(to_rgb(images), columns=3, gap=2)
    assert m.rows == 3 and m.pixels.shape == (3 * 4 + 2 * 2, 3 * 3 + 2 * 2, 3)
    top, left = m.origins[4]  # row 1, column 1
    assert (top, left) == (6, 5)
    assert np.array_equal(m.pixels[top:top + 4, left:left + 3, 0], images[4, 0].numpy())
    fig = image_grid_figure(images, columns=3, captions=[f"c{i}" for i in range(7)], row_labels=["r0", "r1", "r2"],
                            cell_px=40, upscale=1, highlight=[2])
    shown = decode_png(fig.data[0].source)
    assert np.array_equal(shown[:4, :3, 0], images[0, 0].numpy())
    texts = [a["text"] for a in fig.layout.annotations]
    assert [t for t in texts if t.startswith("c")] == [f"c{i}" for i in range(7)]
    assert {"r0", "r1", "r2"} <= set(texts)
    assert len(fig.layout.shapes) == 1 and fig.layout.shapes[0]["line"]["color"] == PREDICTED


def test_template_grid_is_the_templates(linear):
    templates = learn.linear_templates(linear)
    fig = image_grid_figure(templates, mode="signed", columns=5, captions=linear.classes, cell_px=150)
    shown = decode_png(fig.data[0].source)
    expected = to_rgb(templates, "signed")
    upscale = shown.shape[1] // (5 * 28)  # the figure enlarges pixels, never changes them
    assert np.array_equal(shown[:28 * upscale:upscale, :28 * upscale:upscale], expected[0])


def test_score_bars_show_the_scores_and_mark_winner_and_truth():
    scores = torch.tensor([1.0, 5.0, -2.0])
    fig = score_bars_figure(scores, ["a", "b", "c"], dots=scores - 0.5, bias=torch.full((3,), 0.5), true_label=2)
    bar = fig.data[0]
    assert list(bar.x) == [1.0, 5.0, -2.0]
    assert list(bar.marker.color)[1:] == [PREDICTED, TRUE]
    assert bar.marker.color[0] not in (PREDICTED, TRUE)
    assert bar.y[2] == "c ✓" and "w·x = 4.5, b = 0.5, score = 5" in bar.hovertext[1]
    assert list(bar.text) == ["1", "5", "−2"]  # cnnviz.notation: the typographic minus
