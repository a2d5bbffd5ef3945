"""Pooling, flattening and global average pooling against torch's own operators and the lecture."""

import itertools

import pytest
import torch
import torch.nn.functional as F

from cnnviz.conv import ConvError, Convolution
from cnnviz.examples import CONV_EXAMPLES, LECTURE_POOLING_INPUT
from cnnviz.pooling import (HeadCounts, Pooling, coverage, flatten, gap_formula, global_average_pool,
                            pool_output_size, pool_output_size_formula, unseen_count)

SIZES = [(2, 2), (4, 4), (5, 7), (8, 3), (9, 9)]
GEOMETRIES = [(k, s) for k in (1, 2, 3, 4) for s in (1, 2, 3)]


def test_lecture_max_pooling_example():
    pooled = Pooling.make(LECTURE_POOLING_INPUT, "max", 2, 2)
    assert pooled.output.tolist() == [[[2, 1], [3, -1]]]
    # Step by step: the first window holds 1, 2, 2, -1 and its max is 2.
    first = pooled.step(0)
    assert first.window.flatten().tolist() == [1, 2, 2, -1]
    assert first.explanation() == "max(1, 2, 2, −1) = 2"  # the typographic minus, as on every page
    assert first.argmax == (0, 1)
    last = pooled.step(3)
    assert (last.row, last.col, last.value) == (1, 1, -1)
    assert last.argmax == (2, 2)  # -1 twice: the first one wins


def test_lecture_mean_pooling_explains_the_sum_over_the_count():
    pooled = Pooling.make(LECTURE_POOLING_INPUT, "mean", 2, 2)
    expected = F.avg_pool2d(LECTURE_POOLING_INPUT[None, None], 2, 2)[0]
    torch.testing.assert_close(pooled.output, expected)
    assert pooled.step(0).explanation() == "(1 + 2 + 2 + (−1)) / 4 = 4 / 4 = 1"
    assert pooled.step(3).explanation() == "((−1) + (−1) + (−2) + (−5)) / 4 = −9 / 4 = −2.25"


