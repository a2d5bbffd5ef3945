"""The convolution engine held to torch.nn.functional.conv2d and to the lecture's numbers.

Only the lecture's own numbers are written into these tests (the 4x4 example, its first
output 2, the 32x32x3 image with a 5x5x3 filter); everything else is compared with what
torch computes for the same layer.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from cnnviz.conv import (
    ConvCounts,
    ConvError,
    Convolution,
    Geometry,
    Padding,
    conv_on_image,
    output_size,
    output_size_formula,
)
from cnnviz.examples import (
    CONV_EXAMPLES,
    FILTER_PRESETS,
    LECTURE_BIAS,
    LECTURE_FILTER,
    LECTURE_INPUT,
    filter_preset,
)

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

KERNELS = range(1, 6)
PADDINGS = (0, 1, 2, 3, "same", "valid")
STRIDES = range(1, 4)
DILATIONS = range(1, 4)
# Square and non-square, some too small for the larger (dilated) kernels.
SIZES = ((1, 1), (2, 5), (4, 4), (5, 7), (7, 3), (8, 8))
# (input channels d, filters d'): every pair from 1..3 x 1..4.
CHANNEL_PAIRS = tuple(itertools.product(range(1, 4), range(1, 5)))

GEOMETRIES = list(itertools.product(KERNELS, PADDINGS, STRIDES, DILATIONS))


def _seed(*parts) -> int:
    """A fixed seed per parameter combination (str hashes vary between runs; crc32 does not)."""
    return zlib.crc32(repr(parts).encode())


def _rand(*shape: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def torch_pads(padding, kernel: int, dilation: int) -> tuple[int, int]:
    """(before, after) zeros per axis as torch applies them (padding='same' puts the odd one after)."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = dilation * (kernel - 1)
        return total // 2, total - total // 2
    return padding, padding


def fits(h: int, w: int, kernel: int, padding, dilation: int) -> bool:
    before, after = torch_pads(padding, kernel, dilation)
    span = dilation * (kernel - 1) + 1
    return h + before + after >= span and w + before + after >= span


# --------------------------------------------------------------------------- conv2d agreement


@pytest.mark.parametrize("kernel,padding,stride,dilation", GEOMETRIES)
def test_output_and_sizes_match_conv2d(kernel, padding, stride, dilation):
    gen = torch.Generator().manual_seed(_seed(kernel, padding, stride, dilation))
    # Three (d, d') pairs per input size, rotating with the geometry, so that across the
    # parametrization every pair meets every kernel, padding, stride and dilation.
    start = GEOMETRIES.index((kernel, padding, stride, dilation))
    cases = [(size, CHANNEL_PAIRS[(start + 5 * i + j) % len(CHANNEL_PAIRS)])
             for i, size in enumerate(SIZES) for j in range(3)]
    for (h, w), (d, d_out) in cases:
        x = _rand(d, h, w, gen=gen)
        weight = _rand(d_out, d, kernel, kernel, gen=gen)
        bias = _rand(d_out, gen=gen)

        if padding == "same" and stride != 1:
            with pytest.raises((RuntimeError, ValueError)):
                F.conv2d(x[None], weight, bias, stride=stride, padding="same", dilation=dilation)
            with pytest.raises(ConvError, match="stride"):
                Convolution.make(x, weight, bias, padding=padding, stride=stride, dilation=dilation)
            continue

        if not fits(h, w, kernel, padding, dilation):
            with pytest.raises(RuntimeError):
                F.conv2d(x[None], weight, bias, stride=stride, padding=padding, dilation=dilation)
            with pytest.raises(ConvError) as info:
                Convolution.make(x, weight, bias, padding=padding, stride=stride, dilation=dilation)
            message = str(info.value)
            assert "window" in message and "pixels" in message, message
            assert str(dilation * (kernel - 1) + 1) in message  # the span the window needs
            if isinstance(padding, int):
                assert min(output_size(h, kernel, padding, stride, dilation),
                           output_size(w, kernel, padding, stride, dilation)) <= 0
            continue

        expected = F.conv2d(x[None], weight, bias, stride=stride, padding=padding, dilation=dilation)[0]
        conv = Convolution.make(x, weight, bias, padding=padding, stride=stride, dilation=dilation)
        assert conv.output.shape == expected.shape
        torch.testing.assert_close(conv.output, expected)
        assert conv.out_shape == tuple(expected.shape)
        assert conv.n_steps == expected.numel()

        out_h, out_w = expected.shape[1:]
        assert conv.geometry.output_shape(h, w) == (out_h, out_w)
        assert Geometry.make(kernel, padding, stride, dilation).output_shape(h, w) == (out_h, out_w)
        if isinstance(padding, int):
            assert output_size(h, kernel, padding, stride, dilation) == out_h
            assert output_size(w, kernel, padding, stride, dilation) == out_w
        else:
            before, after = torch_pads(padding, kernel, dilation)
            extra = after - before  # 'same' with an even span: one more zero after
            assert output_size(h, kernel, before, stride, dilation, extra_padding=extra) == out_h
            assert output_size(w, kernel, before, stride, dilation, extra_padding=extra) == out_w
            if padding == "same":
                assert (out_h, out_w) == (h, w)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dilation", DILATIONS)
