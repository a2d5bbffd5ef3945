"""Classify an image: preprocessing, the softmax made visible, the network unit by unit, why it chose its class,
and every convolution layer's maps."""

import math

import streamlit as st

from cnnviz import classify, notation
from cnnviz.classify import PRETRAINED, ClassifyError, WeightsUnavailable
from cnnviz.classify_figures import activation_grid_image, softmax_figure, strength_figure, top_k_figure
from cnnviz.pictures import png
from ui.exercises import your_turn
from ui.explain import (chosen_unit, class_picker, network_view, overview_now, parse_unit, unit_panel,
                        why_this_class)
from ui.lessons import page_setup
from ui.presenter import controls, presenting
from ui.results import remember, result_key
from ui.show import arithmetic, chart, chart_by_width
from ui.state import Param, UrlState, int_in, one_of
from ui.upload import SOURCES as IMAGE_SOURCES
from ui.upload import bundled_model, checkpoint_picker, image_picker, pretrained_model, session_classifier

page_setup("7_Classify_an_image.py")
PRESENTING = presenting()  # the presenter view shows one part: the prediction, the network or why

OWN_MODELS = {
    "bundled": "Small CNN trained on Fashion-MNIST (bundled)",
    "session": "The model you trained on the Train a CNN page",
    "checkpoint": "A checkpoint file you upload",
}
MODEL_TITLES = {**OWN_MODELS, **{k: f"{p.title} (pretrained on ImageNet)" for k, p in PRETRAINED.items()}}
GRID_CHANNELS = 64  # channels per page of the activation grid
STRONGEST = 8


def default_image(state: UrlState) -> str:
    return "Cat" if state["model"] in PRETRAINED else classify.FASHION_PREFIX + "Ankle boot"


state = UrlState("classify", [
    Param("model", "bundled", one_of(*MODEL_TITLES)),
    Param("source", "file", one_of(*IMAGE_SOURCES)),  # a sample or file, the drawing pad, or the camera
    Param("img", default_image, str),
    Param("invert", "auto", one_of("auto", "yes", "no")),
    Param("layer", 1, int_in(1, 500)),
    Param("ch", 0, int_in(0, 64)),
    Param("unit", "", parse_unit),  # layer.channel.row.column or layer.entry, from 1 ("" before a click)
    Param("cls", "", str),  # the class to explain ("" the predicted one)
    Param("view", "prediction", one_of("prediction", "network", "why")),  # the presenter view's part
])
state.show_problems()

st.markdown(
    "" if PRESENTING else
    "A trained CNN is one big function **f(image) → one score per class**, nested from convolutions, "
    "ReLUs and pooling. Its last box, the **softmax**, turns the scores into probabilities: "
    "exponentiate every score, then divide by the sum of them all. Pick a model and an image, and see "
    "every step: how the image is prepared, what each convolution layer responds to, and how the "
    "scores become probabilities."
)


# ---------------------------------------------------------------- the model

def offer_download(spec: classify.Pretrained) -> None:
    """What is missing and where it goes, with a button to download it; one message at a time."""
    message = st.empty()
    message.warning(spec.missing_message(), icon=":material/cloud_download:")
    if st.button(f"Download {spec.title} weights ({notation.megabytes(spec.size_bytes)})",
                 icon=":material/download:", key=f"classify.download.{spec.key}"):
        bar = st.progress(0.0, text="Connecting …")
        try:
            classify.download_weights(spec.key, progress=lambda f, text: bar.progress(f, text=text))
        except WeightsUnavailable as error:
            bar.empty()
            message.error(str(error), icon=":material/wifi_off:")
            return
        bar.empty()
        st.rerun()


def choose_model() -> classify.Classifier | None:
    with st.container(border=True):
        left, right = st.columns([2, 3], vertical_alignment="bottom")
        left.selectbox("Model", list(MODEL_TITLES), key=state.key("model"), format_func=MODEL_TITLES.get,
                       on_change=state.reset, args=("layer", "ch", "unit", "cls"))
        key = state["model"]
        try:
            if key == "bundled":
                clf = bundled_model()
            elif key == "session":
                with right:
                    clf = session_classifier()
            elif key == "checkpoint":
                with right:
                    clf = checkpoint_picker("classify")
            else:
                spec = PRETRAINED[key]
                if not spec.cached:
                    offer_download(spec)  # below the model choice, across the whole width
                    return None
                with st.spinner(f"Loading {spec.title} ({notation.megabytes(spec.size_bytes)} of weights)…"):
                    clf = pretrained_model(key)
        except ClassifyError as error:
            st.error(str(error), icon=":material/block:")
            return None
        if clf is not None:
            right.caption(f"**{clf.title}** · {clf.note} · {notation.count(len(clf.classes))} classes · "
                          f"{notation.count(classify.parameter_count(clf.model))} parameters · weights: {clf.source}")
        return clf


