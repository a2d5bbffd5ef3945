"""VGG-16 explorer: the lecture's walk-through, with every shape, parameter and multiply-add
computed from the model itself (built on torch's meta device: no weights allocated)."""

import math

import pandas as pd
import streamlit as st

from cnnviz.architecture_figures import block_diagram, macs_figure, params_figure, share_figure
from cnnviz.network import STACK_PRESETS
from cnnviz.notation import MINUS, approx, megabytes, percent, shape
from cnnviz.summary import (
    LECTURE_INPUT,
    LECTURE_MULTIPLY_ADDS,
    LECTURE_PARAMS,
    TORCHVISION_MODELS,
    Summary,
    SummaryError,
    overview,
    summarize,
    summarize_stack,
    walkthrough,
)
from ui.exercises import your_turn
from ui.lessons import page_setup
from ui.presenter import presenting
from ui.show import arithmetic, chart
from ui.state import Param, UrlState, int_in, one_of
from ui.training import TRAINED_KEY

page_setup("6_VGG16_explorer.py")
PRESENTING = presenting()  # the presenter view shows the block diagram and the walk-through only

MAX_SIDE = 1024
DEFAULT_STACK = "Tiny CNN (Fashion-MNIST)"


def default_cnn() -> tuple[str, tuple[int, int, int]]:
    """(stack, input shape) of the preset shown until a CNN is trained: the one place that reads the presets."""
    preset = STACK_PRESETS[DEFAULT_STACK]
    return preset.stack, preset.in_shape


def session_cnn() -> tuple[str, tuple[int, int, int], str, bool]:
    """(stack, in_shape, caption, trained?) of the CNN from the Train page, or the default preset."""
    checkpoint = st.session_state.get(TRAINED_KEY)
    if checkpoint is None:
        stack, in_shape = default_cnn()
        return stack, in_shape, f"{DEFAULT_STACK}, untrained", False
    accuracy = checkpoint.test_accuracy
    note = f", test accuracy {percent(accuracy)}" if accuracy is not None else ""
    return checkpoint.stack, tuple(checkpoint.in_shape), f"your CNN ({checkpoint.dataset}{note})", True


MODEL_LABELS = {key: choice.title for key, choice in TORCHVISION_MODELS.items()}
MODEL_LABELS["cnn"] = "The CNN from the Train page"


def default_input(state: UrlState) -> int:
    return session_cnn()[1][1] if state["model"] == "cnn" else TORCHVISION_MODELS[state["model"]].input_size


state = UrlState("vgg", [
    Param("model", "vgg16", one_of(*MODEL_LABELS)),
    Param("input", default_input, int_in(1, MAX_SIDE)),
    Param("layer", 0, int_in(0, 999)),
])


def on_model() -> None:
    state["input"] = default_input(state)
    state["layer"] = 0


def on_diagram() -> None:
    """A click on a box selects its first layer (the box's customdata; -1 for flatten and softmax)."""
    event = st.session_state.get("vgg.diagram") or {}
    for point in event.get("selection", {}).get("points", []):
        row = point.get("customdata")
        if isinstance(row, list):
            row = row[0] if row else None
        if isinstance(row, (int, float)) and row >= 0:
            state["layer"] = int(row)


def difference(lecture: int, computed: int) -> str:
    """How far the lecture's round figure is from the exact count: '−4.6%'."""
    share = (lecture - computed) / computed
    return ("+" if share >= 0 else MINUS) + percent(abs(share))


def model_summary(size: int) -> Summary:
    """The selected model for a size×size input (SummaryError if it cannot take it)."""
    if state["model"] == "cnn":
        stack, built_for, _, trained = session_cnn()
        return summarize_stack(stack, (built_for[0], size, size), built_for=built_for,
                               title="Your CNN" if trained else "The default small CNN")
    return summarize(state["model"], size)


state.show_problems()

size = state["input"]
try:
    summary, problem = model_summary(size), None
except SummaryError as error:
    summary, problem = None, error
described = summary or model_summary(default_input(state))  # the intro still describes the model
lead = ("The lecture's example network, **VGG-16**," if described.key == "vgg16" else f"**{described.title}**")
if not PRESENTING:
    st.markdown(f"{lead} {overview(described)}. Every number below is computed from the model itself: its "
                "architecture, built without its weights, traced with an empty input of the size you choose.")