def test_same_padding_sides_match_torch(kernel, dilation):
    before, after = torch_pads("same", kernel, dilation)
    assert Padding.resolve("same", kernel, dilation) == Padding(before, after, before, after)
    # ... and the uneven side really is where torch puts it: compare with conv2d on a ramp.
    x = torch.arange(30, dtype=torch.float64).reshape(1, 5, 6)
    weight = torch.zeros(1, 1, kernel, kernel, dtype=torch.float64)
    weight[0, 0, 0, 0] = 1  # the output then reads the padded input at its top-left tap
    conv = Convolution.make(x, weight, padding="same", dilation=dilation)
    torch.testing.assert_close(conv.output, F.conv2d(x[None], weight, padding="same", dilation=dilation)[0])


def test_padding_resolve_numbers_and_valid():
    assert Padding.resolve(2, 3) == Padding(2, 2, 2, 2)
    assert Padding.resolve("valid", 5) == Padding(0, 0, 0, 0)
    assert Padding.resolve("same", 4) == Padding(1, 2, 1, 2)  # uneven for an even kernel, the extra zero after
    with pytest.raises(ConvError):
        Padding.resolve(-1, 3)
    with pytest.raises(ConvError, match="stride"):
        Padding.resolve("same", 3, stride=2)


def test_output_size_reports_no_fit_as_zero_or_less():
    assert output_size(2, 3) <= 0
    assert output_size(4, 3, dilation=2) <= 0
    assert output_size(4, 3, dilation=2, padding=1) == 2


# --------------------------------------------------------------------------- every step

STEP_CASES = [
    # (d, d', h, w, kernel, padding, stride, dilation)
    (1, 1, 4, 4, 3, 1, 1, 1),
    (1, 2, 5, 7, 3, 0, 1, 1),
    (2, 3, 6, 5, 3, "same", 1, 1),
    (3, 2, 5, 6, 2, "same", 1, 1),
    (2, 2, 6, 6, 4, "same", 1, 1),
    (1, 4, 7, 5, 2, "same", 1, 3),
    (3, 1, 7, 8, 3, "same", 1, 2),
    (2, 2, 7, 7, 5, 2, 2, 1),
    (1, 3, 8, 6, 3, 3, 3, 2),
    (3, 4, 6, 9, 1, 0, 2, 1),
    (2, 1, 5, 5, 2, "valid", 2, 1),
    (1, 2, 9, 5, 3, 1, 2, 3),
    (3, 3, 4, 7, 5, 3, 1, 2),
    (2, 4, 3, 3, 4, 1, 1, 1),
]