@pytest.mark.parametrize("kernel,stride", GEOMETRIES)
def test_pooling_matches_torch(kernel, stride):
    gen = torch.Generator().manual_seed(kernel * 10 + stride)
    for (h, w), d in itertools.product(SIZES, (1, 3)):
        if h < kernel or w < kernel:
            with pytest.raises(ConvError, match="No output"):
                Pooling.make(torch.zeros(d, h, w), "max", kernel, stride)
            continue
        x = torch.randn(d, h, w, generator=gen, dtype=torch.float64)
        for kind, op in (("max", F.max_pool2d), ("mean", F.avg_pool2d)):
            pooled = Pooling.make(x, kind, kernel, stride)
            expected = op(x[None], kernel, stride)[0]
            assert pooled.out_shape == tuple(expected.shape)
            torch.testing.assert_close(pooled.output, expected)
            # Every step's value is the output cell it fills, in channel-major, row-major order.
            for index in range(pooled.n_steps):
                step = pooled.step(index)
                assert step.value == pytest.approx(float(expected[step.channel, step.row, step.col]))
            filled = pooled.filled(pooled.n_steps // 2)
            assert int((~filled.isnan()).sum()) == pooled.n_steps // 2 + 1


def test_channels_are_pooled_independently():
    x = torch.randn(3, 6, 6, dtype=torch.float64)
    together = Pooling.make(x, "max", 2, 2).output
    for c in range(3):
        alone = Pooling.make(x[c:c + 1], "max", 2, 2).output
        torch.testing.assert_close(together[c:c + 1], alone)
    # Changing channel 0 leaves the other channels' results alone.
    y = x.clone()
    y[0] += 100
    changed = Pooling.make(y, "max", 2, 2).output
    torch.testing.assert_close(changed[1:], together[1:])
    assert not torch.allclose(changed[0], together[0])
    # Steps walk channel 0 first, then channel 1.
    pooled = Pooling.make(x, "max", 2, 2)
    assert [pooled.step(i).channel for i in (0, 8, 9, 18, 26)] == [0, 0, 1, 2, 2]


@pytest.mark.parametrize("n,kernel,stride", [(4, 2, 2), (5, 2, 2), (7, 3, 2), (9, 3, 3), (6, 4, 1), (3, 3, 5)])
def test_output_size_formula(n, kernel, stride):
    expected = F.max_pool2d(torch.zeros(1, 1, n, n), kernel, stride).shape[-1]
    assert pool_output_size(n, kernel, stride) == expected
    assert pool_output_size_formula(n, kernel, stride).endswith(f"= {expected}")
    assert pool_output_size(kernel - 1, kernel, stride) == 0


@pytest.mark.parametrize("h,w,kernel,stride", [(4, 4, 2, 2), (5, 5, 2, 2), (7, 6, 3, 2), (6, 6, 1, 3), (8, 5, 2, 4)])
def test_coverage_matches_which_inputs_reach_the_output(h, w, kernel, stride):
    # An input cell is covered exactly when the pooled output depends on it (gradient probe).
    x = torch.randn(1, 1, h, w, dtype=torch.float64, requires_grad=True)
    F.avg_pool2d(x, kernel, stride).sum().backward()
    reached = x.grad[0, 0] != 0
    assert torch.equal(coverage(h, w, kernel, stride), reached)
    assert unseen_count(h, w, kernel, stride) == int((~reached).sum())


def test_strided_convolution_halves_like_pooling():
    example = CONV_EXAMPLES["strided"]
    conv = Convolution.make(example.x, example.weight, example.bias, example.padding, example.stride)
    expected = F.conv2d(example.x[None], example.weight, example.bias, stride=2)[0]
    torch.testing.assert_close(conv.output, expected)
    assert conv.output.shape == Pooling.make(example.x, "max", 2, 2).output.shape == (1, 2, 2)


def test_flatten_matches_torch_order():
    x = torch.randn(3, 4, 5)
    assert torch.equal(flatten(x), torch.flatten(x[None], 1)[0])
    assert flatten(x).shape == (60,)
    # Channel 1's rows come first: element (c, a, b) lands at c*m*l + a*l + b.
    assert flatten(x)[1 * 20 + 2 * 5 + 3] == x[1, 2, 3]


def test_global_average_pool_matches_adaptive_avg_pool():
    for shape in [(1, 2, 2), (3, 4, 5), (512, 7, 7)]:
        x = torch.randn(*shape, dtype=torch.float64)
        expected = F.adaptive_avg_pool2d(x[None], 1).flatten()
        torch.testing.assert_close(global_average_pool(x), expected)


def test_gap_formula_writes_the_numbers():
    x = LECTURE_POOLING_INPUT[None]
    # 1+2+1+1 + 2-1+0+1 + 0+3-1-1 + 1+0-2-5 = 2
    assert gap_formula(x, 0).endswith("= 2 / 16 = 0.125")
    assert gap_formula(x, 0).startswith("z[1] = 1/(4·4) · (1 + 2 + 1 + 1 + 2 + (−1)")
    big = torch.ones(2, 7, 7)
    assert "(43 more)" in gap_formula(big, 1) and gap_formula(big, 1).endswith("= 49 / 49 = 1")


def test_head_counts_for_vgg_like_features():
    counts = HeadCounts(7, 7, 512, 4096)
    assert counts.flat_features == 25088
    assert counts.flatten_params == 25088 * 4096 + 4096 == 102_764_544
    assert counts.gap_params == 512 * 4096 + 4096 == 2_101_248
    # Same numbers as torch's layers.
    assert counts.flatten_params == sum(p.numel() for p in torch.nn.Linear(25088, 4096, device="meta").parameters())
    assert counts.gap_params == sum(p.numel() for p in torch.nn.Linear(512, 4096, device="meta").parameters())
    assert counts.saving == pytest.approx(48.9, abs=0.05)
    rows = counts.formulas()
    assert [r[2] for r in rows] == [102_764_544, 2_101_248]
    assert "(7·7·512)·4096 + 4096" in rows[0][1]
