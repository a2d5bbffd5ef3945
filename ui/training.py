"""The training page's widgets: a student's training runs (cnnviz.runs) seen from a page, and the
session's model.

A run lives on the server (`runs()`, one per process), not in the session. It belongs to the student:
an id kept in the browser's localStorage (the student component; until it has answered, the session's
own id, whose runs it then takes over), so a refresh, a second tab or the browser opened again later
finds the student's runs. The page shows one run, the one in its link (`run=<id>`): anyone with the
link sees it, only its owner pauses, resumes or stops it.

A run's finished model becomes the session's model (st.session_state[TRAINED_KEY], a Checkpoint,
loaded once per process and shared) when the run the session's training page shows has ended:
`publish_finished_run()` does that, and every page calls it (ui.lessons.page_setup), so the
classify page sees a model that finished while it was open.
"""

from __future__ import annotations

import gc
import html
import re
import time
from collections.abc import Callable
from pathlib import Path

import streamlit as st

from cnnviz import notation
from cnnviz.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from cnnviz.data import DATASETS
from cnnviz.runs import (
    RUN_ID,
    STOP_GRACE_S,
    STUDENT_ID,
    RunRecord,
    RunRefused,
    RunRequest,
    Runs,
    new_student_id,
    ordinal,
    shared_backend,
    state_text,
)
from cnnviz.train_figures import (
    CURVES,
    RIGHT,
    WRONG,
    PredictionCard,
    confusion_spec,
    curve_spec,
    filters_spec,
    most_confused,
    prediction_cards,
    progress_text,
)

from .results import remember
from .show import Component, chart

TRAINED_KEY = "cnnviz.trained"  # the session's model: a cnnviz.checkpoint.Checkpoint, used by every page
PUBLISHED_KEY = "train.published"  # (run id, epochs) of the run's model that last became the session's model
RUN_KEY = "train.run_id"  # the run the session's training page shows (its model is published when it ends)
STUDENT_KEY = "train.student"  # this session's student id: the browser's once told, else the session's own
BROWSER_KEY = "train.browser"  # the student component's state: {"id": the id this browser keeps}
START_ERROR_KEY = "train.start_error"
CONTROL_ERROR_KEY = "train.control_error"
LIVE_SECONDS = 0.5  # how often the live view redraws while a run goes on
STOP_WAIT_S = STOP_GRACE_S + 0.5  # a stopped run has ended by then (its worker ended if it had not)
RUNS_LISTED = 6  # the student's newest runs in "Your runs"
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD with momentum 0.9"}  # as the page's Optimizer box names them

_STUDENT = Component("cnnviz_student", html="<span hidden></span>",
                     js=(Path(__file__).resolve().parent / "components" / "student.js").read_text(encoding="utf-8"))


def runs() -> Runs:
    """This server's runs (cnnviz.runs.shared_backend: made on first use, loading the runs kept on disk)."""
    return shared_backend()


# ---------------------------------------------------------------------------- who the student is


def student_id() -> str:
    """This session's student id. At first the session's own; once the browser's student component has
    told the id it keeps, that one (the runs started under the session's own are handed over to it)."""
    current = st.session_state.get(STUDENT_KEY)
    if current is None:
        current = st.session_state[STUDENT_KEY] = new_student_id()
    told = (st.session_state.get(BROWSER_KEY) or {}).get("id")
    if isinstance(told, str) and told != current and STUDENT_ID.match(told):
        runs().transfer(current, told)
        current = st.session_state[STUDENT_KEY] = told
    return current


def student_component() -> None:
    """Mounts the (invisible) student component that tells the browser's id (ui/components/student.js)."""
    with st.sidebar:
        _STUDENT(key=BROWSER_KEY, data={"current": student_id()}, on_id_change=lambda: None)


def parse_run_id(text: str) -> str:
    """A run id from a link (ui.state.Param's parser)."""
    if not RUN_ID.match(text):
        raise ValueError("it must be a run's id as the training page writes it: 8 letters, digits, - or _")
    return text


# ---------------------------------------------------------------------------- the session's model


