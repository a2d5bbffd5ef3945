"""The training page's widgets, and the session's training run seen from any page.

A job started on the Train page goes on while the student looks at other pages. Its model
becomes the session's model (st.session_state[TRAINED_KEY], a Checkpoint) when the job
ends; `publish_finished_job()` does that, and any page may call it (ui.lessons.page_setup is
the natural place), so the Classify page sees a model that finished while it was open.
"""

from __future__ import annotations

import gc
import re
import threading

import streamlit as st
import torch

from cnnviz import notation
from cnnviz.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from cnnviz.jobs import TrainingJob
from cnnviz.network import StackError
from cnnviz.train import TrainError
from cnnviz.train_figures import (confusion_spec, curves_spec, filters_spec, most_confused, predictions_spec,
                                  progress_text)

from .show import chart

JOB_KEY = "train.job"  # the session's cnnviz.jobs.TrainingJob, if any
TRAINED_KEY = "cnnviz.trained"  # the session's model: a cnnviz.checkpoint.Checkpoint, used by every page
PUBLISHED_KEY = "train.published"  # the job checkpoint already made the session's model
LIVE_SECONDS = 0.3  # how often the live view redraws while a run goes on


def publish_finished_job() -> bool:
    """Make the session's finished (or stopped) training run the session's model, once.

    True when it did so on this call. A model loaded from a file afterwards is not replaced
    by the same finished run again.
    """
    job = st.session_state.get(JOB_KEY)
    if job is None:
        return False
    snap = job.snapshot()
    if not snap.done or snap.checkpoint is None or st.session_state.get(PUBLISHED_KEY) is snap.checkpoint:
        return False
    st.session_state[TRAINED_KEY] = snap.checkpoint
    st.session_state[PUBLISHED_KEY] = snap.checkpoint
    return True


def current_job() -> TrainingJob | None:
    return st.session_state.get(JOB_KEY)


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


def start_button(make_job, *, disabled: bool, busy: bool) -> None:
    """The Start button; `make_job()` builds the TrainingJob (TrainError / StackError explain a refusal)."""
    def start() -> None:
        try:
            job = make_job()
        except (TrainError, StackError) as error:
            st.session_state["train.start_error"] = str(error)
            return
        st.session_state["train.start_error"] = None
        st.session_state[JOB_KEY] = job.start()

    st.button("Start training", type="primary", icon=":material/play_arrow:", on_click=start, disabled=disabled,
              help="A training run is going on; stop it first." if busy else
              "Starts in the background: you can change pages and come back.")
    if st.session_state.get("train.start_error"):
        st.error(st.session_state["train.start_error"], icon=":material/block:")


def job_buttons(job: TrainingJob, snap) -> None:
    if not snap.active:
        return
    with st.container(horizontal=True):
        if snap.state == "paused":
            st.button("Resume", icon=":material/play_arrow:", on_click=job.resume, key="train.resume")
        else:
            st.button("Pause", icon=":material/pause:", on_click=job.pause, key="train.pause")
        st.button("Stop", icon=":material/stop:", on_click=job.stop, key="train.stop",
                  help="Stops after the current step; the model trained so far is kept.")


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
    """One epoch's report: predictions on test images, the confusion matrix and the first-layer filters."""
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
    when = "before training" if report.epoch == 0 else f"after epoch {report.epoch}"
    st.markdown(f"**Test images {when}**{' (random weights)' if report.epoch == 0 else ''} (test accuracy "
                f"{notation.percent(report.test_accuracy)}): the predicted class and its softmax probability above, "
                "green when right, red when wrong.")
    chart(predictions_spec(report, classes), key="train.fig.predictions")
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


def live_view(busy: bool, compact: bool = False) -> None:
    """The run's controls, status, curves and epoch reports; redrawn every LIVE_SECONDS while it goes on.
    compact (the presenter view): the curves and the predictions row only."""
    @st.fragment(run_every=LIVE_SECONDS if busy else None)
    def view() -> None:
        job = current_job()
        if job is None:
            return
        snap = job.snapshot()
        job_buttons(job, snap)
        status_line(snap)
        classes = list(job.trainer.classes)
        chart(curves_spec(snap.history, snap.config.epochs, len(classes)), key="train.fig.curves")
        if compact:
            if snap.reports:
                chart(predictions_spec(snap.reports[-1], classes), key="train.fig.predictions")
        else:
            epoch_view(snap, classes)
        if snap.done and busy:
            publish_finished_job()
            st.rerun(scope="app")  # stop the timer, show the download

    view()


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
