"""cnnviz.explain held to torch: every unit's arithmetic equals the activation torch computed (random units
of every layer kind, several models), Grad-CAM equals a hand computation from autograd, and the occlusion
map's values are the model's own probabilities on patched images built here."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import get_model

from cnnviz import classify, explain, notation
from cnnviz.checkpoint import Checkpoint
from cnnviz.classify import Classifier, Recipe
from cnnviz.network import analyse, build_model, parse_stack, unit_receptive_field


def classifier_of(model: nn.Module, in_shape, n_classes: int, recipe: Recipe | None = None) -> Classifier:
    recipe = recipe or Recipe(in_shape[0], tuple(in_shape[1:]))
    return Classifier("test", "test", model.eval(), [f"class {i}" for i in range(n_classes)], recipe, "test")


def stack_classifier(stack: str, in_shape=(3, 16, 16), seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    model = build_model(stack, in_shape)
    n = analyse(parse_stack(stack), in_shape)[-1].out_shape[0]
    for m in model.modules():  # batch norm with statistics that are not 0 and 1
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    ckpt = Checkpoint.from_model(model, stack, in_shape, [f"class {i}" for i in range(n)], "cifar10")
    return classify.from_checkpoint(ckpt)


class SmallVGG(nn.Module):
    """VGG's shape in small: features, an adaptive average pool, torch.flatten in forward, a classifier
    with dropout."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2),
                                      nn.Conv2d(8, 12, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))
        self.avgpool = nn.AdaptiveAvgPool2d((3, 3))
        self.classifier = nn.Sequential(nn.Linear(12 * 9, 20), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(20, 5))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class OddLayers(nn.Module):
    """Convolutions with stride, dilation, groups, 'same' padding, rectangular kernels and no bias; pools with
    padding, ceil_mode, dilation and both ways of counting the padding in a mean."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU6(),
            nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),
            nn.Conv2d(6, 6, (3, 2), padding="same", dilation=(1, 2), groups=3, bias=False), nn.BatchNorm2d(6),
            nn.Hardswish(),
            nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=True),
            nn.Conv2d(6, 4, 1), nn.Tanh(),
            nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
            nn.MaxPool2d(2, stride=1, dilation=2),
            nn.AdaptiveMaxPool2d((2, 3)),
            nn.Flatten(), nn.Linear(24, 4))

    def forward(self, x):
        return self.body(x)


def odd_classifier() -> Classifier:
    torch.manual_seed(3)
    model = OddLayers()
    bn = model.body[4]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    return classifier_of(model, (3, 33, 29), 4)


def torchvision_classifier(key: str) -> Classifier:
    torch.manual_seed(0)
    model = get_model(key, weights=None, num_classes=7)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return classifier_of(model, (3, 64, 64), 7, Recipe(3, (64, 64), mean=(0.5,) * 3, std=(0.25,) * 3))


MODELS = {
    "bundled": lambda: classify.load_bundled(),
    "stack": lambda: stack_classifier("conv5x6/s2/p2,bn,tanh,meanpool2,conv3x8,relu,maxpool3/s2,flatten,fc12,relu,fc4"),
    "gap-head": lambda: stack_classifier("conv3x4,relu,conv3x5/p0,relu,gap"),
    "small-vgg": lambda: classifier_of(SmallVGG(), (3, 20, 20), 5),
    "odd-layers": odd_classifier,
    "resnet18": lambda: torchvision_classifier("resnet18"),
    "mobilenet_v3_small": lambda: torchvision_classifier("mobilenet_v3_small"),
}


def input_for(clf: Classifier, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((clf.recipe.channels, *clf.recipe.size), generator=gen)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-4 * max(1.0, abs(b))


# --------------------------------------------------------------------------- the overview


def test_the_overview_of_the_bundled_model_is_the_lectures_picture():
    clf = classify.load_bundled()
    x = classify.prepare(classify.fashion_test_images()["Fashion-MNIST: Ankle boot"][0], clf.recipe).tensor
    overview = explain.network_overview(clf, x)
    assert [(c.kind, c.shape_text) for c in overview.columns] == [
        ("input", "28×28×1"), ("conv", "28×28×16"), ("activation", "28×28×16"), ("pool", "14×14×16"),
        ("conv", "14×14×32"), ("activation", "14×14×32"), ("pool", "7×7×32"), ("conv", "7×7×64"),
        ("activation", "7×7×64"), ("pool", "3×3×64"), ("flatten", "576"), ("scores", "10"), ("softmax", "10")]
    model = clf.model
    with torch.no_grad():
        for column in overview.columns[1:-1]:  # layer k's output is model[:k](x), column by column
            assert torch.allclose(column.output, model[:column.number](x[None])[0].flatten(0, -1).reshape(column.shape),
                                  atol=1e-6)
        logits = model(x[None])[0]
    assert torch.allclose(overview.logits, logits, atol=1e-6)
    assert torch.allclose(overview.columns[-1].output, torch.softmax(logits, 0), atol=1e-6)
    # Many maps: the 8 strongest, strongest first; a small layer's maps all, in order.
    conv3 = overview.columns[7]
    strength = conv3.output.clamp(min=0).mean(dim=(1, 2))
    assert conv3.shown == torch.argsort(strength, descending=True)[:8].tolist()
    assert overview.columns[0].shown == [] and overview.columns[1].shown == torch.argsort(
        overview.columns[1].output.clamp(min=0).mean(dim=(1, 2)), descending=True)[:8].tolist()
    assert [c.clickable for c in overview.columns] == [False] + [True] * 9 + [False, True, False]


def test_a_flatten_inside_forward_gets_its_own_column_and_dropout_none():
    clf = MODELS["small-vgg"]()
    overview = explain.network_overview(clf, input_for(clf))
    assert [(c.kind, c.title, c.shape_text) for c in overview.columns] == [
        ("input", "input", "20×20×3"), ("conv", "conv 3×3, 8 filters", "20×20×8"), ("activation", "ReLU", "20×20×8"),
        ("pool", "maxpool 2×2", "10×10×8"), ("conv", "conv 3×3, 12 filters", "10×10×12"),
        ("activation", "ReLU", "10×10×12"), ("pool", "maxpool 2×2", "5×5×12"),
        ("pool", "adaptive average pooling to 3×3", "3×3×12"), ("flatten", "flatten", "108"),
        ("linear", "fc, 20 units", "20"), ("activation", "ReLU", "20"), ("scores", "fc, 5 units", "5"),
        ("softmax", "softmax", "5")]


def test_torchvision_models_are_recorded_in_the_order_their_layers_run():
    clf = MODELS["resnet18"]()
    x = input_for(clf)
    overview = explain.network_overview(clf, x)
    kinds = [c.kind for c in overview.columns]
    assert kinds[:5] == ["input", "conv", "batchnorm", "activation", "pool"]
    assert kinds[-4:] == ["pool", "flatten", "scores", "softmax"]
    assert sum(k == "conv" for k in kinds) == 20  # 17 on the main path, 3 downsampling shortcuts
    with torch.no_grad():
        assert torch.allclose(overview.logits, clf.model(x[None])[0], atol=1e-5)
    # After a residual sum the ReLU's input is made in between: not a unit of one convolution.
    relus = [c for c in overview.columns if c.kind == "activation"]
    assert relus[0].clickable and not all(c.clickable for c in relus)


# --------------------------------------------------------------------------- units against torch


@pytest.mark.parametrize("name", list(MODELS))
def test_random_units_of_every_layer_equal_torchs_activations(name):
    clf = MODELS[name]()
    x = input_for(clf, seed=1)
    overview = explain.network_overview(clf, x)
    rng = random.Random(name)
    checked = {"conv": 0, "pool": 0, "linear": 0}
    for column in overview.columns:
        if not column.clickable:
            continue
        for _ in range(3 if column.is_maps else 2):
            if column.output.ndim == 3:
                c, h, w = column.shape
                at = (rng.randrange(c), rng.randrange(h), rng.randrange(w))
            else:
                at = (rng.randrange(column.shape[0]), 0, 0)
            unit = explain.unit_at(overview, column.number, *at)
            assert close(unit.value, unit.torch_value), (name, column.number, column.title, at, unit.lines)
            # What follows (batch norm, activation) ends at the value torch gave the clicked column.
            final = overview.columns[unit.final_column]
            if final.output.ndim == 3:
                expected = float(final.output[unit.position])
            elif unit.index is not None:
                expected = float(final.output[unit.index])
            else:
                expected = float(final.output[unit.position[0]])
            assert close(unit.final, expected), (name, column.number, unit.lines, expected)
            if column.number == unit.column or column.kind in ("activation", "batchnorm"):
                assert unit.final_column >= column.number or column.output.ndim == 1
            checked[unit.kind] += 1
    assert checked["conv"] > 0 and checked["pool"] > 0
    assert checked["linear"] > 0 or name == "gap-head"  # its scores are a global average pool's


def test_a_conv_units_arithmetic_is_the_convolution_lessons_and_reads_torchs_numbers():
    clf = MODELS["stack"]()
    x = input_for(clf)
    overview = explain.network_overview(clf, x)
    unit = explain.conv_unit(overview, 1, 4, 0, 7)  # conv 5×5, stride 2, padding 2: the top row runs into padding
    layer = clf.model[0]
    padded = F.pad(x, (2, 2, 2, 2))
    window = padded[:, 0:5, 14:19]
    assert torch.equal(unit.window, window) and unit.window[:, :2].abs().sum() == 0  # two rows of padding zeros
    assert unit.padding.tolist() == [[True] * 5] * 2 + [[False] * 4 + [True]] * 3  # and the right column
    assert unit.window[:, :, 4].abs().sum() == 0
    assert torch.equal(unit.weights, layer.weight[4].detach())
    assert unit.channels == [0, 1, 2] and unit.window_box == (-2, 12, 2, 16)
    expected = F.conv2d(x[None], layer.weight, layer.bias, stride=2, padding=2)[0, 4, 0, 7].detach()
    assert close(unit.value, float(expected))
    # The lesson's lines: each channel's products, then the channel sums and the bias, then batch norm and tanh.
    labels = [label for label, _ in unit.lines]
    assert labels == ["channel 1", "channel 2", "", "sum + bias", "batch norm", "Tanh"]
    products = unit.lines[0][1].split(" = ")[0].split(" + ")
    w0, x0 = layer.weight[4, 0, 2, 0].detach().item(), window[0, 2, 0].item()
    assert len(products) == 25 and products[10] == f"{notation.term(w0)}·{notation.term(x0)}"
    sums = (window * layer.weight[4].detach()).sum(dim=(1, 2))
    assert unit.lines[3][1] == (" + ".join(notation.term(s) for s in sums.tolist())
                                + f" + {notation.term(layer.bias[4].detach().item())} (bias) = {notation.number(unit.value)}")
    bn = clf.model[1]
    after_bn = (unit.value - bn.running_mean[4].item()) / (bn.running_var[4].item() + bn.eps) ** 0.5 \
        * bn.weight[4].item() + bn.bias[4].item()
    assert unit.lines[4][1].endswith(f"= {notation.number(after_bn)}")
    assert unit.lines[5][1] == f"tanh({notation.number(after_bn)}) = {notation.number(unit.final)}"
    with torch.no_grad():
        assert close(unit.final, float(clf.model[:3](x[None])[0, 4, 0, 7]))
    assert unit.final_column == 3 and "then the batch norm and the Tanh made it" in unit.sentence


def test_many_channels_list_their_sums_and_show_products_for_the_first_two():
    clf = MODELS["resnet18"]()
    overview = explain.network_overview(clf, input_for(clf))
    column = next(c for c in overview.columns if c.kind == "conv" and c.shape[0] == 512)
    unit = explain.unit_at(overview, column.number, 7, 1, 1)
    labels = [label for label, _ in unit.lines]
    assert labels[:3] == ["channel 1", "channel 2", ""] and labels[3].startswith("Σ ")
    assert "… (" in unit.lines[3][1] and unit.lines[4][1].endswith(f"(bias) = {notation.number(unit.value)}")
    assert close(unit.value, unit.torch_value)


def test_a_pool_unit_is_its_window_and_its_max_or_mean():
    clf = classify.load_bundled()
    x = input_for(clf, 4)
    overview = explain.network_overview(clf, x)
    unit = explain.pool_unit(overview, 3, 5, 6, 2)
    relu_out = overview.columns[2].output[5]
    assert torch.equal(unit.window[0], relu_out[12:14, 4:6])
    assert unit.lines[0] == ("max", "max(" + ", ".join(notation.number(v) for v in relu_out[12:14, 4:6].flatten().tolist())
                             + f") = {notation.number(unit.value)}")
    assert unit.value == float(relu_out[12:14, 4:6].max()) == unit.torch_value


def test_a_score_is_the_dot_product_with_the_class_weights_plus_the_bias():
    clf = classify.load_bundled()
    x = input_for(clf, 2)
    overview = explain.network_overview(clf, x)
    unit = explain.unit_at(overview, overview.scores_column, 9)
    fc = clf.model[10]
    flat = overview.columns[10].output
    assert close(unit.value, float(flat @ fc.weight[9].detach() + fc.bias[9].detach()))
    assert close(unit.value, float(overview.logits[9]))
    assert unit.lines[0][0] == "w·x, 576 products" and "… (570 more)" in unit.lines[0][1]
    # Its largest products, each placed in the 3×3×64 maps the vector was flattened from.
    products = fc.weight[9].detach() * flat
    top = int(products.abs().argmax())
    c, rest = divmod(top, 9)
    assert unit.contributions[0] == (f"channel {c + 1}, row {rest // 3 + 1}, column {rest % 3 + 1}",
                                     float(products[top]))
    assert unit.title == "The score of 'Ankle boot' of layer 11: fc, 10 units"


def test_a_cell_of_a_relu_explains_the_convolution_before_it():
    clf = classify.load_bundled()
    overview = explain.network_overview(clf, input_for(clf))
    unit = explain.unit_at(overview, 2, 3, 4, 5)
    assert unit.column == 1 and unit.final_column == 2 and unit.lines[-1][0] == "ReLU"
    assert unit.final == float(overview.columns[2].output[3, 4, 5])


def test_units_that_do_not_exist_are_said_in_words():
    clf = classify.load_bundled()
    overview = explain.network_overview(clf, input_for(clf))
    for args, words in [((1, 16, 0, 0), "has 16 channels; there is no channel 17"),
                        ((1, 0, 28, 0), "has 28×28 maps; there is no unit at row 29, column 1"),
                        ((0, 0, 0, 0), "Layer 0 (input) computes nothing unit by unit"),
                        ((10, 3), "Layer 10 (flatten) computes nothing"),
                        ((13, 0), "There is no layer 13: this network has layers 0 (the input) to 12."),
                        ((11, 10), "has 10 units; there is no unit 11")]:
        with pytest.raises(explain.ExplainError, match=words.replace("(", r"\(").replace(")", r"\)")):
            explain.unit_at(overview, *args)


# --------------------------------------------------------------------------- receptive fields


@pytest.mark.parametrize("stack", ["conv3x4,relu,maxpool2,conv3x8,relu,maxpool2,conv3x8,relu,flatten,fc3",
                                   "conv5x4/s2/p2,relu,meanpool3/s2,conv3x6/p0,tanh,conv3x6/s2,gap,fc3"])
def test_receptive_fields_match_the_stacking_lessons(stack):
    clf = stack_classifier(stack, (1, 28, 28))
    overview = explain.network_overview(clf, input_for(clf))
    infos = analyse(parse_stack(stack), (1, 28, 28))
    rng = random.Random(stack)
    for column in overview.columns:
        if column.record is None or not column.is_maps:
            continue
        for _ in range(5):
            _, h, w = column.shape
            row, col = rng.randrange(h), rng.randrange(w)
            assert explain.receptive_field(overview, column.record, (row, col, row, col)) == \
                unit_receptive_field(infos, None, column.record, row, col), (column.title, row, col)


# --------------------------------------------------------------------------- Grad-CAM


@pytest.mark.parametrize("seed", range(4))
def test_grad_cam_equals_the_hand_computation(seed):
    torch.manual_seed(seed)
    stack = "conv3x6,relu,maxpool2,conv3x8,relu,conv3x5,relu,flatten,fc4"
    clf = stack_classifier(stack, (3, 14, 14), seed)
    x = torch.rand(3, 14, 14)
    cls = seed % 4
    cam = explain.grad_cam(clf, x, cls)
    assert cam.layer_name == "5"  # the last convolution
    # By hand: A from the layers up to the convolution, the score from the rest, autograd for ∂score/∂A.
    model = clf.model
    a = model[:6](x[None]).detach().requires_grad_(True)
    score = model[6:](a)[0, cls]
    (grad,) = torch.autograd.grad(score, a)
    alpha = [float(grad[0, k].mean()) for k in range(5)]
    by_hand = torch.zeros(a.shape[2:])
    for k in range(5):
        by_hand += alpha[k] * a[0, k].detach()
    by_hand = by_hand.clamp(min=0)
    assert torch.allclose(cam.weights, torch.tensor(alpha), atol=1e-6)
    assert torch.allclose(cam.coarse, by_hand, atol=1e-5)
    assert torch.allclose(cam.heatmap, F.interpolate(by_hand[None, None], size=(14, 14), mode="bilinear")[0, 0],
                          atol=1e-5)
    assert close(cam.score, float(score.detach()))


def test_grad_cam_of_a_model_with_in_place_relus_uses_the_maps_before_them():
    clf = MODELS["small-vgg"]()
    x = input_for(clf)
    cam = explain.grad_cam(clf, x, 2)
    model = clf.model
    a = model.features[:4](x[None]).detach().requires_grad_(True)  # conv 2's output, before its ReLU
    rest = model.classifier(torch.flatten(model.avgpool(model.features[5](F.relu(a))), 1))
    (grad,) = torch.autograd.grad(rest[0, 2], a)
    assert (cam.activations < 0).any()  # not the ReLU's output
    assert torch.allclose(cam.activations, a[0].detach(), atol=1e-6)
    assert torch.allclose(cam.gradients, grad[0], atol=1e-6)


def test_grad_cam_sentence_says_where_the_map_is_red():
    heat = torch.zeros(30, 30)
    heat[22:28, 1:7] = 1.0
    assert explain._grad_cam_sentence(heat, "Sneaker") == (
        "Red regions raised the score of 'Sneaker' the most, strongest in the bottom left of the image; "
        f"{notation.percent(36 / 900)} of the image is at least half as red as the peak.")
    assert explain._grad_cam_sentence(torch.zeros(4, 4), "Bag").startswith("No region raised the score of 'Bag'")


# --------------------------------------------------------------------------- occlusion


def test_occlusion_values_are_the_models_probabilities_on_patched_images():
    clf = classify.load_bundled()
    x = classify.prepare(classify.fashion_test_images()["Fashion-MNIST: Ankle boot"][0], clf.recipe).tensor
    occ = explain.occlusion_map(clf, x, 9, patch=6, stride=4, batch_size=7)
    assert occ.tops == occ.lefts == [0, 4, 8, 12, 16, 20, 22]  # the last patch flush with the edge
    assert occ.fill == (0.2860,)  # Fashion-MNIST's mean pixel
    with torch.no_grad():
        for i, top in enumerate(occ.tops):
            for j, left in enumerate(occ.lefts):
                patched = x.clone()
                patched[:, top:top + 6, left:left + 6] = 0.2860
                p = torch.softmax(clf.model(patched[None])[0], 0)[9]
                assert abs(float(occ.probabilities[i, j]) - float(p)) < 1e-5
        base = float(torch.softmax(clf.model(x[None])[0], 0)[9])
    assert abs(occ.base - base) < 1e-6
    # A pixel's drop: the base probability minus the mean over the patches that cover it.
    covering = [float(occ.probabilities[i, j]) for i, t in enumerate(occ.tops) for j, q in enumerate(occ.lefts)
                if t <= 10 < t + 6 and q <= 3 < q + 6]
    assert abs(float(occ.drop[10, 3]) - (base - sum(covering) / len(covering))) < 1e-5
    i, j = divmod(int(occ.probabilities.argmin()), len(occ.lefts))
    assert f"lowered p(Ankle boot) from {notation.percent(base)} to {notation.percent(float(occ.probabilities[i, j]))}" \
        in occ.sentence
    assert f"(rows {occ.tops[i] + 1}–{occ.tops[i] + 6}, columns {occ.lefts[j] + 1}–{occ.lefts[j] + 6})" in occ.sentence


def test_occlusion_on_a_normalised_colour_model_fills_with_the_mean_that_is_zero():
    clf = MODELS["mobilenet_v3_small"]()
    x = input_for(clf)
    occ = explain.occlusion_map(clf, x, 1, patch=16, stride=16)
    assert occ.fill == (0.0, 0.0, 0.0) and occ.probabilities.shape == (4, 4)
    patched = x.clone()
    patched[:, 16:32, 48:64] = 0
    with torch.no_grad():
        assert abs(float(occ.probabilities[1, 3]) - float(torch.softmax(clf.model(patched[None])[0], 0)[1])) < 1e-5


def test_occlusion_settings_that_cannot_work_are_said():
    clf = classify.load_bundled()
    with pytest.raises(explain.ExplainError, match="larger than the image"):
        explain.occlusion_map(clf, torch.rand(1, 28, 28), 0, patch=30, stride=2)
    with pytest.raises(explain.ExplainError, match="no class 11"):
        explain.occlusion_map(clf, torch.rand(1, 28, 28), 10, patch=6, stride=2)


def test_a_layer_reads_the_column_before_it_and_the_first_one_the_image():
    clf = MODELS["small-vgg"]()
    overview = explain.network_overview(clf, input_for(clf))
    assert [explain.input_column(overview, n) for n in (1, 4, 9, 11)] == [0, 3, 8, 10]  # fc 2 after the dropout
