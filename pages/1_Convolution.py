"""Convolution lab: the lecture's sliding dot product, one output at a time."""

import streamlit as st
import torch

from cnnviz import grids
from cnnviz.conv import Convolution, ConvError, Geometry, output_size_formula
from cnnviz.examples import CONV_EXAMPLES, FILTER_PRESETS, filter_preset, random_grid
from cnnviz.figures import grid_spec, grids_side_by_side
from ui.convlab import encode_bias, example_value, make_layer, parse_tensors
from ui.lessons import page_setup
from ui.photos import filtered_photo, pick_photo
from ui.show import arithmetic, boxes, chart
from ui.state import Param, UrlState, int_in, one_of
from ui.stepper import play_interval, play_toggle, step_controls

MAX_KERNEL, MAX_CHANNELS, MAX_FILTERS, MAX_PADDING = 7, 3, 4, 5

page_setup("1_Convolution.py")
# True while the whole page runs (each run has its own module globals): the stepper fragment then
# leaves the URL to the page's own state.sync() at the end, and syncs it only when it reruns alone.
WHOLE_PAGE_RUN = True


def parse_padding(text: str) -> int | str:
    return text if text == "same" else int_in(0, MAX_PADDING)(text)


def from_example(field: str):
    """Default of a tensor or setting: the value in the example named by `ex` (none: the lecture's)."""
    def default(state: UrlState):
        return example_value(state["ex"], field)
    return default


state = UrlState("conv", [
    Param("ex", "lecture", one_of(*CONV_EXAMPLES, "custom")),
    Param("x", from_example("x"),
          lambda t: grids.encode_channels(grids.parse_channels(t))),
    Param("w", from_example("weight"),
          lambda t: grids.encode_filters(grids.parse_filters(t))),
    Param("b", from_example("bias"), lambda t: encode_bias(grids.parse_numbers(t, "bias"))),
    Param("pad", from_example("padding"), parse_padding),
    Param("s", from_example("stride"), int_in(1, 4)),
    Param("dil", from_example("dilation"), int_in(1, 3)),
    Param("step", 0, int_in(0, 100_000)),
    Param("img", "Cat", str),
])


def current_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return parse_tensors(state["x"], state["w"], state["b"])


def store(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, example: str = "custom") -> None:
    """Make (x, w, b) the page's tensors, refresh the editors and start stepping again."""
    state["x"], state["w"] = grids.encode_channels(x), grids.encode_filters(w)
    state["b"] = encode_bias(b)
    state["ex"], state["step"] = example, 0
    fill_editors()


def fill_editors() -> None:
    x, w, b = current_tensors()
    for c, channel in enumerate(x):
        st.session_state[f"conv.x_text.{c}"] = grids.format_grid(channel)
    for f, bank in enumerate(w):
        for c, piece in enumerate(bank):
            st.session_state[f"conv.w_text.{f}.{c}"] = grids.format_grid(piece)
        st.session_state[f"conv.b_text.{f}"] = grids.format_number(b[f])
    st.session_state.pop("conv.edit_error", None)


# ---- callbacks: every change goes through the tensors, never through half-parsed text ----

def on_example() -> None:
    name = st.session_state["conv.ex_pick"]
    if name in CONV_EXAMPLES:
        example = CONV_EXAMPLES[name]
        state["pad"], state["s"], state["dil"] = example.padding, example.stride, example.dilation
        store(example.x, example.weight, example.bias, name)


def on_edit() -> None:
    x, w, _ = current_tensors()
    try:
        new_x = grids.parse_channels("|".join(st.session_state[f"conv.x_text.{c}"].replace("\n", ";")
                                              for c in range(x.shape[0])), "input")
        new_w = grids.parse_filters("/".join(
            "|".join(st.session_state[f"conv.w_text.{f}.{c}"].replace("\n", ";") for c in range(w.shape[1]))
            for f in range(w.shape[0])))
        new_b = torch.cat([grids.parse_numbers(st.session_state[f"conv.b_text.{f}"], f"bias of filter {f + 1}")
                           for f in range(w.shape[0])])
        if new_b.numel() != new_w.shape[0]:
            raise grids.GridError("Each filter has exactly one bias: type one number per bias box.")
    except grids.GridError as error:
        st.session_state["conv.edit_error"] = str(error)  # the text stays in its box to be fixed
        return
    state["x"], state["w"] = grids.encode_channels(new_x), grids.encode_filters(new_w)
    state["b"] = encode_bias(new_b)
    state["ex"], state["step"] = "custom", 0
    st.session_state.pop("conv.edit_error", None)


