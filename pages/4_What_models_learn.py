"""What models learn: the data, a linear classifier's class templates, an MLP's full-image
templates and a CNN's first-layer filters, trained live on the same images."""

import math

import streamlit as st

from cnnviz import learn
from cnnviz.data import DATASETS, DataUnavailable
from cnnviz.learn_figures import (class_examples_figure, comparison_figure, history_figure, image_grid_figure,
                                  score_bars_figure)
from cnnviz.notation import count, number, percent, seconds, shape, term
from ui import datasets
from ui.exercises import your_turn
from ui.learn_models import trained
from ui.lessons import page_setup
from ui.presenter import controls, presenting
from ui.show import chart
from ui.state import Param, UrlState, int_in, one_of

page_setup("4_What_models_learn.py")
PRESENTING = presenting()

VIEWS = {
    "data": "The data",
    "linear": "Linear: class templates",
    "mlp": "MLP: full-image templates",
    "cnn": "CNN: first-layer filters",
    "compare": "Side by side",
}
SOURCES = {"auto": "full set if here, else bundled",
           "bundled": "bundled subset (6,000 + 1,000)", "full": "full set"}
MAX_TRAIN = 60_000

state = UrlState("learn", [
    Param("view", "data", one_of(*VIEWS)),
    Param("ds", "fashion-mnist", one_of(*DATASETS)),
    Param("src", "auto", one_of(*SOURCES)),
    Param("n", 6000, int_in(500, MAX_TRAIN)),
    Param("k1", learn.MLP_HIDDEN, int_in(4, 128)),
    Param("lin_ep", learn.DEFAULTS["linear"]["epochs"], int_in(1, 30)),
    Param("mlp_ep", learn.DEFAULTS["mlp"]["epochs"], int_in(1, 30)),
    Param("cnn_ep", learn.DEFAULTS["cnn"]["epochs"], int_in(1, 10)),
    Param("seed", 0, int_in(0, 9999)),
    Param("img", 0, int_in(0, 59_999)),
])
state.show_problems()
if state["view"] is None:  # a click on the selected segment unselects it: back to the data
    state["view"] = "data"


def train_kind(kind: str) -> learn.TrainResult:
    if kind == "linear":
        return trained(state, "linear", train_set, test_set, epochs=state["lin_ep"], seed=state["seed"])
    if kind == "mlp":
        return trained(state, "mlp", train_set, test_set, epochs=state["mlp_ep"], hidden=state["k1"],
                       seed=state["seed"])
    return trained(state, "cnn", train_set, test_set, epochs=state["cnn_ep"], seed=state["seed"])


def use_bundled() -> None:
    state["ds"], state["src"] = "fashion-mnist", "bundled"


# ---- settings ----------------------------------------------------------------------------

if not PRESENTING:
    st.markdown(
        "A classifier turns an image into 10 class scores. What do its weights look like after "
        "training? Each model below is **trained live on the same images** (a few seconds), then "
        "its weights are drawn as pictures, as in the lecture's slides."
    )

with controls("Data and model"), st.container(border=not PRESENTING):
    top = st.columns([3, 3, 2, 2])
    top[0].selectbox("Data set", list(DATASETS), key=state.key("ds"),
                     format_func=lambda k: f"{DATASETS[k].title} ({shape(DATASETS[k].shape)})")
    top[1].selectbox("Images", list(SOURCES), key=state.key("src"), format_func=SOURCES.get,
                     help="Only Fashion-MNIST comes bundled. The full sets come from Debian's "
                          "dataset-fashion-mnist package or torchvision's files in the server's data folder "
                          "(its admin sets it with the CNNVIZ_DATA environment variable).")
    top[2].number_input("Training images", 500, MAX_TRAIN, step=500, key=state.key("n"),
                        help="A random subset of the training split (fixed seed): fewer images train faster.")
    top[3].number_input("Seed", 0, 9999, key=state.key("seed"), help="Same seed, same model.")
    st.segmented_control("Show", list(VIEWS), key=state.key("view"), format_func=VIEWS.get,
                         selection_mode="single", label_visibility="collapsed")

name = state["ds"]
info = DATASETS[name]
try:
    train_full, test_set = datasets.image_sets(name, state["src"])
except DataUnavailable as error:
    st.error(f"**{info.title} is not available.** {error}", icon=":material/cloud_off:")
    left, right = st.columns(2)
    right.button("Use the bundled Fashion-MNIST subset instead", icon=":material/inventory_2:", on_click=use_bundled)
    if not info.has_bundled or state["src"] == "full":
        datasets.download_button(name, key="learn.download", where=left)
    state.sync()
    st.stop()

