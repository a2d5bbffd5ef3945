"""Pooling lab: max and mean pooling window by window, strided convolution, flattening versus GAP."""

from functools import lru_cache

import streamlit as st
import torch

from cnnviz import grids
from cnnviz.charts import head_params_figure
from cnnviz.conv import Convolution, ConvError, output_size_formula
from cnnviz.examples import CONV_EXAMPLES, LECTURE_POOLING_INPUT, random_grid
from cnnviz.figures import grid_spec
from cnnviz.images import sample_image
from cnnviz.network import (STACK_PRESETS, TOKEN_HELP, StackError, add_conv_block, add_pooling, analyse,
                            parse_stack, remove_last_block, totals, unit_receptive_field, with_head)
from cnnviz.network_figures import (centre_unit, fit_picture, growth_figures, layer_rows, lecture_shape,
                                    receptive_field_figure, shapes_figure, spatial_layers)
from cnnviz.pooling import (
    HeadCounts,
    Pooling,
    flatten,
    gap_formula,
    global_average_pool,
    pool_output_size_formula,
    unseen_count,
)
from ui.lessons import page_setup
from ui.show import PlainFigure, arithmetic
from ui.stack import edit_stack
from ui.state import Param, UrlState, int_in, one_of
from ui.stepper import play_interval, play_toggle, step_controls

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
CHART = {"displayModeBar": False}
INPUT_SHAPES = {  # URL value -> (channels, height, width), label
    "28": ((1, 28, 28), "28×28×1 (Fashion-MNIST)"),
    "32": ((3, 32, 32), "32×32×3 (CIFAR-10, the lecture's data)"),
    "64": ((3, 64, 64), "64×64×3"),
    "128": ((3, 128, 128), "128×128×3"),
}
DEFAULT_STACK = STACK_PRESETS["Lecture-style: conv, pool, repeat"].stack
GROWTH_PX, GROWTH_PER_ROW = 170, 6

page_setup("2_Pooling.py")


def grid_figure(*args, **kwargs) -> PlainFigure:
    """cnnviz.figures.grid_figure's chart as a plain dict: no plotly validation on every rerun."""
    return PlainFigure(grid_spec(*args, **kwargs))


def parse_input(text: str) -> str:
    x = grids.parse_channels(text)
    if x.shape[0] > MAX_CHANNELS:
        raise ValueError(f"at most {MAX_CHANNELS} channels")
    return grids.encode_channels(x)


def parse_weights(text: str) -> str:
    w = grids.parse_grid(text, "strided convolution's weights")
    if tuple(w.shape) != (2, 2):
        raise ValueError("the strided convolution's weights are 2x2")
    return grids.encode_channels(w[None])


state = UrlState("pool", [
    Param("kind", "max", one_of(*KIND_NAMES)),
    Param("k", 2, int_in(1, MAX_KERNEL)),
    Param("s", 2, int_in(1, MAX_STRIDE)),
    Param("x", grids.encode_channels(LECTURE_POOLING_INPUT[None]), parse_input),
    # The number of channels follows the input unless a link asks for more (or fewer).
    Param("channels", lambda s: len(s["x"].split("|")), int_in(1, MAX_CHANNELS)),
    Param("step", 0, int_in(0, 100_000)),
    Param("sstep", 0, int_in(0, 100_000)),
    Param("cw", grids.encode_channels(torch.tensor(WEIGHT_PRESETS["Averaging (all ¼)"])[None]), parse_weights),
    Param("gm", 3, int_in(1, 4)),
    Param("gl", 3, int_in(1, 4)),
    Param("gd", 2, int_in(1, MAX_CHANNELS)),
    Param("gseed", 0, int_in(0, 1_000_000)),
    Param("gc", 1, int_in(1, MAX_CHANNELS)),
    Param("units", 4096, int_in(1, MAX_UNITS)),
    Param("net", DEFAULT_STACK, lambda text: text[:500]),  # checked on the page, so a bad stack is explained
    Param("inp", "28", one_of(*INPUT_SHAPES)),
    Param("rfl", 0, int_in(0, 100)),  # layer number whose unit is shown; 0 = the last map
    Param("rfr", 0, int_in(0, 1000)),  # unit row and column, counted from 1 like the lab; 0 = the centre
    Param("rfc", 0, int_in(0, 1000)),
])