if not PRESENTING:
    with st.container(border=True):
        left, middle, right = st.columns([3, 2, 4], vertical_alignment="bottom")
        left.selectbox("Model", list(MODEL_LABELS), key=state.key("model"), on_change=on_model,
                       format_func=MODEL_LABELS.get)
        trained_at = default_input(state)
        middle.number_input("Input size (pixels)", 1, MAX_SIDE, key=state.key("input"),
                            help=f"Height and width of the square input image. {described.title} was "
                                 f"{'built' if state['model'] == 'cnn' else 'trained'} for {trained_at}×{trained_at}.")
        if state["model"] == "cnn":
            stack, built_for, cnn_title, trained = session_cnn()
            right.caption(f"**{cnn_title}**: `{stack}`, built for {shape(built_for)} inputs.")
            if not trained:
                right.info("No CNN has been trained in this session yet, so this is the default small stack. "
                           "Train one on the **Train a CNN** page and come back.", icon=":material/model_training:")
        else:
            right.caption(TORCHVISION_MODELS[state["model"]].note)

if problem is not None:
    st.error(f"**No output for this input size.** {problem}", icon=":material/block:")
    default = default_input(state)
    buttons = st.columns([1, 1, 3])
    buttons[0].button(f"Back to {default}×{default}", on_click=state.__setitem__, args=("input", default),
                      icon=":material/undo:", width="stretch")
    if problem.smallest is not None and problem.smallest != default:
        buttons[1].button(f"Try {problem.smallest}×{problem.smallest}, the smallest",
                          on_click=state.__setitem__, args=("input", problem.smallest),
                          icon=":material/zoom_in:", width="stretch")
    state.sync()
    st.stop()

if state["layer"] >= len(summary.layers):
    st.warning(f"The link asked for layer {state['layer'] + 1}, but {summary.title} has "
               f"{len(summary.layers)} layers; showing the first.", icon="🔗")
    state["layer"] = 0
selected = summary.row(state["layer"])
is_lecture = summary.key == "vgg16" and summary.in_shape == LECTURE_INPUT

# ---- totals ------------------------------------------------------------------------------------
if not PRESENTING:
    with st.container(horizontal=True, gap="medium"):  # wraps on narrow screens instead of cutting the numbers
        st.metric("Parameters", f"{summary.params:,}", width="content",
                  help=f"{approx(summary.params)}; {megabytes(summary.param_bytes)} as float32")
        st.metric("Multiply-adds", f"{summary.macs:,}", width="content",
                  help="Bias counted as one multiply-add per output, as in the lecture's formula "
                       f"(without: {summary.macs_without_bias:,}).")
        st.metric("FLOPs (2 × multiply-adds)", approx(summary.flops) if summary.flops >= 1e9 else f"{summary.flops:,}",
                  width="content", help=f"{summary.flops:,}")
        st.metric("Activations of one image", megabytes(summary.activation_bytes), width="content",
                  help=f"{summary.activations:,} numbers (float32): the input plus every layer's output.")

# ---- the block diagram -------------------------------------------------------------------------
if PRESENTING:
    c_, h_, w_ = summary.in_shape
    st.markdown(f"#### {summary.title} as one nested function $f_\\theta: \\mathbb{{R}}^{{{h_} \\times {w_} \\times "
                f"{c_}}} \\rightarrow \\mathbb{{R}}^{{{math.prod(summary.out_shape)}}}$: θ = {summary.params:,} "
                f"parameters, {approx(summary.macs)} multiply-adds")
else:
    st.subheader(f"{summary.title} for a {shape(summary.in_shape)} input")
chart(block_diagram(summary, selected.index), key="vgg.diagram", on_select=on_diagram, selection_mode="points")
if not PRESENTING:
    st.caption("Each box is one layer's output: its front face is as tall as the feature map, its depth is the "
           "map's width and its thickness the number of channels (vectors: as tall as their length). Sizes "
               "grow with the square root of the numbers, so the 7×7 maps stay visible next to the 224×224 ones. "
               "Click a box to select its layer; hover for its numbers.")

with st.container(border=True):
    if not PRESENTING:
        st.markdown("**The walk-through, from the model's own shapes**")
    n_in, n_out = math.prod(summary.in_shape), math.prod(summary.out_shape)
    c, h, w = summary.in_shape
    if not PRESENTING:
        st.markdown(f"As one nested function: $f_\\theta: \\mathbb{{R}}^{{{h} \\times {w} \\times {c}}} "
                    f"\\rightarrow \\mathbb{{R}}^{{{n_out}}}$, {n_in:,} numbers in, {n_out:,} class scores out, "
                    f"with θ = all {summary.params:,} weights and biases.")
    steps = [f"{i}. {line}" for i, line in enumerate(walkthrough(summary), start=1)]
    n_columns = 3 if PRESENTING else 2
    per_column = math.ceil(len(steps) / n_columns)
    for column, start in zip(st.columns(n_columns), range(0, len(steps), per_column)):
        column.markdown("\n".join(steps[start:start + per_column]))
    if summary.key == "resnet18":
        st.caption("ResNet-18 also adds each block's input to its output (shortcut connections); "
                   "those additions are not layers and are not drawn.")