datasets.download_notice()
train_set = datasets.training_images(name, state["src"], state["n"], state["seed"])
if state["n"] > len(train_full):
    st.caption(f"The training split has {count(len(train_full))} images; all of them are used.")
if state["img"] >= len(test_set):
    st.warning(f"The test set has {count(len(test_set))} images; showing image {len(test_set) - 1} instead of "
               f"{state['img']}.", icon=":material/image:")
    state["img"] = len(test_set) - 1
c, h, w = info.shape
D = c * h * w
classes = train_set.classes


def accuracy_line(result: learn.TrainResult, cols=None) -> None:
    """Accuracy, size and time of a trained model, in the four columns `cols` (default: a new row)."""
    cols = cols or st.columns(4)
    cols[0].metric("Test accuracy", percent(result.test_accuracy),
                   help=f"On {count(result.n_test)} test images; chance is 10%.")
    cols[1].metric("Parameters", count(result.parameters))
    cols[2].metric("Training images", count(result.n_train))
    cols[3].metric("Trained in", seconds(result.seconds), help=f"{result.settings['epochs']} epochs, Adam")


def cifar_note() -> None:
    if name == "cifar10":
        return
    if datasets.on_server("cifar10", "full"):
        st.info("The lecture's pictures are CIFAR-10 templates, and CIFAR-10 is on this server: "
                "[see them for CIFAR-10](?view=" + state["view"] + "&ds=cifar10).", icon=":material/palette:")
    else:
        st.caption("The lecture shows these pictures for CIFAR-10 (32×32×3 colour). Choose CIFAR-10 above "
                   "to download it (170 MB) or see how to get it.")


view = state["view"]

if PRESENTING and view == "linear":  # the lecture's slide: the class templates, and why one wins
    result = train_kind("linear")
    left, right = st.columns([3, 2])
    chart(image_grid_figure(learn.linear_templates(result), mode="signed", columns=5, captions=classes,
                            cell_px=118 if c == 1 else 100,
                            title=f"The 10 rows of W as images: class templates (test accuracy "
                                  f"{percent(result.test_accuracy)})"), key="learn.fig.templates", where=left)
    index = state["img"]
    match = learn.template_match(result, test_set.image(index))
    chart(score_bars_figure(match.scores, classes, dots=match.dots, bias=match.bias, true_label=test_set.label(index),
                            title=f"Test image {index}: scores wᵢᵀx + bᵢ"), key="learn.fig.scores", where=right)
    p = match.predicted
    right.markdown(f"The **{classes[p]}** template matches best: {number(match.dots[p], 2)} + "
                   f"{term(match.bias[p], 2)} = **{number(match.scores[p], 2)}**")
    state.sync()
    st.stop()

# ---- the data ----------------------------------------------------------------------------

if view == "data":
    st.subheader(f"{info.title}: {count(len(train_full))} training and {count(len(test_set))} test images")
    st.markdown(f"{info.what} Loaded from: **{train_full.source}**.")
    cols = st.columns(4)
    cols[0].metric("Image size", train_full.shape_text, help="height × width × channels")
    cols[1].metric("Numbers per image", count(D), help=f"{h}·{w}·{c}: the length of the flattened vector x")
    cols[2].metric("Classes", len(classes))
    cols[3].metric("Training images", count(len(train_full)),
                   help="The whole split is one uint8 tensor of shape N × C × H × W = "
                        + shape(train_full.images.shape))
    per_class = 10
    chart(class_examples_figure(train_full, per_class, seed=state["seed"], cell_px=64,
                                title=f"{per_class} random training images per class"), key="learn.fig.examples")
    st.caption("Images per class (training): " + ", ".join(f"{count(n)} {k}" for k, n in
                                                           zip(classes, train_full.class_counts().tolist())))
    st.markdown("**The data sets side by side.** A grey 28×28 image flattens to 784 numbers, a colour "
                "32×32 image to 32·32·3 = 3,072, which is why the lecture's W is 10×3072.")
    st.dataframe([{"data set": other.title, "image": shape(other.shape), "flattened length": math.prod(other.shape),
                   "classes": len(other.classes),
                   "on this server": datasets.location(key)} for key, other in DATASETS.items()],
                 hide_index=True, column_config={"flattened length": st.column_config.NumberColumn(format="localized")})

# ---- linear classifier -------------------------------------------------------------------