@pytest.mark.parametrize("d,d_out,h,w,kernel,padding,stride,dilation", STEP_CASES)
def test_every_step(d, d_out, h, w, kernel, padding, stride, dilation):
    gen = torch.Generator().manual_seed(_seed(d, d_out, h, w, kernel, padding, stride, dilation))
    x = _rand(d, h, w, gen=gen)
    weight = _rand(d_out, d, kernel, kernel, gen=gen)
    bias = _rand(d_out, gen=gen)
    conv = Convolution.make(x, weight, bias, padding=padding, stride=stride, dilation=dilation)
    expected = F.conv2d(x[None], weight, bias, stride=stride, padding=padding, dilation=dilation)[0]

    before, after = torch_pads(padding, kernel, dilation)
    padded = F.pad(x, (before, after, before, after))
    torch.testing.assert_close(conv.padded, padded)

    n_filters, out_h, out_w = expected.shape
    order = list(itertools.product(range(n_filters), range(out_h), range(out_w)))  # filter-major, row-major
    assert conv.n_steps == len(order)
    for i, (f, r, c) in enumerate(order):
        step = conv.step(i)
        assert (step.index, step.filter, step.row, step.col) == (i, f, r, c)
        assert step.rows == tuple(r * stride + a * dilation for a in range(kernel))
        assert step.cols == tuple(c * stride + b * dilation for b in range(kernel))
        window = padded[:, r * stride: r * stride + dilation * (kernel - 1) + 1: dilation,
                        c * stride: c * stride + dilation * (kernel - 1) + 1: dilation]
        assert step.window.shape == (d, kernel, kernel)
        torch.testing.assert_close(step.window, window)
        torch.testing.assert_close(step.weights, weight[f])
        assert step.bias == pytest.approx(float(bias[f]))
        assert step.value == pytest.approx(float(expected[f, r, c]), abs=1e-10)
        assert step.channel_sums.shape == (d,)
        assert float(step.channel_sums.sum()) + step.bias == pytest.approx(step.value, abs=1e-12)
        for ch in range(d):
            assert float(step.channel_sums[ch]) == pytest.approx(float((window[ch] * weight[f, ch]).sum()), abs=1e-12)

        filled = conv.filled(i)
        assert filled.shape == expected.shape
        finite = torch.isfinite(filled)
        assert int(finite.sum()) == i + 1
        flat = filled.flatten()
        assert bool(torch.isfinite(flat[: i + 1]).all()) and not bool(torch.isfinite(flat[i + 1:]).any())
        torch.testing.assert_close(flat[: i + 1], expected.flatten()[: i + 1])

    # Past either end the step is clamped to the first / last output.
    assert conv.step(-5).index == 0
    assert conv.step(conv.n_steps + 3).index == conv.n_steps - 1
    assert int(torch.isfinite(conv.filled(conv.n_steps - 1)).sum()) == conv.n_steps


# --------------------------------------------------------------------------- the lecture's example


def _lecture(padding=1, **kw) -> Convolution:
    return Convolution.make(LECTURE_INPUT, LECTURE_FILTER, torch.tensor([LECTURE_BIAS], dtype=torch.float64),
                            padding=padding, **kw)


def test_lecture_example_first_output_is_two():
    conv = _lecture()
    assert conv.out_shape == (1, 4, 4)  # "4 x 4 x 1 output"
    assert conv.output[0, 0, 0].item() == 2
    # The padded input is the slide's 6x6 grid: zeros around the 4x4 image.
    assert conv.padded.shape == (1, 6, 6)
    assert conv.padded[0, 1:5, 1:5].equal(LECTURE_INPUT)
    assert conv.padded.abs().sum() == LECTURE_INPUT.abs().sum()
    torch.testing.assert_close(
        conv.output, F.conv2d(LECTURE_INPUT[None, None], LECTURE_FILTER[None, None],
                              torch.tensor([LECTURE_BIAS], dtype=torch.float64), padding=1)[0])


def test_lecture_example_arithmetic():
    step = _lecture().step(0)
    assert step.value == 2
    total = step.total_arithmetic()
    assert total.endswith("= 2"), total
    assert "(bias)" in total
    text = step.channel_arithmetic(0)
    products = text.split(" = ")[0].split(" + ")
    assert len(products) == 9
    # Weight times the value under it, row by row, the top row and left column being padding zeros.
    pairs = list(zip(LECTURE_FILTER.flatten().tolist(), step.window[0].flatten().tolist()))
    for product, (wv, xv) in zip(products, pairs):
        wt, xt = product.split("·")
        assert float(wt.strip("()").replace("−", "-")) == wv
        assert float(xt.strip("()").replace("−", "-")) == xv
    assert text.endswith(f"= {int(step.value - LECTURE_BIAS)}")
    assert "(−1)" in text  # negative factors in parentheses, typographic minus


