"""The architecture summary engine against torchinfo (layer by layer), the lecture's VGG-16
numbers, torch's own shapes, and the claim that nothing is allocated for the weights."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchinfo
import torchvision
from torch import nn

from cnnviz import notation
from cnnviz import summary as S
from cnnviz.architecture_figures import HIGHLIGHT, block_diagram, macs_figure, params_figure, share_figure
from cnnviz.network import STACK_PRESETS, analyse, build_model, parse_stack
from cnnviz.notation import percent

ROOT = Path(__file__).resolve().parent.parent


def torchinfo_leaves(model: nn.Module, in_shape, device: str):
    """(module path, output shape without batch, params, mult-adds) of every leaf call, as torchinfo reports them."""
    stats = torchinfo.summary(model, input_size=(1, *in_shape), verbose=0, depth=100, device=device)
    names = {id(m): name for name, m in model.named_modules()}
    leaves = [(names[id(info.module)], tuple(info.output_size[1:]), 0 if info.is_recursive else info.num_params,
               info.macs) for info in stats.summary_list if info.is_leaf_layer]
    return stats, leaves


def ours(summary: S.Summary):
    return [(r.name, r.out_shape, r.params, r.macs) for r in summary.layers]


def build_real(key: str) -> nn.Module:
    torch.manual_seed(0)
    return getattr(torchvision.models, S.TORCHVISION_MODELS[key].constructor)(weights=None).eval()


# ---- exact totals, per layer, against torchinfo on real models -------------------------------------


@pytest.mark.parametrize("key", ["vgg16", "alexnet", "resnet18"])
def test_equal_to_torchinfo_on_the_real_model_layer_by_layer(key):
    model = build_real(key)  # real weights: torchinfo runs a real forward pass on the CPU
    stats, expected = torchinfo_leaves(model, (3, 224, 224), "cpu")
    summary = S.summarize(key, 224)
    assert ours(summary) == expected
    assert summary.params == stats.total_params == sum(p.numel() for p in model.parameters())
    assert summary.macs == stats.total_mult_adds
    # The real model itself, analysed through a meta copy of its structure: same rows, no weight copy.
    before = resident_bytes()
    assert ours(S.summarize_module(model, (3, 224, 224))) == expected
    assert resident_bytes() - before < 20e6  # VGG-16 alone would be 553 MB
    assert all(not p.is_meta for p in model.parameters())


def test_vgg16_exact_totals():
    summary = S.summarize("vgg16", 224)
    assert summary.params == 138_357_544  # the spec, and torchvision's count (see above)
    assert summary.params == sum(p.numel() for p in S.meta_model("vgg16").parameters())
    # The lecture's formula, layer by layer: m'·l'·d'·(k·k·d + 1) and n'·(n + 1).
    expected = 0
    for module, row in zip((m for _, m in S._leaves(S.meta_model("vgg16"))), summary.layers):
        if isinstance(module, nn.Conv2d):
            d_out, m, l = row.out_shape
            expected += m * l * d_out * (module.kernel_size[0] * module.kernel_size[1] * module.in_channels + 1)
        elif isinstance(module, nn.Linear):
            expected += module.out_features * (module.in_features + 1)
    assert summary.macs == expected
    assert summary.flops == 2 * expected
    # Against the lecture's approximations: within 5 % of 132 million and 16 billion.
    assert abs(summary.params - S.LECTURE_PARAMS) / summary.params < 0.05
    assert abs(summary.macs - S.LECTURE_MULTIPLY_ADDS) / summary.macs < 0.05
    assert round(summary.params / 2 ** 20) == 132  # the page's explanation of the lecture's 132 million


@pytest.mark.parametrize("key,size", [("vgg11", 224), ("vgg13", 96), ("vgg19", 160), ("resnet18", 75)])
def test_equal_to_torchinfo_for_other_models_and_sizes(key, size):
    # torchinfo on the same architecture built on the meta device: its counts come from the
    # shapes and parameter counts, which meta tensors carry (a real VGG costs 2 s to initialise).
    with torch.device("meta"):
        model = getattr(torchvision.models, key)(weights=None).eval()
    stats, expected = torchinfo_leaves(model, (3, size, size), "meta")
    summary = S.summarize(key, size)
    assert ours(summary) == expected
    assert (summary.params, summary.macs) == (stats.total_params, stats.total_mult_adds)


def test_macs_without_bias_and_activation_memory_match_torch():
    summary = S.summarize("alexnet", 224)
    model = S.meta_model("alexnet")
    for (name, module), row in zip(S._leaves(model), summary.layers):
        bias = module.bias.numel() if getattr(module, "bias", None) is not None else 0
        if isinstance(module, nn.Conv2d):
            assert row.macs - row.macs_without_bias == math.prod(row.out_shape)  # one per output
            assert row.macs_without_bias == module.weight.numel() * row.out_shape[1] * row.out_shape[2]
        elif isinstance(module, nn.Linear):
            assert row.macs - row.macs_without_bias == bias
        else:
            assert row.macs == row.macs_without_bias == 0
        assert row.activation_bytes == math.prod(row.out_shape) * torch.empty(0).element_size()


def test_shapes_match_a_real_forward_pass():
    torch.manual_seed(1)
    model = torchvision.models.vgg11(weights=None).eval()
    shapes = []
    hooks = [m.register_forward_hook(lambda m, a, out: shapes.append(tuple(out.shape[1:])))
             for _, m in S._leaves(model)]
    with torch.no_grad():
        model(torch.randn(1, 3, 48, 48))
    for h in hooks:
        h.remove()
    assert [r.out_shape for r in S.summarize("vgg11", 48).layers] == shapes


# ---- the lecture's walk-through ----------------------------------------------------------------------


def test_vgg16_walk_through_has_the_lecture_shapes_number_for_number():
    summary = S.summarize("vgg16", 224)
    shapes = [b.shape for b in S.boxes(summary)]
    blocks = [(2, 64, 224), (2, 128, 112), (3, 256, 56), (3, 512, 28), (3, 512, 14)]
    expected = [(3, 224, 224)]
    for convs, channels, side in blocks:
        expected += [(channels, side, side)] * convs + [(channels, side // 2, side // 2)]
    expected += [(25088,), (4096,), (4096,), (1000,), (1000,)]
    assert shapes == expected
    kinds = [b.kind for b in S.boxes(summary)]
    assert kinds.count("conv") == 13 and kinds.count("pool") == 5 and kinds.count("fc") == 3
    assert kinds[-3:] == ["fc", "fc", "softmax"] and kinds[-5] == "flatten"
    lines = S.walkthrough(summary)
    assert lines[0] == "Input: 224×224×3 = 150,528 numbers"  # the lecture: 224 × 224 × 3 = 150528 numbers
    assert lines[1] == "2 convolutions 3×3 with 64 filters + ReLU → 224×224×64"
    assert lines[2] == "max pool 2×2, stride 2 → 112×112×64"
    assert lines[3] == "2 convolutions 3×3 with 128 filters + ReLU → 112×112×128"
    assert lines[5] == "3 convolutions 3×3 with 256 filters + ReLU → 56×56×256"
    assert lines[7] == "3 convolutions 3×3 with 512 filters + ReLU → 28×28×512"
    assert lines[9] == "3 convolutions 3×3 with 512 filters + ReLU → 14×14×512"
    assert lines[10] == "max pool 2×2, stride 2 → 7×7×512"
    assert lines[11] == "flatten 7×7×512 → 25,088-dimensional vector"
    assert lines[12:] == ["fully connected, 4,096 neurons + ReLU", "fully connected, 4,096 neurons + ReLU",
                          "fully connected, 1,000 neurons", "softmax → 1,000 class probabilities"]


def test_first_fully_connected_layer_holds_three_quarters_and_convolutions_do_the_compute():
    summary = S.summarize("vgg16", 224)
    fc1 = summary.largest("params")
    assert (fc1.label, fc1.name, fc1.in_shape, fc1.out_shape) == ("fc1", "classifier.0", (25088,), (4096,))
    assert fc1.params == 4096 * (7 * 7 * 512 + 1)
    assert 0.70 < fc1.params / summary.params < 0.78
    assert summary.share("conv", "macs") > 0.99
    assert summary.share("conv", "macs") == sum(r.macs for r in summary.layers if r.kind == "conv") / summary.macs


# ---- inputs that do not work -------------------------------------------------------------------------


def test_too_small_input_names_the_layer_and_the_smallest_size():
    with pytest.raises(S.SummaryError) as error:
        S.summarize("vgg16", 16)
    message = str(error.value)
    assert "16×16×3" in message and "pool5" in message and "features.30" in message
    assert "1×1×512" in message and "2×2 window" in message
    assert "smallest input VGG-16 accepts is 32×32" in message
    S.summarize("vgg16", 32)  # and it does
    with pytest.raises(S.SummaryError):
        S.summarize("vgg16", 31)
    with pytest.raises(S.SummaryError, match=r"AlexNet .* smallest input AlexNet accepts is 63×63"):
        S.summarize("alexnet", 40)
    S.summarize("alexnet", 63)
    with pytest.raises(RuntimeError):  # torch agrees on a real model
        torchvision.models.alexnet(weights=None).features(torch.zeros(1, 3, 62, 62))


def test_stack_with_another_input_size_breaks_at_its_fully_connected_layer():
    stack = STACK_PRESETS["Tiny CNN (Fashion-MNIST)"].stack
    built_for = STACK_PRESETS["Tiny CNN (Fashion-MNIST)"].in_shape
    summary = S.summarize_stack(stack, built_for)
    infos = analyse(parse_stack(stack), built_for)  # the lead's engine agrees layer by layer
    assert [r.out_shape for r in summary.layers] == [i.out_shape for i in infos]
    assert [r.params for r in summary.layers] == [i.params for i in infos]
    assert [r.macs for r in summary.layers] == [i.multiply_adds for i in infos]
    assert [r.macs_without_bias for r in summary.layers] == [i.multiply_adds_without_bias for i in infos]
    first_fc = next(i for i in infos if i.kind == "fc")
    # What the layers before it make of a 32×32 input (the lead's engine, on the stack up to there):
    given = analyse(parse_stack(stack)[:first_fc.index], (1, 32, 32))[-1].out_shape[0]
    assert given != first_fc.in_shape[0]
    with pytest.raises(S.SummaryError, match=rf"layer {first_fc.number}, fc1 \(fully connected, "
                                             rf"{first_fc.spec.out} units.*expects {first_fc.in_shape[0]:,} "
                                             rf"inputs.*gives it {given:,}"):
        S.summarize_stack(stack, (1, 32, 32), built_for=built_for)
    with pytest.raises(S.SummaryError, match="Layer"):  # a stack too big for its input: the stack's own message
        S.summarize_stack("conv3x8,maxpool2,maxpool2,maxpool2,flatten,fc10", (1, 4, 4))


@pytest.mark.parametrize("bad", [(3, 0, 224), (0, 224, 224), (3, 224, 99999), "abc", (3, 224)])
def test_bad_input_shapes_are_explained(bad):
    with pytest.raises(S.SummaryError):
        S.summarize_module(S.meta_model("vgg11"), bad)


def test_unknown_model_is_explained():
    with pytest.raises(S.SummaryError, match="choose one of vgg16"):
        S.summarize("vgg17")


# ---- no weights are allocated --------------------------------------------------------------------------


def resident_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_meta_path_allocates_no_weight_memory():
    S.summarize("vgg11", 64)  # imports and warms up torch's meta kernels
    S.meta_model.cache_clear()
    before = resident_bytes()
    summary = S.summarize("vgg19", 224)  # 143,667,240 parameters = 575 MB as float32
    grown = resident_bytes() - before
    assert all(p.is_meta for p in S.meta_model("vgg19").parameters())
    assert summary.param_bytes > 500e6
    assert grown < 60e6, f"resident memory grew by {grown / 1e6:.0f} MB"


def test_a_real_model_is_analysed_as_a_structure_copy():
    model = build_model(STACK_PRESETS["VGG-like block (32x32x3)"].stack, (3, 32, 32))
    summary = S.summarize_module(model, (3, 32, 32))
    assert summary.params == sum(p.numel() for p in model.parameters())
    assert all(not p.is_meta for p in model.parameters())  # the caller's model is untouched
    _, expected = torchinfo_leaves(model, (3, 32, 32), "cpu")
    assert ours(summary) == expected


def test_reused_module_counts_its_weights_once():
    summary = S.summarize("resnet18", 224)
    repeated = [r for r in summary.layers if r.repeated]
    assert repeated and all(r.type == "ReLU" and r.params == 0 for r in repeated)
    assert summary.layer_params == summary.params == 11_689_512


# ---- the command line ------------------------------------------------------------------------------------


def test_cli_table(capsys):
    assert S.main(["vgg16", "--input", "224"]) == 0
    out = capsys.readouterr().out
    summary = S.summarize("vgg16", 224)
    assert "VGG-16, input 224×224×3" in out
    assert f"{summary.params:,}" in out and f"{summary.macs:,}" in out
    for row in summary.layers:
        assert f"{row.label}" in out
    lines = [line for line in out.splitlines() if line.strip()[:2].strip().isdigit()]
    assert len(lines) == len(summary.layers) == 39
    assert "fc1" in lines[32] and "102,764,544" in lines[32] and "4,096" in lines[32]


def test_cli_json_through_python_dash_m():
    done = subprocess.run([sys.executable, "-m", "cnnviz.summary", "resnet18", "--input", "128", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    layers = json.loads(done.stdout)
    summary = S.summarize("resnet18", 128)
    assert len(layers) == len(summary.layers)
    for item, row in zip(layers, summary.layers):
        assert {"name", "output_shape", "params", "macs"} <= set(item)
        assert (item["name"], tuple(item["output_shape"]), item["params"], item["macs"]) == \
               (row.name, row.out_shape, row.params, row.macs)
    assert sum(item["params"] for item in layers) == summary.params


def test_cli_too_small_input_exits_with_the_message(capsys):
    assert S.main(["vgg16", "--input", "8"]) == 2
    assert "pool4" in capsys.readouterr().err


# ---- the figures --------------------------------------------------------------------------------------------


def test_block_diagram_draws_every_box_and_outlines_the_selected_one():
    summary = S.summarize("vgg16", 224)
    items = S.boxes(summary)
    fig = block_diagram(summary, selected=32)
    assert len(fig.layout.shapes) == 3 * len(items)  # three faces per box
    outlined = [s for s in fig.layout.shapes if s.line.color == HIGHLIGHT]
    assert len(outlined) == 3
    texts = " ".join(a.text for a in fig.layout.annotations)
    for shape in ("224×224×3", "224×224×64", "112×112×128", "56×56×256", "28×28×512", "14×14×512",
                  "7×7×512", "25,088", "4,096", "1,000"):
        assert shape in texts
    hover = fig.data[0]
    assert list(hover.customdata) == [b.rows[0] if b.rows else -1 for b in items]
    # Boxes grow with the map: the 224×224 faces are taller than the 7×7 ones.
    heights = []
    for box, i in zip(items, range(0, len(fig.layout.shapes), 3)):
        ys = [float(v.split(",")[1]) for v in fig.layout.shapes[i].path[1:-2].split(" L")]
        heights.append(max(ys) - min(ys))
    assert heights[1] > heights[3] > heights[18]  # conv1_1 > pool1 > pool5


def test_charts_show_each_layer_value_and_the_shares():
    summary = S.summarize("vgg16", 224)
    weighted = [r for r in summary.layers if r.params or r.macs]
    params = params_figure(summary, selected=32)
    assert list(params.data[0].x) == [r.params for r in weighted]
    assert "<b>74.3%</b>" in params.layout.title.text  # fc1's share
    assert f"<b>{percent(summary.largest().params / summary.params)}</b>" in params.layout.title.text
    macs = macs_figure(summary)
    assert sum(macs.data[0].x) == summary.macs
    assert f"<b>{percent(summary.share('conv', 'macs'))}</b>" in macs.layout.title.text
    share = share_figure(summary)
    conv = next(t for t in share.data if t.name == "convolutions")
    assert list(conv.x) == [summary.share("conv"), summary.share("conv", "macs")]


def test_block_diagram_of_resnet_names_its_stages():
    summary = S.summarize("resnet18", 224)
    texts = [a.text for a in block_diagram(summary).layout.annotations]
    for stage, shape in (("layer1", "56×56×64"), ("layer2", "28×28×128"), ("layer3", "14×14×256"),
                         ("layer4", "7×7×512")):
        assert any(stage in t and shape in t and "." not in t.split(shape)[-1] for t in texts), stage
    assert any("1×1×512" in t and "avgpool" in t for t in texts)


# ---- the flatten, the model in words, the shares, the charts for many layers ---------------------------


def test_alexnet_walk_through_and_diagram_flatten_the_map_before_the_dropout():
    # torchvision's AlexNet flattens in forward() (not a module), then its classifier starts with Dropout.
    summary = S.summarize("alexnet", 224)
    items = S.boxes(summary)
    kinds = [b.kind for b in items]
    at = kinds.index("flatten")
    assert items[at - 1].shape == (256, 6, 6) and items[at].shape == (9216,)
    assert kinds[at + 1:] == ["fc", "fc", "fc", "softmax"] and "other" not in kinds
    dropout = next(r for r in summary.layers if r.name == "classifier.0")
    assert dropout.kind == "dropout" and dropout.label == "dropout (flatten)"
    lines = S.walkthrough(summary)
    assert "max pool 3×3, stride 2 → 6×6×256" in lines
    assert lines[lines.index("max pool 3×3, stride 2 → 6×6×256") + 1] == "flatten 6×6×256 → 9,216-dimensional vector"
    assert not any(line.startswith("dropout") for line in lines)
    texts = " ".join(a.text for a in block_diagram(summary).layout.annotations)
    assert "flatten" in texts and "9,216" in texts and "dropout" not in texts


class FlattensInForward(nn.Module):
    """A map flattened in forward() into a classifier that starts with an activation."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.ReLU(), nn.Linear(4 * 3 * 3, 5))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


