"""The network engine held to torch: shapes, parameters and multiply-adds of every layer
compared with a real model, receptive fields compared with a brute-force gradient probe,
and every stack that cannot work refused with a message naming the right layer.
"""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnviz import network
from cnnviz.network import (
    LECTURE_STACK,
    STACK_PRESETS,
    LayerSpec,
    StackError,
    analyse,
    build_model,
    format_stack,
    parse_stack,
    totals,
    unit_receptive_field,
    with_mean_pooling,
)


# ----------------------------------------------------------------------------- helpers

def random_specs(rng: random.Random, head: bool = True) -> list[LayerSpec]:
    """A random stack of conv blocks (kernels 1-5, strides 1-2, any legal padding, pools),
    optionally ending in a flatten or gap head with fc layers."""
    specs = []
    for _ in range(rng.randint(1, 4)):
        k = rng.randint(1, 5)
        specs.append(LayerSpec.conv(k, rng.randint(1, 3), stride=rng.randint(1, 2), padding=rng.randint(0, k - 1)))
        if rng.random() < 0.3:
            specs.append(LayerSpec("batchnorm"))
        if rng.random() < 0.6:
            specs.append(LayerSpec(rng.choice(["relu", "tanh"])))
        if rng.random() < 0.6:
            pk = rng.randint(2, 3)
            specs.append(LayerSpec.pool(pk, rng.randint(1, 2), kind=rng.choice(["max", "mean"])))
    if head:
        specs.append(LayerSpec(rng.choice(["flatten", "gap"])))
        if rng.random() < 0.5:
            specs.append(LayerSpec(rng.choice(["relu", "tanh", "batchnorm"])))
        for _ in range(rng.randint(0, 2)):
            specs.append(LayerSpec.fc(rng.randint(1, 8)))
    return specs


def random_valid_stacks(seed: int, count: int, head: bool = True):
    """(specs, in_shape) pairs that analyse accepts; rejected draws are simply redrawn."""
    rng = random.Random(seed)
    found = []
    while len(found) < count:
        specs = random_specs(rng, head)
        in_shape = (rng.randint(1, 2), rng.randint(6, 20), rng.randint(6, 20))
        try:
            analyse(specs, in_shape)
        except StackError:
            continue
        found.append((specs, in_shape))
    return found


def preset_cases():
    return [pytest.param(parse_stack(preset.stack), preset.in_shape, id=name)
            for name, preset in STACK_PRESETS.items()]


def message_of(call) -> str:
    with pytest.raises(StackError) as caught:
        call()
    return str(caught.value)


# ----------------------------------------------------------------------------- text form

def test_layer_spec_defaults_follow_the_lecture():
    assert LayerSpec.conv(3, 16) == LayerSpec("conv", 3, 1, 1, 16)  # 'same' padding for odd k
    assert LayerSpec.conv(5, 8).padding == 2
    assert LayerSpec.conv(4, 8).padding == 1
    assert LayerSpec.conv(1, 8).padding == 0
    assert LayerSpec.pool(2) == LayerSpec("maxpool", 2, 2, 0)  # stride = kernel
    assert LayerSpec.pool(3, kind="mean").stride == 3
    assert parse_stack("conv3x16")[0] == parse_stack("conv3x16/s1/p1")[0]


@pytest.mark.parametrize("name", list(STACK_PRESETS))
def test_presets_round_trip_and_are_canonical(name):
    text = STACK_PRESETS[name].stack
    specs = parse_stack(text)
    assert format_stack(specs) == text
    assert parse_stack(format_stack(specs)) == specs
    analyse(specs, STACK_PRESETS[name].in_shape)  # every preset works on its own input


def test_random_stacks_round_trip():
    rng = random.Random(7)
    for _ in range(300):
        specs = random_specs(rng)
        text = format_stack(specs)
        assert parse_stack(text) == specs
        assert format_stack(parse_stack(text)) == text


def test_parse_tolerates_spaces_case_and_aliases():
    specs = parse_stack(" Conv5x32/S2/P0 , ReLU, BN, avgpool3/s2, maxpool2/s2, GAP, fc10 ")
    assert specs == [LayerSpec("conv", 5, 2, 0, 32), LayerSpec("relu"), LayerSpec("batchnorm"),
                     LayerSpec("meanpool", 3, 2), LayerSpec("maxpool", 2, 2), LayerSpec("gap"), LayerSpec.fc(10)]
    assert format_stack(specs) == "conv5x32/s2/p0,relu,bn,meanpool3/s2,maxpool2,gap,fc10"