elif view == "linear":
    st.markdown(
        f"Flatten each {shape(info.shape)} image to a vector **x** of {count(D)} numbers. A linear classifier "
        f"computes the class scores **f(x) = Wx + b**, with $W \\in \\mathbb{{R}}^{{10 \\times {D}}}$ and "
        "$b \\in \\mathbb{R}^{10}$. The score of class i "
        "is **wᵢᵀx + bᵢ**: a dot product of the image with row i of W. Reshaped back to an image, each row "
        "is a **template** of its class."
    )
    row = st.columns([3, 2, 2, 2, 2])  # the setting, then what it gave
    row[0].slider("Epochs", 1, 30, key=state.key("lin_ep"))
    result = train_kind("linear")
    accuracy_line(result, row[1:])
    chart(image_grid_figure(learn.linear_templates(result), mode="signed", columns=5, captions=classes,
                            cell_px=160 if c == 1 else 130, colorbar=c == 1,
                            title="The 10 rows of W, reshaped back into images: the class templates"),
          key="learn.fig.templates")
    st.caption("Red: a bright pixel here raises the class score; blue: it lowers it (inputs are standardised, "
               "so 'bright' means brighter than the average image)." if c == 1 else
               "Each template rescaled from its smallest (black) to its largest weight (white), "
               "colour channels together, as in the lecture's slide.")
    cifar_note()

    st.subheader("Template matching: why the highest-matching template wins")
    left, right = st.columns([1, 2])
    index = datasets.test_image_picker(state, test_set, where=left)
    match = learn.template_match(result, test_set.image(index))
    true = test_set.label(index)
    chart(score_bars_figure(match.scores, classes, dots=match.dots, bias=match.bias, true_label=true,
                            title="Class scores wᵢᵀx + bᵢ"), key="learn.fig.scores", where=right)
    p = match.predicted
    verdict = "correct" if p == true else f"wrong: it is a {classes[true]}"
    st.markdown(f"The **{classes[p]}** template matches best: score = wᵀx + b = "
                f"{number(match.dots[p], 2)} + {term(match.bias[p], 2)} = **{number(match.scores[p], 2)}** "
                f"({verdict}).")
    shown = [p] if p == true else [p, true]
    chart(image_grid_figure(learn.contributions(result, match, shown), mode="signed", columns=2, cell_px=200,
                            captions=[f"w·x terms for {classes[k]}: sum {number(match.dots[k], 1)}" for k in shown],
                            title="Where the image agrees (red) and disagrees (blue) with the template"),
          key="learn.fig.contributions")

# ---- MLP ----------------------------------------------------------------------------------

elif view == "mlp":
    st.markdown(
        f"The first fully connected layer of an MLP computes **σ(Wx + b)** with "
        f"$W \\in \\mathbb{{R}}^{{k_1 \\times {D}}}$: each of its "
        "k₁ hidden units is a linear model on the whole image followed by the activation function. So each "
        "row of W is a **full-image template**, and its unit is active when the image matches it. The next "
        "layer combines these features into class scores."
    )
    settings = st.columns([2, 2, 3])
    settings[0].slider("Hidden units k₁", 4, 128, step=4, key=state.key("k1"))
    settings[1].slider("Epochs", 1, 30, key=state.key("mlp_ep"))
    result = train_kind("mlp")
    accuracy_line(result)
    left, right = st.columns([1, 3])
    index = datasets.test_image_picker(state, test_set, where=left)
    top = learn.most_active(learn.hidden_activations(result, test_set.image(index)), 5)
    k1 = state["k1"]
    columns = 8 if k1 <= 64 else 16
    chart(image_grid_figure(learn.hidden_templates(result), mode="signed", columns=columns,
                            captions=[f"unit {j + 1}" for j in range(k1)], highlight=[j for j, _ in top],
                            cell_px=96 if columns == 8 else 56,
                            title=f"The k₁ = {k1} rows of the first layer's W as images"),
          key="learn.fig.units", where=right)
    right.caption(f"Framed in red: the 5 units most active on test image {index} "
                  f"({', '.join(f'unit {j + 1}: {number(a, 1)}' for j, a in top)}).")

# ---- CNN ----------------------------------------------------------------------------------

