"""The convolution lab's state and controls: the example, the grids, the layer's settings.

The page's whole state is in its URL (`STATE`): the input x, the filters w and the biases b as
text, padding, stride, dilation and the step, predict mode, and the gradient descent step's target
seed, learning rate and step. Every change goes through the tensors and is
written back as text, never through half-parsed boxes. Links are held to the same limits as
the controls: a link that asks for more says so and is not followed.

The layer for a state is computed once and shared by every rerun and visitor (`make_layer`,
plain functools caches keyed by the URL text: hashing a few short strings costs microseconds,
where st.cache_* would hash its arguments with its own, much slower, hasher).
"""

from __future__ import annotations

from functools import lru_cache

import streamlit as st
import torch

from cnnviz import grids
from cnnviz.conv import Convolution, ConvError
from cnnviz.edits import fit_filter_channels, fit_filters, fit_input_channels, resize_kernel
from cnnviz.examples import CONV_EXAMPLES, FILTER_PRESETS, filter_preset, random_grid
from cnnviz.images import SAMPLES
from cnnviz.sgd import LEARNING_RATES, GradientStep, seeded_target

from .grid_editor import GridEditor, channels_parser, random_size_inputs
from .state import Param, UrlState, flag, int_in, number_in, one_of, show_flag

LECTURE = "lecture"
MAX_KERNEL, MAX_CHANNELS, MAX_FILTERS, MAX_PADDING, MAX_STRIDE, MAX_DILATION = 7, 6, 4, 5, 4, 3
PADDINGS = [*range(MAX_PADDING + 1), "same"]


def encode_bias(b: torch.Tensor) -> str:
    return ",".join(grids.format_number(v) for v in b)


_ENCODERS = {"x": grids.encode_channels, "weight": grids.encode_filters, "bias": encode_bias}


@lru_cache(maxsize=64)
def example_value(example: str, field: str):
    """A field of the example named `example` (unknown names: the lecture's), tensors as the URL's text."""
    value = getattr(CONV_EXAMPLES.get(example, CONV_EXAMPLES[LECTURE]), field)
    encode = _ENCODERS.get(field)
    return encode(value) if encode else value


def _from_example(field: str):
    """Default of a tensor or setting: the value in the example named by `ex` (none: the lecture's)."""
    def default(state: UrlState):
        return example_value(state["ex"], field)
    return default


def _parse_filters(text: str) -> str:
    w = grids.parse_filters(text)
    if w.shape[0] > MAX_FILTERS:
        raise ValueError(f"the lab takes at most {MAX_FILTERS} filters, not {w.shape[0]}")
    if w.shape[-1] != w.shape[-2] or w.shape[-1] > MAX_KERNEL:
        raise ValueError(f"filters are square, k×k with k from 1 to {MAX_KERNEL}, not {grids.shape_text(w[0, 0])}")
    if w.shape[1] > MAX_CHANNELS:
        raise ValueError(f"a filter has at most {MAX_CHANNELS} slices, one per input channel")
    return grids.encode_filters(w)


def _parse_bias(text: str) -> str:
    b = grids.parse_numbers(text, "bias")
    if b.numel() > MAX_FILTERS:
        raise ValueError(f"one bias per filter, at most {MAX_FILTERS}")
    return encode_bias(b)


def _parse_padding(text: str) -> int | str:
    return text if text == "same" else int_in(0, MAX_PADDING)(text)


STATE = [
    Param("ex", LECTURE, one_of(*CONV_EXAMPLES, "custom")),
    Param("x", _from_example("x"), channels_parser(MAX_CHANNELS)),
    Param("w", _from_example("weight"), _parse_filters),
    Param("b", _from_example("bias"), _parse_bias),
    Param("pad", _from_example("padding"), _parse_padding),
    Param("s", _from_example("stride"), int_in(1, MAX_STRIDE)),
    Param("dil", _from_example("dilation"), int_in(1, MAX_DILATION)),
    Param("step", 0, int_in(0, 100_000)),
    Param("predict", False, flag, show_flag),  # the steppers hide each value until the student guessed it
    Param("img", "Cat", one_of(*SAMPLES)),
    # One step of gradient descent: the target's seed, the learning rate η and the step (one per parameter).
    Param("tgt", 0, int_in(0, 9_999)),
    Param("lr", 0.01, number_in(LEARNING_RATES)),
    Param("gstep", 0, int_in(0, 100_000)),
]