@pytest.mark.parametrize("text, layer, token, expected", [
    ("conv3x16,relu,conv3", 3, "conv3", "write conv<kernel>x<filters>, e.g. conv3x16"),
    ("convx16", 1, "convx16", "write conv<kernel>x<filters>"),
    ("conv3x16/s", 1, "conv3x16/s", "'/s' is not an option"),
    ("conv3x16/q2", 1, "conv3x16/q2", "'/q2' is not an option"),
    ("conv3x16/s2/s1", 1, "conv3x16/s2/s1", "the stride is given twice"),
    ("conv12x16", 1, "conv12x16", "the kernel size must be from 1 to 11, not 12"),
    ("conv0x16", 1, "conv0x16", "the kernel size must be from 1 to 11, not 0"),
    ("conv3x0", 1, "conv3x0", "the number of filters must be from 1 to 4096, not 0"),
    ("conv3x5000", 1, "conv3x5000", "the number of filters must be from 1 to 4096, not 5000"),
    ("conv3x16/s9", 1, "conv3x16/s9", "the stride must be from 1 to 8, not 9"),
    ("conv3x16/s0", 1, "conv3x16/s0", "the stride must be from 1 to 8, not 0"),
    ("conv3x16/p3", 1, "conv3x16/p3", "the padding must be from 0 to 2, not 3"),
    ("conv3x16,maxpool", 2, "maxpool", "write maxpool<kernel>, e.g. maxpool2"),
    ("conv3x16,maxpool2/p1", 2, "maxpool2/p1", "'/p1' is not an option"),
    ("conv3x16,meanpool2x2", 2, "meanpool2x2", "write meanpool<kernel>"),
    ("conv3x16,maxpool12", 2, "maxpool12", "the pooling kernel size must be from 1 to 11"),
    ("conv3x16,relu/s2", 2, "relu/s2", "write just relu"),
    ("conv3x16,bn2", 2, "bn2", "write just bn"),
    ("conv3x16,gap,fc", 3, "fc", "write fc<units>, e.g. fc10"),
    ("conv3x16,gap,fc10/s2", 3, "fc10/s2", "'/s2' is not an option"),
    ("conv3x16,gap,fc9999", 3, "fc9999", "the number of units must be from 1 to 4096"),
    ("conv3x16,pool2", 2, "pool2", "unknown layer; use one of conv<kernel>x<filters>"),
    ("softmax", 1, "softmax", "unknown layer"),
])
def test_bad_tokens_name_the_layer(text, layer, token, expected):
    message = message_of(lambda: parse_stack(text))
    assert message.startswith(f"Layer {layer} '{token}': ")
    assert expected in message


def test_empty_and_overlong_stacks():
    assert "Layer 2 is empty" in message_of(lambda: parse_stack("conv3x16,,relu"))
    assert "empty" in message_of(lambda: parse_stack("  "))
    assert f"at most {network.MAX_LAYERS}" in message_of(
        lambda: parse_stack(",".join(["relu"] * (network.MAX_LAYERS + 1))))
    assert len(parse_stack(",".join(["relu"] * network.MAX_LAYERS))) == network.MAX_LAYERS
    assert "empty" in message_of(lambda: analyse([], (1, 28, 28)))
    assert "channels" in message_of(lambda: analyse(parse_stack("relu"), (0, 28, 28)))


def test_layer_spec_checks_its_own_settings():
    assert "filters" in message_of(lambda: LayerSpec("conv", 3))
    assert "unknown layer kind" in message_of(lambda: LayerSpec("dropout"))
    assert "no settings" in message_of(lambda: LayerSpec("relu", kernel=3))


# ----------------------------------------------------------------------------- analyse vs torch

def check_against_torch(specs, in_shape):
    infos = analyse(specs, in_shape)
    model = build_model(specs, in_shape).eval()
    assert len(model) == len(specs) == len(infos)
    x = torch.randn(1, *in_shape)
    for info, layer in zip(infos, model):
        assert tuple(x.shape[1:]) == info.in_shape, info.name
        with FlopCounterMode(display=False) as counter:
            x = layer(x)
        # Shapes
        assert tuple(x.shape[1:]) == info.out_shape, info.name
        # Parameters: torch's own count for this module
        assert sum(p.numel() for p in layer.parameters()) == info.params, info.name
        # Multiply-adds: torch counts 2 flops per multiply-add and leaves the bias out
        if info.kind in ("conv", "fc"):
            assert counter.get_total_flops() == 2 * info.multiply_adds_without_bias, info.name
            assert info.multiply_adds == info.multiply_adds_without_bias + info.outputs
        else:
            assert info.multiply_adds == info.multiply_adds_without_bias == 0
    return infos