# ---- the input tensor: its channels, its editors ----

def fit_channels(x: torch.Tensor, d: int) -> torch.Tensor:
    """Drop channels, or add seeded random ones (small integers), so that x has d channels."""
    if d <= x.shape[0]:
        return x[:d]
    extra = [random_grid(1, x.shape[1], x.shape[2], seed=7 + c) for c in range(x.shape[0], d)]
    return torch.cat([x, *extra])


def current_input() -> torch.Tensor:
    return grids.parse_channels(state["x"])


def store_input(x: torch.Tensor) -> None:
    state["x"], state["channels"], state["step"] = grids.encode_channels(x), x.shape[0], 0
    fill_editors()


def fill_editors() -> None:
    for c, channel in enumerate(current_input()):
        st.session_state[f"pool.x_text.{c}"] = grids.format_grid(channel)
    st.session_state["pool.edit_error"] = None


def weights() -> torch.Tensor:
    return grids.parse_grid(state["cw"])


def fill_weight_inputs() -> None:
    for (i, j), value in zip([(0, 0), (0, 1), (1, 0), (1, 1)], weights().flatten().tolist()):
        st.session_state[f"pool.cw.{i}.{j}"] = value


# ---- callbacks ----

def go_to(step: int, param: str = "step") -> None:
    state[param] = step


def on_edit() -> None:
    try:
        x = grids.parse_channels("|".join(st.session_state[f"pool.x_text.{c}"].replace("\n", ";")
                                          for c in range(state["channels"])), "input")
    except grids.GridError as error:
        st.session_state["pool.edit_error"] = str(error)  # the typed text stays in its box to be fixed
        return
    state["x"], state["step"] = grids.encode_channels(x), 0
    st.session_state["pool.edit_error"] = None


def on_channels() -> None:
    store_input(fit_channels(current_input(), state["channels"]))


def on_random_input() -> None:
    st.session_state["pool.seed"] = st.session_state.get("pool.seed", 0) + 1
    shape = (state["channels"], st.session_state["pool.rand_m"], st.session_state["pool.rand_l"])
    store_input(random_grid(*shape, seed=st.session_state["pool.seed"]))


def on_lecture_input() -> None:
    store_input(fit_channels(LECTURE_POOLING_INPUT[None], state["channels"]))


def on_weight() -> None:
    w = torch.tensor([[st.session_state[f"pool.cw.{i}.{j}"] for j in range(2)] for i in range(2)],
                     dtype=torch.float64)
    state["cw"] = grids.encode_channels(w[None])


def on_weight_preset(name: str) -> None:
    state["cw"] = grids.encode_channels(torch.tensor(WEIGHT_PRESETS[name], dtype=torch.float64)[None])
    fill_weight_inputs()


def on_new_tensor() -> None:
    state["gseed"] = state["gseed"] + 1


def _edit_stack(edit, *args) -> None:
    if edit_stack(state, edit, *args):
        on_stack_edit()


def on_stack_edit() -> None:
    state["rfl"], state["rfr"], state["rfc"] = 0, 0, 0


def on_preset() -> None:
    name = st.session_state["pool.preset"]
    if name in STACK_PRESETS:
        state["net"] = STACK_PRESETS[name].stack
        state["rfl"], state["rfr"], state["rfc"] = 0, 0, 0
        state["inp"] = str(STACK_PRESETS[name].in_shape[1])
    st.session_state["pool.preset"] = "Presets…"


@lru_cache(maxsize=8)
def network_picture(in_shape: tuple[int, int, int]):
    """The sample photo as the network's input (grey for one channel); made once per input shape."""
    return fit_picture(sample_image("Cat").image, in_shape)


@lru_cache(maxsize=32)
def growth_strip(net: str, in_shape: tuple[int, int, int]) -> list[PlainFigure]:
    """The receptive-field pictures of a stack, as plain chart dicts: built once per stack and input."""
    infos = analyse(parse_stack(net), in_shape)
    return [PlainFigure(figure.to_plotly_json())
            for figure in growth_figures(infos, network_picture(in_shape), width_px=GROWTH_PX)]


# ---- read the state; a link that disagrees with itself is made consistent, never crashed on ----

