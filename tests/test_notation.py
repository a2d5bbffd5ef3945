"""How every page writes numbers, shapes and shares (cnnviz.notation), as the lecture writes them."""

import math

import pytest
import torch

from cnnviz.notation import MINUS, approx, count, grid, kernel, megabytes, number, percent, seconds, shape, term


@pytest.mark.parametrize("value, text", [
    (2, "2"), (-1, "−1"), (0.0, "0"), (-0.0, "0"), (-1e-12, "−1e−12"), (0.125, "0.125"), (-2.25, "−2.25"),
    (1 / 3, "0.333"), (1e308, "1e308"), (-3.5e20, "−3.5e20"), (float("nan"), "NaN"), (float("inf"), "∞"),
])
def test_numbers_read_as_on_a_slide(value, text):
    assert number(value) == text


def test_numbers_from_tensors_and_the_typographic_minus():
    assert number(torch.tensor(-4.0)) == "−4" and MINUS == "\u2212"
    assert "-" not in "".join(number(v) for v in torch.randn(200, dtype=torch.float64).tolist())
    assert term(-1) == "(−1)" and term(3) == "3"


def test_shapes_are_the_lectures_m_by_l_by_d():
    assert shape((3, 224, 224)) == "224×224×3"  # torch keeps channels first; the lecture writes them last
    assert shape(torch.Size([512, 7, 7])) == "7×7×512"
    assert shape((25088,)) == "25,088"
    assert shape((4, 4)) == grid(4, 4) == "4×4"
    assert kernel(3) == "3×3" and kernel(5, 3) == "5×5×3"


@pytest.mark.parametrize("fraction, text", [
    (0.743, "74.3%"), (1.0, "100%"), (0.0, "0%"), (0.0003, "0.03%"), (0.99997, "99.997%"),
    (0.044, "4.4%"), (3.6e-11, "3.6e−9%"), (float("nan"), "n/a"),
])
def test_shares_never_round_to_nothing_or_everything(fraction, text):
    assert percent(fraction) == text
    if 0 < fraction < 1:
        assert percent(fraction) not in ("0.0%", "100.0%", "0%", "100%")


def test_counts_sizes_and_times():
    assert count(138357544) == "138,357,544"
    assert approx(138_357_544) == "138.4 million" and approx(15_483_821_032) == "15.48 billion"
    assert megabytes(553_430_176) == "553.4 MB" and megabytes(1_234) == "1.2 kB" and megabytes(40) == "40 B"
    assert megabytes(5.7e9) == "5.7 GB"
    assert seconds(0.0002) == "0.20 ms" and seconds(0.177) == "177 ms" and seconds(1.24) == "1.2 s"
    assert seconds(185) == "3 min 05 s"
    assert not math.isnan(float(number(1.5)))
