"""Train a CNN: build a stack, train it live in the background, save it and load it back."""

import gc
import math
import re
import threading

import streamlit as st
import torch

from cnnviz.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from cnnviz.data import DATASETS, DataUnavailable
from cnnviz.jobs import DEVICE_QUEUE, TrainingJob
from cnnviz.network import (STACK_PRESETS, TOKEN_HELP, StackError, add_batchnorm, add_conv_block, add_pooling,
                            analyse, parse_stack, remove_last_block, totals, with_head)
from cnnviz.network_figures import layer_rows, lecture_shape, shapes_figure
from cnnviz.train import (
    DEFAULT_LR,
    DEFAULT_STACK,
    TrainConfig,
    TrainError,
    available_devices,
    check_memory,
    device_label,
    head_problem,
    pick_device,
)
from cnnviz.train_figures import (
    confusion_spec,
    curves_spec,
    filters_spec,
    most_confused,
    predictions_spec,
    progress_text,
)
from ui import datasets
from ui.lessons import ROOT, page_setup
from ui.show import chart
from ui.stack import edit_stack
from ui.state import Param, UrlState, flag, int_in, one_of, show_flag
from ui.training import JOB_KEY, TRAINED_KEY, publish_finished_job

page_setup("4_Train_a_CNN.py")

CHART = {"displayModeBar": False}
LIVE_SECONDS = 0.3

# Data choices: the bundled subset works everywhere; the full sets when this server has them.
DATA_CHOICES = {
    "fashion": ("fashion-mnist", "bundled", "Fashion-MNIST, bundled subset (6,000 + 1,000 images)"),
    "fashion-full": ("fashion-mnist", "full", "Fashion-MNIST, full (60,000 + 10,000 images)"),
    "mnist": ("mnist", "full", "MNIST digits (60,000 + 10,000 images)"),
    "cifar10": ("cifar10", "full", "CIFAR-10, the lecture's data set (50,000 + 10,000 colour images)"),
}
LEARNING_RATES = [0.0001, 0.0003, 0.001, 0.002, 0.003, 0.01, 0.03, 0.05, 0.1, 0.3]
BATCH_SIZES = [16, 32, 64, 128, 256, 512, 1024, 2048]
MAX_EPOCHS = 50


def parse_lr(text: str) -> float:
    value = float(text)
    if value not in LEARNING_RATES:
        raise ValueError(f"must be one of {', '.join(f'{v:g}' for v in LEARNING_RATES)}")
    return value


def parse_batch(text: str) -> int:
    value = int(text)
    if value not in BATCH_SIZES:
        raise ValueError(f"must be one of {', '.join(map(str, BATCH_SIZES))}")
    return value


state = UrlState("train", [
    Param("net", DEFAULT_STACK, lambda text: text[:500]),  # checked below, so a bad stack is explained
    Param("data", "fashion", one_of(*DATA_CHOICES)),
    Param("opt", "adam", one_of("adam", "sgd")),
    Param("lr", DEFAULT_LR["adam"], parse_lr, lambda v: f"{v:g}"),
    Param("batch", 64, parse_batch),
    Param("epochs", 3, int_in(1, MAX_EPOCHS)),
    Param("flip", False, flag, show_flag),
    Param("shift", 0, int_in(0, 4)),
    Param("device", "auto", one_of("auto", "cuda", "mps", "cpu")),
])


def data_available(key: str) -> bool:
    name, source, _ = DATA_CHOICES[key]
    return datasets.on_server(name, source)


def on_preset() -> None:
    name = st.session_state["train.preset"]
    if name in STACK_PRESETS:
        state["net"] = STACK_PRESETS[name].stack
        if STACK_PRESETS[name].in_shape == (3, 32, 32) and state["data"] != "cifar10" and data_available("cifar10"):
            state["data"] = "cifar10"
    st.session_state["train.preset"] = "Presets…"


def n_classes() -> int:
    return len(DATASETS[DATA_CHOICES[state["data"]][0]].classes)


def on_optimizer() -> None:
    state["lr"] = DEFAULT_LR[state["opt"]]


