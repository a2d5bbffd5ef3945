"""What models learn: the data, a linear classifier's class templates, an MLP's full-image
templates and a CNN's first-layer filters, trained live on the same images."""

from collections import OrderedDict

import streamlit as st
import torch

from cnnviz import learn
from cnnviz.data import DATASETS, DataUnavailable, ImageSet, default_root, full_present, load_images
from cnnviz.learn_figures import comparison_figure, history_figure, image_grid_figure, score_bars_figure
from ui.lessons import page_setup
from ui.state import Param, UrlState, int_in, one_of

page_setup("3_What_models_learn.py")

VIEWS = {
    "data": "The data",
    "linear": "Linear: class templates",
    "mlp": "MLP: full-image templates",
    "cnn": "CNN: first-layer filters",
    "compare": "Side by side",
}
SOURCES = {"auto": "full set if here, else bundled",
           "bundled": "bundled subset (6,000 + 1,000)", "full": "full set"}
CHART = {"displayModeBar": False}
MAX_TRAIN = 60_000
STORE_SIZE = 24  # trained models kept for all sessions

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
st.session_state.setdefault("learn.root", str(default_root()))


# ---- data and trained models, cached for every session ------------------------------------

@st.cache_resource(max_entries=8, show_spinner="Reading the images…")
def cached_split(name: str, split: str, source: str, root: str) -> ImageSet:
    return load_images(name, split, source=source, root=root)


@st.cache_resource
def model_store() -> OrderedDict:
    return OrderedDict()


def trained(kind: str, train_set: ImageSet, test_set: ImageSet, **settings) -> learn.TrainResult:
    """Train once per settings (shown with a progress bar), then reuse from the shared store."""
    key = (kind, train_set.name, train_set.source, len(train_set), tuple(sorted(settings.items())))
    store = model_store()
    if key in store:
        store.move_to_end(key)
        return store[key]
    bar = st.progress(0.0, text=f"Training the {learn.TITLES[kind].lower()}…")
    try:
        result = learn.train(kind, train_set, test_set,
                             progress=lambda f, text: bar.progress(min(f, 1.0), text=text), **settings)
    except (ValueError, RuntimeError) as error:  # impossible settings, or out of memory
        bar.empty()
        st.error(f"The {learn.TITLES[kind].lower()} could not be trained: {error}", icon=":material/error:")
        state.sync()
        st.stop()
    bar.empty()
    store[key] = result
    while len(store) > STORE_SIZE:
        store.popitem(last=False)
    return result


def train_kind(kind: str) -> learn.TrainResult:
    if kind == "linear":
        return trained("linear", train_set, test_set, epochs=state["lin_ep"], seed=state["seed"])
    if kind == "mlp":
        return trained("mlp", train_set, test_set, epochs=state["mlp_ep"], hidden=state["k1"], seed=state["seed"])
    return trained("cnn", train_set, test_set, epochs=state["cnn_ep"], seed=state["seed"])


def use_bundled() -> None:
    state["ds"], state["src"] = "fashion-mnist", "bundled"


def download(name: str, root: str) -> None:
    bar = st.progress(0.0, text=f"Downloading {DATASETS[name].title}…")
    try:
        for split in ("train", "test"):
            load_images(name, split, source="full", root=root, download=True,
                        progress=lambda f, text: bar.progress(min(f, 1.0), text=text))
    except DataUnavailable as error:
        st.session_state["learn.download_error"] = str(error)
        st.rerun()
    bar.empty()
    st.session_state.pop("learn.download_error", None)
    cached_split.clear()
    st.session_state["learn.downloaded"] = f"{DATASETS[name].title} downloaded to {root}."
    st.rerun()


# ---- settings ----------------------------------------------------------------------------

st.markdown(
    "A classifier turns an image into 10 class scores. What do its weights look like after "
    "training? Each model below is **trained live on the same images** (a few seconds), then "
    "its weights are drawn as pictures, as in the lecture's slides."
)

with st.container(border=True):
    top = st.columns([3, 3, 2, 2])
    top[0].selectbox("Data set", list(DATASETS), key=state.key("ds"),
                     format_func=lambda k: f"{DATASETS[k].title} ({DATASETS[k].shape[1]}×{DATASETS[k].shape[2]}×"
                                           f"{DATASETS[k].shape[0]})")
    top[1].selectbox("Images", list(SOURCES), key=state.key("src"), format_func=SOURCES.get,
                     help="Only Fashion-MNIST comes bundled. The full sets come from Debian's "
                          "dataset-fashion-mnist package or torchvision's files in the data folder.")
    top[2].number_input("Training images", 500, MAX_TRAIN, step=500, key=state.key("n"),
                        help="A random subset of the training split (fixed seed): fewer images train faster.")
    top[3].number_input("Seed", 0, 9999, key=state.key("seed"), help="Same seed, same model.")
    st.segmented_control("Show", list(VIEWS), key=state.key("view"), format_func=VIEWS.get,
                         selection_mode="single", label_visibility="collapsed")

