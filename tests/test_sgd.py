"""One step of gradient descent on a convolution layer (cnnviz.sgd) held to torch's autograd: the loss, the
output's gradient, every weight's and bias's gradient, the updated filters (torch.optim.SGD's step) and the
new loss, on random layers of every setting the lab has and on the lecture's example."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from cnnviz.conv import Convolution, ConvError
from cnnviz.examples import CONV_EXAMPLES
from cnnviz.sgd import LEARNING_RATES, TARGET_HIGH, TARGET_LOW, GradientStep, SgdError, seeded_target

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")


def autograd_step(layer: Convolution, target: torch.Tensor, learning_rate: float) -> dict:
    """What torch says: L = ½ Σ (y − T)² through F.conv2d, backward(), then one torch.optim.SGD step."""
    weight = layer.weight.clone().requires_grad_(True)
    bias = layer.bias.clone().requires_grad_(True)
    p = layer.geometry.padding
    x = F.pad(layer.x, (p.left, p.right, p.top, p.bottom))[None]
    y = F.conv2d(x, weight, bias, stride=layer.geometry.stride, dilation=layer.geometry.dilation)[0]
    y.retain_grad()
    loss = 0.5 * ((y - target) ** 2).sum()
    loss.backward()
    found = {"loss": loss.item(), "output_grad": y.grad.clone(), "weight_grad": weight.grad.clone(),
             "bias_grad": bias.grad.clone()}
    torch.optim.SGD([weight, bias], lr=learning_rate).step()
    with torch.no_grad():
        y_new = F.conv2d(x, weight, bias, stride=layer.geometry.stride, dilation=layer.geometry.dilation)[0]
        found.update(new_weight=weight.detach().clone(), new_bias=bias.detach().clone(),
                     new_loss=float(0.5 * ((y_new - target) ** 2).sum()))
    return found


def random_layer(rng: random.Random, generator: torch.Generator) -> Convolution:
    """A random layer within the lab's limits (up to 6 channels, 4 filters, 7×7 kernels, stride 4, dilation 3)."""
    while True:
        d, filters, k = rng.randint(1, 6), rng.randint(1, 4), rng.randint(1, 5)
        stride, dilation = rng.randint(1, 3), rng.randint(1, 2)
        padding = rng.choice([0, 1, 2, "same"]) if stride == 1 else rng.randint(0, 2)
        m, l = rng.randint(3, 9), rng.randint(3, 9)
        x = torch.randn(d, m, l, generator=generator, dtype=torch.float64)
        w = torch.randn(filters, d, k, k, generator=generator, dtype=torch.float64)
        b = torch.randn(filters, generator=generator, dtype=torch.float64)
        try:
            return Convolution.make(x, w, b, padding=padding, stride=stride, dilation=dilation)
        except ConvError:
            continue  # the kernel does not fit: draw again