def test_flatten_is_shown_whatever_module_starts_the_classifier():
    summary = S.summarize_module(FlattensInForward(), (3, 8, 8))
    assert [b.kind for b in S.boxes(summary)] == ["input", "conv", "pool", "flatten", "fc", "softmax"]
    assert S.walkthrough(summary)[3] == "flatten 3×3×4 → 36-dimensional vector"


def test_overview_describes_the_selected_model_from_its_layers():
    assert S.overview(S.summarize("vgg16", 224)) == (
        "maps a 224×224×3 image to 1,000 class scores through 13 convolution layers (3×3 kernels), "
        "5 max-pooling layers and 3 fully connected layers")
    assert S.overview(S.summarize("alexnet", 227)) == (
        "maps a 227×227×3 image to 1,000 class scores through 5 convolution layers (11×11, 5×5 and 3×3 "
        "kernels), 3 max-pooling layers and 3 fully connected layers")
    assert S.overview(S.summarize("resnet18", 224)) == (
        "maps a 224×224×3 image to 1,000 class scores through 20 convolution layers (7×7, 3×3 and 1×1 "
        "kernels) with 20 batch norms, 1 max-pooling layer, 1 global average-pooling layer and 1 fully "
        "connected layer")
    tiny = STACK_PRESETS["Tiny CNN (Fashion-MNIST)"]
    assert S.overview(S.summarize_stack(tiny.stack, tiny.in_shape)) == (
        "maps a 28×28×1 image to 10 class scores through 2 convolution layers (3×3 kernels), "
        "2 max-pooling layers and 1 fully connected layer")