if PRESENTING:
    state.sync()
    st.stop()

with st.container(border=True):
    pick, where = st.columns([2, 3], vertical_alignment="bottom")
    names = [f"{r.number}. {r.label} · {r.description}" for r in summary.layers]
    pick.selectbox("Layer (or click a box above)", range(len(summary.layers)), key=state.key("layer"),
                   format_func=names.__getitem__)
    geometry = f"; {selected.geometry}" if selected.geometry else ""
    where.markdown(f"Input **{shape(selected.in_shape)}** → output **{shape(selected.out_shape)}**"
                   f"{geometry} (module `{selected.name}`, `{selected.type}`)")
    lines = []
    for what, formula, value in selected.formulas():
        if formula and formula != "none" and "=" in formula:
            lines.append((what, f"{formula} = {value:,}"))
        else:
            lines.append((what, f"{value:,}" + (f"  ({formula})" if formula and formula != "none" else "")))
    lines.append(("activations", f"{shape(selected.out_shape)} = {selected.outputs:,} numbers = "
                                 f"{megabytes(selected.activation_bytes)}"))
    arithmetic(lines)
    if (selected.params or selected.macs) and summary.params and summary.macs:
        st.caption(f"{selected.label}: {percent(selected.params / summary.params)} of the parameters, "
                   f"{percent(selected.macs / summary.macs)} of the multiply-adds.")
    elif selected.macs == 0:
        st.caption("The lecture counts ReLU and max pooling as maximum operations (comparisons), "
                   "not multiply-adds; dropout and flattening do no arithmetic at inference.")

# ---- where the parameters and the compute are ----------------------------------------------------
st.subheader("Where the parameters are, and where the compute is")
left, right = st.columns(2)
chart(params_figure(summary, selected.index), key="vgg.params", where=left)
chart(macs_figure(summary, selected.index), key="vgg.macs", where=right)
chart(share_figure(summary), key="vgg.share")
if summary.params and summary.macs:
    fc_layers = [r for r in summary.layers if r.kind == "fc"]
    biggest, biggest_fc = summary.largest("params"), summary.largest("params", kind="fc")
    fc_text = ""
    if fc_layers:
        holds = "layers hold" if len(fc_layers) > 1 else "layer holds"
        fc_text = f"The fully connected {holds} **{percent(summary.share('fc'))}** of the parameters"
        if len(fc_layers) > 1:
            fc_text += f" ({biggest_fc.label} alone {percent(biggest_fc.params / summary.params)})"
        if biggest is not biggest_fc:
            fc_text += f"; the largest layer is {biggest.label} ({percent(biggest.params / summary.params)})"
        fc_text += ". "
    st.markdown(f"{fc_text}The convolutions do **{percent(summary.share('conv', 'macs'))}** of the "
                "multiply-adds: a weight of a convolution is used at every position of its map"
                + (", a weight of a fully connected layer once per image." if fc_layers else "."))

