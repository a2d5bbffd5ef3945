"""Convolution lab: the lecture's sliding dot product, one output at a time."""

import streamlit as st

from cnnviz import notation, pictures
from cnnviz.conv import ConvError, Geometry, output_size_formula
from cnnviz.figures import grid_spec, lab_cell_px
from cnnviz.sgd import GradientStep
from ui.client_stepper import client_stepper
from ui.convlab import STATE, ConvLab, draw_connectivity
from ui.exercises import your_turn
from ui.lessons import page_setup
from ui.photos import filtered_photo, pick_photo
from ui.presenter import controls, presenting, section
from ui.show import boxes, chart, charts_in_a_row
from ui.state import UrlState

page_setup("1_Convolution.py", stepper_sections=("", "sgd"))
PRESENTING, SECTION = presenting(), section("1_Convolution.py")  # presenter view: a stepper, or another section

PHOTO_INTRO = ("---\n### The same filter on a real photo\n\n"
               "A convolution layer applies its filters to every position of a photo at once. "
               "Try a Sobel or Prewitt preset: edges light up.")

SGD_INTRO = (
    "Training changes the filters until the outputs are what they should be. Take a **target** T for this "
    "layer's output (small integers; *New target* draws others) and the loss **L = ½ Σ (y − T)²**, half the "
    "sum of the squared differences over every output value. Its gradient for an output value is "
    "**∂L/∂y = y − T**. Every weight was multiplied with an input value at each position of the filter, so "
    "**∂L/∂w = Σ ∂L/∂y · x** over the output positions, x the input value under that weight there: the "
    "input *correlated* with ∂L/∂y, as the forward pass correlated it with the filter. The bias was added "
    "to every output, so **∂L/∂b = Σ ∂L/∂y**. Then each parameter takes a step against its gradient, "
    "**w − η·∂L/∂w**, with the learning rate η. The lecture's networks do this for all their parameters at "
    "once, with automatic differentiation, on small batches of images; here it is one layer, by hand.")


def gradient_descent(step: GradientStep) -> None:
    """One step of gradient descent on the lab's layer (the lecture's last slide), parameter by parameter."""
    eta = notation.number(step.learning_rate)
    verdict = ("lower" if step.new_loss < step.loss else
               f"**higher**: η = {eta} is too large a step here, the weights overshoot")
    loss = (f"Loss L = ½ Σ (y − T)² = ½ · {notation.number(step.sum_of_squares)} = **{notation.number(step.loss)}**; "
            f"after the step with η = {eta}, L = **{notation.number(step.new_loss)}**, {verdict}.")
    if PRESENTING:  # one row above the stepper: the loss, and η to try another step size with the hall
        with st.container(horizontal=True, vertical_alignment="center"):
            st.markdown(loss, width="content")
            lab.draw_sgd_settings(label=False)
    else:
        st.subheader("One step of gradient descent")
        st.markdown(SGD_INTRO)
        lab.draw_sgd_settings()
        y, target = step.output, step.target
        bound = max(pictures.symmetric_bound(y.numpy()), pictures.symmetric_bound(target.numpy()))  # one colour scale
        cell = min(36, lab_cell_px(*y.shape[1:]))  # y and T side by side on a phone
        channel = [f", channel {f + 1}" if y.shape[0] > 1 else "" for f in range(y.shape[0])]
        charts_in_a_row([grid_spec(grid, title, value_range=(-bound, bound), cell_px=cell)
                         for f in range(y.shape[0])
                         for grid, title in ((y[f], f"Output y{channel[f]}"), (target[f], f"Target T{channel[f]}"))],
                        key="conv.sgd.grids")
        st.markdown(loss)
    client_stepper(state, "gstep", step, key="conv.sgd", present=PRESENTING, predict_param="predict")


state = UrlState("conv", STATE)
lab = ConvLab(state)
state.show_problems()
lab.sync_widgets()
x, w, b = lab.tensors()
pad = state["pad"]

st.markdown(
    "" if PRESENTING else
    "A **filter** of size k×k×d slides over the input. At each position it multiplies every "
    "weight with the input value under it, adds everything up and adds a **bias**: one number of "
    "the output. Step through it below, then change the layer and see what happens."
)

with controls("The example and the layer"), st.container(border=not PRESENTING):
    lab.draw_settings()

if not PRESENTING:
    with st.expander("Edit the input and the filters", icon=":material/edit:", expanded=state["ex"] == "custom"):
        lab.draw_editors()

layer = lab.layer()
if isinstance(layer, ConvError):
    error, layer = layer, None
    st.error(f"**This layer gives no output.** {error}", icon=":material/block:")
    try:
        geometry = Geometry.make(w.shape[-1], pad, state["s"], state["dil"])
        st.markdown(f"Output height: {output_size_formula(x.shape[1], w.shape[-1], geometry.padding, state['s'], state['dil'])}")
    except ConvError:
        pass

if layer is not None:
    if SECTION not in ("costs", "graph", "sgd"):
        client_stepper(state, "step", layer, key="conv.stepper", present=PRESENTING, predict_param="predict")

    if not PRESENTING or SECTION == "graph":
        if not PRESENTING:
            st.subheader("Local connectivity and parameter sharing")
        st.markdown(
            "" if PRESENTING else
            "The lecture's graph representation, for one row of the input: a **fully connected** layer joins "
            "every output unit to every input, each connection with a weight of its own; a **convolution** joins "
            "a unit only to the k inputs under its window (*local connectivity*), and every unit uses the same k "
            "weights: the same colour is the same weight (*parameter sharing*).")
        draw_connectivity(layer, height_px=260 if PRESENTING else 330)

    if PRESENTING and SECTION == "sgd":
        gradient_descent(lab.gradient_step())

    geometry, counts = layer.geometry, layer.counts
    if PRESENTING and SECTION != "costs":
        state.sync()
        st.stop()
    boxes(
        "### Output size\n\n"
        "n′ = ⌊(n + 2p − r(k − 1) − 1) / s⌋ + 1 with input size n, padding p, dilation r, "
        "kernel size k and stride s:\n\n"
        f"- height: {output_size_formula(x.shape[1], geometry.kernel, geometry.padding, geometry.stride, geometry.dilation, 'height')}\n"
        f"- width: {output_size_formula(x.shape[2], geometry.kernel, geometry.padding, geometry.stride, geometry.dilation, 'width')}\n\n"
        f"Input {notation.shape(x.shape)} → output **{notation.shape(layer.out_shape)}** (one channel per filter).",
        "### What the layer costs\n\n"
        + "".join(f"- {what}: {formula} = **{notation.count(value)}**\n" for what, formula, value in counts.formulas())
        + "\n:small[:gray[The lecture counts the bias as one more multiply-add per output; "
        "FLOPs are usually quoted as 2 × multiply-adds.]]",
        after="" if PRESENTING else PHOTO_INTRO, font_rem=1.45 if PRESENTING else 1.0)
if PRESENTING:
    state.sync()
    st.stop()
if layer is None:
    st.markdown(PHOTO_INTRO)
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

if layer is not None:  # the lecture's last slide: training by gradient descent, here one step by hand
    gradient_descent(lab.gradient_step())

your_turn("1_Convolution.py")  # the lesson's questions, their seeds in the link (q=…)
state.sync()