if PRESENTING:  # the part shown and the folded controls share one row: the projector's height is for the figure
    view_column, controls_column = st.columns([5, 7], vertical_alignment="top")
    view_column.segmented_control("Show", ["prediction", "network", "why"], key=state.key("view"), required=True,
                                  format_func={"prediction": "The prediction", "network": "The network, unit by unit",
                                               "why": "Why this class"}.get, label_visibility="collapsed")
else:
    controls_column = st.container()
VIEW = state["view"] if PRESENTING else ""

with controls_column, controls("Model and image"):
    classifier = choose_model()

    # ---------------------------------------------------------------- the image

    if not PRESENTING:
        st.subheader("1. Your image")
    picked = image_picker(state, "img", "classify", classifier=classifier, invert=state["invert"])
    recipe = classifier.recipe if classifier is not None else None
    if recipe is not None and recipe.light_on_dark:
        st.radio("Invert black and white", ["auto", "yes", "no"], key=state.key("invert"), horizontal=True,
                 format_func={"auto": "automatic (if the background is light)", "yes": "always", "no": "never"}.get,
                 help="Fashion-MNIST shows light objects on a black background; a photo of a dark shirt on a "
                      "white table looks like the opposite to the network.")
if classifier is None or picked is None:
    state.sync()
    st.stop()


# ---------------------------------------------------------------- run once, reuse on reruns

# What the model makes of the image depends on (model, image, invert) only: computed once per process for
# the models every session shares (a hall opening one link classifies the same sample once), see ui.results.
RESULT_KEY = result_key(classifier, picked, state["invert"] if recipe.light_on_dark else "")


def classify_now(clf: classify.Classifier, img) -> tuple[classify.Prepared, classify.Prediction]:
    def make():
        prepared = img.prepare(clf.recipe, invert=state["invert"])  # a drawing's own steps, or classify.prepare
        return prepared, classify.predict(clf, prepared.tensor)
    return remember("prediction", RESULT_KEY, make)


try:
    with st.spinner("Classifying…"):
        prepared, prediction = classify_now(classifier, picked)
    breakdown = classify.softmax_breakdown(prediction.logits, classifier.classes,
                                           k=len(classifier.classes) if len(classifier.classes) <= 10 else 5)
except ClassifyError as error:
    st.error(str(error), icon=":material/block:")
    state.sync()
    st.stop()

steps = prepared.steps
if not PRESENTING:
    st.markdown(f"**From {picked.name} to the network's input**, step by step:")
    cols = st.columns(max(len(steps), 4))
    for col, (number, step) in zip(cols, enumerate(steps, start=1)):
        with col:
            st.image(step.image, caption=f"{number}. {step.title}", width="stretch")
            st.caption(f"{step.note} Shape {notation.shape(step.shape)}.")

if classifier.key in ("bundled", "session", "checkpoint") and not picked.ident.startswith("fashion:") \
        and recipe.light_on_dark and not PRESENTING:
    st.info("This network only knows the 10 kinds of clothing in Fashion-MNIST, at 28×28 pixels. Whatever "
            "it is shown, the softmax shares 100% among those 10 classes: a cat becomes the most similar "
            "piece of clothing.", icon=":material/lightbulb:")

# ---------------------------------------------------------------- the prediction

best = breakdown.names[0]


def softmax_arithmetic(b: classify.SoftmaxBreakdown) -> None:
    """The winning class's probability, spelled out: e^z over the sum of all e^z."""
    z0 = classify.number_text(float(b.scores[0]))
    e = [classify.number_text(float(v)) for v in b.exps]
    shown = e[:3]
    others = len(b.indices) - len(shown) + b.rest_count
    denominator = " + ".join(shown) + (f" + … ({notation.count(others)} more)" if others else "")
    power = f"e^({z0})" if b.shift == 0 else f"e^({z0} − {classify.number_text(b.shift)})"
    arithmetic([
        (f"p({best})", f"= {power} / Σ over all {notation.count(b.n_classes)} classes"),
        ("", f"= {e[0]} / ({denominator})"),
        ("", f"= {e[0]} / {classify.number_text(b.total)} = {notation.number(float(b.probabilities[0]), 4)}"),
    ])
    if b.shift:
        st.caption("The scores are so large that e^z would overflow, so the largest score is subtracted "
                   "from every score first; this cancels in the division and does not change p.")


