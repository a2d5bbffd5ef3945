"""Convolution lab: the lecture's sliding dot product, one output at a time."""

import streamlit as st
import torch

from cnnviz import grids
from cnnviz.conv import Convolution, ConvError, Geometry, conv_on_image, output_size_formula
from cnnviz.examples import CONV_EXAMPLES, FILTER_PRESETS, filter_preset, random_grid
from cnnviz.figures import feature_map_figure, grid_figure
from ui.lessons import page_setup
from ui.photos import photo_picker
from ui.show import arithmetic
from ui.state import Param, UrlState, int_in, one_of
from ui.stepper import play_interval, play_toggle, step_controls

MAX_KERNEL, MAX_CHANNELS, MAX_FILTERS, MAX_PADDING = 7, 3, 4, 5

page_setup("1_Convolution.py")
LECTURE = CONV_EXAMPLES["lecture"]


def parse_padding(text: str) -> int | str:
    return text if text == "same" else int_in(0, MAX_PADDING)(text)


def from_example(field: str, encode=lambda v: v):
    """Default of a tensor or setting: the value in the example named by `ex` (none: the lecture's)."""
    def default(state: UrlState):
        return encode(getattr(CONV_EXAMPLES.get(state["ex"], LECTURE), field))
    return default


def encode_bias(b: torch.Tensor) -> str:
    return ",".join(grids.format_number(v) for v in b)


state = UrlState("conv", [
    Param("ex", "lecture", one_of(*CONV_EXAMPLES, "custom")),
    Param("x", from_example("x", grids.encode_channels),
          lambda t: grids.encode_channels(grids.parse_channels(t))),
    Param("w", from_example("weight", grids.encode_filters),
          lambda t: grids.encode_filters(grids.parse_filters(t))),
    Param("b", from_example("bias", encode_bias), lambda t: encode_bias(grids.parse_numbers(t, "bias"))),
    Param("pad", from_example("padding"), parse_padding),
    Param("s", from_example("stride"), int_in(1, 4)),
    Param("dil", from_example("dilation"), int_in(1, 3)),
    Param("step", 0, int_in(0, 100_000)),
    Param("img", "Cat", str),
])


def current_tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (grids.parse_channels(state["x"]), grids.parse_filters(state["w"]),
            grids.parse_numbers(state["b"], "bias"))


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
    st.session_state["conv.edit_error"] = None


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
    st.session_state["conv.edit_error"] = None


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
    mode = st.session_state["conv.pad_mode"]
    state["pad"] = "same" if mode == "same" else (0 if mode == "none" else st.session_state["conv.pad_p"])
    state["step"] = 0


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
st.session_state["conv.pad_mode"] = "same" if pad == "same" else ("none" if pad == 0 else "p =")
st.session_state.setdefault("conv.pad_p", pad if isinstance(pad, int) and pad > 0 else 1)

st.markdown(
    "A **filter** of size k×k×d slides over the input. At each position it multiplies every "
    "weight with the input value under it, adds everything up and adds a **bias**: one number of "
    "the output. Step through it below, then change the layer and see what happens."
)

with st.container(border=True):
    top = st.columns([4, 2, 2, 2])
    top[0].selectbox("Example", [*CONV_EXAMPLES, "custom"], key="conv.ex_pick", on_change=on_example,
                     format_func=lambda k: CONV_EXAMPLES[k].title if k in CONV_EXAMPLES else "Your own (edited)")
    top[1].number_input("Kernel size k", 1, MAX_KERNEL, key="conv.k", on_change=on_kernel)
    top[2].number_input("Input channels d", 1, MAX_CHANNELS, key="conv.d", on_change=on_channels)
    top[3].number_input("Filters d′", 1, MAX_FILTERS, key="conv.dd", on_change=on_filters,
                        help="Each filter makes one output channel.")
    row = st.columns([4, 2, 2, 2], vertical_alignment="bottom")
    pad_mode, pad_p = row[0].columns([3, 2], vertical_alignment="bottom")
    pad_mode.radio("Padding", ["none", "same", "p ="], key="conv.pad_mode", on_change=on_padding, horizontal=True,
                   help="Zeros added around the input. 'same' keeps the output as large as the input (stride 1).")
    pad_p.number_input("p", 0, MAX_PADDING, key="conv.pad_p", on_change=on_padding, label_visibility="collapsed",
                       disabled=st.session_state["conv.pad_mode"] != "p =")
    row[1].number_input("Stride s", 1, 4, key=state.key("s"), on_change=go_to, args=(0,))
    row[2].number_input("Dilation", 1, 3, key=state.key("dil"), on_change=go_to, args=(0,),
                        help="Spread the filter's taps apart: a 3x3 filter with dilation 2 covers 5x5 pixels.")
    if state["ex"] in CONV_EXAMPLES:
        st.caption(CONV_EXAMPLES[state["ex"]].note)

with st.expander("Edit the input and the filters", icon=":material/edit:", expanded=state["ex"] == "custom"):
    st.caption("One row per line, numbers separated by spaces or commas. Changes apply when you leave the box.")
    cols = st.columns(x.shape[0] + 1)
    for c in range(x.shape[0]):
        cols[c].text_area(f"Input channel {c + 1}", key=f"conv.x_text.{c}", on_change=on_edit, height=140)
    with cols[-1]:
        size = st.columns(2)
        size[0].number_input("rows", 2, 10, value=4, key="conv.rand_m")
        size[1].number_input("columns", 2, 10, value=4, key="conv.rand_l")
        st.button("Random input", icon=":material/casino:", on_click=on_random_input, width="stretch")
    for f in range(w.shape[0]):
        cols = st.columns(w.shape[1] + 2)
        for c in range(w.shape[1]):
            cols[c].text_area(f"Filter {f + 1}, slice for channel {c + 1}", key=f"conv.w_text.{f}.{c}",
                              on_change=on_edit, height=120)
        cols[-2].text_input(f"Bias of filter {f + 1}", key=f"conv.b_text.{f}", on_change=on_edit)
        cols[-1].selectbox(f"Preset for filter {f + 1}", FILTER_PRESETS, index=None, key=f"conv.preset.{f}",
                           on_change=on_preset, args=(f,), placeholder="choose…")
    if st.session_state.get("conv.edit_error"):
        st.error(st.session_state["conv.edit_error"], icon=":material/edit:")