elif view == "cnn":
    st.markdown(
        "A convolution layer's filter is a **local template**: a small k×k×C weight block matched against "
        "every k×k crop of the image. Its activation map is high where the crop matches. Trained on photos, "
        "first-layer filters often become **oriented edges and simple shapes**, like AlexNet's below. "
        f"Here: a small CNN, `{learn.CNN_STACK}`, with 16 filters of 5×5×{c} = {25 * c} weights each, "
        "trained for a few epochs on the images above."
    )
    row = st.columns([3, 2, 2, 2, 2])
    row[0].slider("Epochs", 1, 10, key=state.key("cnn_ep"))
    result = train_kind("cnn")
    accuracy_line(result, row[1:])
    filters = learn.first_layer_filters(result)
    chart(image_grid_figure(filters, mode="signed", columns=8, cell_px=104,
                            captions=[f"filter {j + 1}" for j in range(len(filters))], colorbar=c == 1,
                            title=f"The 16 first-layer filters ({shape(filters.shape[1:])}) as images"),
          key="learn.fig.filters")
    st.caption(
        ("Each filter on its own colour scale: red weights above zero, blue below. " if c == 1 else
         "Each filter rescaled from its smallest (black) to its largest weight (white). ")
        + "What they learned here: **blobs, bars and edges**, that is a patch, a stripe, or a bright side "
          "next to a dark one. They are coarse: 5×5 is only 25 pixels, and a few epochs on small images shape "
          "them roughly. They started as tiny random numbers, so all you see was learned. Crisp edges at many "
          "angles, as in AlexNet's filters below, took 11×11 filters and days of training on 1.2 million photos.")
    left, right = st.columns([1, 3])
    index = datasets.test_image_picker(state, test_set, where=left)
    maps = learn.activation_maps(result, test_set.image(index))
    chart(image_grid_figure(maps, mode="signed", columns=8, cell_px=84,
                            captions=[f"filter {j + 1}" for j in range(len(maps))],
                            title=f"Each filter's activation map on test image {index} "
                                  f"({shape(maps.shape[1:])})"),
          key="learn.fig.maps", where=right)
    right.caption("Red where the crop under the filter matches it, blue where it is the opposite "
                  "(before the ReLU, which keeps only the red). The frame at the border comes from the zero padding.")

    st.subheader("AlexNet's first layer: filters of 11×11×3")
    st.markdown(
        "The lecture's picture comes from the original AlexNet paper (Krizhevsky, Sutskever and Hinton, 2012): "
        "**96 filters**, trained as two halves of 48 on two GPUs; one half learned mostly colourless edges, "
        "the other mostly colour blobs. torchvision's pretrained AlexNet follows Krizhevsky's later one-GPU "
        "version (2014), which has **64 filters** of the same 11×11×3 = 363 weights: those are shown here."
    )
    try:
        alex = learn.alexnet_filters()
    except learn.WeightsUnavailable as error:
        st.info(str(error), icon=":material/download:")
    else:
        chart(image_grid_figure(alex, mode="signed", columns=16, cell_px=66,
                                title="torchvision's AlexNet (ImageNet): the 64 first-layer filters, 11×11×3 each"),
              key="learn.fig.alexnet")
        st.caption("From torchvision's pretrained weights (IMAGENET1K_V1). Oriented edges at many angles, "
                   "and colour blobs.")

# ---- side by side ---------------------------------------------------------------------------

else:
    st.markdown("The same training images, three models. How many parameters does each use, how well does "
                "it classify, and what did it learn?")
    results = {kind: train_kind(kind) for kind in learn.KINDS}
    rows = learn.comparison(results)
    st.dataframe([{"model": r.title, "parameters": r.parameters, "test accuracy": percent(r.test_accuracy),
                   "trained in": seconds(r.seconds), "what it learned": r.learned} for r in rows],
                 hide_index=True)
    left, right = st.columns(2)
    chart(comparison_figure([r.title for r in rows], [r.test_accuracy for r in rows], [r.parameters for r in rows]),
          key="learn.fig.comparison", where=left)
    chart(history_figure({learn.TITLES[k]: [e.test_accuracy for e in results[k].history] for k in learn.KINDS}),
          key="learn.fig.history", where=right)
    pictures = [
        ("Linear: 10 class templates", learn.linear_templates(results["linear"]), 5, classes),
        (f"MLP: first 10 of {state['k1']} unit templates", learn.hidden_templates(results["mlp"])[:10], 5, None),
        ("CNN: 16 first-layer filters", learn.first_layer_filters(results["cnn"]), 4, None),
    ]
    for i, (col, (title, images, columns, captions)) in enumerate(zip(st.columns(3), pictures)):
        col.markdown(f"**{title}**")
        chart(image_grid_figure(images, mode="signed", columns=columns, captions=captions,
                                cell_px=62 if columns == 5 else 72), key=f"learn.fig.side{i}", where=col)
    cifar_note()

your_turn("4_What_models_learn.py")  # the lesson's questions, their seeds in the link (q=…)
state.sync()