def the_prediction() -> None:
    if not PRESENTING:
        st.subheader("2. The prediction")
    n_in = math.prod(prediction.input_shape)
    left, right = st.columns([2, 3])
    with left:
        verdict = f"**{best}** with probability **{notation.percent(float(breakdown.probabilities[0]))}**"
        if picked.true_class is not None:
            mark = ":green[:material/check_circle:]" if picked.true_class == best else ":red[:material/cancel:]"
            verdict += f" {mark} (the true class is {picked.true_class})"
        if PRESENTING:  # the network's input beside the verdict: what the hall is looking at
            st.image(steps[-1].image, width=200,
                     caption=f"{picked.name} as the network sees it ({notation.shape(steps[-1].shape)})")
        st.markdown(verdict)
        top = prediction.top(5)
        if not PRESENTING:  # the softmax figure beside it shows every class already
            chart(remember("figure", (*RESULT_KEY, "top k"), lambda: top_k_figure(
                [classifier.classes[i] for i, _ in top], [p for _, p in top],
                title=f"Top {len(top)} of {notation.count(len(classifier.classes))} classes").to_dict()),
                  key="classify.topk")
            m1, m2 = st.columns(2)
            m1.metric("Forward pass", notation.seconds(prediction.seconds),
                      help=f"One run of f(x) on this computer's CPU: the fastest of {prediction.timed_runs} runs, "
                           "without recording the activation maps.")
            m2.metric("Preprocessing", notation.seconds(prepared.seconds))
        st.caption(f"f maps {notation.shape(prediction.input_shape)} = {notation.count(n_in)} numbers to "
                   f"{notation.count(len(classifier.classes))} class scores.")
        if PRESENTING:
            softmax_arithmetic(breakdown)
    with right:
        wide = remember("figure", (*RESULT_KEY, "softmax"), lambda: softmax_figure(breakdown).to_dict())
        if PRESENTING:  # a projector is wide
            chart(wide, key="classify.softmax")
        else:  # a phone in the hall gets the three panels one above the other
            chart_by_width(wide, remember("figure", (*RESULT_KEY, "softmax stacked"),
                                          lambda: softmax_figure(breakdown, stacked=True).to_dict()),
                           key="classify.softmax")
        if not PRESENTING:
            softmax_arithmetic(breakdown)
            st.caption("Exponentiating makes every score positive and stretches the gaps: a score just 2.3 higher "
                       "means 10× more weight. Dividing by the sum makes the probabilities add up to 100%.")


# ---------------------------------------------------------------- the network, unit by unit

def unit_by_unit() -> None:
    if not PRESENTING:
        st.subheader("3. The network, unit by unit")
        st.markdown("The whole forward pass for this image, **one column per layer** from the input to the "
                    "softmax, with the shape of each layer's output as the lecture writes it (m×l×d). Every unit "
                    "is a small computation: **click a cell of a map, or a score**, to see what it computed, on "
                    "the real numbers.")
    try:
        overview = overview_now(classifier, prepared.tensor, RESULT_KEY)
        unit, clicked = chosen_unit(overview, state)
    except ClassifyError as error:
        st.error(str(error), icon=":material/block:")
        return
    network_view(overview, unit, clicked, state, RESULT_KEY, present=PRESENTING)
    unit_panel(overview, unit, present=PRESENTING)


# ---------------------------------------------------------------- why this class

def why() -> None:
    if not PRESENTING:
        st.subheader("4. Why this class")
        st.markdown("Two ways to ask the network which part of the image made it decide. **Grad-CAM** weighs "
                    "the last convolution's maps by how much each raises the class's score (the mean of its "
                    "gradient) and adds them up. **Occlusion** covers the image with a grey patch, place by "
                    "place, and watches the class's probability.")
    try:
        overview = overview_now(classifier, prepared.tensor, RESULT_KEY)
        with controls("Class to explain") if PRESENTING else st.container():
            class_index = class_picker(classifier, overview, state)
        why_this_class(classifier, prepared.tensor, overview, class_index, RESULT_KEY,
                       forward_seconds=prediction.seconds, present=PRESENTING)
    except ClassifyError as error:
        st.error(str(error), icon=":material/block:")