@st.cache_resource(show_spinner=False)
def warm_up() -> None:
    """Once per server process.

    Streamlit runs a full garbage collection after every script and fragment run. With torch
    loaded that walks some 400,000 objects (about 0.2 s, holding the GIL); the live view reruns
    every 0.3 s, so training threads would spend most of their time waiting (measured: 85
    instead of 5,000 images/s). gc.freeze() moves the objects alive now (modules, torch) out of
    the collector's way; objects made later are still collected.

    torch's optimizers import torch._dynamo when first made (2-3 s): do that in the background
    while the student builds a network, not when they press Start.
    """
    def work() -> None:
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # imports torch._dynamo
        gc.collect()
        gc.freeze()  # after the import: torch._dynamo alone adds some 100,000 objects

    threading.Thread(target=work, daemon=True, name="cnnviz-warm-up").start()


warm_up()


def current_job() -> TrainingJob | None:
    return st.session_state.get(JOB_KEY)


# ======================================================================================= intro

state.show_problems()
st.markdown(
    "Convolution layers are **stacked** like the layers of a multilayer perceptron, with ReLU or tanh in "
    "between; pooling shrinks the maps; at the end fully connected layers give one score per class. The model "
    "is trained by **stochastic gradient descent**: the cross-entropy loss on a small batch of images, its "
    "gradient by automatic differentiation, a step downhill, and again. Build a network, start the "
    "training, and watch it learn."
)

# ======================================================================================= 1. build

st.header("1. Build the network", divider="gray")
data_key = state["data"]
data_name, data_source, _ = DATA_CHOICES[data_key]
info = DATASETS[data_name]
in_shape = info.shape

left, right = st.columns([3, 2], vertical_alignment="bottom")
left.text_input("Layers, separated by commas", key=state.key("net"),
                help=f"Write {TOKEN_HELP}. Options: conv3x16/s2 (stride 2), conv5x8/p0 (padding 0), maxpool3/s2. "
                     "End with fc10 (or conv1x10 then gap): one score per class.")
right.selectbox("Preset", ["Presets…", *STACK_PRESETS], key="train.preset", on_change=on_preset,
                help="The tiny default trains in seconds on a laptop's CPU.")
actions = st.columns(7)
actions[0].button("Conv block", icon=":material/add:", on_click=edit_stack, args=(state, add_conv_block, 256, 8),
                  width="stretch",
                  help="Adds conv 3×3 with twice the channels, then ReLU, before the head.")
actions[1].button("Batch norm", icon=":material/add:", on_click=edit_stack, args=(state, add_batchnorm,),
                  width="stretch",
                  help="Adds batch normalization right after the last convolution.")
actions[2].button("Max pool", icon=":material/add:", on_click=edit_stack, args=(state, add_pooling, "maxpool"),
                  width="stretch",
                  help="Adds 2×2 max pooling with stride 2 before the head.")
actions[3].button("Mean pool", icon=":material/add:", on_click=edit_stack, args=(state, add_pooling, "meanpool"),
                  width="stretch",
                  help="Adds 2×2 mean pooling with stride 2 before the head.")
actions[4].button("Remove", icon=":material/remove:", on_click=edit_stack, args=(state, remove_last_block,),
                  width="stretch",
                  help="Removes the last conv or pooling layer (and its ReLU / batch norm) before the head.")
actions[5].button("Flatten", icon=":material/view_week:", on_click=edit_stack,
                  args=(state, with_head, "flatten", n_classes()),
                  width="stretch", help="Flatten the last feature maps into one long vector before fc.")
actions[6].button("GAP", icon=":material/blur_on:", on_click=edit_stack,
                  args=(state, with_head, "gap", n_classes()), width="stretch",
                  help="Global average pooling: one number per channel before fc.")
st.selectbox("Data", list(DATA_CHOICES), key=state.key("data"),
             format_func=lambda k: DATA_CHOICES[k][2] + ("" if data_available(k) else " — not on this server"))

infos, stack_problem = None, None
try:
    infos = analyse(parse_stack(state["net"]), in_shape)
except StackError as error:
    stack_problem = str(error)
else:
    stack_problem = head_problem(infos, len(info.classes), info.title)

