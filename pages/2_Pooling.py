"""Pooling lab: max and mean pooling window by window, strided convolution, flattening versus GAP."""

import streamlit as st
import torch

from cnnviz import grids, notation
from cnnviz.charts import head_params_figure
from cnnviz.conv import Convolution, ConvError, output_size_formula
from cnnviz.edits import fit_input_channels
from cnnviz.examples import CONV_EXAMPLES, LECTURE_POOLING_INPUT, random_grid
from cnnviz.pooling import HeadCounts, Pooling, gap_formula, pool_output_size_formula, unseen_count
from cnnviz.pooling_figures import flatten_gap_spec, halving_spec
from ui.client_stepper import client_stepper
from ui.exercises import your_turn
from ui.grid_editor import GridEditor, channels_parser, random_size_inputs
from ui.lessons import page_setup
from ui.presenter import controls, presenting, section
from ui.show import chart, charts_in_a_row
from ui.state import Param, UrlState, flag, int_in, one_of, show_flag

MAX_KERNEL, MAX_STRIDE, MAX_CHANNELS = 6, 6, 3
MAX_UNITS = 100_000
VGG_LAST_POOL = (7, 7, 512)  # VGG-16's last pooling layer output, m x l x d
KIND_NAMES = {"max": "Max pooling", "mean": "Mean pooling"}
WEIGHT_PRESETS = {
    "Averaging (all ¼)": [[0.25, 0.25], [0.25, 0.25]],
    "Lecture's (1 0 / 0 1)": [[1.0, 0.0], [0.0, 1.0]],
    "Keep top-left (1 0 / 0 0)": [[1.0, 0.0], [0.0, 0.0]],
}
STRIDED = CONV_EXAMPLES["strided"]
STACKING_PARAMS = ("net", "inp", "rfl", "rfr", "rfc")  # the network builder moved to its own page

page_setup("2_Pooling.py", stepper_sections=("", "strided"))
PRESENTING = presenting()  # the steppers' grids fill the screen
if any(name in st.query_params for name in STACKING_PARAMS):
    # An old link to the builder that used to live here opens the stacking page with its stack.
    st.switch_page("pages/3_Stacking_layers.py",
                   query_params={name: st.query_params[name] for name in STACKING_PARAMS if name in st.query_params})


def parse_weights(text: str) -> str:
    w = grids.parse_grid(text, "strided convolution's weights")
    if tuple(w.shape) != (2, 2):
        raise ValueError("the strided convolution's weights are 2x2")
    return grids.encode_channels(w[None])


state = UrlState("pool", [
    Param("kind", "max", one_of(*KIND_NAMES)),
    Param("k", 2, int_in(1, MAX_KERNEL)),
    Param("s", 2, int_in(1, MAX_STRIDE)),
    Param("x", grids.encode_channels(LECTURE_POOLING_INPUT[None]), channels_parser(MAX_CHANNELS)),
    # The number of channels follows the input unless a link asks for more (or fewer).
    Param("channels", lambda s: len(s["x"].split("|")), int_in(1, MAX_CHANNELS)),
    Param("step", 0, int_in(0, 100_000)),
    Param("sstep", 0, int_in(0, 100_000)),
    Param("predict", False, flag, show_flag),  # both steppers hide each value until the student guessed it
    Param("cw", grids.encode_channels(torch.tensor(WEIGHT_PRESETS["Averaging (all ¼)"])[None]), parse_weights),
    Param("gm", 3, int_in(1, 4)),
    Param("gl", 3, int_in(1, 4)),
    Param("gd", 2, int_in(1, MAX_CHANNELS)),
    Param("gseed", 0, int_in(0, 1_000_000)),
    Param("gc", 1, int_in(1, MAX_CHANNELS)),
    Param("units", 4096, int_in(1, MAX_UNITS)),
])
inputs = GridEditor("pool.x_text", "input", lambda c: f"Input channel {c + 1}", height=160)


# ---- the input tensor and the strided convolution's weights, as the state holds them ----

def current_input() -> torch.Tensor:
    return grids.parse_channels(state["x"])


def store_input(x: torch.Tensor) -> None:
    state["x"], state["channels"], state["step"] = grids.encode_channels(x), x.shape[0], 0
    inputs.fill(x)


def weights() -> torch.Tensor:
    return grids.parse_grid(state["cw"])