def resize_kernel(w: torch.Tensor, k: int) -> torch.Tensor:
    """Grow with zeros or crop around the centre, so a hand-made filter keeps its middle."""
    old = w.shape[-1]
    if k > old:
        before = (k - old) // 2
        return torch.nn.functional.pad(w, (before, k - old - before, before, k - old - before))
    start = (old - k) // 2
    return w[..., start:start + k, start:start + k].contiguous()


def on_kernel() -> None:
    x, w, b = current_tensors()
    store(x, resize_kernel(w, st.session_state["conv.k"]), b)


def on_channels() -> None:
    x, w, b = current_tensors()
    d = st.session_state["conv.d"]
    if d < x.shape[0]:
        x, w = x[:d], w[:, :d]
    else:
        extra = d - x.shape[0]
        x = torch.cat([x, random_grid(extra, *x.shape[1:], seed=d)])
        w = torch.cat([w, random_grid(w.shape[0] * extra, *w.shape[2:], seed=10 + d)
                       .reshape(w.shape[0], extra, *w.shape[2:])], dim=1)
    store(x, w, b)


def on_filters() -> None:
    x, w, b = current_tensors()
    n = st.session_state["conv.dd"]
    if n < w.shape[0]:
        w, b = w[:n], b[:n]
    else:
        extra = n - w.shape[0]
        w = torch.cat([w, random_grid(extra * w.shape[1], *w.shape[2:], seed=20 + n).reshape(extra, *w.shape[1:])])
        b = torch.cat([b, torch.zeros(extra, dtype=b.dtype)])
    store(x, w, b)


def on_random_input() -> None:
    x, w, b = current_tensors()
    st.session_state["conv.seed"] = st.session_state.get("conv.seed", 0) + 1
    shape = (x.shape[0], st.session_state["conv.rand_m"], st.session_state["conv.rand_l"])
    store(random_grid(*shape, seed=st.session_state["conv.seed"]), w, b)


def on_preset(f: int) -> None:
    x, w, b = current_tensors()
    name = st.session_state[f"conv.preset.{f}"]
    try:
        w[f] = filter_preset(name, w.shape[-1], seed=f + st.session_state.get("conv.seed", 0))
    except ValueError as error:
        st.session_state["conv.edit_error"] = str(error)
        return
    store(x, w, b)


def on_padding() -> None:
    picked = st.session_state["conv.pad_pick"]
    if picked is not None:
        state["pad"], state["step"] = picked, 0


def go_to(step: int) -> None:
    state["step"] = step


# ---- read the state; a link with inconsistent pieces is explained, not crashed on ----

state.show_problems()
x, w, b = current_tensors()
if "conv.x_text.0" not in st.session_state or "conv.w_text.0.0" not in st.session_state:
    fill_editors()
pad = state["pad"]
st.session_state["conv.ex_pick"] = state["ex"]
st.session_state["conv.k"] = w.shape[-1]
st.session_state["conv.d"] = x.shape[0]
st.session_state["conv.dd"] = w.shape[0]
st.session_state["conv.pad_pick"] = pad

st.markdown(
    "A **filter** of size k×k×d slides over the input. At each position it multiplies every "
    "weight with the input value under it, adds everything up and adds a **bias**: one number of "
    "the output. Step through it below, then change the layer and see what happens."
)