{"prediction": the_prediction, "network": unit_by_unit, "why": why}.get(VIEW, lambda: None)()
if PRESENTING:
    state.sync()
    st.stop()
the_prediction()
unit_by_unit()
why()

# ---------------------------------------------------------------- inside the network

st.subheader("5. Inside the network")
layers = prediction.activations
if not layers:
    st.info("This model has no convolution layers with spatial maps to show.")
    state.sync()
    st.stop()
if state["layer"] > len(layers):
    st.warning(f"The link asked for convolution layer {state['layer']}, but this model has {len(layers)}; "
               "showing the first.", icon="🔗")
    state["layer"] = 1
if len(layers) > 1:
    st.slider("Convolution layer", 1, len(layers), key=state.key("layer"), on_change=state.reset, args=("ch",),
              help="Every convolution layer of the network, from the input (1) towards the output.")
layer = layers[state["layer"] - 1]
channels_total, h, w = layer.shape
st.markdown(f"**Convolution {state['layer']} of {len(layers)}** ({layer.label}) · output "
            f"{notation.shape(layer.shape)} ({channels_total} activation maps of {notation.grid(h, w)}), "
            "one per filter. "
            "Red: the filter matched (positive), blue: negative, white: zero; each map has its own scale.")
if prediction.skipped_convs:
    st.caption(f"Not shown: {prediction.skipped_convs} convolutions whose output is {notation.grid(1, 1)} "
               "(squeeze-and-excitation gates, which weigh whole channels).")

pages = (channels_total + GRID_CHANNELS - 1) // GRID_CHANNELS
if state["ch"] > pages:
    st.warning(f"The link asked for channel group {state['ch']}, but this layer has {pages}; showing the "
               "strongest channels.", icon="🔗")
    state["ch"] = 0
strongest = layer.strongest(min(GRID_CHANNELS, channels_total))
grid_left, grid_right = st.columns([3, 2])
with grid_left:
    if channels_total > GRID_CHANNELS:
        options = [0, *range(1, pages + 1)]
        st.selectbox("Channels", options, key=state.key("ch"),
                     format_func=lambda g: f"the {GRID_CHANNELS} strongest" if g == 0 else
                     f"{(g - 1) * GRID_CHANNELS + 1}–{min(g * GRID_CHANNELS, channels_total)}")
    group = state["ch"]
    if channels_total <= GRID_CHANNELS:
        shown = list(range(channels_total))
    elif group == 0:
        shown = strongest
    else:
        shown = list(range((group - 1) * GRID_CHANNELS, min(group * GRID_CHANNELS, channels_total)))
    columns = 8 if len(shown) > 16 else max(4, len(shown) // 2)
    st.image(remember("picture", (*RESULT_KEY, "maps", state["layer"], tuple(shown), columns),
                      lambda: png(activation_grid_image(layer.maps, shown, columns=columns))), width="stretch",
             caption=f"{len(shown)} of {channels_total} activation maps, {notation.grid(h, w)} each")
with grid_right:
    top_n = strongest[:STRONGEST]
    strength = layer.strength
    st.markdown(f"**The {len(top_n)} strongest channels** for this image "
                "(largest mean positive activation, what a ReLU lets through):")
    st.image(remember("picture", (*RESULT_KEY, "strongest maps", state["layer"]), lambda: png(activation_grid_image(
        layer.maps, top_n, columns=4, min_px=112, max_px=160, label_px=22,
        labels=[f"#{c + 1}: {notation.number(float(strength[c]), 2)}" for c in top_n]))), width="stretch")
    chart(remember("figure", (*RESULT_KEY, "strength", state["layer"]),
                   lambda: strength_figure(strength, top_n, title="Response of every channel").to_dict()),
          key="classify.strength")

st.markdown("**The shapes flowing through the network**, layer by layer, for this image:")
rows = [{"step": i, "layer": row.label, "type": row.kind, "output shape": notation.shape(row.shape),
         "numbers": math.prod(row.shape), "parameters": row.params}
        for i, row in enumerate(prediction.shapes, start=1)]
chain = ([notation.shape(prediction.input_shape)] + [notation.shape(a.shape) for a in layers]
         + [notation.count(len(classifier.classes))])
st.caption("Input → every convolution → scores: " + " → ".join(chain))
st.dataframe(rows, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(rows)),
             column_config={"numbers": st.column_config.NumberColumn(format="localized"),
                            "parameters": st.column_config.NumberColumn(format="localized")})

your_turn("7_Classify_an_image.py")  # the lesson's questions, their seeds in the link (q=…)
state.sync()