def test_lecture_without_padding_shrinks_by_k_minus_one():
    padded = _lecture(padding=1)
    valid = _lecture(padding=0)
    assert valid.out_shape == (1, 4 - (3 - 1), 4 - (3 - 1)) == (1, 2, 2)
    # The windows that never touch padding are the same ones: the inner 2x2 of the padded output.
    torch.testing.assert_close(valid.output, padded.output[:, 1:3, 1:3])


def test_lecture_examples_reproduce():
    for name, ex in CONV_EXAMPLES.items():
        conv = Convolution.make(ex.x, ex.weight, ex.bias, padding=ex.padding, stride=ex.stride, dilation=ex.dilation)
        expected = F.conv2d(ex.x[None], ex.weight, ex.bias, stride=ex.stride, padding=ex.padding,
                            dilation=ex.dilation)[0]
        torch.testing.assert_close(conv.output, expected, msg=name)
    assert Convolution.make(CONV_EXAMPLES["lecture"].x, CONV_EXAMPLES["lecture"].weight,
                            CONV_EXAMPLES["lecture"].bias, padding=1).output[0, 0, 0] == 2
    strided = CONV_EXAMPLES["strided"]
    conv = Convolution.make(strided.x, strided.weight, strided.bias, padding=strided.padding, stride=strided.stride)
    assert conv.out_shape == (1, 2, 2)  # 2x2 kernel, stride 2 halves the 4x4 input
    assert [conv.step(i).rows for i in range(4)] == [(0, 1), (0, 1), (2, 3), (2, 3)]
    assert [conv.step(i).cols for i in range(4)] == [(0, 1), (2, 3), (0, 1), (2, 3)]
    two_filters = CONV_EXAMPLES["two-filters"]
    assert Convolution.make(two_filters.x, two_filters.weight, two_filters.bias, padding=1).out_shape == (2, 4, 4)


def test_output_size_formula_lecture():
    text = output_size_formula(4, 3, Padding.resolve(1, 3), 1, 1)
    assert text.endswith("= 4"), text
    assert "4 + 2·1" in text and "1·(3 − 1)" in text and "/ 1" in text
    no_pad = output_size_formula(4, 3, Padding.resolve(0, 3), 1, 1)
    assert no_pad.endswith("= 2")
    assert "0 + 1" in output_size_formula(5, 2, Padding.resolve("same", 2), 1, 1)  # uneven 'same'
    assert output_size_formula(2, 3, Padding.resolve(0, 3), 1, 1).endswith("≤ 0")


@pytest.mark.parametrize("kernel,padding,stride,dilation", GEOMETRIES[::7])
def test_output_size_formula_matches_conv2d(kernel, padding, stride, dilation):
    if padding == "same" and stride != 1:
        return
    p = Padding.resolve(padding, kernel, dilation, stride)
    for h, w in SIZES:
        if not fits(h, w, kernel, padding, dilation):
            continue
        out = F.conv2d(torch.zeros(1, 1, h, w), torch.zeros(1, 1, kernel, kernel), stride=stride,
                       padding=padding, dilation=dilation).shape
        for n, axis, size in ((h, "height", out[2]), (w, "width", out[3])):
            text = output_size_formula(n, kernel, p, stride, dilation, axis)
            assert re.search(r"= (\d+)$", text).group(1) == str(size), text
            assert text.startswith(f"⌊({n} + ")
            assert f"/ {stride}⌋" in text and f"{dilation}·({kernel} − 1)" in text


# --------------------------------------------------------------------------- counts

COUNT_CASES = [
    (d, d_out, k, h, w, padding, stride)
    for (d, d_out), k, (h, w), padding, stride in itertools.islice(zip(
        itertools.cycle(CHANNEL_PAIRS), itertools.cycle(KERNELS),
        itertools.cycle(((6, 6), (7, 5), (9, 12), (6, 11))), itertools.cycle((0, 1, 2, "valid")),
        itertools.cycle((1, 2, 3, 1, 2))), 40)
]