# Few layout blocks: every element and block costs the server a little on every rerun.
with st.container(border=True):
    top = st.columns([4, 2, 2, 2])  # two rows of controls in one set of columns
    top[0].selectbox("Example", [*CONV_EXAMPLES, "custom"], key="conv.ex_pick", on_change=on_example,
                     format_func=lambda k: CONV_EXAMPLES[k].title if k in CONV_EXAMPLES else "Your own (edited)")
    top[1].number_input("Kernel size k", 1, MAX_KERNEL, key="conv.k", on_change=on_kernel)
    top[2].number_input("Input channels d", 1, MAX_CHANNELS, key="conv.d", on_change=on_channels)
    top[3].number_input("Filters d′", 1, MAX_FILTERS, key="conv.dd", on_change=on_filters,
                        help="Each filter makes one output channel.")
    top[0].segmented_control("Padding p", [*range(MAX_PADDING + 1), "same"], key="conv.pad_pick", required=True,
                             on_change=on_padding, wrap=True,
                             help="Rows and columns of zeros added around the input. 'same' keeps the output "
                                  "as large as the input (stride 1).")
    top[1].number_input("Stride s", 1, 4, key=state.key("s"), on_change=go_to, args=(0,))
    top[2].number_input("Dilation", 1, 3, key=state.key("dil"), on_change=go_to, args=(0,),
                        help="Spread the filter's taps apart: a 3x3 filter with dilation 2 covers 5x5 pixels.")
    if state["ex"] in CONV_EXAMPLES:
        st.caption(CONV_EXAMPLES[state["ex"]].note)

with st.expander("Edit the input and the filters", icon=":material/edit:", expanded=state["ex"] == "custom"):
    st.caption("One row per line, numbers separated by spaces or commas. Changes apply when you leave the box.")
    # Rows of boxes as horizontal containers: one block per row instead of one per column.
    with st.container(horizontal=True):
        for c in range(x.shape[0]):
            st.text_area(f"Input channel {c + 1}", key=f"conv.x_text.{c}", on_change=on_edit, height=140)
        with st.container():
            with st.container(horizontal=True):
                st.number_input("rows", 2, 10, value=4, key="conv.rand_m")
                st.number_input("columns", 2, 10, value=4, key="conv.rand_l")
            st.button("Random input", icon=":material/casino:", on_click=on_random_input, width="stretch")
    for f in range(w.shape[0]):
        with st.container(horizontal=True):
            for c in range(w.shape[1]):
                st.text_area(f"Filter {f + 1}, slice for channel {c + 1}", key=f"conv.w_text.{f}.{c}",
                             on_change=on_edit, height=120)
            st.text_input(f"Bias of filter {f + 1}", key=f"conv.b_text.{f}", on_change=on_edit)
            st.selectbox(f"Preset for filter {f + 1}", FILTER_PRESETS, index=None, key=f"conv.preset.{f}",
                         on_change=on_preset, args=(f,), placeholder="choose…")
    if st.session_state.get("conv.edit_error"):
        st.error(st.session_state["conv.edit_error"], icon=":material/edit:")

layer = make_layer(state["x"], state["w"], state["b"], pad, state["s"], state["dil"])
if isinstance(layer, ConvError):
    error, layer = layer, None
    st.error(f"**This layer gives no output.** {error}", icon=":material/block:")
    try:
        geometry = Geometry.make(w.shape[-1], pad, state["s"], state["dil"])
        st.markdown(f"Output height: {output_size_formula(x.shape[1], w.shape[-1], geometry.padding, state['s'], state['dil'])}")
    except ConvError:
        pass