# ---- against the lecture -------------------------------------------------------------------------
st.subheader("Against the lecture's numbers")
exact = summarize("vgg16", 224) if not is_lecture else summary
with st.container(border=True):
    if not is_lecture:
        st.caption(f"The lecture's figures are for VGG-16 at 224×224; this compares them with that model "
                   f"(you are looking at {summary.title} at {size}×{size}).")
    conv_params = sum(r.params for r in exact.layers if r.kind == "conv")
    fc_params = sum(r.params for r in exact.layers if r.kind == "fc")
    table = pd.DataFrame({
        "": ["parameters", "multiply-adds"],
        "lecture (approximately)": [f"{LECTURE_PARAMS:,}", f"{LECTURE_MULTIPLY_ADDS:,}"],
        "computed (exact)": [f"{exact.params:,}", f"{exact.macs:,}"],
        "difference": [difference(LECTURE_PARAMS, exact.params), difference(LECTURE_MULTIPLY_ADDS, exact.macs)],
    })
    st.dataframe(table, hide_index=True)
    st.markdown(
        f"- **Parameters.** VGG-16 has exactly **{exact.params:,}** parameters: {conv_params:,} in the 13 "
        f"convolutions and {fc_params:,} in the 3 fully connected layers; Simonyan & Zisserman's paper says "
        f"138 million. The slide's 132,000,000 is {percent((exact.params - LECTURE_PARAMS) / exact.params)} "
        f"lower, and the lecture does not say where it comes from. It may be a question of units: counted in "
        f"units of 2²⁰ = 1,048,576, as memory sizes often are, {exact.params:,} is "
        f"{exact.params / 2 ** 20:.1f} ≈ {round(exact.params / 2 ** 20)}; or it may be the count of a different variant of the network.\n"
        f"- **Multiply-adds.** With the lecture's formula m′·l′·d′·(k·k·d + 1) for every convolution and "
        f"n′·(n + 1) for every fully connected layer, one image costs exactly **{exact.macs:,}** multiply-adds "
        f"(≈ {approx(exact.macs)}; {exact.macs_without_bias:,} without the biases); the slide gives ≈16 "
        f"billion. In FLOPs (a multiplication and an addition each) that is {approx(exact.flops)}, so a "
        f"quoted \"15.5 GFLOPs\" for VGG-16 really counts multiply-adds.\n"
        f"- **The gradient.** Training computes $\\nabla L(\\theta) \\in \\mathbb{{R}}^{{{exact.params}}}$: one "
        f"number per parameter, {exact.params:,} of them, another {megabytes(exact.param_bytes)} beside the "
        f"weights in float32 (the slide writes $\\mathbb{{R}}^{{{LECTURE_PARAMS}}}$).\n"
        f"- **Not counted:** the maximum operations of ReLU and max pooling, {exact.max_operations:,} "
        f"comparisons ({percent(exact.max_operations / exact.macs)} of the multiply-adds), and the softmax.")

# ---- the table -----------------------------------------------------------------------------------
st.subheader("Every layer")
frame = pd.DataFrame({
    "#": [r.number for r in summary.layers],
    "layer": [r.label for r in summary.layers],
    "what": [r.description for r in summary.layers],
    "output (H×W×C)": [shape(r.out_shape) for r in summary.layers],
    "parameters": [r.params for r in summary.layers],
    "multiply-adds": [r.macs for r in summary.layers],
    "without bias": [r.macs_without_bias for r in summary.layers],
    "FLOPs": [r.flops for r in summary.layers],
    "activation (kB)": [round(r.activation_bytes / 1e3, 1) for r in summary.layers],
})


def mark_selected(row):
    colour = "background-color: #fef3c7" if row["#"] == selected.number else ""
    return [colour] * len(row)


numbers = {c: st.column_config.NumberColumn(c, format="localized", width=w) for c, w in
           (("parameters", 94), ("multiply-adds", 112), ("without bias", 112), ("FLOPs", 118),
            ("activation (kB)", 92))}
numbers.update({"#": st.column_config.NumberColumn("#", width=34),
                "layer": st.column_config.TextColumn("layer", width=110, help="module path in the layer box above"),
                "what": st.column_config.TextColumn("what", width=150),
                "output (H×W×C)": st.column_config.TextColumn("output (H×W×C)", width=100)})
st.dataframe(frame.style.apply(mark_selected, axis=1), hide_index=True, column_config=numbers,
             height=min(38 + 35 * len(frame), 640), width="stretch")
st.caption(f"Totals: {summary.params:,} parameters, {summary.macs:,} multiply-adds, {summary.flops:,} FLOPs, "
           f"{summary.activations:,} activation numbers (input included). Shapes for one image, channels last "
           "as in the lecture. Multiply-adds agree layer by layer with torchinfo's \"Mult-Adds\".")

with st.expander("For your slides: the same table from the command line", icon=":material/terminal:"):
    model_arg = state["model"] if state["model"] != "cnn" else f"'{session_cnn()[0]}'"
    extra = f" --channels {summary.in_shape[0]}" if state["model"] == "cnn" else ""
    st.code(f"python -m cnnviz.summary {model_arg} --input {size}{extra}\n"
            f"python -m cnnviz.summary {model_arg} --input {size}{extra} --json", language="bash")
    st.caption("`--json` prints one layer per line: name, label, type, output_shape (C, H, W), params, macs, "
               "macs_without_bias, flops, activation_bytes.")

your_turn("6_VGG16_explorer.py")  # the lesson's questions, their seeds in the link (q=…)
state.sync()