def publish_finished_run() -> bool:
    """Make the model of the run the session's training page shows the session's model, once it has ended
    (finished, stopped, or interrupted with a model kept), if the run is the student's own.

    True when it did so on this call. A model loaded from a file afterwards is not replaced by the same
    run's model again."""
    run_id = st.session_state.get(RUN_KEY)
    if not run_id:
        return False
    record = runs().get(run_id)
    if record is None or record.state not in ("finished", "stopped", "interrupted") or \
            record.checkpoint_epochs is None or record.owner != st.session_state.get(STUDENT_KEY):
        return False
    published = (run_id, record.checkpoint_epochs)
    if st.session_state.get(PUBLISHED_KEY) == published:
        return False
    checkpoint = runs().checkpoint(run_id)
    if checkpoint is None:
        return False
    st.session_state[TRAINED_KEY] = checkpoint
    st.session_state[PUBLISHED_KEY] = published
    return True


@st.cache_resource(show_spinner=False)
def warm_up() -> None:
    """Once per server process: Streamlit runs a full garbage collection after every script and fragment
    run, which with torch loaded walks some 400,000 objects (about 0.2 s, holding the GIL), and the live
    view reruns every LIVE_SECONDS for every student watching a run. gc.freeze() moves the objects alive
    now (modules, torch) out of the collector's way; objects made later are still collected."""
    gc.collect()
    gc.freeze()


# ---------------------------------------------------------------------------- starting


def start_button(make_request: Callable[[], RunRequest], on_started: Callable[[str], None], *,
                 disabled: bool) -> None:
    """The Start button: the run is created (the server's limits checked again) and opened with
    `on_started(run_id)`; a refusal is shown under the button."""
    def start() -> None:
        try:
            record = runs().start(student_id(), make_request())
        except RunRefused as refusal:
            st.session_state[START_ERROR_KEY] = str(refusal)
            return
        st.session_state[START_ERROR_KEY] = None
        on_started(record.id)

    st.button("Start training", type="primary", icon=":material/play_arrow:", on_click=start, disabled=disabled,
              help="Trains on the server: you can change pages, reload or come back later with the page's link.")
    if st.session_state.get(START_ERROR_KEY):
        st.error(st.session_state[START_ERROR_KEY], icon=":material/block:")


# ---------------------------------------------------------------------------- one run


def _control(action: str, run_id: str) -> None:
    """Pause, resume or stop (the owner's buttons). A stop ends the run within a second (cnnviz.runs): the
    rerun that follows the click waits that long for it, so it shows the stopped run and its model."""
    try:
        getattr(runs(), action)(run_id, student_id())
    except RunRefused as refusal:
        st.session_state[CONTROL_ERROR_KEY] = str(refusal)
        return
    st.session_state[CONTROL_ERROR_KEY] = None
    deadline = time.monotonic() + STOP_WAIT_S
    while action == "stop" and time.monotonic() < deadline and not runs().get(run_id).done:
        time.sleep(0.02)


def run_buttons(record: RunRecord, owner: bool) -> None:
    """Pause / Resume / Stop for the run's owner; others are told whose run they see."""
    if not record.active:
        return
    if not owner:
        st.caption("You are watching another student's run: only the student who started it can pause or stop it.")
        return
    with st.container(horizontal=True):
        if record.state == "paused" or record.pause_requested:
            st.button("Resume", icon=":material/play_arrow:", on_click=_control, args=("resume", record.id),
                      key="train.resume")
        else:
            st.button("Pause", icon=":material/pause:", on_click=_control, args=("pause", record.id),
                      key="train.pause", disabled=record.state != "running")
        st.button("Stop", icon=":material/stop:", on_click=_control, args=("stop", record.id), key="train.stop",
                  disabled=record.stop_requested, help="Stops within a second; the model trained so far is kept.")
    if st.session_state.get(CONTROL_ERROR_KEY):
        st.error(st.session_state[CONTROL_ERROR_KEY], icon=":material/block:")


