"""Grids as students type them and as URLs carry them."""

from __future__ import annotations

import pytest
import torch

from cnnviz.examples import LECTURE_FILTER, LECTURE_INPUT
from cnnviz.grids import (
    MAX_GRID_SIDE,
    GridError,
    encode_channels,
    encode_filters,
    format_grid,
    format_number,
    parse_channels,
    parse_filters,
    parse_grid,
    parse_numbers,
)


def _random_grid(gen: torch.Generator, *shape: int) -> torch.Tensor:
    """Numbers with at most three decimals (what format_number writes), signs and zeros included."""
    return torch.randint(-5000, 5001, shape, generator=gen).to(torch.float64) / 1000


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("value,text", [
    (-0.0, "0"), (0.0, "0"), (2.0, "2"), (-3.0, "-3"), (0.333333, "0.333"), (-0.333333, "-0.333"),
    (0.5, "0.5"), (1.25, "1.25"), (-0.0001, "0"), (0.0004, "0"), (10.0001, "10"), (2.9996, "3"),
])
def test_format_number(value, text):
    assert format_number(value) == text


def test_format_number_digits_and_tensors():
    assert format_number(2 / 3, 2) == "0.67"
    assert format_number(torch.tensor(-1.5, dtype=torch.float64)) == "-1.5"
    assert format_number(torch.tensor(-0.0)) == "0"
    assert "e" not in format_number(1e16) and float(format_number(1e16)) == 1e16


# --------------------------------------------------------------------------- one grid


def test_lecture_grid_in_every_notation():
    notations = [
        "1 2 1 1\n2 -1 0 1\n0 2 1 1\n1 0 -2 2",
        "1,2,1,1;2,-1,0,1;0,2,1,1;1,0,-2,2",
        "1, 2, 1, 1; 2, -1, 0, 1; 0, 2, 1, 1; 1, 0, -2, 2",
        "  1\t2 1 1 ;\n\n 2  -1 0 1\r\n0 2 1 1;;\n1 0 −2 2\n\n",  # tabs, CRLF, blank rows, typographic minus
        "1 2 1 1,\n2 -1 0 1,\n0 2 1 1,\n1 0 -2 2,",  # trailing commas
        "1 2 1 1\n,\n2 −1 0 1\n0 2 1 1\n1 0 −2 2",  # a stray line of only a comma is blank
    ]
    for text in notations:
        grid = parse_grid(text)
        assert grid.dtype == torch.float64
        assert grid.equal(LECTURE_INPUT), text


def test_typographic_minus_and_decimals():
    assert parse_grid("−1.5 2e-1; .25 -0").tolist() == [[-1.5, 0.2], [0.25, 0.0]]


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (4, 1), (3, 3), (2, 7), (MAX_GRID_SIDE, MAX_GRID_SIDE)])
def test_parse_grid_round_trips_format_grid(shape):
    gen = torch.Generator().manual_seed(shape[0] * 100 + shape[1])
    grid = _random_grid(gen, *shape)
    for row_sep, entry_sep in (("\n", " "), (";", ","), ("; ", ", "), ("\n", "\t")):
        text = format_grid(grid, row_sep, entry_sep)
        assert text.count(row_sep) == shape[0] - 1
        assert parse_grid(text).equal(grid)
    assert parse_grid(format_grid(LECTURE_FILTER)).equal(LECTURE_FILTER)
    assert format_grid(LECTURE_FILTER) == "1 -1 1\n2 0 -1\n-2 2 1"


def test_ragged_rows_name_the_row():
    with pytest.raises(GridError, match=r"row 3 has 2 entries but row 1 has 3"):
        parse_grid("1 2 3\n4 5 6\n7 8")
    with pytest.raises(GridError, match=r"row 2 has 4 entries"):
        parse_grid("1 2 3; 4 5 6 7", name="filter")
    with pytest.raises(GridError, match="^The filter"):
        parse_grid("1 2 3; 4 5 6 7", name="filter")


@pytest.mark.parametrize("text,bad,row,col", [
    ("1 2 x\n3 4 5", "x", 1, 3),
    ("1 2\n3 two", "two", 2, 2),
    ("1;2;3;4 ;5a", "5a", 5, 1),
    ("1,2;3,1..5", "1..5", 2, 2),
    ("0 0\n0 1/2", "1/2", 2, 2),
])
def test_non_numbers_name_row_column_and_text(text, bad, row, col):
    with pytest.raises(GridError) as info:
        parse_grid(text, name="input")
    message = str(info.value)
    assert f"'{bad}'" in message and f"row {row}, column {col}" in message and "input" in message