def fill_weight_inputs() -> None:
    for (i, j), value in zip([(0, 0), (0, 1), (1, 0), (1, 1)], weights().flatten().tolist()):
        st.session_state[f"pool.cw.{i}.{j}"] = value


# ---- callbacks ----

def go_to(step: int) -> None:
    state["step"] = step


def on_edit() -> None:
    try:
        x = inputs.read((state["channels"], 0, 0))
    except grids.GridError as error:
        inputs.set_error(str(error))  # the typed text stays in its box to be fixed
        return
    state["x"], state["step"] = grids.encode_channels(x), 0
    inputs.set_error(None)


def on_channels() -> None:
    store_input(fit_input_channels(current_input(), state["channels"]))


def on_random_input() -> None:
    st.session_state["pool.seed"] = st.session_state.get("pool.seed", 0) + 1
    shape = (state["channels"], st.session_state["pool.rand_m"], st.session_state["pool.rand_l"])
    store_input(random_grid(*shape, seed=st.session_state["pool.seed"]))


def on_lecture_input() -> None:
    store_input(fit_input_channels(LECTURE_POOLING_INPUT[None], state["channels"]))


def on_weight() -> None:
    w = torch.tensor([[st.session_state[f"pool.cw.{i}.{j}"] for j in range(2)] for i in range(2)],
                     dtype=torch.float64)
    state["cw"] = grids.encode_channels(w[None])


def on_weight_preset(name: str) -> None:
    state["cw"] = grids.encode_channels(torch.tensor(WEIGHT_PRESETS[name], dtype=torch.float64)[None])
    fill_weight_inputs()


def on_new_tensor() -> None:
    state["gseed"] = state["gseed"] + 1


# ---- read the state; a link that disagrees with itself is made consistent, never crashed on ----

state.show_problems()
x = current_input()
if x.shape[0] != state["channels"]:
    x = fit_input_channels(x, state["channels"])
    state["x"] = grids.encode_channels(x)
    inputs.fill(x)
if state.reseeded or not inputs.filled(x.shape):
    inputs.fill(x)
if any(f"pool.cw.{i}.{j}" not in st.session_state for i in range(2) for j in range(2)):
    fill_weight_inputs()

def pooling_lab() -> None:
    """Max and mean pooling, stepped window by window, and the output size."""
    if not PRESENTING:
        st.header("Pooling", divider="gray")
    st.markdown(
        "" if PRESENTING else
        "A **pooling layer** subsamples an activation map: it looks at a k×k crop of **one channel**, "
        "keeps the crop's **max** (or **mean**), and moves the crop by the **stride**. "
        "Every channel is pooled on its own, and there is nothing to learn."
    )

    with controls("The pooling layer"), st.container(border=not PRESENTING):
        top = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
        top[0].radio("Pooling", list(KIND_NAMES), key=state.key("kind"), format_func=KIND_NAMES.get, horizontal=True)
        top[1].number_input("Kernel size k", 1, MAX_KERNEL, key=state.key("k"), on_change=go_to, args=(0,))
        top[2].number_input("Stride s", 1, MAX_STRIDE, key=state.key("s"), on_change=go_to, args=(0,),
                            help="How far the crop moves. k = s = 2 halves the height and width.")
        top[3].number_input("Channels d", 1, MAX_CHANNELS, key=state.key("channels"), on_change=on_channels,
                            help="Extra channels are filled with random small integers.")

    if not PRESENTING:
        with st.expander("Edit the input", icon=":material/edit:"):
            st.caption("One row per line, numbers separated by spaces or commas. Changes apply when you leave the box.")
            with st.container(horizontal=True):
                inputs.draw(x.shape, on_edit)
                with st.container():
                    random_size_inputs("pool", 6, 6, grids.MAX_GRID_SIDE)
                    st.button("Random input", icon=":material/casino:", on_click=on_random_input, width="stretch")
                    st.button("The lecture's 4×4", icon=":material/restart_alt:", on_click=on_lecture_input, width="stretch")
            inputs.show_error()

    kind, k, s = state["kind"], state["k"], state["s"]
    try:
        layer = Pooling.make(x, kind, k, s)
    except ConvError as error:
        layer = None
        st.error(f"**This pooling layer gives no output.** {error}", icon=":material/block:")
    if layer is not None:
        client_stepper(state, "step", layer, key="pool.stepper", present=PRESENTING, predict_param="predict")
        if PRESENTING:
            return

        d, m, l = x.shape
        left, right = st.columns(2)
        with left.container(border=True):
            st.subheader("Output size")
            st.markdown("n′ = ⌊(n − k) / s⌋ + 1: the convolution's formula without padding and dilation.\n\n"
                        f"- height: {pool_output_size_formula(m, k, s)}\n"
                        f"- width: {pool_output_size_formula(l, k, s)}\n\n"
                        f"Input {notation.shape(x.shape)} → output **{notation.shape(layer.out_shape)}**: pooling keeps "
                        "the number of channels.")
        with right.container(border=True):
            st.subheader("What the layer sees")
            unseen = unseen_count(m, l, k, s)
            st.markdown(f"- {layer.n_steps} windows of {notation.kernel(k)} values, one per output value\n"
                        "- parameters to learn: **0**")
            if unseen:
                st.warning(f"{unseen} values of each {notation.grid(m, l)} channel are in no window: with kernel {k} and "
                           f"stride {s} they never reach the output.", icon=":material/visibility_off:")
            else:
                st.caption("Every input value is in at least one window.")