@pytest.mark.parametrize("specs, in_shape", preset_cases())
def test_presets_match_torch(specs, in_shape):
    infos = check_against_torch(specs, in_shape)
    t = totals(infos)
    model = build_model(specs, in_shape)
    assert t.params == sum(p.numel() for p in model.parameters())
    assert model(torch.randn(3, *in_shape)).shape == (3, *infos[-1].out_shape)


def test_random_stacks_match_torch():
    for specs, in_shape in random_valid_stacks(seed=11, count=25):
        check_against_torch(specs, in_shape)


@pytest.mark.parametrize("d", [1, 3, 4, 6, 10, 16])
def test_the_first_convs_counts_follow_the_inputs_channels(d):
    """d′(k²d + 1) parameters for the first conv, whatever d is: grey, RGB, or more than 3 (hyperspectral)."""
    info = analyse(parse_stack("conv3x16,relu,maxpool2,conv5x8"), (d, 32, 32))[0]
    assert info.params == 16 * (3 * 3 * d + 1) == sum(p.numel() for p in nn.Conv2d(d, 16, 3).parameters())
    assert info.multiply_adds == 32 * 32 * 16 * (3 * 3 * d + 1)  # padding 1 keeps 32×32
    check_against_torch(parse_stack("conv3x16,relu,maxpool2,conv5x8"), (d, 32, 32))


def test_the_builders_offer_a_hyperspectral_input():
    shape, name = network.INPUT_CHOICES["hyper64"]
    assert shape == (10, 64, 64) and "hyperspectral" in name  # the lecture's d > 3
    infos = check_against_torch(parse_stack(LECTURE_STACK), shape)
    assert infos[0].params == 16 * (3 * 3 * 10 + 1) == sum(p.numel() for p in nn.Conv2d(10, 16, 3).parameters())
    assert totals(infos).params == sum(p.numel() for p in build_model(LECTURE_STACK, shape).parameters())
    assert all(d <= network.MAX_INPUT_CHANNELS for (d, _, _), _ in network.INPUT_CHOICES.values())


def test_conv_counts_are_the_lectures_formulas():
    # The lecture's VGG example: 224x224x3 in, 64 filters of 3x3, padding keeps 224x224.
    info = analyse(parse_stack("conv3x64"), (3, 224, 224))[0]
    assert info.out_shape == (64, 224, 224)
    assert info.params == 64 * (3 * 3 * 3 + 1) == 1792
    assert info.multiply_adds == 224 * 224 * 64 * (3 * 3 * 3 + 1)
    fc = analyse(parse_stack("conv3x4,flatten,fc10"), (1, 5, 5))[2]
    assert fc.in_shape == (100,) and fc.params == 100 * 10 + 10 and fc.multiply_adds == 10 * 101
    bn = analyse(parse_stack("conv3x4,bn,flatten,bn"), (1, 5, 5))
    assert bn[1].params == 8 and bn[3].params == 200


def test_vgg16_matches_the_lectures_numbers(monkeypatch):
    # Beyond this app's limits, so lift them for this one check.
    monkeypatch.setattr(network, "MAX_PARAMS", 10**9)
    monkeypatch.setattr(network, "MAX_ACTIVATION_MB", 10**4)
    monkeypatch.setattr(network, "MAX_MULTIPLY_ADDS", 10**11)
    block = lambda n, f: ",".join([f"conv3x{f},relu"] * n) + ",maxpool2"
    text = ",".join([block(2, 64), block(2, 128), block(3, 256), block(3, 512), block(3, 512),
                     "flatten,fc4096,relu,fc4096,relu,fc1000"])
    infos = analyse(parse_stack(text), (3, 224, 224))
    flat = next(i for i in infos if i.kind == "flatten")
    assert flat.in_shape == (512, 7, 7) and flat.out_shape == (25088,)
    t = totals(infos)
    assert t.params == 138_357_544  # torchvision's VGG-16 count; the lecture rounds to ~132 million
    assert 15e9 < t.multiply_adds < 16e9  # "16.000.000.000 multiply-add operations"
    assert sum(1 for i in infos if i.kind in ("conv", "fc")) == 16