if infos is None:
    st.error(f"**This stack cannot work.** {stack_problem}", icon=":material/block:")
    st.caption("Your text is kept in the box above; fix it there, or pick a preset.")
else:
    net_totals = totals(infos)
    table_col, chart_col = st.columns([3, 2])
    rows = layer_rows(infos)
    table_col.dataframe(rows, hide_index=True, width="stretch", height=min(35 * (len(rows) + 1) + 3, 460),
                        column_config={"#": st.column_config.NumberColumn(width=30),
                                       "parameters": st.column_config.NumberColumn(format="localized"),
                                       "multiply-adds": st.column_config.NumberColumn(format="localized")})
    table_col.markdown(f"**{net_totals.params:,} parameters** and **{net_totals.multiply_adds:,} multiply-adds** "
                       f"per image; {lecture_shape(in_shape)} in, {lecture_shape(infos[-1].out_shape)} scores out.")
    if any(i.kind in ("conv", "maxpool", "meanpool") for i in infos):
        chart_col.plotly_chart(shapes_figure(infos, height_px=330), key="train.fig.shapes", config=CHART)
    if stack_problem:
        st.error(f"**This stack cannot be trained on {info.title}.** {stack_problem}", icon=":material/block:")

# ======================================================================================= 2. train

st.header("2. Train it", divider="gray")
devices = available_devices()
row = st.columns([2, 3, 2, 2, 2])
row[0].selectbox("Optimizer", ["adam", "sgd"], key=state.key("opt"), on_change=on_optimizer,
                 format_func={"adam": "Adam", "sgd": "SGD with momentum 0.9"}.get)
row[1].select_slider("Learning rate", LEARNING_RATES, key=state.key("lr"), format_func=lambda v: f"{v:g}",
                     help="The step size of gradient descent. Adam: about 0.001-0.003; SGD: about 0.01-0.1.")
row[2].selectbox("Batch size", BATCH_SIZES, key=state.key("batch"),
                 help="Images per gradient step. Larger batches are faster per image but take fewer steps.")
row[3].number_input("Epochs", 1, MAX_EPOCHS, key=state.key("epochs"),
                    help="One epoch: every training image seen once.")
row[4].selectbox("Device", ["auto", "cuda", "mps", "cpu"], key=state.key("device"),
                 format_func=lambda d: f"auto ({devices[0].upper()})" if d == "auto" else
                 d.upper() + ("" if d in devices else " (not here)"))
aug = st.columns([2, 3, 7], vertical_alignment="center")
aug[0].toggle("Random flips", key=state.key("flip"), help="Mirror each training image left-right with probability 1/2.")
aug[1].select_slider("Random shifts (pixels)", [0, 1, 2, 3, 4], key=state.key("shift"),
                     help="Move each training image by up to this many pixels in each direction.")

config = TrainConfig(stack=state["net"], epochs=state["epochs"], batch_size=state["batch"], optimizer=state["opt"],
                     lr=state["lr"], flip=state["flip"], shift=state["shift"], device=state["device"])

problems: list[str] = []
train_set = test_set = None
if not data_available(data_key):
    problems.append(f"{DATA_CHOICES[data_key][2]} is not on this server. {datasets.how_to_get(data_name)}")
if stack_problem:
    problems.append("Fix the stack above first.")
device = None
try:
    device = pick_device(state["device"])
except TrainError as error:
    problems.append(str(error))
if not problems:
    try:
        train_set, test_set = datasets.image_sets(data_name, data_source)
    except DataUnavailable as error:
        problems.append(str(error))
if not problems and device is not None:
    try:
        estimate = check_memory(config, in_shape, len(train_set), len(test_set), device)
    except (TrainError, StackError) as error:
        problems.append(str(error))
    else:
        aug[2].caption(f"{len(train_set):,} training and {len(test_set):,} test images ({train_set.source}); "
                       f"{math.ceil(len(train_set) / config.batch_size):,} steps per epoch on "
                       f"{device_label(device)}; memory {estimate.text()}.")

job = current_job()
snap = job.snapshot() if job is not None else None
busy = snap is not None and snap.active

for problem in problems:
    st.error(problem, icon=":material/block:")
