"""Stacking layers: build a network as the lecture does and watch shapes shrink, channels grow and
each unit see a larger part of the image."""

import streamlit as st

from cnnviz import notation
from cnnviz.network import INPUT_CHOICES, LECTURE_STACK, unit_receptive_field
from cnnviz.network_figures import receptive_field_figure, spatial_layers
from ui.exercises import your_turn
from ui.lessons import page_setup
from ui.presenter import controls, presenting
from ui.show import chart, gallery
from ui.stack import StackBuilder, growth, network_picture, unit_centre, unit_defaults
from ui.state import Param, UrlState, int_in, one_of

page_setup("3_Stacking_layers.py")
PRESENTING = presenting()  # the presenter view: the shapes chart and what the units see


state = UrlState("stack", [
    Param("net", LECTURE_STACK, lambda text: text[:500]),  # checked below, so a bad stack is explained
    Param("inp", "28", one_of(*INPUT_CHOICES)),
    Param("rfl", lambda s: unit_defaults(s["net"], s["inp"])[0], int_in(0, 100)),  # layer number of the unit shown
    # the unit's row and column, counted from 1 like the labs; by default the layer's centre unit
    Param("rfr", lambda s: unit_centre(s["net"], s["inp"], s["rfl"])[0], int_in(0, 1000)),
    Param("rfc", lambda s: unit_centre(s["net"], s["inp"], s["rfl"])[1], int_in(0, 1000)),
])


def on_stack_change() -> None:
    state.reset("rfl", "rfr", "rfc")


def on_layer_change() -> None:
    state.reset("rfr", "rfc")


def on_preset(preset) -> None:
    state["inp"] = next(key for key, (shape, _) in INPUT_CHOICES.items() if shape == preset.in_shape)


state.show_problems()
st.markdown("" if PRESENTING else

    "The lecture's recipe for a whole network: **convolution layers** learn low-level features on the "
    "input; then, again and again, **pooling** (or a strided convolution) shrinks the maps and **more "
    "convolutions** learn more abstract features from them; at the end, **flattening** or **global average "
    "pooling** hands a vector to **fully connected layers** that classify. Most of the network extracts "
    "ever more complex features (*representation learning*), and all of it is trained together, directly "
    "from labelled images (*end-to-end training*). Build a stack and watch the **shapes shrink**, the "
    "**channels grow**, and each unit **see a larger part of the image**.")

builder = StackBuilder(state, "stack", on_change=on_stack_change, on_preset=on_preset)
with controls("The stack"), st.container(border=not PRESENTING):
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    builder.draw_controls(where=left)
    right.selectbox("Input", list(INPUT_CHOICES), key=state.key("inp"), on_change=on_stack_change,
                    format_func=lambda key: f"{notation.shape(INPUT_CHOICES[key][0])} ({INPUT_CHOICES[key][1]})")

in_shape = INPUT_CHOICES[state["inp"]][0]
infos, problem = builder.analyse(in_shape)
if PRESENTING and infos is not None:
    left, right = st.columns([2, 3])
    builder.draw_shapes(infos, where=left, height_px=420)
    with right:
        st.markdown(f"**`{state['net']}`** on {notation.shape(in_shape)}: what the centre unit of each layer sees")
        gallery(growth(state["net"], in_shape), width_px=150)
    state.sync()
    st.stop()
builder.draw_analysis(infos, problem, receptive_field=True)

if infos is not None:
    st.subheader("What one unit sees")
    maps = [info for info in spatial_layers(infos) if info.spec.layer_kind.window]
    if not maps:
        st.info("Add a convolution or pooling layer to see receptive fields.", icon=":material/info:")
    else:
        st.caption("The centre unit of every conv and pooling layer, and the input pixels it depends on "
                   "(orange box): higher layers see larger parts of the image.")
        gallery(growth(state["net"], in_shape))
        numbers = [info.number for info in maps]
        if state["rfl"] not in numbers:
            st.warning(f"Layer {state['rfl']} of this stack has no feature map; showing layer {numbers[-1]}, "
                       "the last one.", icon="🔗")
            state.reset("rfl", "rfr", "rfc")
        chosen = infos[state["rfl"] - 1]
        _, out_h, out_w = chosen.out_shape
        for param, limit in (("rfr", out_h), ("rfc", out_w)):
            if not 1 <= state[param] <= limit:
                state.reset(param)
        choose, show = st.columns([2, 3])
        with choose:
            st.selectbox("Layer", numbers, key=state.key("rfl"), on_change=on_layer_change,
                         format_func=lambda n: f"{n}. {infos[n - 1].name} → {notation.shape(infos[n - 1].out_shape)}")
            pick = st.columns(2)
            pick[0].number_input(f"Unit row (1–{out_h})", 1, out_h, key=state.key("rfr"))
            pick[1].number_input(f"Unit column (1–{out_w})", 1, out_w, key=state.key("rfc"))
            top, left, bottom, right = unit_receptive_field(infos, None, chosen.index, state["rfr"] - 1,
                                                            state["rfc"] - 1)
            st.markdown(f"Unit (row {state['rfr']}, column {state['rfc']}) of layer {chosen.number} depends on "
                        f"input rows **{top + 1}–{bottom + 1}** and columns **{left + 1}–{right + 1}**: a "
                        f"**{notation.grid(bottom - top + 1, right - left + 1)}** patch of the "
                        f"{notation.grid(*in_shape[1:])} input.")
            if (bottom - top + 1, right - left + 1) != (chosen.rf_size, chosen.rf_size):
                st.caption(f"The full field is {notation.grid(chosen.rf_size, chosen.rf_size)}; at the border part "
                           "of it lies in the padding, or the stride skips it.")
        chart(receptive_field_figure(network_picture(in_shape), (top, left, bottom, right),
                                     f"Layer {chosen.number}, unit (row {state['rfr']}, column {state['rfc']})",
                                     width_px=380), key="stack.fig.rf", where=show)

your_turn("3_Stacking_layers.py")  # the lesson's questions, their seeds in the link (q=…)
state.sync()