def status_line(record: RunRecord) -> None:
    where = "the GPU" if record.device in ("cuda", "mps") else "the server's CPU"
    if record.state == "queued":
        if record.queue_position:
            ahead = record.queue_position - 1
            order = "next in line" if not ahead else f"{ahead} waiting run{'s' if ahead != 1 else ''} go first"
            st.info(f"**Waiting, {ordinal(record.queue_position)} in line** for {where} (position "
                    f"{record.queue_position} in the queue: {order}). Runs take turns on {where}, so that they "
                    "never fight over it; this one starts on its own.", icon=":material/hourglass_top:")
        else:
            st.info(f"Starting on {record.device_label}…", icon=":material/hourglass_top:")
    elif record.state == "running" and record.stop_requested:
        st.info("Stopping…", icon=":material/stop:")
    elif record.state == "error":
        st.error(f"**Training failed.** {record.message}", icon=":material/error:")
    elif record.state == "interrupted":
        st.warning(f"**{record.message}**", icon=":material/restart_alt:")
    elif record.state == "paused":
        st.warning(f"**Paused** on {record.device_label}: {record.message}", icon=":material/pause:")
    elif record.state in ("finished", "stopped"):
        st.success(f"**{record.message}** Trained on {record.device_label}.", icon=":material/check_circle:")
    if record.progress is not None:
        st.progress(record.progress.fraction, text=progress_text(record.progress))
    elif record.state == "running":
        st.progress(0.0, text="Preparing…")


def epoch_view(record: RunRecord) -> None:
    """One epoch's report: predictions on test images, the confusion matrix and the first-layer filters."""
    reports, classes = record.reports, list(record.classes)
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
    when = "before training" if report.epoch == 0 else f"after epoch {report.epoch}"
    st.markdown(f"**Test images {when}**{' (random weights)' if report.epoch == 0 else ''} (test accuracy "
                f"{notation.percent(report.test_accuracy)}): the predicted class and its softmax probability above, "
                "green when right, red when wrong.")
    predictions(record.id, report, classes)
    left, right = st.columns([3, 2])
    with left:
        chart(confusion_spec(report.confusion, classes, title=f"Confusion matrix {when}"), key="train.fig.confusion")
        confused = most_confused(report.confusion, classes)
        if confused:
            st.caption("Most confused: " + "; ".join(f"{t} taken for {p} ({n}×)" for t, p, n in confused) + ".")
    with right:
        if report.filters is not None:
            count, _, k, _ = report.filters.shape
            chart(filters_spec(report.filters, title=f"First-layer filters ({count} of {notation.kernel(k)}), {when}"),
                  key="train.fig.filters")
            st.caption("Blue: negative weights, red: positive. They start random; with training they turn into "
                       "edge and blob detectors. Compare the epochs with the slider.")


def curves(record: RunRecord, classes: int) -> None:
    """Loss and accuracy side by side (stacked on a phone: Streamlit's columns do it below 640 px)."""
    for column, metric in zip(st.columns(len(CURVES)), CURVES):
        chart(curve_spec(record.history, record.config.epochs, metric, classes), key=f"train.fig.{metric}",
              where=column)


def cards_html(cards: list[PredictionCard]) -> str:
    """The test images as cards that wrap onto more lines on a narrow screen; class names escaped."""
    parts = []
    for card in cards:
        colour = RIGHT if card.right else WRONG
        parts.append(
            "<figure style='margin:0;width:88px;text-align:center'>"
            f"<div style='color:{colour};font-weight:600;font-size:0.85rem;line-height:1.2;min-height:2.1em'>"
            f"{html.escape(card.predicted)}<br>{html.escape(notation.percent(card.probability))}</div>"
            f"<img src='{card.picture}' alt='' style='width:80px;height:80px;image-rendering:pixelated'>"
            f"<figcaption style='color:#4b5563;font-size:0.75rem;line-height:1.2'>true: "
            f"{html.escape(card.true)}</figcaption></figure>")
    return "<div style='display:flex;flex-wrap:wrap;gap:10px 6px'>" + "".join(parts) + "</div>"


def predictions(run_id: str, report, classes: list[str]) -> None:
    """An epoch's report never changes: its cards are made once per process, not on every live rerun, for
    whoever watches the run."""
    st.html(remember("cards", (f"run:{run_id}", report.epoch),
                     lambda: cards_html(prediction_cards(report, classes))))