if not data_available(data_key):
    datasets.download_button(data_name, key="train.download")
datasets.download_notice()


def start_training() -> None:
    try:
        new_job = TrainingJob(config, train_set, test_set, device=device)
    except (TrainError, StackError) as error:
        st.session_state["train.start_error"] = str(error)
        return
    st.session_state["train.start_error"] = None
    st.session_state[JOB_KEY] = new_job.start()


st.button("Start training", type="primary", icon=":material/play_arrow:", on_click=start_training,
                  disabled=bool(problems) or busy,
                  help="Starts in the background: you can change pages and come back." if not busy else
                  "A training run is going on; stop it first.")
if st.session_state.get("train.start_error"):
    st.error(st.session_state["train.start_error"], icon=":material/block:")


def job_buttons(job: TrainingJob, snap) -> None:
    if not snap.active:
        return
    buttons = st.columns([2, 2, 8])
    if snap.state == "paused":
        buttons[0].button("Resume", icon=":material/play_arrow:", on_click=job.resume, width="stretch",
                          key="train.resume")
    else:
        buttons[0].button("Pause", icon=":material/pause:", on_click=job.pause, width="stretch",
                          disabled=not snap.active, key="train.pause")
    buttons[1].button("Stop", icon=":material/stop:", on_click=job.stop, width="stretch", disabled=not snap.active,
                      key="train.stop", help="Stops after the current step; the model trained so far is kept.")


def status_line(snap) -> None:
    if snap.state == "queued":
        position = snap.queue_position
        where = "the GPU" if snap.device in ("cuda", "mps") else "the server's CPU"
        if position:
            ahead = position - 1
            order = "next in line" if not ahead else f"{ahead} waiting run{'s' if ahead != 1 else ''} go first"
            st.info(f"**Waiting for {where}**: position {position} in the queue ({order}). One training runs "
                    f"at a time on {where}, so that runs never fight over it; yours starts on its own.",
                    icon=":material/hourglass_top:")
        else:
            st.info(f"Starting on {snap.device_label}…", icon=":material/hourglass_top:")
    elif snap.state == "error":
        st.error(f"**Training stopped with a problem.** {snap.message}", icon=":material/error:")
    elif snap.state == "paused":
        st.warning(f"**Paused** on {snap.device_label}: {snap.message}", icon=":material/pause:")
    elif snap.state in ("finished", "stopped"):
        st.success(f"**{snap.message}** ({snap.device_label})", icon=":material/check_circle:")
    if snap.progress is not None:
        st.progress(snap.progress.fraction, text=progress_text(snap.progress))
    elif snap.active:
        st.progress(0.0, text="Preparing…")


def epoch_view(snap, classes) -> None:
    reports = snap.reports
    if not reports:
        st.caption("After each epoch: the confusion matrix, predictions on test images and the first layer's "
                   "filters appear here.")
        return
    if len(reports) > 1:
        # No key: the slider's identity includes its options, so each new epoch makes a new
        # slider that shows the newest epoch; between epochs it keeps the student's choice.
        chosen = st.select_slider("Epoch", [r.epoch for r in reports], value=reports[-1].epoch,
                                  format_func=lambda e: "before training" if e == 0 else f"{e}",
                                  help="Go back to an earlier epoch, or to the start, to see how the filters and "
                                       "the mistakes changed.")
        report = next(r for r in reports if r.epoch == chosen)
    else:
        report = reports[0]
    when = "before training (random weights)" if report.epoch == 0 else f"after epoch {report.epoch}"
    st.markdown(f"**Test images {when}** (test accuracy {report.test_accuracy:.1%}): "
                "the predicted class and its softmax probability above, green when right, red when wrong.")
    chart(predictions_spec(report, classes), key="train.fig.predictions")
    left, right = st.columns([3, 2])
    with left:
        chart(confusion_spec(report.confusion, classes, title=f"Confusion matrix {when.split(' (')[0]}"),
              key="train.fig.confusion")
        confused = most_confused(report.confusion, classes)
        if confused:
            st.caption("Most confused: " + "; ".join(f"{t} taken for {p} ({n}×)" for t, p, n in confused) + ".")
    with right:
        if report.filters is not None:
            k = report.filters.shape[-1]
            chart(filters_spec(report.filters, title=f"First-layer filters ({report.filters.shape[0]} of "
                                                     f"{k}×{k}), {when.split(' (')[0]}"), key="train.fig.filters")
            st.caption("Blue: negative weights, red: positive. They start random; with training they turn into "
                       "edge and blob detectors. Compare the epochs with the slider.")