@pytest.mark.parametrize("text", ["", "   ", "\n\n", ";;", ",", " , ;, "])
def test_empty_text(text):
    with pytest.raises(GridError, match="empty"):
        parse_grid(text)


@pytest.mark.parametrize("text,bad", [("1 nan", "nan"), ("inf 1", "inf"), ("1 2; 3 -inf", "-inf"),
                                      ("1e999 0", "1e999"), ("NaN", "NaN"), ("1e308 1", "1e308"),
                                      ("0 -2000000", "-2000000")])
def test_non_finite_and_huge_numbers_rejected(text, bad):
    # 1e308 is finite, but its products overflow to inf and it prints as 309 digits
    with pytest.raises(GridError, match="use a number between −1,000,000 and 1,000,000") as info:
        parse_grid(text)
    assert f"'{bad}'" in str(info.value)
    assert parse_grid("1e6 -1e6").tolist() == [[1e6, -1e6]]  # the limits themselves are fine


def test_too_large_rejected():
    side = MAX_GRID_SIDE + 1
    wide = format_grid(torch.zeros(2, side))
    tall = format_grid(torch.zeros(side, 2))
    for text, shape in ((wide, f"2x{side}"), (tall, f"{side}x2")):
        with pytest.raises(GridError, match=f"{shape}; at most {MAX_GRID_SIDE}x{MAX_GRID_SIDE}"):
            parse_grid(text)
    assert parse_grid(format_grid(torch.zeros(3, 5)), max_side=5).shape == (3, 5)
    with pytest.raises(GridError):
        parse_grid(format_grid(torch.zeros(3, 5)), max_side=4)


def test_parse_numbers():
    assert parse_numbers("1, 0, −0.5").tolist() == [1.0, 0.0, -0.5]
    assert parse_numbers("1; 2\n3").tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(GridError, match="bias"):
        parse_numbers("1, a", name="bias")


# --------------------------------------------------------------------------- channels and filters


def test_parse_channels():
    two = parse_channels("1,0;0,1|0,1;1,0")
    assert two.shape == (2, 2, 2)
    assert two[0].equal(torch.eye(2, dtype=torch.float64))
    assert two[1].equal(torch.eye(2, dtype=torch.float64).flip(1))
    assert parse_channels("1 2; 3 4").shape == (1, 2, 2)


def test_parse_channels_mismatched_sizes():
    with pytest.raises(GridError, match=r"Input channel 2 is 2x3 but channel 1 is 2x2"):
        parse_channels("1 2; 3 4 | 1 2 3; 4 5 6")
    with pytest.raises(GridError, match=r"channel 3 is 1x2"):
        parse_channels("1 2; 3 4|5 6; 7 8|9 9")
    # A problem inside one channel names that channel.
    with pytest.raises(GridError, match=r"input channel 2 has 'q' in row 1, column 2"):
        parse_channels("1 2|3 q")
    with pytest.raises(GridError, match=r"channel 2 is empty"):
        parse_channels("1 2|")


@pytest.mark.parametrize("seed", range(8))
def test_encode_parse_channels_round_trip(seed):
    gen = torch.Generator().manual_seed(seed)
    d, m, l = (int(v) for v in torch.randint(1, 6, (3,), generator=gen))
    x = _random_grid(gen, d, m, l)
    text = encode_channels(x)
    assert text.count("|") == d - 1
    assert not any(ch.isspace() for ch in text)  # fits in a query parameter as is
    assert parse_channels(text).equal(x)


@pytest.mark.parametrize("seed", range(8))
def test_encode_parse_filters_round_trip(seed):
    gen = torch.Generator().manual_seed(100 + seed)
    n, d, k = (int(v) for v in torch.randint(1, 5, (3,), generator=gen))
    weight = _random_grid(gen, n, d, k, k)
    text = encode_filters(weight)
    assert text.count("/") == n - 1
    assert parse_filters(text).equal(weight)


def test_parse_filters_mismatch():
    with pytest.raises(GridError, match=r"Filter 2 is 2x3x3 but filter 1 is 1x3x3"):
        parse_filters(encode_filters(torch.zeros(1, 1, 3, 3)) + "/" + encode_channels(torch.zeros(2, 3, 3)))
    with pytest.raises(GridError, match=r"filter 2"):
        parse_filters("1,0;0,1/1,x;0,1")