def test_largest_layer_of_one_kind():
    resnet = S.summarize("resnet18", 224)
    assert resnet.largest("params").label == "layer4.0.conv2"  # a convolution: not the fc layers' largest
    assert resnet.largest("params", kind="fc").label == "fc"
    assert S.summarize("vgg16", 224).largest("params", kind="fc").label == "fc1"
    assert S.summarize_stack("conv3x4,relu,gap", (1, 8, 8)).largest("params", kind="fc") is None


def test_chart_shares_never_round_to_0_or_100():
    resnet = S.summarize("resnet18", 224)
    share = resnet.share("conv", "macs")
    assert 0.9996 < share < 0.9998
    assert "<b>99.97%</b>" in macs_figure(resnet).layout.title.text
    vgg = S.summarize("vgg16", 224)
    params = params_figure(vgg)
    conv1_2 = [r.label for r in vgg.layers if r.params].index("conv1_2")
    assert "0.03%" in params.data[0].hovertext[conv1_2]
    bars = share_figure(resnet)
    conv = next(t for t in bars.data if t.name == "convolutions")
    assert "99.97%" in conv.hovertext[1]


def test_per_layer_charts_of_many_layers_are_horizontal_with_room_for_every_label():
    resnet = S.summarize("resnet18", 224)
    weighted = [r for r in resnet.layers if r.params or r.macs]
    assert len(weighted) == 41
    for figure, what in ((params_figure(resnet), "params"), (macs_figure(resnet), "macs")):
        bars = figure.data[0]
        assert bars.orientation == "h"
        assert list(figure.layout.yaxis.ticktext) == [r.label for r in weighted]
        assert list(bars.y) == list(figure.layout.yaxis.tickvals) == list(range(len(weighted)))
        assert list(bars.x) == [getattr(r, what) for r in weighted]
        assert figure.layout.yaxis.autorange == "reversed"  # the first layer at the top
        margin = figure.layout.margin
        pitch = (figure.layout.height - margin.t - margin.b) / len(weighted)
        assert pitch >= 1.3 * figure.layout.yaxis.tickfont.size  # a line of label text per bar


def test_shapes_are_written_through_notation():
    assert not hasattr(S, "shape_text")  # one way to write them: cnnviz.notation's
    assert (S.approx, S.megabytes) == (notation.approx, notation.megabytes)
    texts = " ".join(a.text for a in block_diagram(S.summarize("vgg16", 224)).layout.annotations)
    assert "25,088" in texts and "4,096" in texts