def assert_matches_autograd(step: GradientStep) -> None:
    torch_says = autograd_step(step.layer, step.target, step.learning_rate)
    assert step.loss == pytest.approx(torch_says["loss"], rel=1e-12, abs=1e-12)
    torch.testing.assert_close(step.output_grad, torch_says["output_grad"])
    torch.testing.assert_close(step.weight_grad, torch_says["weight_grad"])
    torch.testing.assert_close(step.bias_grad, torch_says["bias_grad"])
    torch.testing.assert_close(step.new_weight, torch_says["new_weight"])
    torch.testing.assert_close(step.new_bias, torch_says["new_bias"])
    assert step.new_loss == pytest.approx(torch_says["new_loss"], rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("seed", range(60))
def test_a_random_layers_step_matches_autograd(seed):
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    layer = random_layer(rng, generator)
    target = torch.randn(layer.out_shape, generator=generator, dtype=torch.float64)
    assert_matches_autograd(GradientStep.make(layer, target, rng.choice(LEARNING_RATES)))


@pytest.mark.parametrize("seed", range(10))
def test_a_weights_gradient_is_the_input_correlated_with_the_outputs_gradient(seed):
    """∂L/∂w[f, c] is channel c of the padded input correlated with ∂L/∂y[f] as the filter: its taps s (the
    stride) apart, moved r (the dilation) at a time; and each weight's own sum runs over the cells it touched."""
    rng = random.Random(100 + seed)
    generator = torch.Generator().manual_seed(100 + seed)
    layer = random_layer(rng, generator)
    step = GradientStep.make(layer, seeded_target(layer.out_shape, seed), 0.01)
    filters, d, k, _ = layer.weight.shape
    geometry = layer.geometry
    for f in range(filters):
        for c in range(d):
            correlation = F.conv2d(layer.padded[c][None, None], step.output_grad[f][None, None],
                                   stride=geometry.dilation, dilation=geometry.stride)[0, 0, :k, :k]
            torch.testing.assert_close(step.weight_grad[f, c], correlation)
            for i in range(k):
                for j in range(k):
                    by_hand = (step.output_grad[f] * step.touched_values(c, i, j)).sum()
                    torch.testing.assert_close(step.weight_grad[f, c, i, j], by_hand)


def test_the_lecture_example():
    e = CONV_EXAMPLES["lecture"]
    layer = Convolution.make(e.x, e.weight, e.bias, padding=e.padding)
    target = seeded_target(layer.out_shape, 0)
    step = GradientStep.make(layer, target, 0.01)
    assert_matches_autograd(step)
    # The slide's output starts 2, −4, 7, 5; the target's first row is 1, 0, −3, −1 (seed 0).
    assert layer.output[0, 0].tolist() == [2, -4, 7, 5] and target[0, 0].tolist() == [1, 0, -3, -1]
    assert step.output_grad[0, 0].tolist() == (layer.output[0, 0] - target[0, 0]).tolist()
    assert step.loss == 0.5 * float(((layer.output - target) ** 2).sum())
    # The top-left weight met the padding's zeros in the first row and column: at position (p, q) it saw
    # the padded input's cell (p, q), so 7 of its 16 products are with padding.
    assert step.touched(0, 0) == ((0, 1, 2, 3), (0, 1, 2, 3))
    assert step.touched_values(0, 0, 0)[1:, 1:].tolist() == e.x[0, :3, :3].tolist()
    assert step.touched_values(0, 0, 0)[0].abs().sum() == step.touched_values(0, 0, 0)[:, 0].abs().sum() == 0
    # The centre weight saw the whole unpadded input: its gradient is Σ ∂L/∂y · x.
    assert float(step.weight_grad[0, 0, 1, 1]) == float((step.output_grad[0] * e.x[0]).sum())
    assert float(step.bias_grad[0]) == float(step.output_grad.sum())
    assert step.new_loss < step.loss  # η = 0.01 goes downhill here ...
    assert GradientStep.make(layer, target, 0.1).new_loss > step.loss  # ... η = 0.1 overshoots
    assert step.n_steps == 10 and step.parameter(0) == (0, 0, 0, 0) and step.parameter(9) == (0, None, None, None)


def test_strided_and_dilated_weights_touch_cells_stride_apart():
    e = CONV_EXAMPLES["strided"]  # the lecture's 2×2 kernel with stride 2 on a 4×4 input: a 2×2 output
    layer = Convolution.make(e.x, e.weight, e.bias, padding=0, stride=2)
    step = GradientStep.make(layer, seeded_target(layer.out_shape, 3), 0.01)
    assert step.touched(0, 1) == ((0, 2), (1, 3))
    dilated = Convolution.make(torch.ones(1, 7, 7, dtype=torch.float64), torch.ones(1, 1, 3, 3, dtype=torch.float64),
                               padding=0, stride=2, dilation=2)
    assert GradientStep.make(dilated, torch.zeros(dilated.out_shape, dtype=torch.float64), 0.1).touched(1, 2) == (
        (2, 4), (4, 6))
    assert_matches_autograd(step)


def test_several_filters_and_channels_step_in_filter_order():
    e = CONV_EXAMPLES["two-channels"]
    weight = torch.cat([e.weight, -e.weight])  # two filters of two slices
    layer = Convolution.make(e.x, weight, torch.tensor([1.0, -1.0], dtype=torch.float64), padding=1)
    step = GradientStep.make(layer, seeded_target(layer.out_shape, 5), 0.003)
    assert_matches_autograd(step)
    assert step.n_steps == 2 * (2 * 9 + 1)
    assert [step.parameter(i) for i in (0, 9, 18, 19, 37)] == [
        (0, 0, 0, 0), (0, 1, 0, 0), (0, None, None, None), (1, 0, 0, 0), (1, None, None, None)]


def test_seeded_targets_are_small_integers_of_the_outputs_shape():
    target = seeded_target((2, 3, 4), 7)
    assert target.shape == (2, 3, 4) and target.dtype == torch.float64
    assert bool(((target >= TARGET_LOW) & (target <= TARGET_HIGH) & (target == target.round())).all())
    assert torch.equal(target, seeded_target((2, 3, 4), 7)) and not torch.equal(target, seeded_target((2, 3, 4), 8))


def test_a_target_of_another_shape_or_a_learning_rate_of_zero_is_refused():
    e = CONV_EXAMPLES["lecture"]
    layer = Convolution.make(e.x, e.weight, e.bias, padding=1)
    with pytest.raises(SgdError, match="output's shape"):
        GradientStep.make(layer, torch.zeros(1, 2, 2), 0.01)
    with pytest.raises(SgdError, match="more than 0"):
        GradientStep.make(layer, torch.zeros(layer.out_shape), 0)