def strided_convolution() -> None:
    """The lecture's 2×2 convolution with stride 2, stepped."""
    if not PRESENTING:
        st.header("Alternative to pooling: strided convolution", divider="gray")
    st.markdown(
        "**Alternative to pooling: strided convolution.** A 2×2 filter moved by 2: half the height and width, "
        "with learned weights." if PRESENTING else
        "Instead of a pooling layer, a **strided convolution** can subsample: it moves its filter by more than "
        f"one pixel. The lecture's example has a 2×2 filter and stride 2. {STRIDED.note} "
        "Unlike pooling, its weights are learned."
    )
    strided = Convolution.make(STRIDED.x, STRIDED.weight, STRIDED.bias, padding=STRIDED.padding, stride=STRIDED.stride)
    client_stepper(state, "sstep", strided, key="pool.strided", present=PRESENTING, predict_param="predict")
    geometry = strided.geometry
    st.caption(f"Output size: {output_size_formula(strided.x.shape[1], geometry.kernel, geometry.padding, geometry.stride, 1)} "
               f"(the convolution formula with p = 0, dilation 1).")


def three_ways_to_halve() -> None:
    """Max pooling, mean pooling and a strided convolution on the same input."""
    st.header("Three ways to halve the resolution", divider="gray")
    st.markdown(
        "The same input (channel 1 of the pooling lab above) through 2×2 max pooling, 2×2 mean pooling and a "
        "2×2 convolution with stride 2: all three turn m×l into about m/2 × l/2. Change the convolution's weights: "
        "they are what the network learns."
    )
    try:
        halving, max_pool, mean_pool, conv = halving_spec(x[0], weights())
    except ConvError as error:
        st.warning(f"The input is too small for a 2×2 window: {error}", icon=":material/block:")
    else:
        controls, figures = st.columns([1.3, 4])
        with controls.container(border=True):
            st.markdown("**Convolution weights** (bias 0)")
            for i in range(2):
                pair = st.columns(2)
                for j in range(2):
                    pair[j].number_input(f"w[{i + 1},{j + 1}]", step=0.25, format="%.2f", key=f"pool.cw.{i}.{j}",
                                         on_change=on_weight)
            for name in WEIGHT_PRESETS:
                st.button(name, key=f"pool.preset.{name}", on_click=on_weight_preset, args=(name,), width="stretch")
        charts_in_a_row(halving, key="pool.fig.halving", where=figures)
        figures.markdown(
            "- **Max** keeps the strongest response in each window: *whether* a feature occurred nearby, not exactly where.\n"
            "- **Mean** keeps each window's average: every input counts, a single strong response is diluted.\n"
            "- **Strided convolution** keeps a weighted sum of each window, with weights the network learns "
            "(pooling has none).")
        if torch.allclose(conv.output[0], mean_pool.output[0]):
            st.success("With these weights the strided convolution *is* mean pooling: a network can learn "
                       "to average.", icon=":material/check_circle:")
        elif torch.allclose(conv.output[0], max_pool.output[0]):
            st.info("On this input the strided convolution happens to match max pooling.", icon=":material/info:")