with st.sidebar:
    st.divider()
    st.text_input("Data folder", key="learn.root",
                  help="Where torchvision's MNIST / CIFAR-10 / Fashion-MNIST files are (or are downloaded to). "
                       "Default: $CNNVIZ_DATA or data/ in the app's folder.")

name, root = state["ds"], st.session_state["learn.root"].strip() or str(default_root())
info = DATASETS[name]
try:
    train_full = cached_split(name, "train", state["src"], root)
    test_set = cached_split(name, "test", state["src"], root)
except DataUnavailable as error:
    st.error(f"**{info.title} is not available.** {error}", icon=":material/cloud_off:")
    left, right = st.columns(2)
    right.button("Use the bundled Fashion-MNIST subset instead", icon=":material/inventory_2:", on_click=use_bundled)
    if st.session_state.get("learn.download_error"):
        st.warning(st.session_state["learn.download_error"], icon=":material/cloud_off:")
    if (not info.has_bundled or state["src"] == "full") and left.button(
            f"Download {info.title} now (needs internet)", icon=":material/download:"):
        download(name, root)
    state.sync()
    st.stop()
except OSError as error:
    st.error(f"The data folder {root} cannot be read: {error}")
    state.sync()
    st.stop()

if st.session_state.get("learn.downloaded"):
    st.success(st.session_state.pop("learn.downloaded"), icon=":material/download_done:")
train_set = train_full.take(state["n"], seed=state["seed"])
if state["n"] > len(train_full):
    st.caption(f"The training split has {len(train_full):,} images; all of them are used.")
if state["img"] >= len(test_set):
    st.warning(f"The test set has {len(test_set):,} images; showing image {len(test_set) - 1} instead of "
               f"{state['img']}.", icon=":material/image:")
    state["img"] = len(test_set) - 1
c, h, w = info.shape
D = c * h * w
classes = train_set.classes


