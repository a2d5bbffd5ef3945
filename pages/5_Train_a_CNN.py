"""Train a CNN: build a stack, train it live on the server (a run of cnnviz.runs, opened again by its link),
save it and load it back."""

import math

import streamlit as st

from cnnviz import notation
from cnnviz.data import DATASETS, TRAINING_DATA, DataUnavailable
from cnnviz.network import StackError
from cnnviz.runs import RunRequest
from cnnviz.train import (
    BATCH_SIZES,
    DEFAULT_LR,
    DEFAULT_STACK,
    LEARNING_RATES,
    MAX_PAGE_SHIFT,
    PAGE_MAX_EPOCHS,
    TrainConfig,
    TrainError,
    available_devices,
    check_memory,
    device_label,
    pick_device,
)
from ui import datasets
from ui.exercises import your_turn
from ui.lessons import page_setup
from ui.presenter import controls, presenting
from ui.stack import StackBuilder
from ui.state import Param, UrlState, flag, int_in, number_in, one_of, show_flag
from ui.training import (
    OPTIMIZERS,
    RUN_KEY,
    download_session_model,
    live_view,
    load_checkpoint_box,
    parse_run_id,
    publish_finished_run,
    run_caption,
    runs,
    start_button,
    student_component,
    student_id,
    warm_up,
    your_runs,
)

page_setup("5_Train_a_CNN.py")
PRESENTING = presenting()  # the presenter view: the run's controls and its curves
warm_up()

state = UrlState("train", [
    Param("net", DEFAULT_STACK, lambda text: text[:500]),  # checked below, so a bad stack is explained
    Param("data", "fashion", one_of(*TRAINING_DATA)),
    Param("opt", "adam", one_of("adam", "sgd")),
    Param("lr", DEFAULT_LR["adam"], number_in(LEARNING_RATES), lambda v: f"{v:g}"),
    Param("batch", 64, lambda text: int(number_in(BATCH_SIZES)(text))),
    Param("epochs", 3, int_in(1, PAGE_MAX_EPOCHS)),
    Param("flip", False, flag, show_flag),
    Param("shift", 0, int_in(0, MAX_PAGE_SHIFT)),
    Param("device", "auto", one_of("auto", "cuda", "mps", "cpu")),
    Param("run", "", parse_run_id),  # the run shown: a refresh, another tab or a shared link reattaches to it
])
student = student_id()
student_component()  # the browser's id, once per session (invisible, in the sidebar)


def data_available(key: str) -> bool:
    return datasets.on_server(TRAINING_DATA[key].name, TRAINING_DATA[key].source)


def on_preset(preset) -> None:
    if preset.in_shape == (3, 32, 32) and state["data"] != "cifar10" and data_available("cifar10"):
        state["data"] = "cifar10"


def on_optimizer() -> None:
    state["lr"] = DEFAULT_LR[state["opt"]]


def open_run(run_id: str) -> None:
    state["run"] = run_id


# ======================================================================================= intro

state.show_problems()
st.markdown(
    "" if PRESENTING else
    "Convolution layers are **stacked** like the layers of a multilayer perceptron, with ReLU or tanh in "
    "between; pooling shrinks the maps; at the end fully connected layers give one score per class. The model "
    "is trained by **stochastic gradient descent**: the cross-entropy loss on a small batch of images, its "
    "gradient by automatic differentiation, a step downhill, and again. The page's default optimizer is "
    "**Adam**, SGD's common variant that adapts the step size of every weight; choose plain **SGD with "
    "momentum** below to train exactly as the lecture says. The whole network is trained at once, directly from "
    "labelled images (*end-to-end training*): its convolutions learn the features (*representation learning*, "
    "see their filters below) and its last layer the classification from them. Build a network, start the "
    "training, and watch it learn."
)

