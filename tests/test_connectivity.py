"""Local connectivity and parameter sharing held to torch: which inputs an output unit depends on (a gradient
probe), which weight each connection uses, and the parameter counts of nn.Linear versus nn.Conv2d."""

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnviz.connectivity import (LECTURE_FILTERS, LECTURE_INPUT, LECTURE_KERNEL, LayerComparison, conv_connections,
                                 dense_connections, graph_figure)


def probe(in_shape, kernel, padding, stride, dilation, row, col):
    """The padded input cells output (row, col) of channel 0 depends on, and the weight at each: the gradient
    of that output with respect to the padded input, with weights numbered 1, 2, 3, …"""
    d, m, l = in_shape
    x = torch.zeros(1, d, m + 2 * padding, l + 2 * padding, dtype=torch.float64, requires_grad=True)
    weight = torch.arange(1, d * kernel * kernel + 1, dtype=torch.float64).reshape(1, d, kernel, kernel)
    F.conv2d(x, weight, stride=stride, dilation=dilation)[0, 0, row, col].backward()
    found = {}
    for c, r, q in (x.grad[0] != 0).nonzero().tolist():
        found[(c, r, q)] = int(x.grad[0, c, r, q]) - 1  # the weight's number, 0-based
    return found


@pytest.mark.parametrize("seed", range(40))
def test_a_units_connections_are_the_inputs_its_gradient_reaches(seed):
    rng = random.Random(seed)
    d, k = rng.randint(1, 3), rng.randint(1, 4)
    padding, stride, dilation = rng.randint(0, k - 1), rng.randint(1, 2), rng.randint(1, 2)
    m, l = rng.randint(k * dilation, 9), rng.randint(k * dilation, 9)
    comparison = LayerComparison.make((d, m, l), k, 1, padding, stride, dilation)
    row, col = rng.randrange(comparison.out_shape[1]), rng.randrange(comparison.out_shape[2])
    connections = conv_connections((d, m, l), k, padding, stride, dilation, row, col)
    expected = probe((d, m, l), k, padding, stride, dilation, row, col)
    got = {(c.channel, c.row, c.col): c.weight[0] * k * k + c.weight[1] * k + c.weight[2] for c in connections}
    assert got == expected  # the same cells, each with the same weight as torch uses
    assert len(connections) == comparison.connections_per_unit[1] == k * k * d


def test_every_unit_shares_the_same_weights_and_a_dense_unit_sees_everything():
    units = [conv_connections((2, 6, 6), 3, 1, row=r, col=c) for r in range(6) for c in range(6)]
    assert all(sorted(c.weight for c in u) == sorted(c.weight for c in units[0]) for u in units)
    dense = dense_connections((2, 6, 6), unit=4)
    assert len(dense) == 72 and len({c.weight for c in dense}) == 72  # a weight of its own for every input


@pytest.mark.parametrize("in_shape, kernel, filters, padding", [
    (LECTURE_INPUT, LECTURE_KERNEL, LECTURE_FILTERS, 0), ((1, 4, 4), 3, 1, 1), ((3, 8, 8), 3, 4, 1), ((6, 7, 5), 2, 3, 0),
])
def test_counts_are_torchs(in_shape, kernel, filters, padding):
    c = LayerComparison.make(in_shape, kernel, filters, padding)
    conv = nn.Conv2d(in_shape[0], filters, kernel, padding=padding)
    out = conv(torch.zeros(1, *in_shape))
    assert c.out_shape == tuple(out.shape[1:])
    assert c.conv_params == sum(p.numel() for p in conv.parameters())
    assert c.dense_params == sum(p.numel() for p in nn.Linear(c.inputs, c.outputs).parameters())


def test_the_lectures_numbers():
    c = LayerComparison.make(LECTURE_INPUT, LECTURE_KERNEL, LECTURE_FILTERS)
    assert c.out_shape == (1, 28, 28) and c.conv_params == 76  # 5·5·3 = 75 weights and a bias
    assert c.dense_params == 3072 * 784 + 784 == 2_409_232
    assert c.formulas()[1] == ("Convolution", "d′·(k·k·d + 1) = 1·(5·5·3 + 1)", 76)


def test_the_graph_draws_each_units_edges():
    figure = graph_figure(6, 3, unit=1, padding=0)
    lines = [t for t in figure["data"] if t["mode"] == "lines"]
    assert len(lines) == 6 * 4 + 4 * 3  # fully connected: 6 inputs × 4 outputs; convolution: 3 taps × 4
    bold = [t for t in lines if t["line"]["width"] > 2]
    assert len(bold) == 6 + 3  # unit h2's connections
    conv_colours = [t["line"]["color"] for t in lines[24:]]
    assert conv_colours[:3] == conv_colours[3:6]  # every unit uses the same three weights
    with pytest.raises(ValueError):
        graph_figure(2, 3, 0)