def image_picker(where) -> int:
    """Choose a test image (by number, at random or by class); returns its index."""
    def random_image() -> None:
        state["img"] = int(torch.randint(len(test_set), (1,)))

    def of_class() -> None:
        wanted = classes.index(st.session_state["learn.of_class"])
        members = (test_set.labels == wanted).nonzero().flatten()
        later = members[members > state["img"]]
        state["img"] = int((later if len(later) else members)[0])
        st.session_state["learn.of_class"] = None  # choosing the same class again steps on

    with where:
        st.number_input(f"Test image (0–{len(test_set) - 1})", 0, len(test_set) - 1, key=state.key("img"))
        st.button("Random test image", icon=":material/casino:", on_click=random_image, width="stretch")
        st.selectbox("Next image of class", classes, index=None, key="learn.of_class", on_change=of_class,
                     placeholder="choose a class…")
        index = state["img"]
        zoom = max(1, 224 // max(h, w))  # nearest-neighbour: sharp pixels, no JPEG smudge
        pixels = test_set.images[index].repeat_interleave(zoom, 1).repeat_interleave(zoom, 2)
        st.image(pixels.permute(1, 2, 0).numpy(), width=220, output_format="PNG",
                 caption=f"Test image {index}: {classes[int(test_set.labels[index])]} "
                         f"({info.shape[1]}×{info.shape[2]}×{info.shape[0]})")
    return index


def accuracy_line(result: learn.TrainResult) -> None:
    cols = st.columns(4)
    cols[0].metric("Test accuracy", f"{result.test_accuracy:.1%}", help=f"On {result.n_test:,} test images; "
                   "chance is 10%.")
    cols[1].metric("Parameters", f"{result.parameters:,}")
    cols[2].metric("Training images", f"{result.n_train:,}")
    cols[3].metric("Trained in", f"{result.seconds:.1f} s", help=f"{result.settings['epochs']} epochs, Adam")


def cifar_note() -> None:
    if name == "cifar10":
        return
    if full_present("cifar10", root):
        st.info("The lecture's pictures are CIFAR-10 templates, and CIFAR-10 is on this machine: "
                "[see them for CIFAR-10](?view=" + state["view"] + "&ds=cifar10).", icon=":material/palette:")
    else:
        st.caption("The lecture shows these pictures for CIFAR-10 (32×32×3 colour). Choose CIFAR-10 above "
                   "to download it (170 MB) or see how to get it.")


view = state["view"]

# ---- the data ----------------------------------------------------------------------------

if view == "data":
    st.subheader(f"{info.title}: {len(train_full):,} training and {len(test_set):,} test images")
    st.markdown(f"{info.what} "
                f"Loaded from: **{train_full.source}**.")
    cols = st.columns(4)
    cols[0].metric("Image size", f"{h}×{w}×{c}", help="height × width × channels")
    cols[1].metric("Numbers per image", f"{D:,}", help=f"{h}·{w}·{c}: the length of the flattened vector x")
    cols[2].metric("Classes", len(classes))
    cols[3].metric("Training images", f"{len(train_full):,}",
                   help="The whole split is one uint8 tensor of shape N × C × H × W = "
                        + " × ".join(str(s) for s in train_full.images.shape))
    per_class = 10
    picked = train_full.examples_per_class(per_class, seed=state["seed"])
    st.plotly_chart(image_grid_figure(train_full.images[picked], columns=per_class, row_labels=classes,
                                      cell_px=64, title=f"{per_class} random training images per class"),
                    config=CHART)
    counts = train_full.class_counts().tolist()
    st.caption("Images per class (training): " + ", ".join(f"{n} {k}" for k, n in zip(classes, counts)))
    rows = []
    for key, other in DATASETS.items():
        oc, oh, ow = other.shape
        where = "bundled subset" if other.has_bundled else "not here: choose it above to download"
        present = full_present(key, root)
        if present:
            where = "full set (Debian package)" if present == "debian" else "full set (torchvision files)"
        rows.append({"data set": other.title, "image": f"{oh}×{ow}×{oc}", "flattened length": oh * ow * oc,
                     "classes": len(other.classes), "on this machine": where})
    st.markdown("**The data sets side by side.** A grey 28×28 image flattens to 784 numbers, a colour "
                "32×32 image to 32·32·3 = 3,072, which is why the lecture's W is 10×3072.")
    st.dataframe(rows, hide_index=True)

# ---- linear classifier -------------------------------------------------------------------

elif view == "linear":
    st.markdown(
        f"Flatten each {h}×{w}×{c} image to a vector **x** of {D:,} numbers. A linear classifier computes "
        f"the class scores **f(x) = Wx + b**, with W ∈ ℝ^10×{D} and b ∈ ℝ^10. The score of class i is "
        "**wᵢᵀx + bᵢ**: a dot product of the image with row i of W. Reshaped back to an image, each row "
        "is a **template** of its class."
    )
    settings = st.columns([2, 5])
    settings[0].slider("Epochs", 1, 30, key=state.key("lin_ep"))
    result = train_kind("linear")
    accuracy_line(result)
    templates = learn.linear_templates(result)
    st.plotly_chart(image_grid_figure(templates, mode="signed", columns=5, captions=classes,
                                      cell_px=160 if c == 1 else 130, colorbar=c == 1,
                                      title="The 10 rows of W, reshaped back into images: the class templates"),
                    config=CHART)
    st.caption("Red: a bright pixel here raises the class score; blue: it lowers it (inputs are standardised, "
               "so 'bright' means brighter than the average image)." if c == 1 else
               "Each template rescaled from its smallest (black) to its largest weight (white), "
               "colour channels together, as in the lecture's slide.")
    cifar_note()

    st.subheader("Template matching: why the highest-matching template wins")
    left, right = st.columns([1, 2])
    index = image_picker(left)
    match = learn.template_match(result, test_set.images[index])
    true = int(test_set.labels[index])
    with right:
        st.plotly_chart(score_bars_figure(match.scores, classes, dots=match.dots, bias=match.bias,
                                          true_label=true, title="Class scores wᵢᵀx + bᵢ"), config=CHART)
    p = match.predicted
    verdict = "correct" if p == true else f"wrong: it is a {classes[true]}"
    st.markdown(f"The **{classes[p]}** template matches best: score = wᵀx + b = "
                f"{float(match.dots[p]):.2f} + ({float(match.bias[p]):.2f}) = **{float(match.scores[p]):.2f}** "
                f"({verdict}).")
    shown = [p] if p == true else [p, true]
    maps = torch.stack([learn.contribution(result, match, k) for k in shown])[:, None]
    st.plotly_chart(image_grid_figure(maps, mode="signed", columns=2, cell_px=200,
                                      captions=[f"w·x terms for {classes[k]}: sum {float(match.dots[k]):.1f}"
                                                for k in shown],
                                      title="Where the image agrees (red) and disagrees (blue) with the template"),
                    config=CHART)

# ---- MLP ----------------------------------------------------------------------------------

elif view == "mlp":
    st.markdown(
        f"The first fully connected layer of an MLP computes **σ(Wx + b)** with W ∈ ℝ^k₁×{D}: each of its "
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
    index = image_picker(left)
    activations = learn.hidden_activations(result, test_set.images[index])
    top = activations.argsort(descending=True)[:5].tolist()
    k1 = state["k1"]
    columns = 8 if k1 <= 64 else 16
    with right:
        st.plotly_chart(image_grid_figure(learn.hidden_templates(result), mode="signed", columns=columns,
                                          captions=[f"unit {j + 1}" for j in range(k1)], highlight=top,
                                          cell_px=96 if columns == 8 else 56,
                                          title=f"The k₁ = {k1} rows of the first layer's W as images"),
                        config=CHART)
        st.caption(f"Framed in red: the 5 units most active on test image {index} "
                   f"({', '.join(f'unit {j + 1}: {float(activations[j]):.1f}' for j in top)}).")

# ---- CNN ----------------------------------------------------------------------------------

elif view == "cnn":
    st.markdown(
        "A convolution layer's filter is a **local template**: a small k×k×C weight block matched against "
        "every k×k crop of the image. Its activation map is high where the crop matches. First-layer filters "
        f"often become **oriented edges and simple shapes**. Here: a small CNN, `{learn.CNN_STACK}`, "
        f"with 16 filters of 5×5×{c} = {25 * c} weights each."
    )
    settings = st.columns([2, 5])
    settings[0].slider("Epochs", 1, 10, key=state.key("cnn_ep"))
    result = train_kind("cnn")
    accuracy_line(result)
    filters = learn.first_layer_filters(result)
    st.plotly_chart(image_grid_figure(filters, mode="signed", columns=8, cell_px=104,
                                      captions=[f"filter {j + 1}" for j in range(len(filters))],
                                      colorbar=c == 1,
                                      title=f"The 16 first-layer filters (5×5×{c}) as images"),
                    config=CHART)
    st.caption("Each filter on its own colour scale: red weights above zero, blue below." if c == 1 else
               "Each filter rescaled from its smallest (black) to its largest weight (white).")
    left, right = st.columns([1, 3])
    index = image_picker(left)
    maps = learn.activation_maps(result, test_set.images[index])
    with right:
        st.plotly_chart(image_grid_figure(maps[:, None], mode="signed", columns=8, cell_px=84,
                                          captions=[f"filter {j + 1}" for j in range(len(maps))],
                                          title=f"Each filter's activation map on test image {index} "
                                                f"({maps.shape[1]}×{maps.shape[2]})"),
                        config=CHART)
        st.caption("Red where the crop under the filter matches it, blue where it is the opposite "
                   "(before the ReLU, which keeps only the red). The frame at the border comes from the zero padding.")

    st.subheader("AlexNet's first layer: 64 filters of 11×11×3")
    try:
        alex = learn.alexnet_filters()
    except learn.WeightsUnavailable as error:
        st.info(str(error), icon=":material/download:")
    else:
        st.plotly_chart(image_grid_figure(alex, mode="signed", columns=16, cell_px=66,
                                          title="AlexNet (ImageNet) first-layer filters, 11×11×3 = 363 weights each"),
                        config=CHART)
        st.caption("From torchvision's pretrained weights in " + str(learn.alexnet_weights_file().parent)
                   + ". Oriented edges at many angles, and colour blobs.")

# ---- side by side ---------------------------------------------------------------------------

else:
    st.markdown("The same training images, three models. How many parameters does each use, how well does "
                "it classify, and what did it learn?")
    results = {kind: train_kind(kind) for kind in learn.KINDS}
    rows = learn.comparison(results)
    st.dataframe([{"model": r.title, "parameters": r.parameters, "test accuracy": f"{r.test_accuracy:.1%}",
                   "trained in": f"{r.seconds:.1f} s", "what it learned": r.learned} for r in rows],
                 hide_index=True)
    left, right = st.columns(2)
    left.plotly_chart(comparison_figure([r.title for r in rows], [r.test_accuracy for r in rows],
                                        [r.parameters for r in rows]), config=CHART)
    right.plotly_chart(history_figure({learn.TITLES[k]: [e.test_accuracy for e in results[k].history]
                                       for k in learn.KINDS}), config=CHART)
    cols = st.columns(3)
    pictures = [
        ("Linear: 10 class templates", learn.linear_templates(results["linear"]), 5, classes),
        (f"MLP: first 10 of {state['k1']} unit templates", learn.hidden_templates(results["mlp"])[:10], 5, None),
        ("CNN: 16 first-layer filters", learn.first_layer_filters(results["cnn"]), 4, None),
    ]
    for col, (title, images, columns, captions) in zip(cols, pictures):
        with col:
            st.markdown(f"**{title}**")
            st.plotly_chart(image_grid_figure(images, mode="signed", columns=columns, captions=captions,
                                              cell_px=62 if columns == 5 else 72), config=CHART)
    cifar_note()

state.sync()