with controls("The network and the training settings"):
    # ======================================================================================= 1. build

    if not PRESENTING:
        st.header("1. Build the network", divider="gray")
    data = TRAINING_DATA[state["data"]]
    info = DATASETS[data.name]
    builder = StackBuilder(state, "train", classes=len(info.classes), on_preset=on_preset)
    builder.draw_controls()
    st.selectbox("Data", list(TRAINING_DATA), key=state.key("data"),
                 format_func=lambda k: TRAINING_DATA[k].title + ("" if data_available(k) else " — not on this server"))
    infos, stack_problem = builder.analyse(info.shape, info.title)
    builder.draw_analysis(infos, stack_problem, chart_height=330, table_height=460)
    if infos is None:
        stack_problem = stack_problem or "the stack does not work"

    # ======================================================================================= 2. train

    if not PRESENTING:
        st.header("2. Train it", divider="gray")
    devices = available_devices()
    row = st.columns([2, 3, 2, 2, 2])
    row[0].selectbox("Optimizer", ["adam", "sgd"], key=state.key("opt"), on_change=on_optimizer,
                     format_func=OPTIMIZERS.get)
    row[1].select_slider("Learning rate", LEARNING_RATES, key=state.key("lr"), format_func=lambda v: f"{v:g}",
                         help="The step size of gradient descent. Adam: about 0.001-0.003; SGD: about 0.01-0.1.")
    row[2].selectbox("Batch size", BATCH_SIZES, key=state.key("batch"),
                     help="Images per gradient step. Larger batches are faster per image but take fewer steps.")
    row[3].number_input("Epochs", 1, PAGE_MAX_EPOCHS, key=state.key("epochs"),
                        help="One epoch: every training image seen once.")
    row[4].selectbox("Device", ["auto", "cuda", "mps", "cpu"], key=state.key("device"),
                     format_func=lambda d: f"auto ({devices[0].upper()})" if d == "auto" else
                     d.upper() + ("" if d in devices else " (not here)"))
    aug = st.columns([3, 3, 6], vertical_alignment="center")
    aug[0].toggle("Random flips", key=state.key("flip"), help="Mirror each training image left-right with probability 1/2.")
    aug[1].select_slider("Random shifts (pixels)", list(range(MAX_PAGE_SHIFT + 1)), key=state.key("shift"),
                         help="Move each training image by up to this many pixels in each direction.")

    config = TrainConfig(stack=state["net"], epochs=state["epochs"], batch_size=state["batch"], optimizer=state["opt"],
                         lr=state["lr"], flip=state["flip"], shift=state["shift"], device=state["device"])

    problems: list[str] = []
    train_set = test_set = None
    if not data_available(state["data"]):
        problems.append(f"{data.title} is not on this server. {datasets.how_to_get(data.name)}")
    if stack_problem:
        problems.append("Fix the stack above first.")
    device = None
    try:
        device = pick_device(state["device"])
    except TrainError as error:
        problems.append(str(error))
    if not problems:
        try:
            train_set, test_set = datasets.image_sets(data.name, data.source)
        except DataUnavailable as error:
            problems.append(str(error))
    if not problems and device is not None:
        try:
            estimate = check_memory(config, info.shape, len(train_set), len(test_set), device)
        except (TrainError, StackError) as error:
            problems.append(str(error))
        else:
            aug[2].caption(f"{notation.count(len(train_set))} training and {notation.count(len(test_set))} test images "
                           f"({train_set.source}); {notation.count(math.ceil(len(train_set) / config.batch_size))} steps "
                           "per epoch on "
                           f"{device_label(device)}; memory {estimate.text()}.")

    request = RunRequest(config, state["data"], len(train_set), len(test_set)) if not problems else None
    if request is not None:
        problems += runs().refusals(student, request, device.type)  # the server's limits, before Start

for problem in problems:
    st.error(problem, icon=":material/block:")
if not data_available(state["data"]):
    datasets.download_button(data.name, key="train.download")
datasets.download_notice()

start_button(lambda: request, open_run, disabled=bool(problems))
shown = runs().get(state["run"]) if state["run"] else None
st.session_state[RUN_KEY] = state["run"] or None
if shown is not None:
    owner = shown.owner == student
    run_caption(shown, owner)
    live_view(shown.id, compact=PRESENTING)
    publish_finished_run()
elif state["run"]:
    st.warning(f"There is no run {state['run']} on this server: runs are kept "
               f"{notation.number(runs().limits.keep_hours)} hours after they end, then deleted. Check the link, or "
               "start a new run.", icon="🔗")
else:
    st.caption("Nothing trained yet. The run goes on on the server: other pages, reloads and other tabs don't "
               "stop it, and the page's link opens it again.")
if not PRESENTING:
    your_runs(student, state["run"] or None, open_run)
if PRESENTING:
    state.sync()
    st.stop()

# ======================================================================================= 3. save / load

st.header("3. Save or load a model", divider="gray")
save_col, load_col = st.columns(2)
with save_col:
    download_session_model()
with load_col:
    load_checkpoint_box()

running, waiting = runs().load(devices[0])
if running or waiting:
    st.caption(f"On this server now: {running} training run{'s' if running != 1 else ''} on "
               f"{devices[0].upper()}, {waiting} waiting.")

your_turn("5_Train_a_CNN.py")  # the lesson's questions, their seeds in the link (q=…)
state.sync()