@lru_cache(maxsize=256)
def _parsed(x_text: str, w_text: str, b_text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return grids.parse_channels(x_text), grids.parse_filters(w_text), grids.parse_numbers(b_text, "bias")


def parse_tensors(x_text: str, w_text: str, b_text: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The page's input, filters and biases from their URL text: fresh copies, the caller may change them."""
    return tuple(t.clone() for t in _parsed(x_text, w_text, b_text))


@lru_cache(maxsize=256)
def make_layer(x_text: str, w_text: str, b_text: str, padding: int | str, stride: int,
               dilation: int) -> Convolution | ConvError:
    """The layer for the page's state (its URL text is the key), or the ConvError that explains why
    there is none. Shared by reruns and sessions, with its windows and output computed once here:
    don't change its tensors."""
    x, w, b = parse_tensors(x_text, w_text, b_text)
    try:
        layer = Convolution.make(x, w, b, padding=padding, stride=stride, dilation=dilation)
    except ConvError as error:
        return error
    layer.output  # noqa: B018 - computes (and caches) the windows and the output
    return layer


@lru_cache(maxsize=64)
def make_gradient_step(x_text: str, w_text: str, b_text: str, padding: int | str, stride: int, dilation: int,
                       target_seed: int, learning_rate: float) -> GradientStep | None:
    """One gradient descent step of the page's layer towards its seeded target (None when the layer gives no
    output), shared like make_layer."""
    layer = make_layer(x_text, w_text, b_text, padding, stride, dilation)
    if isinstance(layer, ConvError):
        return None
    return GradientStep.make(layer, seeded_target(layer.out_shape, target_seed), learning_rate)


class ConvLab:
    """The lab's controls bound to its URL state. Callbacks run before the page's next run."""

    def __init__(self, state: UrlState):
        self.state = state
        self.inputs = GridEditor("conv.x_text", "input", lambda c: f"Input channel {c + 1}")
        self.filters = GridEditor("conv.w_text", "filter", lambda f, c: f"Filter {f + 1}, slice for channel {c + 1}",
                                  height=120)

    # ---- the state as tensors

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return parse_tensors(self.state["x"], self.state["w"], self.state["b"])

    def layer(self) -> Convolution | ConvError:
        s = self.state
        return make_layer(s["x"], s["w"], s["b"], s["pad"], s["s"], s["dil"])

    def gradient_step(self) -> GradientStep | None:
        s = self.state
        return make_gradient_step(s["x"], s["w"], s["b"], s["pad"], s["s"], s["dil"], s["tgt"], s["lr"])

    def on_example_settings(self) -> bool:
        """Whether the state is still the chosen example's (its note then describes what is shown)."""
        s = self.state
        return s["ex"] in CONV_EXAMPLES and all(s[p] == s.default(p) for p in ("x", "w", "b", "pad", "s", "dil"))

    def store(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, example: str = "custom") -> None:
        """Make (x, w, b) the page's tensors, refresh the boxes and start stepping again."""
        s = self.state
        s["x"], s["w"], s["b"] = grids.encode_channels(x), grids.encode_filters(w), encode_bias(b)
        s["ex"], s["step"], s["gstep"] = example, 0, 0
        self.fill_boxes()

    def fill_boxes(self) -> None:
        x, w, b = self.tensors()
        self.inputs.fill(x)
        self.filters.fill(w)
        for f in range(w.shape[0]):
            st.session_state[f"conv.b_text.{f}"] = grids.format_number(b[f])

    def sync_widgets(self) -> None:
        """Point the size controls at the state (a link or an edit may have changed it)."""
        x, w, _ = self.tensors()
        if self.state.reseeded or not (self.inputs.filled(x.shape) and self.filters.filled(w.shape)):
            self.fill_boxes()
        st.session_state["conv.ex_pick"] = self.state["ex"]
        st.session_state["conv.k"] = w.shape[-1]
        st.session_state["conv.d"] = x.shape[0]
        st.session_state["conv.dd"] = w.shape[0]
        st.session_state["conv.pad_pick"] = self.state["pad"]

    # ---- callbacks

    def on_example(self) -> None:
        name = st.session_state["conv.ex_pick"]
        if name in CONV_EXAMPLES:
            example = CONV_EXAMPLES[name]
            s = self.state
            s["pad"], s["s"], s["dil"] = example.padding, example.stride, example.dilation
            self.store(example.x, example.weight, example.bias, name)

    def on_edit(self) -> None:
        x, w, _ = self.tensors()
        try:
            new_x = self.inputs.read(x.shape)
            new_w = self.filters.read(w.shape)
            new_b = torch.cat([grids.parse_numbers(st.session_state[f"conv.b_text.{f}"], f"bias of filter {f + 1}")
                               for f in range(w.shape[0])])
            if new_b.numel() != w.shape[0]:
                raise grids.GridError("Each filter has exactly one bias: type one number per bias box.")
            if new_w.shape[-1] != new_w.shape[-2]:
                raise grids.GridError(f"A filter is square, k×k; the slices are {grids.shape_text(new_w[0, 0])}.")
        except grids.GridError as error:
            self.inputs.set_error(str(error))  # the text stays in its box to be fixed
            return
        s = self.state
        s["x"], s["w"], s["b"] = grids.encode_channels(new_x), grids.encode_filters(new_w), encode_bias(new_b)
        s["ex"], s["step"], s["gstep"] = "custom", 0, 0
        self.inputs.set_error(None)

    def on_kernel(self) -> None:
        x, w, b = self.tensors()
        self.store(x, resize_kernel(w, st.session_state["conv.k"]), b)

    def on_channels(self) -> None:
        x, w, b = self.tensors()
        d = st.session_state["conv.d"]
        self.store(fit_input_channels(x, d, seed=d), fit_filter_channels(w, d), b)

    def on_filters(self) -> None:
        x, w, b = self.tensors()
        w, b = fit_filters(w, b, st.session_state["conv.dd"])
        self.store(x, w, b)

    def on_random_input(self) -> None:
        x, w, b = self.tensors()
        st.session_state["conv.seed"] = st.session_state.get("conv.seed", 0) + 1
        shape = (x.shape[0], st.session_state["conv.rand_m"], st.session_state["conv.rand_l"])
        self.store(random_grid(*shape, seed=st.session_state["conv.seed"]), w, b)

    def on_preset(self, f: int) -> None:
        x, w, b = self.tensors()
        name = st.session_state[f"conv.preset.{f}"]
        try:
            w[f] = filter_preset(name, w.shape[-1], seed=f + st.session_state.get("conv.seed", 0))
        except ValueError as error:
            self.inputs.set_error(str(error))
            return
        b[f] = FILTER_PRESETS[name].bias  # an edge filter comes with bias 0: a bias only shifts its map
        self.store(x, w, b)

    def on_padding(self) -> None:
        picked = st.session_state["conv.pad_pick"]
        if picked is not None:
            self.state["pad"], self.state["step"], self.state["gstep"] = picked, 0, 0

    def go_to(self, step: int) -> None:
        """A new layer: both steppers start again (the forward pass at `step`)."""
        self.state["step"], self.state["gstep"] = step, 0

    def on_new_target(self) -> None:
        self.state["tgt"] = (self.state["tgt"] + 1) % 10_000
        self.restart_gradient_step()

    def restart_gradient_step(self) -> None:
        self.state["gstep"] = 0

    # ---- the controls

    def draw_settings(self) -> None:
        """Example, kernel size, channels, filters, padding, stride and dilation, in one bordered box."""
        top = st.columns([4, 2, 2, 2])  # two rows of controls in one set of columns: fewer blocks per rerun
        top[0].selectbox("Example", [*CONV_EXAMPLES, "custom"], key="conv.ex_pick", on_change=self.on_example,
                         format_func=lambda k: CONV_EXAMPLES[k].title if k in CONV_EXAMPLES else "Your own (edited)")
        top[1].number_input("Kernel size k", 1, MAX_KERNEL, key="conv.k", on_change=self.on_kernel)
        top[2].number_input("Input channels d", 1, MAX_CHANNELS, key="conv.d", on_change=self.on_channels,
                            help="1 for a grey image, 3 for colour (RGB), more than 3 for hyperspectral images, as "
                                 f"the lecture says: up to {MAX_CHANNELS} here.")
        top[3].number_input("Filters d′", 1, MAX_FILTERS, key="conv.dd", on_change=self.on_filters,
                            help="Each filter makes one output channel.")
        top[0].segmented_control("Padding p", PADDINGS, key="conv.pad_pick", required=True,
                                 on_change=self.on_padding, wrap=True,
                                 help="Rows and columns of zeros added around the input. 'same' keeps the output "
                                      "as large as the input (stride 1).")
        top[1].number_input("Stride s", 1, MAX_STRIDE, key=self.state.key("s"), on_change=self.go_to, args=(0,))
        top[2].number_input("Dilation r", 1, MAX_DILATION, key=self.state.key("dil"), on_change=self.go_to,
                            args=(0,), help="Spread the filter's taps r pixels apart: a 3×3 filter with dilation 2 "
                                            "covers 5×5 pixels.")
        if self.on_example_settings():
            st.caption(CONV_EXAMPLES[self.state["ex"]].note)
        d = st.session_state["conv.d"]
        if d > 3:
            st.caption(f"d = {d} input channels: more than 3, as in **hyperspectral images** (the lecture: 1 for "
                       "greyscale, 3 for RGB, more than 3 for hyperspectral). A filter has one k×k slice per "
                       "channel, so it has k·k·d + 1 parameters.")

    def draw_sgd_settings(self, label: bool = True) -> None:
        """The gradient descent step's learning rate and a button for another target (`label`: the learning
        rate's label above its choices)."""
        with st.container(horizontal=True, vertical_alignment="bottom", width="content"):
            st.segmented_control("Learning rate η", LEARNING_RATES, key=self.state.key("lr"), required=True,
                                 label_visibility="visible" if label else "collapsed",
                                 on_change=self.restart_gradient_step,
                                 help="How far each weight moves against its gradient: w − η·∂L/∂w.")
            st.button("New target", icon=":material/casino:", on_click=self.on_new_target,
                      help="Another target T of small integers (its seed is in the link).")

    def draw_editors(self) -> None:
        """The grids as text boxes, a random input, and a preset per filter."""
        x, w, _ = self.tensors()
        st.caption("One row per line, numbers separated by spaces or commas. Changes apply when you leave the box.")
        with st.container(horizontal=True):
            self.inputs.draw(x.shape, self.on_edit)
            with st.container():
                random_size_inputs("conv")
                st.button("Random input", icon=":material/casino:", on_click=self.on_random_input, width="stretch")
        for f in range(w.shape[0]):
            with st.container(horizontal=True):
                for c in range(w.shape[1]):
                    st.text_area(self.filters.label(f, c), key=self.filters.box_key((f, c)), on_change=self.on_edit,
                                 height=self.filters.height)
                st.text_input(f"Bias of filter {f + 1}", key=f"conv.b_text.{f}", on_change=self.on_edit)
                st.selectbox(f"Preset for filter {f + 1}", list(FILTER_PRESETS), index=None, key=f"conv.preset.{f}",
                             on_change=self.on_preset, args=(f,), placeholder="choose…")
        self.inputs.show_error()


# ---- local connectivity and parameter sharing (the lecture's graph slides)

def draw_connectivity(layer: Convolution, where=st, height_px: int = 330) -> None:
    """The lab's layer as the lecture's graph: one row of its input, a fully connected layer beside the
    convolution, the connections of a chosen output unit; and what the two cost, for the lecture's
    sizes and for the lab's own layer."""
    from cnnviz import notation
    from cnnviz.connectivity import LECTURE_FILTERS, LECTURE_INPUT, LECTURE_KERNEL, LayerComparison, graph_figure

    from .show import chart

    x, w = layer.x, layer.weight
    geometry = layer.geometry
    pad = geometry.padding.left
    n_in, k = x.shape[2], geometry.kernel
    n_out = layer.out_shape[2]
    units = list(range(1, n_out + 1))
    if st.session_state.get("conv.graph_unit") not in units:
        st.session_state["conv.graph_unit"] = units[len(units) // 2]
    where.segmented_control("Output unit", units, key="conv.graph_unit", required=True,
                            format_func=lambda u: f"h{u}", help="Its connections are drawn bold.")
    chart(graph_figure(n_in, k, st.session_state["conv.graph_unit"] - 1, padding=pad, height_px=height_px),
          key="conv.fig.graph",
          where=where)
    lecture = LayerComparison.make(LECTURE_INPUT, LECTURE_KERNEL, LECTURE_FILTERS)
    own = LayerComparison.make(tuple(x.shape), k, w.shape[0], pad, geometry.stride, geometry.dilation)

    def lines(c: LayerComparison, what: str) -> str:
        return (f"**{what}**: {notation.shape(c.in_shape)} in, {notation.shape(c.out_shape)} out\n\n"
                + "".join(f"- {name}: {formula} = **{notation.count(value)}**\n" for name, formula, value
                          in c.formulas())
                + f"\n{notation.count(c.connections_per_unit[1])} connections per output unit instead of "
                  f"{notation.count(c.connections_per_unit[0])}; **{c.ratio:,.0f}×** fewer parameters.")

    from .show import boxes
    boxes(lines(lecture, f"The lecture's example ({notation.kernel(LECTURE_KERNEL, 3)} filter)"),
          lines(own, "This lab's layer (same input and output sizes)"))