# ----------------------------------------------------------------------------- receptive field

def probe_model(specs, in_shape):
    """All conv and fc weights 1, biases 0, max pools as mean pools, activations identity:
    every path from a pixel to a unit then carries a positive gradient."""
    model = build_model(with_mean_pooling(specs), in_shape, activation="identity").double().eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.fill_(1.0)
                module.bias.zero_()
    return model


def gradient_box(model, in_shape, layer_index, unit):
    x = torch.zeros(1, *in_shape, dtype=torch.float64, requires_grad=True)
    out = model[:layer_index + 1](x)
    out[(0, *unit)].backward()
    seen = (x.grad[0].abs().sum(dim=0) > 0).nonzero()
    assert len(seen), "the unit sees no input pixel"
    return (int(seen[:, 0].min()), int(seen[:, 1].min()), int(seen[:, 0].max()), int(seen[:, 1].max()))


def test_receptive_field_matches_gradient_probe():
    rng = random.Random(3)
    checked = 0
    for specs, in_shape in random_valid_stacks(seed=5, count=30):
        infos = analyse(specs, in_shape)
        model = probe_model(specs, in_shape)
        for info in infos:
            if info.spatial:
                c, h, w = info.out_shape
                units = {(0, 0), (h - 1, w - 1), (0, w - 1), (h - 1, 0), (h // 2, w // 2),
                         (rng.randrange(h), rng.randrange(w))}
                for row, col in units:
                    channel = rng.randrange(c)
                    expected = gradient_box(model, in_shape, info.index, (channel, row, col))
                    assert unit_receptive_field(infos, in_shape, info.index, row, col) == expected, \
                        (format_stack(specs), in_shape, info.index, row, col)
                    checked += 1
            else:
                for unit in {0, info.out_shape[0] - 1, rng.randrange(info.out_shape[0])}:
                    expected = gradient_box(model, in_shape, info.index, (unit,))
                    assert unit_receptive_field(infos, in_shape, info.index, unit, 0) == expected, \
                        (format_stack(specs), in_shape, info.index, unit)
                    checked += 1
    assert checked > 500


def test_receptive_field_recurrence_for_interior_units():
    """rf_size, rf_jump, rf_start describe every unit whose field is not clipped."""
    interior = 0
    for specs, in_shape in random_valid_stacks(seed=9, count=40, head=False) + [
            (parse_stack(LECTURE_STACK)[:9], (1, 28, 28))]:
        infos = analyse(specs, in_shape)
        for info in infos:
            _, h, w = info.out_shape
            for row in range(h):
                for col in range(w):
                    top = info.rf_start + row * info.rf_jump - (info.rf_size - 1) / 2
                    left = info.rf_start + col * info.rf_jump - (info.rf_size - 1) / 2
                    box = (top, left, top + info.rf_size - 1, left + info.rf_size - 1)
                    if box[0] >= 0 and box[1] >= 0 and box[2] < in_shape[1] and box[3] < in_shape[2]:
                        assert unit_receptive_field(infos, None, info.index, row, col) == box
                        interior += 1
    assert interior > 200


def test_receptive_field_of_the_lecture_style_preset():
    infos = analyse(parse_stack(LECTURE_STACK), (1, 28, 28))
    # conv3 -> 3, pool2 -> 4 (jump 2), conv3 -> 8, pool2 -> 10 (jump 4), conv3 -> 18, pool2 -> 22 (jump 8)
    assert [(i.rf_size, i.rf_jump) for i in infos if i.kind in ("conv", "maxpool")] == [
        (3, 1), (4, 2), (8, 2), (10, 4), (18, 4), (22, 8)]
    assert infos[0].rf_first_left == -1  # the first 3x3 window starts in the padding
    # Unit (1, 1) of the last 3x3 map: window centre 3.5 + 8 = 11.5, 22 wide -> pixels 1..22
    assert unit_receptive_field(infos, None, 8, 1, 1) == (1, 1, 22, 22)
    assert unit_receptive_field(infos, None, 8, 0, 0) == (0, 0, 14, 14)
    assert infos[-1].rf_global
    # An fc unit mixes the whole last 3x3 map, whose units reach pixel 27 (the floor-rounded
    # last pooling drops row 6 of the 7x7 map, but the conv below it still reaches the edge).
    assert unit_receptive_field(infos, None, len(infos) - 1, 3, 0) == (0, 0, 27, 27)
    model = probe_model(parse_stack(LECTURE_STACK), (1, 28, 28))
    assert gradient_box(model, (1, 28, 28), len(infos) - 1, (3,)) == (0, 0, 27, 27)
    # specs or text work as well as infos
    assert unit_receptive_field(LECTURE_STACK, (1, 28, 28), 8, 1, 1) \
        == (1, 1, 22, 22)


def test_receptive_field_rejects_missing_units():
    infos = analyse(parse_stack("conv3x4,maxpool2,flatten,fc5"), (1, 8, 8))
    assert "no unit at row 4" in message_of(lambda: unit_receptive_field(infos, None, 1, 4, 0))
    assert "column 0" in message_of(lambda: unit_receptive_field(infos, None, 3, 0, 1))
    assert "no layer 4" in message_of(lambda: unit_receptive_field(infos, None, 4, 0, 0))


# ----------------------------------------------------------------------------- impossible stacks

@pytest.mark.parametrize("text, in_shape, layer, expected", [
    ("conv3x8,maxpool2,maxpool2,maxpool2,maxpool2,maxpool2", (1, 28, 28), "Layer 6 maxpool 2×2",
     "its input is 1×1, smaller than the 2×2 window. Remove a pooling layer or use padding."),
    ("conv5x8/p0,conv5x8/p0,conv5x8/p0", (1, 10, 10), "Layer 3 conv 5×5, 8 filters, padding 0",
     "its input is 2×2, smaller than the 5×5 window"),
    ("conv3x8/s2,conv3x8/s2,conv7x8/p1", (1, 5, 5), "Layer 3 conv 7×7, 8 filters, padding 1",
     "its input is 2×2 (4×4 with padding 1), smaller than the 7×7 window"),
    ("meanpool3,meanpool3", (1, 28, 5), "Layer 2 meanpool 3×3", "its input is 9×1"),
    ("conv3x8,relu,flatten,conv3x8", (1, 28, 28), "Layer 4 conv 3×3, 8 filters",
     "comes after layer 3 flatten"),
    ("conv3x8,gap,relu,maxpool2", (1, 28, 28), "Layer 4 maxpool 2×2",
     "comes after layer 2 global average pooling"),
    ("conv3x8,relu,maxpool2,fc10", (1, 28, 28), "Layer 4 fc, 10 units",
     "its input is still a 14×14×8 feature map; add flatten or gap before fc"),
    ("conv3x8,flatten,gap", (1, 28, 28), "Layer 3 global average pooling", "use flatten or gap only once"),
    ("conv3x8,gap,fc10,flatten", (1, 28, 28), "Layer 4 flatten", "use flatten or gap only once"),
    ("conv3x64,flatten,fc4096", (1, 28, 28), "Layer 3 fc, 4096 units",
     "with its 205,524,992 parameters the model reaches 205,525,632 parameters (822.1 MB as float32), "
     "more than the 50,000,000"),
    ("conv3x64,relu,conv3x64", (3, 224, 224), "Layer 3 conv 3×3, 64 filters", "MB, more than the 32 MB"),
    ("conv3x2048,conv3x2048", (3, 32, 32), "Layer 2 conv 3×3, 2048 filters", "multiply-adds per image"),
])
def test_impossible_stacks_name_the_layer(text, in_shape, layer, expected):
    specs = parse_stack(text)
    message = message_of(lambda: analyse(specs, in_shape))
    assert message.startswith(layer + ": ")
    assert expected in message
    # build_model explains the same way instead of letting torch fail
    assert message_of(lambda: build_model(specs, in_shape)) == message


def test_limits_leave_the_presets_and_lecture_sizes_alone():
    # The lecture's 32x32x3 CIFAR-10 images through every preset.
    for text in (preset.stack for preset in STACK_PRESETS.values()):
        analyse(parse_stack(text), (3, 32, 32))
    # 33.6 million parameters pass; a fourth fc4096 (16.8 million more) crosses 50 million.
    # 1*4096 + 4096, then twice 4096*4096 + 4096.
    assert totals(analyse(parse_stack("gap,fc4096,fc4096,fc4096"), (1, 8, 8))).params == 33_570_816
    message = message_of(lambda: analyse(parse_stack("gap,fc4096,fc4096,fc4096,fc4096"), (1, 8, 8)))
    assert message.startswith("Layer 5 fc, 4096 units: ") and "reaches 50,352,128 parameters" in message


# ----------------------------------------------------------------------------- the lecture's principle

def test_lecture_style_preset_shrinks_space_and_grows_channels():
    infos = analyse(parse_stack(LECTURE_STACK), (1, 28, 28))
    # Blocks: convolutions followed by one subsampling layer.
    blocks, current = [], []
    for info in infos:
        if not info.spatial:
            break
        current.append(info)
        if info.kind in ("maxpool", "meanpool") or (info.kind == "conv" and info.spec.stride > 1):
            blocks.append(current)
            current = []
    assert len(blocks) >= 3
    channels = [max(i.out_shape[0] for i in block if i.kind == "conv") for block in blocks]
    sides = [block[-1].out_shape[1:] for block in blocks]
    assert all(b > a for a, b in zip(channels, channels[1:])), channels
    assert all(b[0] < a[0] and b[1] < a[1] for a, b in zip(sides, sides[1:])), sides
    assert sides[0][0] < 28
    # Each 2x2, stride 2 pool halves the spatial size (rounding down), as the lecture says.
    for info in infos:
        if info.kind == "maxpool":
            assert info.out_shape[1:] == (info.in_shape[1] // 2, info.in_shape[2] // 2)
    # and the head turns the final map into 10 class scores
    assert infos[-1].out_shape == (10,)


def test_build_model_replaces_activations_and_trains():
    specs = parse_stack("conv3x4,relu,maxpool2,conv3x4,tanh,gap,fc3")
    kinds = [type(m).__name__ for m in build_model(specs, (1, 8, 8))]
    assert kinds[:5] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "Tanh"]
    assert [type(m).__name__ for m in build_model(specs, (1, 8, 8), activation="identity")][1::3] == \
        ["Identity", "Identity"]
    assert "activation" in message_of(lambda: build_model(specs, (1, 8, 8), activation="gelu"))
    torch.manual_seed(0)
    model = build_model(specs, (1, 8, 8))
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 3, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(30):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------- the builders' edits

def test_edits_grow_the_features_and_keep_the_head():
    from cnnviz.network import (add_batchnorm, add_conv_block, add_pooling, remove_last_block, split_head,
                                with_head)
    specs = parse_stack("conv3x16,relu,maxpool2,flatten,fc128,relu,fc10")
    body, head = split_head(specs)
    assert format_stack(body) == "conv3x16,relu,maxpool2" and format_stack(head) == "flatten,fc128,relu,fc10"
    assert format_stack(add_conv_block(specs)) == "conv3x16,relu,maxpool2,conv3x32,relu,flatten,fc128,relu,fc10"
    assert format_stack(add_conv_block(parse_stack("gap,fc10"), first_filters=8)) == "conv3x8,relu,gap,fc10"
    assert format_stack(add_conv_block(parse_stack("conv3x200,gap,fc10"), max_filters=256)).startswith(
        "conv3x200,conv3x256,relu")
    assert format_stack(add_pooling(specs, "meanpool")) == "conv3x16,relu,maxpool2,meanpool2,flatten,fc128,relu,fc10"
    assert format_stack(add_batchnorm(specs)) == "conv3x16,bn,relu,maxpool2,flatten,fc128,relu,fc10"
    assert add_batchnorm(add_batchnorm(specs)) == add_batchnorm(specs)  # only once
    assert format_stack(remove_last_block(specs)) == "conv3x16,relu,flatten,fc128,relu,fc10"
    assert format_stack(remove_last_block(parse_stack("conv3x16,bn,relu,flatten,fc10"))) == "flatten,fc10"
    assert format_stack(with_head(specs, "gap")) == "conv3x16,relu,maxpool2,gap,fc128,relu,fc10"
    assert format_stack(with_head(parse_stack("conv3x8,relu"), "flatten", classes=5)) == "conv3x8,relu,flatten,fc5"
    with pytest.raises(StackError, match="flatten or gap"):
        with_head(specs, "fc")
    # Every edit of a working stack still analyses (here on 28x28x1).
    for edited in (add_conv_block(specs), add_pooling(specs), add_batchnorm(specs), remove_last_block(specs),
                   with_head(specs, "gap")):
        analyse(edited, (1, 28, 28))
