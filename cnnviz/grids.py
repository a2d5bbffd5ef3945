"""Small numeric grids as students type them, and as URLs carry them.

A grid is written row by row: entries separated by spaces or commas, rows by new
lines or semicolons. Several channels are separated by '|'. The same text works
in a text box and in a query parameter, so a lecturer's link and a student's
edit are one format:

    "1 2 1 1; 2 -1 0 1"      -> a 2x4 grid
    "1,0;0,1|0,1;1,0"        -> two 2x2 channels
"""

from __future__ import annotations

import math
import re

import torch

# Big enough for any grid a person reads cell by cell; larger inputs belong to images.
MAX_GRID_SIDE = 16
# Large enough for any worked example, small enough that every sum of products stays exact to
# the digits shown (and finite: 1e308 · 2 would be inf).
MAX_MAGNITUDE = 1e6

_ROW_SPLIT = re.compile(r"[;\n]+")
_ENTRY_SPLIT = re.compile(r"[,\s]+")


class GridError(ValueError):
    """A grid the user typed cannot be read; the message says where and why."""


def parse_grid(text: str, name: str = "grid", max_side: int = MAX_GRID_SIDE) -> torch.Tensor:
    """Read one 2-D grid; raise GridError naming the row and column of any problem."""
    # A row of nothing but separators (a stray "," line) is blank, like an empty line.
    rows = [row.strip() for row in _ROW_SPLIT.split(text.strip()) if _ENTRY_SPLIT.sub("", row)]
    if not rows:
        raise GridError(f"The {name} is empty: type numbers, one row per line.")
    values: list[list[float]] = []
    for r, row in enumerate(rows, start=1):
        entries = [e for e in _ENTRY_SPLIT.split(row.strip(" ,")) if e]
        parsed = []
        for c, entry in enumerate(entries, start=1):
            try:
                value = float(entry.replace("−", "-"))  # accept the typographic minus
            except ValueError:
                raise GridError(
                    f"The {name} has '{entry}' in row {r}, column {c}: that is not a number."
                ) from None
            if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
                raise GridError(f"The {name} has '{entry}' in row {r}, column {c}: use a number between "
                                f"−{MAX_MAGNITUDE:,.0f} and {MAX_MAGNITUDE:,.0f}.")
            parsed.append(value)
        if values and len(parsed) != len(values[0]):
            raise GridError(
                f"The {name} is ragged: row {r} has {len(parsed)} entries but row 1 has "
                f"{len(values[0])}. Every row needs the same number of entries."
            )
        values.append(parsed)
    if len(values) > max_side or len(values[0]) > max_side:
        raise GridError(
            f"The {name} is {len(values)}x{len(values[0])}; at most {max_side}x{max_side} "
            "fits on screen cell by cell."
        )
    return torch.tensor(values, dtype=torch.float64)


def parse_channels(text: str, name: str = "input", max_side: int = MAX_GRID_SIDE) -> torch.Tensor:
    """Read '|'-separated channels into a (channels, rows, cols) tensor of equal-sized grids."""
    parts = text.split("|")
    grids = [
        parse_grid(part, f"{name} channel {i + 1}" if len(parts) > 1 else name, max_side)
        for i, part in enumerate(parts)
    ]
    for i, grid in enumerate(grids[1:], start=2):
        if grid.shape != grids[0].shape:
            raise GridError(
                f"{name.capitalize()} channel {i} is {shape_text(grid)} but channel 1 is "
                f"{shape_text(grids[0])}: all channels need the same size."
            )
    return torch.stack(grids)


def shape_text(grid: torch.Tensor) -> str:
    return "x".join(str(s) for s in grid.shape)


def format_number(value: float, digits: int = 3) -> str:
    """Integers without a decimal point, other numbers rounded; minus signs kept ASCII."""
    value = float(value)
    if value == 0:
        return "0"  # never '-0'
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_grid(grid: torch.Tensor, row_sep: str = "\n", entry_sep: str = " ") -> str:
    """The inverse of parse_grid for a 2-D tensor."""
    return row_sep.join(entry_sep.join(format_number(v) for v in row) for row in grid.tolist())


def encode_channels(tensor: torch.Tensor) -> str:
    """Compact URL form of a (channels, rows, cols) tensor: '1,2;3,4|5,6;7,8'."""
    return "|".join(format_grid(channel, ";", ",") for channel in tensor)


def encode_filters(weight: torch.Tensor) -> str:
    """URL form of a (filters, channels, k, k) bank: filters separated by '/'."""
    return "/".join(encode_channels(f) for f in weight)


def parse_filters(text: str, max_side: int = MAX_GRID_SIDE) -> torch.Tensor:
    """Inverse of encode_filters; every filter must have the same shape."""
    banks = [parse_channels(part, f"filter {i + 1}", max_side) for i, part in enumerate(text.split("/"))]
    for i, bank in enumerate(banks[1:], start=2):
        if bank.shape != banks[0].shape:
            raise GridError(
                f"Filter {i} is {shape_text(bank)} but filter 1 is {shape_text(banks[0])}: "
                "all filters of a layer share one shape."
            )
    return torch.stack(banks)


def parse_numbers(text: str, name: str = "numbers") -> torch.Tensor:
    """A flat list such as biases: '1, 0, -0.5'."""
    return parse_grid(text.replace(";", " ").replace("\n", " "), name).flatten()