def flatten_versus_gap() -> None:
    """From a 3-D tensor to a vector: flattening versus global average pooling, and what each costs.
    In the presenter view: the tensor, its two vectors and the cost, side by side."""
    if not PRESENTING:
        st.header("From a 3-D tensor to a vector: flattening versus global average pooling", divider="gray")
        st.markdown(
            "The classifier at the end needs a 1-D vector. **Flattening** lines up all m·l·d numbers of the last "
            "m×l×d tensor; **global average pooling** averages each channel over all positions and keeps d numbers."
        )
    with controls("The tensor"):
        gcontrols = st.columns([2, 2, 2, 3, 3], vertical_alignment="bottom")
        gcontrols[0].number_input("Height m", 1, 4, key=state.key("gm"))
        gcontrols[1].number_input("Width l", 1, 4, key=state.key("gl"))
        gcontrols[2].number_input("Channels d", 1, MAX_CHANNELS, key=state.key("gd"))
        gcontrols[3].button("New random numbers", icon=":material/casino:", on_click=on_new_tensor, width="stretch")
        if state["gc"] > state["gd"]:
            state["gc"] = state["gd"]
        gcontrols[4].radio("Channel for the formula", list(range(1, state["gd"] + 1)), key=state.key("gc"),
                           format_func=lambda c: f"c = {c}", horizontal=True)
        if PRESENTING:
            st.number_input("Units n of the fully connected layer", 1, MAX_UNITS, key=state.key("units"), step=256)
    gm, gl, gd = state["gm"], state["gl"], state["gd"]
    tensor = random_grid(gd, gm, gl, seed=state["gseed"])
    pictures = flatten_gap_spec(tensor, state["gc"] - 1)
    counts = HeadCounts(*VGG_LAST_POOL, state["units"])
    left, right = st.columns([3, 2]) if PRESENTING else (st.container(), st.container())
    with left:
        charts_in_a_row(pictures["channels"], key="pool.fig.tensor")
        chart(pictures["flat"], key="pool.fig.flat")
        if not PRESENTING:
            st.caption(f"In torch's order: channel 1 row by row, then channel 2, … — all {gm * gl * gd} numbers are "
                       "kept.")
        gap_cols = st.columns([1, 3], vertical_alignment="center")
        chart(pictures["gap"], key="pool.fig.gap", where=gap_cols[0])
        with gap_cols[1]:
            st.latex(r"z[c] = \frac{1}{m \cdot l} \sum_{a=1}^{m} \sum_{b=1}^{l} x[a, b, c], \quad 1 \le c \le d")
            st.markdown(f"`{gap_formula(tensor, state['gc'] - 1)}`")
    if PRESENTING:  # the cost of the next fully connected layer, for VGG-16's last 7×7×512 maps
        with right:
            st.markdown(f"**After VGG-16's {notation.shape((VGG_LAST_POOL[2], *VGG_LAST_POOL[:2]))}, a fully "
                        f"connected layer of {notation.count(counts.units)} units has**")
            st.markdown("\n".join(f"- {what}: **{notation.count(value)}**" for what, _, value in counts.formulas()))
            chart(head_params_figure(counts, height_px=300), key="pool.fig.head")
        return

    st.subheader("What it costs: the first fully connected layer")
    st.markdown(
        f"In VGG-16 the last pooling layer outputs {notation.shape((VGG_LAST_POOL[2], *VGG_LAST_POOL[:2]))}. "
        "A fully connected layer with n units has (inputs)·n weights plus n biases: global average pooling "
        "shrinks its inputs from m·l·d to d."
    )
    head_left, head_right = st.columns([2, 3])
    with head_left:
        st.number_input("Units n of the fully connected layer", 1, MAX_UNITS, key=state.key("units"), step=256)
        st.markdown("\n".join(f"- {what}: {formula} = **{notation.count(value)}**"
                              for what, formula, value in counts.formulas()))
        st.markdown(f"Flattening needs **{counts.saving:.0f}×** as many parameters: its input is m·l times longer.")
    chart(head_params_figure(counts), key="pool.fig.head", where=head_right)


if PRESENTING:  # one section fills the screen: the tour's, or the pooling lab
    {"strided": strided_convolution, "flatten": flatten_versus_gap}.get(section("2_Pooling.py"), pooling_lab)()
else:
    pooling_lab()
    strided_convolution()
    three_ways_to_halve()
    flatten_versus_gap()
    your_turn("2_Pooling.py")  # the lesson's questions, their seeds in the link (q=…)
    st.page_link("pages/3_Stacking_layers.py", label="Next: stack these layers into a network", icon=":material/stacks:")
state.sync()