state.show_problems()
x = current_input()
if x.shape[0] != state["channels"]:
    x = fit_channels(x, state["channels"])
    state["x"] = grids.encode_channels(x)
    fill_editors()
if any(f"pool.x_text.{c}" not in st.session_state for c in range(x.shape[0])):
    fill_editors()
if any(f"pool.cw.{i}.{j}" not in st.session_state for i in range(2) for j in range(2)):
    fill_weight_inputs()
st.session_state.setdefault("pool.edit_error", None)


def cell_px(rows: int, cols: int) -> int:
    return max(26, min(46, 300 // max(rows, cols)))


def symmetric(t: torch.Tensor) -> tuple[float, float]:
    bound = float(t.abs().max()) or 1.0
    return -bound, bound


# =====================================================================================
st.header("Pooling", divider="gray")
st.markdown(
    "A **pooling layer** subsamples an activation map: it looks at a k×k crop of **one channel**, "
    "keeps the crop's **max** (or **mean**), and moves the crop by the **stride**. "
    "Every channel is pooled on its own, and there is nothing to learn."
)

with st.container(border=True):
    top = st.columns([3, 2, 2, 2], vertical_alignment="bottom")
    top[0].radio("Pooling", list(KIND_NAMES), key=state.key("kind"), format_func=KIND_NAMES.get, horizontal=True)
    top[1].number_input("Kernel size k", 1, MAX_KERNEL, key=state.key("k"), on_change=go_to, args=(0,))
    top[2].number_input("Stride s", 1, MAX_STRIDE, key=state.key("s"), on_change=go_to, args=(0,),
                        help="How far the crop moves. k = s = 2 halves the height and width.")
    top[3].number_input("Channels d", 1, MAX_CHANNELS, key=state.key("channels"), on_change=on_channels,
                        help="Extra channels are filled with random small integers.")

with st.expander("Edit the input", icon=":material/edit:"):
    st.caption("One row per line, numbers separated by spaces or commas. Changes apply when you leave the box.")
    cols = st.columns([*[3] * x.shape[0], 2])
    for c in range(x.shape[0]):
        cols[c].text_area(f"Input channel {c + 1}", key=f"pool.x_text.{c}", on_change=on_edit, height=160)
    with cols[-1]:
        size = st.columns(2)
        size[0].number_input("rows", 2, grids.MAX_GRID_SIDE, value=6, key="pool.rand_m")
        size[1].number_input("columns", 2, grids.MAX_GRID_SIDE, value=6, key="pool.rand_l")
        st.button("Random input", icon=":material/casino:", on_click=on_random_input, width="stretch")
        st.button("The lecture's 4×4", icon=":material/restart_alt:", on_click=on_lecture_input, width="stretch")
    if st.session_state["pool.edit_error"]:
        st.error(st.session_state["pool.edit_error"] + " The last good input is still in use.",
                 icon=":material/edit:")

kind, k, s = state["kind"], state["k"], state["s"]
try:
    layer = Pooling.make(x, kind, k, s)
except ConvError as error:
    layer = None
    st.error(f"**This pooling layer gives no output.** {error}", icon=":material/block:")


@st.fragment(run_every=play_interval("pool"))
def pool_stepper(layer: Pooling) -> None:
    step = layer.step(step_controls(state, "pool", layer.n_steps))
    d, m, l = layer.x.shape
    _, out_m, out_l = layer.out_shape
    px = cell_px(m, l)
    in_range = symmetric(layer.x)
    filled = layer.filled(step.index)
    in_w, out_w = l * px + 12, out_l * px + 12
    for c in range(d):
            # Column weights in pixels of a ~1100 px wide page, so each grid gets the room it needs.
        widths = [in_w + 20, 130, max(out_w, 220)]
        row = st.columns([*widths, max(10, 1100 - sum(widths))], vertical_alignment="top")
        current = c == step.channel
        row[0].markdown(f"**Input channel {c + 1}**")
        row[2].markdown(f"**Output channel {c + 1}**")
        row[0].plotly_chart(
            grid_figure(layer.x[c], value_range=in_range, cell_px=px,
                        highlight=(step.rows, step.cols) if current else None,
                        marked=step.argmax if current and kind == "max" else None),
            key=f"pool.fig.in.{c}", config=CHART)
        row[1].markdown(f"<div style='text-align:center;margin-top:{max(40, m * px // 2 - 10)}px'>{kind} {k}×{k}<br>stride {s}<br>"
                        f"<span style='font-size:1.6rem'>→</span></div>", unsafe_allow_html=True)
        row[2].plotly_chart(
            grid_figure(filled[c], value_range=in_range, cell_px=px,
                        marked=(step.row, step.col) if current else None),
            key=f"pool.fig.out.{c}", config=CHART)

    rows = f"{step.rows[0] + 1}–{step.rows[-1] + 1}" if k > 1 else f"{step.rows[0] + 1}"
    cols = f"{step.cols[0] + 1}–{step.cols[-1] + 1}" if k > 1 else f"{step.cols[0] + 1}"
    st.markdown(f"**Computing output channel {step.channel + 1}, row {step.row + 1}, column {step.col + 1}** "
                f"from the {k}×{k} crop of input channel {step.channel + 1} (rows {rows}, columns {cols}):")
    arithmetic([("max" if kind == "max" else "mean", step.explanation())])
    if kind == "max":
        winner_row, winner_col = step.argmax
        st.caption(f"The winner is input row {winner_row + 1}, column {winner_col + 1} "
                   "(outlined inside the window). Mean pooling would use every value in the window.")
    state.sync()


if layer is not None:
    play_toggle("pool")
    pool_stepper(layer)

    d, m, l = x.shape
    out_d, out_m, out_l = layer.out_shape
    left, right = st.columns(2)
    with left.container(border=True):
        st.subheader("Output size")
        st.markdown("n′ = ⌊(n − k) / s⌋ + 1: the convolution's formula without padding and dilation.")
        st.markdown(f"- height: {pool_output_size_formula(m, k, s)}\n"
                    f"- width: {pool_output_size_formula(l, k, s)}")
        st.markdown(f"Input {m}×{l}×{d} → output **{out_m}×{out_l}×{out_d}**: pooling keeps the number of channels.")
    with right.container(border=True):
        st.subheader("What the layer sees")
        unseen = unseen_count(m, l, k, s)
        st.markdown(f"- {layer.n_steps} windows of {k}×{k} values, one per output value\n"
                    "- parameters to learn: **0**")
        if unseen:
            st.warning(f"{unseen} values of each {m}×{l} channel are in no window: with kernel {k} and "
                       f"stride {s} they never reach the output.", icon=":material/visibility_off:")
        else:
            st.caption("Every input value is in at least one window.")

# =====================================================================================
st.header("Alternative to pooling: strided convolution", divider="gray")
st.markdown(
    "Instead of a pooling layer, a **strided convolution** can subsample: it moves its filter by more than "
    f"one pixel. The lecture's example has a 2×2 filter and stride 2. {STRIDED.note} "
    "Unlike pooling, its weights are learned."
)
strided = Convolution.make(STRIDED.x, STRIDED.weight, STRIDED.bias, padding=STRIDED.padding, stride=STRIDED.stride)


@st.fragment(run_every=play_interval("strided"))
def strided_stepper(layer: Convolution) -> None:
    step = layer.step(step_controls(state, "strided", layer.n_steps, param="sstep"))
    _, m, l = layer.x.shape
    _, out_m, out_l = layer.out_shape
    kernel = layer.geometry.kernel
    grid_in, grid_w, grid_out, _ = st.columns([l * 46 + 12, kernel * 46 + 60, out_l * 46 + 60, 400])
    grid_in.markdown("**Input**")
    grid_w.markdown("**Filter**")
    grid_out.markdown("**Output**")
    grid_in.plotly_chart(grid_figure(layer.x[0], highlight=(step.rows, step.cols)),
                         key="pool.fig.sin", config=CHART)
    grid_w.plotly_chart(grid_figure(layer.weight[0, 0]), key="pool.fig.sw", config=CHART)
    grid_w.markdown(f"bias b = **{grids.format_number(step.bias)}**")
    grid_out.plotly_chart(grid_figure(layer.filled(step.index)[0], value_range=symmetric(layer.output),
                                      marked=(step.row, step.col)), key="pool.fig.sout", config=CHART)
    st.markdown(f"**Computing row {step.row + 1}, column {step.col + 1}:** weights times the input values "
                "under them, plus the bias.")
    arithmetic([("products", step.channel_arithmetic(0)), ("total", step.total_arithmetic())])
    geometry = layer.geometry
    st.caption(f"Output size: {output_size_formula(m, kernel, geometry.padding, geometry.stride, 1)} "
               f"(the convolution formula with p = 0, dilation 1).")
    state.sync()


play_toggle("strided")
strided_stepper(strided)

# =====================================================================================
st.header("Three ways to halve the resolution", divider="gray")
st.markdown(
    "The same input (channel 1 of the pooling lab above) through 2×2 max pooling, 2×2 mean pooling and a "
    "2×2 convolution with stride 2: all three turn m×l into about m/2 × l/2. Change the convolution's weights: "
    "they are what the network learns."
)
channel = x[0]
try:
    max_pool = Pooling.make(channel, "max", 2, 2)
    mean_pool = Pooling.make(channel, "mean", 2, 2)
    conv = Convolution.make(channel, weights(), padding=0, stride=2)
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
    outputs = [max_pool.output[0], mean_pool.output[0], conv.output[0]]
    shared = symmetric(torch.cat([channel.flatten(), *(o.flatten() for o in outputs)]))
    m, l = channel.shape
    px = cell_px(m, l)
    with figures:
        cols = st.columns([l * px + 12, *[max(150, max(1, l // 2) * px + 12)] * 3], gap="medium")
        cols[0].markdown(f"**Input** {m}×{l}")
        cols[0].plotly_chart(grid_figure(channel, value_range=shared, cell_px=px),
                             key="pool.fig.cmp.in", config=CHART)
        captions = [
            "**Max** keeps the strongest response in each window: *whether* a feature occurred nearby, "
            "not exactly where.",
            "**Mean** keeps each window's average: every input counts, a single strong response is diluted.",
            "**Strided convolution** keeps a weighted sum of each window, with weights the network learns "
            "(pooling has none).",
        ]
        titles = ["Max pooling", "Mean pooling", "Strided conv"]
        for col, out, title, caption, name in zip(cols[1:], outputs, titles, captions, ["max", "mean", "conv"]):
            col.markdown(f"**{title}** {out.shape[0]}×{out.shape[1]}")
            col.plotly_chart(grid_figure(out, value_range=shared, cell_px=px), key=f"pool.fig.cmp.{name}",
                             config=CHART)
            col.caption(caption)
        if torch.allclose(conv.output[0], mean_pool.output[0]):
            st.success("With these weights the strided convolution *is* mean pooling: a network can learn "
                       "to average.", icon=":material/check_circle:")
        elif torch.allclose(conv.output[0], max_pool.output[0]):
            st.info("On this input the strided convolution happens to match max pooling.", icon=":material/info:")

# =====================================================================================
st.header("From a 3-D tensor to a vector: flattening versus global average pooling", divider="gray")
st.markdown(
    "The classifier at the end needs a 1-D vector. **Flattening** lines up all m·l·d numbers of the last "
    "m×l×d tensor; **global average pooling** averages each channel over all positions and keeps d numbers."
)
gcontrols = st.columns([2, 2, 2, 3, 3], vertical_alignment="bottom")
gcontrols[0].number_input("Height m", 1, 4, key=state.key("gm"))
gcontrols[1].number_input("Width l", 1, 4, key=state.key("gl"))
gcontrols[2].number_input("Channels d", 1, MAX_CHANNELS, key=state.key("gd"))
gcontrols[3].button("New random numbers", icon=":material/casino:", on_click=on_new_tensor, width="stretch")
gm, gl, gd = state["gm"], state["gl"], state["gd"]
tensor = random_grid(gd, gm, gl, seed=state["gseed"])
if state["gc"] > gd:
    state["gc"] = gd
gcontrols[4].radio("Channel for the formula", list(range(1, gd + 1)), key=state.key("gc"),
                   format_func=lambda c: f"c = {c}", horizontal=True)

t_range = symmetric(tensor)
t_cols = st.columns([*[gl * 40 + 12] * gd, max(60, 900 - gd * (gl * 40 + 12))])
for c in range(gd):
    t_cols[c].plotly_chart(grid_figure(tensor[c], f"x[·, ·, {c + 1}]", value_range=t_range, cell_px=40,
                                       highlight=(range(gm), range(gl)) if c + 1 == state["gc"] else None),
                           key=f"pool.fig.t.{c}", config=CHART)
flat, gap = flatten(tensor), global_average_pool(tensor)
flat_px = max(22, min(40, 1000 // flat.numel()))
st.plotly_chart(grid_figure(flat[None], f"Flattened: 1×1×m·l·d = 1×1×{gm}·{gl}·{gd} = {flat.numel()} numbers",
                            value_range=t_range, cell_px=flat_px), key="pool.fig.flat", config=CHART)
st.caption(f"In torch's order: channel 1 row by row, then channel 2, … — all {flat.numel()} numbers are kept.")
gap_cols = st.columns([1, 3], vertical_alignment="center")
gap_cols[0].plotly_chart(grid_figure(gap[None], f"Global average pooling: 1×1×{gd}", value_range=t_range,
                                     cell_px=max(40, 60 - 5 * gd), marked=(0, state["gc"] - 1)),
                         key="pool.fig.gap", config=CHART)
with gap_cols[1]:
    st.latex(r"z[c] = \frac{1}{m \cdot l} \sum_{a=1}^{m} \sum_{b=1}^{l} x[a, b, c], \quad 1 \le c \le d")
    st.markdown(f"`{gap_formula(tensor, state['gc'] - 1)}`")

st.subheader("What it costs: the first fully connected layer")
st.markdown(
    f"In VGG-16 the last pooling layer outputs {VGG_LAST_POOL[0]}×{VGG_LAST_POOL[1]}×{VGG_LAST_POOL[2]}. "
    "A fully connected layer with n units has (inputs)·n weights plus n biases: global average pooling "
    "shrinks its inputs from m·l·d to d."
)
head_left, head_right = st.columns([2, 3])
with head_left:
    st.number_input("Units n of the fully connected layer", 1, MAX_UNITS, key=state.key("units"), step=256)
    counts = HeadCounts(*VGG_LAST_POOL, state["units"])
    st.markdown("\n".join(f"- {what}: {formula} = **{value:,}**" for what, formula, value in counts.formulas()))
    st.markdown(f"Flattening needs **{counts.saving:.0f}×** as many parameters: its input is m·l times "
                "longer.")
head_right.plotly_chart(head_params_figure(counts), key="pool.fig.head", config=CHART)

# =====================================================================================
st.header("Building up a network", divider="gray")
st.markdown(
    "The lecture's recipe: convolution layers learn features, pooling shrinks the maps, repeat, and at the end "
    "flatten or global average pooling hands a vector to fully connected layers. Build a stack and watch "
    "the **shapes shrink**, the **channels grow**, and each unit **see a larger part of the image**."
)
build_left, build_right = st.columns([3, 2], vertical_alignment="bottom")
build_left.text_input("Layers, separated by commas", key=state.key("net"), on_change=on_stack_edit,
                      help=f"Write {TOKEN_HELP}. Options: conv3x16/s2 (stride 2), conv5x8/p0 (padding 0), "
                           "maxpool3/s2.")
build_right.selectbox("Input", list(INPUT_SHAPES), key=state.key("inp"),
                      format_func=lambda key: INPUT_SHAPES[key][1])
actions = st.columns(6)
actions[0].button("Conv block", icon=":material/add:", on_click=_edit_stack, args=(add_conv_block, 512),
                  width="stretch",
                  help="Adds conv 3×3 with twice the channels, then ReLU, before the head.")
actions[1].button("Max pool", icon=":material/add:", on_click=_edit_stack, args=(add_pooling,), width="stretch",
                  help="Adds 2×2 max pooling with stride 2 before the head.")
actions[2].button("Remove last", icon=":material/remove:", on_click=_edit_stack, args=(remove_last_block,),
                  width="stretch",
                  help="Removes the last conv or pooling layer (and its ReLU) before the head.")
actions[3].button("Flatten head", icon=":material/view_week:", on_click=_edit_stack, args=(with_head, "flatten"),
                  width="stretch")
actions[4].button("GAP head", icon=":material/blur_on:", on_click=_edit_stack, args=(with_head, "gap"),
                  width="stretch")
actions[5].selectbox("Preset", ["Presets…", *STACK_PRESETS], key="pool.preset", on_change=on_preset,
                     label_visibility="collapsed")

in_shape = INPUT_SHAPES[state["inp"]][0]
try:
    infos = analyse(parse_stack(state["net"]), in_shape)
except StackError as error:
    st.error(f"**This stack cannot work.** {error}", icon=":material/block:")
    st.caption("Your text is kept in the box above; fix it there, or pick a preset.")
else:
    net_totals = totals(infos)
    table_col, chart_col = st.columns([3, 2])
    with table_col:
        rows = layer_rows(infos, receptive_field=True)
        st.dataframe(rows, hide_index=True, width="stretch", height=min(35 * (len(rows) + 1) + 3, 520),
                     column_config={"#": st.column_config.NumberColumn(width=30),
                                    "parameters": st.column_config.NumberColumn(format="localized"),
                                    "multiply-adds": st.column_config.NumberColumn(format="localized")})
        st.markdown(f"**{net_totals.params:,} parameters** and **{net_totals.multiply_adds:,} multiply-adds** "
                    f"per image, {lecture_shape(in_shape)} in, {lecture_shape(infos[-1].out_shape)} out. "
                    "Receptive field: the side of the input square one unit of the layer depends on "
                    "(padding included in the count).")
    if len(infos[0].in_shape) == 3 and any(i.kind in ("conv", "maxpool", "meanpool") for i in infos):
        chart_col.plotly_chart(shapes_figure(infos), key="pool.fig.shapes", config=CHART)

    st.subheader("What one unit sees")
    maps = [info for info in spatial_layers(infos) if info.kind in ("conv", "maxpool", "meanpool")]
    picture = network_picture(in_shape)
    if maps:
        figures = growth_strip(state["net"], in_shape)
        st.caption("The centre unit of every conv and pooling layer, and the input pixels it depends on "
                   "(orange box): higher layers see larger parts of the image.")
        for start in range(0, len(figures), GROWTH_PER_ROW):
            strip = st.columns(GROWTH_PER_ROW)
            for col, figure, index in zip(strip, figures[start:start + GROWTH_PER_ROW], range(start, len(figures))):
                col.plotly_chart(figure, key=f"pool.fig.growth.{index}", config=CHART)

        choose, show = st.columns([2, 3])
        with choose:
            layer_numbers = [info.number for info in maps]
            if state["rfl"] not in layer_numbers:
                state["rfl"] = layer_numbers[-1]
            st.selectbox("Layer", layer_numbers, key=state.key("rfl"),
                         format_func=lambda n: f"{n}. {infos[n - 1].name} → {lecture_shape(infos[n - 1].out_shape)}")
            chosen = infos[state["rfl"] - 1]
            _, out_h, out_w = chosen.out_shape
            centre = centre_unit(chosen)
            for param, limit, middle in (("rfr", out_h, centre[0]), ("rfc", out_w, centre[1])):
                if not 1 <= state[param] <= limit:
                    state[param] = middle + 1
            pick = st.columns(2)
            pick[0].number_input(f"Unit row (1–{out_h})", 1, out_h, key=state.key("rfr"))
            pick[1].number_input(f"Unit column (1–{out_w})", 1, out_w, key=state.key("rfc"))
            top, left, bottom, right = unit_receptive_field(infos, None, chosen.index, state["rfr"] - 1,
                                                            state["rfc"] - 1)
            st.markdown(f"Unit (row {state['rfr']}, column {state['rfc']}) of layer {chosen.number} depends on "
                        f"input rows **{top + 1}–{bottom + 1}** and columns **{left + 1}–{right + 1}**: a "
                        f"**{bottom - top + 1}×{right - left + 1}** patch of the {in_shape[1]}×{in_shape[2]} input.")
            if (bottom - top + 1, right - left + 1) != (chosen.rf_size, chosen.rf_size):
                st.caption(f"The full field is {chosen.rf_size}×{chosen.rf_size}; at the border part of it "
                           "lies in the padding, or the stride skips it.")
        show.plotly_chart(receptive_field_figure(picture, (top, left, bottom, right),
                                                 f"Layer {chosen.number}, unit (row {state['rfr']}, column {state['rfc']})",
                                                 width_px=380), key="pool.fig.rf", config=CHART)
    else:
        st.info("Add a convolution or pooling layer to see receptive fields.", icon=":material/info:")

state.sync()
