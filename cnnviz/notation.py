"""How the app writes numbers, shapes and sizes: once, the way the lecture writes them.

Every page and figure formats through these functions, so a shape reads 224×224×3 on
every page (the lecture's m × l × d: height, width, channels), a negative number carries
the typographic minus "−" everywhere it is shown, and a share of 0.03 % is never rounded
to "0.0 %". Text that a student edits or a link carries keeps ASCII ("-1", "4x4"):
`cnnviz.grids` writes and reads that form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MINUS = "−"  # U+2212, as typeset on the slides
TIMES = "×"


def number(value: float, digits: int = 3) -> str:
    """A number for reading: integers without a decimal point, others to `digits` decimals
    (trailing zeros dropped), very large or very small magnitudes in scientific notation,
    and the typographic minus. Never '-0'."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return f"{MINUS}∞" if value < 0 else "∞"
    if value == 0:
        return "0"
    size = abs(value)
    if size >= 1e15 or size < 10 ** -digits / 2:
        text = f"{value:.3e}"  # 1.000e+308: never hundreds of digits
        mantissa, exponent = text.split("e")
        mantissa = mantissa.rstrip("0").rstrip(".")
        text = f"{mantissa}e{int(exponent)}"
    elif value.is_integer():
        text = str(int(value))
    else:
        text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
        if text in ("-0", "0", ""):
            return "0"
    return text.replace("-", MINUS)


def term(value: float, digits: int = 3) -> str:
    """A number as a term of a sum or product: negatives in parentheses, '(−1)'."""
    text = number(value, digits)
    return f"({text})" if text.startswith(MINUS) else text


def count(n: int) -> str:
    """A whole count with thousands separators: 1792 -> '1,792'."""
    return f"{int(n):,}"


def shape(dims: Sequence[int]) -> str:
    """A tensor's shape as the lecture writes it.

    Feature maps are stored channels first, (d, m, l) as torch has them, and written
    m×l×d: (64, 224, 224) -> '224×224×64'. A vector (n,) is its length, '25,088'.
    Two numbers are a grid, rows × columns: (4, 4) -> '4×4'.
    """
    dims = tuple(int(n) for n in dims)
    if len(dims) == 3:
        channels, height, width = dims
        return f"{height}{TIMES}{width}{TIMES}{channels}"
    if len(dims) == 1:
        return count(dims[0])
    return TIMES.join(str(n) for n in dims)


def grid(rows: int, cols: int) -> str:
    """'4×4'."""
    return f"{rows}{TIMES}{cols}"


def kernel(k: int, channels: int | None = None) -> str:
    """A square filter: '3×3', or with its depth '5×5×3'."""
    return f"{k}{TIMES}{k}" + (f"{TIMES}{channels}" if channels is not None else "")


def approx(n: float) -> str:
    """Large counts in words: 138357544 -> '138.4 million', 15483821032 -> '15.48 billion'."""
    for size, word, digits in ((1e9, "billion", 2), (1e6, "million", 1), (1e3, "thousand", 1)):
        if abs(n) >= size:
            return f"{n / size:,.{digits}f} {word}"
    return f"{n:,.0f}"


def megabytes(n_bytes: float) -> str:
    """Bytes in decimal units: '12.8 MB', '1.2 GB', '16.4 kB', '40 B'."""
    if n_bytes >= 1e9:
        return f"{n_bytes / 1e9:,.1f} GB"
    if n_bytes >= 1e5:
        return f"{n_bytes / 1e6:,.1f} MB"
    return f"{n_bytes / 1e3:,.1f} kB" if n_bytes >= 1000 else f"{int(n_bytes)} B"


def percent(fraction: float, digits: int = 1) -> str:
    """A share as a percentage with enough digits to tell it from 0 and from 100:
    0.743 -> '74.3%', 0.0003 -> '0.03%', 0.99997 -> '99.997%', 1 -> '100%'.
    NaN (nothing measured) -> 'n/a'."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        return "n/a"
    value = 100.0 * float(fraction)
    if value in (0.0, 100.0):
        return f"{value:.0f}%"
    places = digits
    while places < 6 and (round(value, places) in (0.0, 100.0)):
        places += 1
    if round(value, places) == 0.0:  # smaller than a millionth of a percent: say how small
        return f"{number(value, 2)}%"
    return f"{value:.{places}f}%"


def seconds(s: float) -> str:
    """A duration for people: '0.2 ms', '177 ms', '1.2 s', '3 min 05 s'."""
    if s < 1e-3:
        return f"{s * 1000:.2f} ms"
    if s < 1:
        return f"{s * 1000:,.1f} ms" if s < 0.1 else f"{s * 1000:,.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    minutes, rest = divmod(round(s), 60)
    return f"{minutes} min {rest:02d} s"