def live_view(run_id: str, compact: bool = False) -> None:
    """The run's controls (its owner's), status, curves and epoch reports; redrawn every LIVE_SECONDS while
    it goes on, without blocking the page. compact (the presenter view): the curves and the predictions only."""
    record = runs().get(run_id)
    if record is None:
        return

    @st.fragment(run_every=LIVE_SECONDS if record.active else None)
    def view() -> None:
        now = runs().get(run_id)
        if now is None:  # expired under the page
            st.rerun(scope="app")
        run_buttons(now, owner=now.owner == student_id())
        status_line(now)
        classes = list(now.classes)
        curves(now, len(classes))
        if compact:
            if now.reports:
                predictions(now.id, now.reports[-1], classes)
        else:
            epoch_view(now)
        if now.done and record.active:  # it ended while the page was open
            publish_finished_run()
            st.rerun(scope="app")  # stop the timer, show the download

    view()


def run_caption(record: RunRecord, owner: bool) -> None:
    """What the run is: its stack, data and settings, and whose it is."""
    config = record.config
    whose = "Your run" if owner else "Another student's run"
    data = DATASETS[record.dataset].title if record.dataset in DATASETS else record.dataset
    st.caption(f"{whose} `{record.id}`: `{config.stack}` on {data} ({notation.count(record.train_images)} "
               f"training images), {config.epochs} epoch{'s' if config.epochs != 1 else ''}, "
               f"{OPTIMIZERS.get(config.optimizer, config.optimizer)}, learning rate {config.lr:g}, "
               f"batch {config.batch_size}, on {record.device_label}.")


# ---------------------------------------------------------------------------- the student's runs


def your_runs(student: str, shown: str | None, on_open: Callable[[str], None]) -> None:
    """The student's newest runs (from any tab or session of this browser), each with where it stands,
    its accuracy, and Open."""
    mine = runs().of_owner(student)[:RUNS_LISTED]
    if not mine:
        return
    st.subheader("Your runs")
    for record in mine:
        accuracy = (f" · test accuracy {notation.percent(record.test_accuracy)}"
                    if record.test_accuracy is not None else "")
        with st.container(horizontal=True, vertical_alignment="center"):
            st.markdown(f"`{record.id}` **{state_text(record)}**{accuracy} · `{record.config.stack}`, "
                        f"{record.config.epochs} epoch{'s' if record.config.epochs != 1 else ''}",
                        width="stretch")
            st.button("Open", key=f"train.open.{record.id}", on_click=on_open, args=(record.id,),
                      disabled=record.id == shown, icon=":material/open_in_browser:")


# ---------------------------------------------------------------------------- save / load


def _file_name(ckpt: Checkpoint) -> str:
    accuracy = f"-{ckpt.test_accuracy * 100:.0f}pct" if ckpt.test_accuracy is not None else ""
    return re.sub(r"[^a-z0-9-]+", "-", f"cnnviz-{ckpt.dataset}{accuracy}".lower()) + ".pt"


def download_session_model() -> None:
    """The session's model as a checkpoint file to download (made once per model)."""
    trained = st.session_state.get(TRAINED_KEY)
    if not isinstance(trained, Checkpoint):
        st.caption("Train a model (or load one on the right) to download it here.")
        return
    accuracy = (f", test accuracy **{notation.percent(trained.test_accuracy)}**"
                if trained.test_accuracy is not None else "")
    st.markdown(f"**The model of this session:** `{trained.stack}`, trained on {trained.dataset}{accuracy}. "
                "The other pages (VGG-16 explorer, Classify an image) use it.")
    cached = st.session_state.get("train.ckpt_bytes")
    if cached is None or cached[0] is not trained:
        cached = (trained, save_checkpoint(trained))
        st.session_state["train.ckpt_bytes"] = cached
    st.download_button("Download the checkpoint", cached[1], file_name=_file_name(trained),
                       mime="application/octet-stream", icon=":material/download:",
                       help="A torch.save file with the stack, the weights, the class names and the accuracy.")
    st.page_link("pages/7_Classify_an_image.py", label="Classify an image with it", icon=":material/image_search:")


def load_checkpoint_box() -> None:
    """Upload a checkpoint: it becomes the session's model; a bad file is explained, never a traceback."""
    upload = st.file_uploader("Load a checkpoint", type=["pt", "pth", "ckpt"], key="train.upload",
                              help="A file downloaded from this page. It is read with torch.load(weights_only=True): "
                                   "tensors and numbers only, never code.")
    if upload is None:
        return
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
