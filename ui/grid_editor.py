"""Text boxes for the labs' small grids, shared by the convolution and pooling pages.

A tensor (…, m, l) is edited as one text box per m×l grid (one per input channel, or one per
filter slice), typed as rows of numbers. The tensor itself lives in the page's URL state as
text; the boxes hold what the student types. A box that does not parse keeps its text and
the last good tensor stays in use, with the reason shown under the boxes: nothing the
student typed is lost.

    editor = GridEditor("conv.x", "input", label=lambda c: f"Input channel {c + 1}")
    editor.fill(x)              # after the tensor changed by other means (example, random input)
    editor.draw(x.shape, on_change=on_edit)
    x = editor.read(x.shape)    # inside on_edit; raises GridError with row and column
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st
import torch

from cnnviz import grids


def channels_parser(max_channels: int) -> Callable[[str], str]:
    """A URL parameter's parser for a (channels, m, l) input: GridError (a ValueError) on a typo,
    ValueError beyond the lab's number of channels; the canonical text otherwise."""
    def parse(text: str) -> str:
        x = grids.parse_channels(text)
        if x.shape[0] > max_channels:
            raise ValueError(f"the lab takes at most {max_channels} input channels, not {x.shape[0]}")
        return grids.encode_channels(x)
    return parse


@dataclass(frozen=True)
class GridEditor:
    key: str  # prefix of the boxes' session keys
    name: str  # what the grids are, in messages: "input", "filter"
    label: Callable[..., str]  # a box's label from its index, e.g. lambda c: f"Input channel {c + 1}"
    height: int = 140

    def box_key(self, index: tuple[int, ...]) -> str:
        return ".".join([self.key, *map(str, index)])

    @property
    def error_key(self) -> str:
        return f"{self.key}.error"

    @staticmethod
    def indices(shape) -> list[tuple[int, ...]]:
        """Every grid of a tensor of `shape` (…, m, l), in order."""
        return list(itertools.product(*(range(n) for n in shape[:-2])))

    def fill(self, tensor: torch.Tensor) -> None:
        """Write the tensor into the boxes (the student's half-typed text is replaced)."""
        for index in self.indices(tensor.shape):
            st.session_state[self.box_key(index)] = grids.format_grid(tensor[index])
        st.session_state.pop(self.error_key, None)

    def filled(self, shape) -> bool:
        return all(self.box_key(index) in st.session_state for index in self.indices(shape))

    def read(self, shape) -> torch.Tensor:
        """The boxes as one tensor with the leading dimensions of `shape`; GridError names the box,
        row and column of the first problem. Every grid must have the size of the first."""
        pieces = []
        for index in self.indices(shape):
            where = self.label(*index).lower()
            grid = grids.parse_grid(st.session_state[self.box_key(index)].replace("\n", ";"), where)
            if pieces and grid.shape != pieces[0].shape:
                raise grids.GridError(f"The {where} is {grids.shape_text(grid)} but the {self.label(*self.indices(shape)[0]).lower()} "
                                      f"is {grids.shape_text(pieces[0])}: all {self.name} grids need the same size.")
            pieces.append(grid)
        return torch.stack(pieces).reshape(*shape[:-2], *pieces[0].shape)

    def draw(self, shape, on_change: Callable[[], None], where=st, per_row: int | None = None) -> None:
        """The boxes, side by side in rows (one horizontal container per row: one layout block each)."""
        indices = self.indices(shape)
        per_row = per_row or len(indices)
        for start in range(0, len(indices), per_row):
            with where.container(horizontal=True):
                for index in indices[start:start + per_row]:
                    st.text_area(self.label(*index), key=self.box_key(index), on_change=on_change,
                                 height=self.height)

    def set_error(self, message: str | None) -> None:
        if message:
            st.session_state[self.error_key] = message
        else:
            st.session_state.pop(self.error_key, None)

    def show_error(self, where=st) -> None:
        message = st.session_state.get(self.error_key)
        if message:
            where.error(f"{message} The last good {self.name} is still in use; fix the box to apply it.",
                        icon=":material/edit:")


def random_size_inputs(key: str, rows: int = 4, cols: int = 4, largest: int = 10) -> tuple[int, int]:
    """Two number boxes for the size of a random grid; returns (rows, columns)."""
    with st.container(horizontal=True):
        m = st.number_input("rows", 2, largest, value=rows, key=f"{key}.rand_m")
        l = st.number_input("columns", 2, largest, value=cols, key=f"{key}.rand_l")
    return int(m), int(l)