try:
    layer = Convolution.make(x, w, b, padding=pad, stride=state["s"], dilation=state["dil"])
except ConvError as error:
    layer = None
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
    grid_in, grid_w, grid_out = st.columns([pad_cols + 1, k + 2, layer.out_shape[2] + 2])
    with grid_in:
        for c in range(d):
            title = f"Input channel {c + 1}" + (" (padded)" if any((p.top, p.bottom, p.left, p.right)) else "")
            st.plotly_chart(grid_figure(layer.padded[c], title, highlight=(step.rows, step.cols),
                                        padding=(p.top, p.bottom, p.left, p.right),
                                        cell_px=cell_px(pad_rows, pad_cols)), key=f"conv.fig.in.{c}",
                            config={"displayModeBar": False})
    with grid_w:
        for c in range(d):
            st.plotly_chart(grid_figure(step.weights[c], f"Filter {step.filter + 1} · slice {c + 1}", cell_px=40),
                            key=f"conv.fig.w.{c}", config={"displayModeBar": False})
        st.markdown(f"bias b = **{grids.format_number(step.bias)}**")
    with grid_out:
        filled = layer.filled(step.index)
        out_range = (float(-layer.output.abs().max()) or -1.0, float(layer.output.abs().max()) or 1.0)
        for f in range(filters):
            st.plotly_chart(grid_figure(filled[f], f"Output channel {f + 1}", value_range=out_range,
                                        marked=(step.row, step.col) if f == step.filter else None,
                                        cell_px=cell_px(*layer.out_shape[1:])),
                            key=f"conv.fig.out.{f}", config={"displayModeBar": False})

    where = f"output channel {step.filter + 1}, row {step.row + 1}, column {step.col + 1}"
    st.markdown(f"**Computing {where}:** the filter's {k}·{k}·{d} = {k * k * d} weights times the input "
                "values under them, summed, plus the bias.")
    lines = [(f"channel {c + 1}" if d > 1 else "products", step.channel_arithmetic(c)) for c in range(d)]
    arithmetic([*lines, ("total", step.total_arithmetic())])
    state.sync()


if layer is not None:
    play_toggle("conv")
    stepper(layer)

    geometry, counts = layer.geometry, layer.counts
    left, right = st.columns(2)
    with left.container(border=True):
        st.subheader("Output size")
        st.markdown("n′ = ⌊(n + 2p − d(k − 1) − 1) / s⌋ + 1 with input size n, padding p, dilation d, "
                    "kernel size k and stride s:")
        st.markdown(f"- height: {output_size_formula(x.shape[1], geometry.kernel, geometry.padding, geometry.stride, geometry.dilation, 'height')}\n"
                    f"- width: {output_size_formula(x.shape[2], geometry.kernel, geometry.padding, geometry.stride, geometry.dilation, 'width')}")
        f_, h_, w_ = layer.out_shape
        st.markdown(f"Input {x.shape[1]}×{x.shape[2]}×{x.shape[0]} → output **{h_}×{w_}×{f_}** "
                    f"(one channel per filter).")
    with right.container(border=True):
        st.subheader("What the layer costs")
        for what, formula, value in counts.formulas():
            st.markdown(f"- {what}: {formula} = **{value:,}**")
        st.caption("The lecture counts the bias as one more multiply-add per output; "
                   "FLOPs are usually quoted as 2 × multiply-adds.")

st.divider()
st.subheader("The same filter on a real photo")
st.markdown("A convolution layer applies its filters to every position of a photo at once. "
            "Try a Sobel or Prewitt preset: edges light up.")
photo, photo_name = photo_picker(state, "img", "conv")
if photo is not None:
    if w.shape[1] not in (1, 3):
        st.info(f"The filter has {w.shape[1]} slices; a photo has 1 (grey) or 3 (colour) channels. "
                "Set the channels d to 1 or 3 to apply it.")
    else:
        which = st.radio("Filter", [f"Filter {f + 1}" for f in range(w.shape[0])], horizontal=True,
                         key="conv.photo_filter") if w.shape[0] > 1 else "Filter 1"
        f = int(which.split()[-1]) - 1
        seen = photo if w.shape[1] == 3 else photo.mean(0, keepdim=True)  # what the filter is applied to
        try:
            fmap = conv_on_image(seen, w[f], b[f:f + 1], padding=pad, stride=state["s"], dilation=state["dil"])[0]
        except ConvError as error:
            st.error(str(error))
        else:
            left, right = st.columns(2)
            left.image(seen.permute(1, 2, 0).numpy(), caption=f"{photo_name} as the filter sees it "
                       f"({'colour' if w.shape[1] == 3 else 'grey'}, {seen.shape[2]}×{seen.shape[1]})",
                       clamp=True, width="stretch")
            right.plotly_chart(feature_map_figure(fmap, f"Activation map of filter {f + 1} "
                                                  f"({fmap.shape[1]}×{fmap.shape[0]})", width_px=520),
                               config={"displayModeBar": False})

state.sync()
