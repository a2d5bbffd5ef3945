"""The network builder shared by the stacking-layers page and the training page.

A stack lives as text in the page's URL state (param "net"); the builder draws the text box,
one row of buttons that edit the stack (cnnviz.network's edits), the presets, the per-layer
table and the "space shrinks, channels grow" chart, and returns the analysed layers, or None
when the stack cannot work (the reason is on the page and the student's text stays in its box).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import streamlit as st

from cnnviz import notation
from cnnviz.network import (STACK_PRESETS, TOKEN_HELP, LayerInfo, Preset, StackError, add_batchnorm, add_conv_block,
                            add_pooling, analyse, format_stack, head_problem, parse_stack, remove_last_block, totals,
                            with_head)
from cnnviz.images import sample_image
from cnnviz.network import INPUT_CHOICES, spatial_window_layers
from cnnviz.network_figures import centre_unit, fit_picture, growth_pictures, layer_rows, shapes_figure

from .show import chart
from .state import UrlState

PICK_PRESET = "Presets…"
MAX_FILTERS = 256  # the largest conv a "Conv block" click adds


def edit_stack(state: UrlState, edit: Callable, *args, param: str = "net") -> bool:
    """Apply one of cnnviz.network's edits (add_conv_block, with_head, ...) to the stack text in
    state[param]; False, and nothing changed, when the text does not parse: the error is on the
    page already and the text stays in its box for the student to fix."""
    try:
        specs = parse_stack(state[param])
    except StackError:
        return False
    state[param] = format_stack(edit(specs, *args))
    return True


class StackBuilder:
    """The builder's widgets for one page. `on_change` runs after every edit (e.g. to reset a
    chosen unit); `on_preset` gets the chosen Preset after its stack is in place (e.g. to choose
    its input shape)."""

    def __init__(self, state: UrlState, key: str, *, classes: int = 10, param: str = "net",
                 on_change: Callable[[], None] | None = None, on_preset: Callable[[Preset], None] | None = None):
        self.state, self.key, self.classes, self.param = state, key, classes, param
        self.on_change, self.on_preset_picked = on_change, on_preset

    def _edit(self, edit: Callable, *args) -> None:
        if edit_stack(self.state, edit, *args, param=self.param) and self.on_change:
            self.on_change()

    def _preset(self) -> None:
        name = st.session_state[f"{self.key}.preset"]
        st.session_state[f"{self.key}.preset"] = PICK_PRESET
        if name in STACK_PRESETS:
            self.state[self.param] = STACK_PRESETS[name].stack
            if self.on_preset_picked:
                self.on_preset_picked(STACK_PRESETS[name])
            if self.on_change:
                self.on_change()

    def draw_controls(self, where=st) -> None:
        """The text box and one wrapping row of buttons (labels never cut, at any width)."""
        where.text_input("Layers, separated by commas", key=self.state.key(self.param), on_change=self.on_change,
                         help=f"Write {TOKEN_HELP}. Options: conv3x16/s2 (stride 2), conv5x8/p0 (padding 0), "
                              f"maxpool3/s2. End with fc{self.classes} (or conv1x{self.classes} then gap): one "
                              "score per class.")
        buttons = [
            ("Conv block", ":material/add:", (add_conv_block, MAX_FILTERS),
             "Adds conv 3×3 with twice the channels, then ReLU, before the head."),
            ("Batch norm", ":material/add:", (add_batchnorm,), "Adds batch normalization after the last convolution."),
            ("Max pool", ":material/add:", (add_pooling, "maxpool"), "Adds 2×2 max pooling with stride 2 before the head."),
            ("Mean pool", ":material/add:", (add_pooling, "meanpool"),
             "Adds 2×2 mean pooling with stride 2 before the head."),
            ("Remove last", ":material/remove:", (remove_last_block,),
             "Removes the last conv or pooling layer (and its ReLU and batch norm) before the head."),
            ("Flatten head", ":material/view_week:", (with_head, "flatten", self.classes),
             "Flatten the last feature maps into one long vector before the fully connected layers."),
            ("GAP head", ":material/blur_on:", (with_head, "gap", self.classes),
             "Global average pooling: one number per channel before the fully connected layers."),
        ]
        with where.container(horizontal=True, vertical_alignment="bottom"):
            for label, icon, edit, tip in buttons:
                st.button(label, icon=icon, on_click=self._edit, args=edit, help=tip, key=f"{self.key}.{label}")
            st.selectbox("Preset", [PICK_PRESET, *STACK_PRESETS], key=f"{self.key}.preset", on_change=self._preset,
                         label_visibility="collapsed", width=260)

    def analyse(self, in_shape, data_name: str | None = None) -> tuple[list[LayerInfo] | None, str | None]:
        """(layers, None), or (None, why not) when the stack cannot work; with `data_name` the head is
        checked against the number of classes too ((layers, why it cannot be trained))."""
        try:
            infos = analyse(parse_stack(self.state[self.param]), in_shape)
        except StackError as error:
            return None, str(error)
        return infos, head_problem(infos, self.classes, data_name) if data_name else None

    def draw_shapes(self, infos: list[LayerInfo], where=st, height_px: int = 400) -> None:
        """The 'space shrinks, channels grow' chart, when the stack has feature maps."""
        if len(infos[0].in_shape) == 3 and any(i.spec.layer_kind.window for i in infos):
            chart(shapes_figure(infos, height_px=height_px), key=f"{self.key}.fig.shapes", where=where)

    def draw_analysis(self, infos: list[LayerInfo] | None, problem: str | None, *, receptive_field: bool = False,
                      chart_height: int = 400, table_height: int = 520) -> None:
        """The per-layer table with totals and the shapes chart; or why the stack cannot work."""
        if infos is None:
            st.error(f"**This stack cannot work.** {problem}", icon=":material/block:")
            st.caption("Your text is kept in the box above; fix it there, or pick a preset.")
            return
        net_totals = totals(infos)
        table_col, chart_col = st.columns([3, 2])
        rows = layer_rows(infos, receptive_field=receptive_field)
        table_col.dataframe(rows, hide_index=True, width="stretch", height=min(35 * (len(rows) + 1) + 3, table_height),
                            column_config={"#": st.column_config.NumberColumn(width=30),
                                           "parameters": st.column_config.NumberColumn(format="localized"),
                                           "multiply-adds": st.column_config.NumberColumn(format="localized")})
        table_col.markdown(
            f"**{notation.count(net_totals.params)} parameters** and **{notation.count(net_totals.multiply_adds)} "
            f"multiply-adds** per image, {notation.shape(infos[0].in_shape)} in, "
            f"{notation.shape(infos[-1].out_shape)} out."
            + (" Receptive field: the side of the input square one unit of the layer depends on (padding "
               "included in the count)." if receptive_field else ""))
        self.draw_shapes(infos, where=chart_col, height_px=chart_height)
        if problem:
            st.error(f"**This stack cannot be trained here.** {problem}", icon=":material/block:")


# ---- what the stacking page draws for a stack: made once per stack and input, for every visitor

@lru_cache(maxsize=64)
def unit_defaults(net: str, inp: str) -> tuple[int, tuple[int, int]]:
    """The layer whose unit the stacking page shows by default (the last feature map) and its centre
    unit (1-based row and column); (0, (0, 0)) when the stack has no map or does not work."""
    try:
        maps = spatial_window_layers(analyse(parse_stack(net), INPUT_CHOICES[inp][0]))
    except StackError:
        return 0, (0, 0)
    if not maps:
        return 0, (0, 0)
    row, col = centre_unit(maps[-1])
    return maps[-1].number, (row + 1, col + 1)


@lru_cache(maxsize=256)
def unit_centre(net: str, inp: str, layer: int) -> tuple[int, int]:
    """The centre unit (1-based row and column) of layer number `layer`'s map; (0, 0) when there is none."""
    try:
        infos = analyse(parse_stack(net), INPUT_CHOICES[inp][0])
    except StackError:
        return 0, 0
    if not 1 <= layer <= len(infos) or not infos[layer - 1].spatial:
        return 0, 0
    row, col = centre_unit(infos[layer - 1])
    return row + 1, col + 1


@lru_cache(maxsize=8)
def network_picture(in_shape: tuple[int, int, int]):
    """The sample photo as the network's input (grey for one channel); made once per input shape."""
    return fit_picture(sample_image("Cat").image, in_shape)


@lru_cache(maxsize=32)
def growth(net: str, in_shape: tuple[int, int, int]) -> list[tuple[str, bytes]]:
    """The receptive-field pictures of a stack: drawn once per stack and input."""
    return growth_pictures(analyse(parse_stack(net), in_shape), network_picture(in_shape))