@st.fragment(run_every=LIVE_SECONDS if busy else None)
def live_view() -> None:
    job = current_job()
    if job is None:
        return
    snap = job.snapshot()
    job_buttons(job, snap)
    status_line(snap)
    classes = list(job.trainer.classes)
    chart(curves_spec(snap.history, snap.config.epochs, len(classes)), key="train.fig.curves")
    epoch_view(snap, classes)
    if snap.done and busy:
        publish_finished_job()
        st.rerun(scope="app")  # stop the timer, show the download


if job is not None:
    live_view()
    publish_finished_job()
else:
    st.caption("Nothing trained yet. The run goes on in the background: other pages and reruns don't stop it.")

# ======================================================================================= 3. save / load

st.header("3. Save or load a model", divider="gray")
save_col, load_col = st.columns(2)
with save_col:
    trained = st.session_state.get(TRAINED_KEY)
    if isinstance(trained, Checkpoint):
        st.markdown(f"**The model of this session:** `{trained.stack}`, trained on {trained.dataset}"
                    + (f", test accuracy **{trained.test_accuracy:.1%}**" if trained.test_accuracy is not None else "")
                    + ". The other pages (VGG-16 explorer, Classify an image) use it.")

        cached = st.session_state.get("train.ckpt_bytes")
        if cached is None or cached[0] is not trained:
            cached = (trained, save_checkpoint(trained))
            st.session_state["train.ckpt_bytes"] = cached
        accuracy = f"-{trained.test_accuracy * 100:.0f}pct" if trained.test_accuracy is not None else ""
        name = re.sub(r"[^a-z0-9-]+", "-", f"cnnviz-{trained.dataset}{accuracy}".lower()) + ".pt"
        st.download_button("Download the checkpoint", cached[1], file_name=name,
                           mime="application/octet-stream", icon=":material/download:",
                           help="A torch.save file with the stack, the weights, the class names and the accuracy.")
        if (ROOT / "pages" / "6_Classify_an_image.py").exists():
            st.page_link("pages/6_Classify_an_image.py", label="Classify an image with it",
                         icon=":material/image_search:")
    else:
        st.caption("Train a model (or load one on the right) to download it here.")
with load_col:
    upload = st.file_uploader("Load a checkpoint", type=["pt", "pth", "ckpt"], key="train.upload",
                              help="A file downloaded from this page. It is read with torch.load(weights_only=True): "
                                   "tensors and numbers only, never code.")
    if upload is not None:
        ident = (upload.name, upload.size, getattr(upload, "file_id", None))
        if st.session_state.get("train.loaded_ident") != ident:
            try:
                loaded = load_checkpoint(upload.getvalue())
            except CheckpointError as error:
                st.session_state["train.load_error"] = f"**{upload.name}** can't be used: {error}"
            else:
                st.session_state["train.load_error"] = None
                st.session_state[TRAINED_KEY] = loaded
                st.session_state["train.loaded_ident"] = ident
                st.session_state["train.loaded"] = loaded
                st.rerun()
        if st.session_state.get("train.load_error"):
            st.error(st.session_state["train.load_error"], icon=":material/block:")
        elif st.session_state.get("train.loaded") is not None and \
                st.session_state.get(TRAINED_KEY) is st.session_state["train.loaded"]:
            st.success(f"Loaded **{upload.name}**: {st.session_state[TRAINED_KEY].summary()}.",
                       icon=":material/check_circle:")

running, waiting = DEVICE_QUEUE.load(devices[0])
if running or waiting:
    st.caption(f"On this server now: {running} training run{'s' if running != 1 else ''} on "
               f"{devices[0].upper()}, {waiting} waiting.")

state.sync()