@pytest.mark.parametrize("d,d_out,kernel,h,w,padding,stride", COUNT_CASES)
def test_counts_match_torch(d, d_out, kernel, h, w, padding, stride):
    layer = torch.nn.Conv2d(d, d_out, kernel, stride=stride, padding=padding, dtype=torch.float64)
    x = torch.randn(1, d, h, w, dtype=torch.float64)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = layer(x)
    conv = Convolution.make(x[0], layer.weight.detach(), layer.bias.detach(), padding=padding, stride=stride)
    counts = conv.counts
    _, _, m, l = out.shape
    assert (counts.out_height, counts.out_width, counts.out_channels) == (m, l, d_out)
    assert counts.params == sum(p.numel() for p in layer.parameters())
    assert counts.params_per_filter == kernel * kernel * d + 1
    assert counts.params == d_out * (kernel * kernel * d + 1)
    assert counts.outputs == out.numel()
    assert counts.macs_without_bias * 2 == counter.get_total_flops()
    assert counts.macs == m * l * d_out * (kernel * kernel * d + 1)
    assert counts.macs - counts.macs_without_bias == out.numel()  # one add per output for the bias


def test_counts_lecture_image():
    # "32 x 32 x 3 image", "5 x 5 x 3 filter: 75 learnable weights", plus one bias.
    layer = torch.nn.Conv2d(3, 1, 5)
    assert layer.weight.numel() == 75
    one = ConvCounts(kernel=5, in_channels=3, out_channels=1, out_height=32, out_width=32)
    assert one.params_per_filter == 76 == sum(p.numel() for p in layer.parameters())
    for d_out in (1, 6, 64):
        counts = ConvCounts(5, 3, d_out, 32, 32)  # with padding the output keeps 32x32
        assert counts.params == d_out * 76
        assert counts.macs == 32 * 32 * d_out * 76
    x = torch.zeros(3, 32, 32, dtype=torch.float64)
    conv = Convolution.make(x, torch.zeros(6, 3, 5, 5, dtype=torch.float64), padding="same")
    assert conv.counts == ConvCounts(5, 3, 6, 32, 32)
    assert Convolution.make(x, torch.zeros(6, 3, 5, 5, dtype=torch.float64)).counts.out_height == 28


# --------------------------------------------------------------------------- photos


@pytest.mark.parametrize("padding,stride,dilation", [(0, 1, 1), ("same", 1, 1), ("same", 1, 2), (2, 2, 1), (1, 3, 2)])
@pytest.mark.parametrize("kernel", [1, 3, 4])
def test_conv_on_image_matches_conv2d(padding, stride, dilation, kernel):
    gen = torch.Generator().manual_seed(_seed(padding, stride, dilation, kernel))
    image = torch.rand(3, 13, 17, generator=gen)  # float32, as a photo is loaded
    weight = _rand(2, 3, kernel, kernel, gen=gen)
    bias = _rand(2, gen=gen)
    out = conv_on_image(image, weight, bias, padding=padding, stride=stride, dilation=dilation)
    expected = F.conv2d(image.double()[None], weight, bias, stride=stride, padding=padding, dilation=dilation)[0]
    torch.testing.assert_close(out, expected)
    # On a small image it is the same as the step-by-step engine.
    torch.testing.assert_close(out, Convolution.make(image.double(), weight, bias, padding=padding,
                                                     stride=stride, dilation=dilation).output)

    grey_filter = _rand(kernel, kernel, gen=gen)  # one slice: applied to the mean of the colours
    grey = conv_on_image(image, grey_filter, padding=padding, stride=stride, dilation=dilation)
    expected_grey = F.conv2d(image.double().mean(0, keepdim=True)[None], grey_filter[None, None], stride=stride,
                             padding=padding, dilation=dilation)[0]
    assert grey.shape == expected_grey.shape and grey.shape[0] == 1
    # The grey image is averaged in the photo's float32, hence the float32-sized tolerance.
    torch.testing.assert_close(grey, expected_grey, rtol=1e-5, atol=1e-6)


def test_conv_on_image_errors():
    image = torch.rand(3, 8, 8)
    with pytest.raises(ConvError, match="slices"):
        conv_on_image(image, torch.ones(1, 2, 3, 3, dtype=torch.float64))
    with pytest.raises(ConvError, match="window"):
        conv_on_image(image, torch.ones(9, 9, dtype=torch.float64))
    grey = torch.rand(1, 8, 8)
    torch.testing.assert_close(conv_on_image(grey, torch.ones(3, 3, dtype=torch.float64)),
                               F.conv2d(grey.double()[None], torch.ones(1, 1, 3, 3, dtype=torch.float64))[0])


# --------------------------------------------------------------------------- user mistakes