def cell_px(rows: int, cols: int) -> int:
    return max(26, min(46, 300 // max(rows, cols)))


@st.fragment(run_every=play_interval("conv"))
def stepper(layer: Convolution) -> None:
    step = layer.step(step_controls(state, "conv", layer.n_steps))

    p = layer.geometry.padding
    d, filters = layer.x.shape[0], layer.weight.shape[0]
    pad_rows, pad_cols = layer.padded.shape[1:]
    k = layer.geometry.kernel
    padded = any((p.top, p.bottom, p.left, p.right))
    inputs = [grid_spec(layer.padded[c], f"Input channel {c + 1}" + (" (padded)" if padded else ""),
                        highlight=(step.rows, step.cols), padding=(p.top, p.bottom, p.left, p.right),
                        cell_px=cell_px(pad_rows, pad_cols)) for c in range(d)]
    slices = [grid_spec(step.weights[c], f"Filter {step.filter + 1} · slice {c + 1}", cell_px=40) for c in range(d)]
    filled = layer.filled(step.index)
    bound = float(layer.output.abs().max()) or 1.0
    outputs = [grid_spec(filled[f], f"Output channel {f + 1}", value_range=(-bound, bound),
                         marked=(step.row, step.col) if f == step.filter else None,
                         cell_px=cell_px(*layer.out_shape[1:])) for f in range(filters)]
    # Input, filter and output grids in ONE chart: one element per step instead of a chart per grid.
    chart(grids_side_by_side([inputs, slices, outputs], [None, f"bias b = <b>{grids.format_number(step.bias)}</b>", None]),
          key="conv.fig.step")

    where = f"output channel {step.filter + 1}, row {step.row + 1}, column {step.col + 1}"
    lines = [(f"channel {c + 1}" if d > 1 else "products", step.channel_arithmetic(c)) for c in range(d)]
    arithmetic([*lines, ("total", step.total_arithmetic())],
               intro=f"**Computing {where}:** the filter's {k}·{k}·{d} = {k * k * d} weights times the input "
                     "values under them, summed, plus the bias.")
    if not WHOLE_PAGE_RUN:
        state.sync()


if layer is not None:
    play_toggle("conv")
    stepper(layer)

    geometry, counts = layer.geometry, layer.counts
    f_, h_, w_ = layer.out_shape
    photo_intro = ("---\n### The same filter on a real photo\n\n"
                   "A convolution layer applies its filters to every position of a photo at once. "
                   "Try a Sobel or Prewitt preset: edges light up.")
    boxes(
        "### Output size\n\n"
        "n′ = ⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1 with input size n, padding p, dilation d, "
        "kernel size k and stride s:\n\n"
        f"- height: {output_size_formula(x.shape[1], geometry.kernel, geometry.padding, geometry.stride, geometry.dilation, 'height')}\n"
        f"- width: {output_size_formula(x.shape[2], geometry.kernel, geometry.padding, geometry.stride, geometry.dilation, 'width')}\n\n"
        f"Input {x.shape[1]}×{x.shape[2]}×{x.shape[0]} → output **{h_}×{w_}×{f_}** (one channel per filter).",
        "### What the layer costs\n\n"
        + "".join(f"- {what}: {formula} = **{value:,}**\n" for what, formula, value in counts.formulas())
        + "\n:small[:gray[The lecture counts the bias as one more multiply-add per output; "
        "FLOPs are usually quoted as 2 × multiply-adds.]]",
        after=photo_intro)
else:
    st.markdown("---\n### The same filter on a real photo\n\n"
                "A convolution layer applies its filters to every position of a photo at once. "
                "Try a Sobel or Prewitt preset: edges light up.")
applies = w.shape[1] in (1, 3)  # a photo has 1 (grey) or 3 (colour) channels
which = st.radio("Filter", [f"Filter {f + 1}" for f in range(w.shape[0])], horizontal=True,
                 key="conv.photo_filter") if applies and w.shape[0] > 1 else "Filter 1"
# One pair of columns for the pickers and the pictures under them: fewer blocks to send on every rerun.
left, right = st.columns(2)
photo = pick_photo(state, "img", "conv", where=(left, right))
if photo is not None and not applies:
    st.info(f"The filter has {w.shape[1]} slices; a photo has 1 (grey) or 3 (colour) channels. "
            "Set the channels d to 1 or 3 to apply it.")
elif photo is not None:
    f = int(which.split()[-1]) - 1
    try:
        view = filtered_photo(photo, w[f], float(b[f]), padding=pad, stride=state["s"], dilation=state["dil"],
                              title=f"Activation map of filter {f + 1} ({{width}}×{{height}})")
    except ConvError as error:
        st.error(str(error))
    else:
        left.image(view.seen_png, caption=f"{photo.name} as the filter sees it "
                   f"({'colour' if view.colour else 'grey'}, {view.width}×{view.height})",
                   width="stretch", output_format="PNG")
        chart(view.map_spec, where=right)

state.sync()
WHOLE_PAGE_RUN = False  # what a later rerun of the fragment alone sees