def test_make_rejects_inconsistent_layers():
    x = torch.zeros(2, 5, 5, dtype=torch.float64)
    with pytest.raises(ConvError, match="channel"):
        Convolution.make(x, torch.zeros(1, 3, 3, 3, dtype=torch.float64))
    with pytest.raises(ConvError, match="bias"):
        Convolution.make(x, torch.zeros(2, 2, 3, 3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ConvError, match="square"):
        Convolution.make(x, torch.zeros(1, 2, 3, 2, dtype=torch.float64))
    with pytest.raises(ConvError):
        Geometry.make(0)
    with pytest.raises(ConvError, match="stride"):
        Geometry.make(3, stride=0)
    with pytest.raises(ConvError, match="dilation"):
        Geometry.make(3, dilation=0)
    with pytest.raises(ConvError) as info:
        Convolution.make(torch.zeros(4, 4, dtype=torch.float64), LECTURE_FILTER, dilation=2)
    assert "dilation 2" in str(info.value) and "5 pixels" in str(info.value)
    # A 2-D grid and a single k x k filter are promoted to one channel and one filter.
    conv = Convolution.make(LECTURE_INPUT, LECTURE_FILTER)
    assert conv.x.shape == (1, 4, 4) and conv.weight.shape == (1, 1, 3, 3)
    assert conv.bias.tolist() == [0.0]


# --------------------------------------------------------------------------- filter presets


@pytest.mark.parametrize("kernel", KERNELS)
def test_identity_preset_keeps_the_input(kernel):
    x = torch.randn(1, 6, 7, dtype=torch.float64)
    w = filter_preset("identity", kernel)
    assert w.shape == (kernel, kernel) and w.sum() == 1 and (w != 0).sum() == 1
    torch.testing.assert_close(Convolution.make(x, w, padding="same").output, x)


@pytest.mark.parametrize("kernel", KERNELS)
def test_box_blur_and_random_presets(kernel):
    blur = filter_preset("box blur", kernel)
    assert blur.shape == (kernel, kernel)
    assert float(blur.sum()) == pytest.approx(1.0)
    assert bool((blur == blur[0, 0]).all())
    # Blurring a constant image leaves the inside (away from padding) unchanged.
    flat = torch.full((1, 8, 8), 3.0, dtype=torch.float64)
    torch.testing.assert_close(Convolution.make(flat, blur).output, torch.full_like(
        Convolution.make(flat, blur).output, 3.0))
    rand = filter_preset("random", kernel, seed=4)
    assert rand.shape == (kernel, kernel)
    assert rand.equal(filter_preset("random", kernel, seed=4))
    assert rand.equal(rand.round()) and float(rand.abs().max()) <= 2


def test_sobel_detects_a_vertical_edge():
    x = torch.zeros(1, 8, 8, dtype=torch.float64)
    x[:, :, 4:] = 1.0  # dark left half, bright right half: the edge lies between columns 3 and 4
    out = Convolution.make(x, filter_preset("sobel (vertical edges)", 3)).output[0]  # no padding: no border edges
    # Output column j is centred on input column j + 1.
    responding = sorted({int(c) + 1 for c in torch.nonzero(out)[:, 1]})
    assert responding == [3, 4]
    assert bool((out[:, [2, 3]] != 0).all())
    assert bool((out[:, [0, 1, 4, 5]] == 0).all())
    horizontal = Convolution.make(x, filter_preset("sobel (horizontal edges)", 3)).output
    assert bool((horizontal == 0).all())
    prewitt = Convolution.make(x, filter_preset("prewitt (vertical edges)", 3)).output[0]
    assert sorted({int(c) + 1 for c in torch.nonzero(prewitt)[:, 1]}) == [3, 4]


@pytest.mark.parametrize("name", [n for n in FILTER_PRESETS if n not in ("identity", "box blur", "random")])
def test_fixed_presets_are_three_by_three(name):
    assert filter_preset(name, 3).shape == (3, 3)
    for kernel in (1, 2, 4, 5):
        with pytest.raises(ValueError, match="3×3"):
            filter_preset(name, kernel)


def test_lecture_preset_and_unknown_name():
    assert filter_preset("lecture", 3).equal(LECTURE_FILTER)
    with pytest.raises(KeyError):
        filter_preset("gaussian", 3)
    assert math.isclose(float(filter_preset("sharpen", 3).sum()), 1.0)
