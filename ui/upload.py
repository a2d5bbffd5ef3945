"""Inputs of the classify page: an image (a sample, a bundled test image, an upload, a drawing or a
camera photo) and a checkpoint.

Every file a student uploads or photographs goes through the engine's safe loaders; whatever is
wrong with it becomes one clear message on the page, never a traceback.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass

import streamlit as st

from cnnviz import classify, images, notation
from cnnviz.drawing import Drawing, prepare_drawing
from cnnviz.checkpoint import (
    MAX_CHECKPOINT_MB,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
)
from ui.drawing import drawing_pad
from ui.photos import UPLOAD_TYPES
from ui.training import TRAINED_KEY

CHECKPOINT_TYPES = ["pt", "pth", "ckpt"]
# Streamlit's per-uploader limit, in its megabytes (MiB): the browser refuses bigger images
# before sending them; images.load_image refuses what lies between this and MAX_BYTES.
IMAGE_UPLOAD_MB = math.ceil(images.MAX_BYTES / 1024 / 1024)


# The image sources, in the order of the switch; "file" is a sample or an upload.
SOURCES = {"file": ":material/photo_library: Sample or file", "draw": ":material/draw: Draw",
           "camera": ":material/photo_camera: Camera"}


@dataclass
class PickedImage:
    loaded: images.LoadedImage
    name: str  # what to call it in captions
    ident: str  # identifies the pixels, for caching predictions
    orientation: int = 1  # EXIF tag of an uploaded file
    true_class: str | None = None  # for bundled test images
    drawing: Drawing | None = None  # a drawing's strokes: prepared the MNIST way for a light-on-dark network

    @property
    def is_sample(self) -> bool:
        """One of the app's own images (a sample photo or a Fashion-MNIST test image): the same for everyone."""
        return self.ident.startswith(("sample:", "fashion:"))

    def prepare(self, recipe: classify.Recipe, *, invert: classify.InvertMode = "auto") -> classify.Prepared:
        """The picture as the network's input, step by step (a drawing's own steps, or classify.prepare's)."""
        if self.drawing is not None:
            return prepare_drawing(self.drawing, recipe, invert=invert)
        return classify.prepare(self.loaded, recipe, invert=invert, orientation=self.orientation)


@st.cache_data(max_entries=16, show_spinner=False)
def _sample(name: str) -> images.LoadedImage:
    return images.sample_image(name)


@st.cache_data(max_entries=1, show_spinner=False)
def _fashion() -> dict[str, tuple[images.LoadedImage, int]]:
    return classify.fashion_test_images()


@st.cache_data(max_entries=8, show_spinner=False)
def _upload(data: bytes) -> tuple[images.LoadedImage, int]:
    return images.load_image(data), classify.exif_orientation(data)


def image_picker(state, param: str, key: str, *, classifier: classify.Classifier | None = None,
                 invert: classify.InvertMode = "auto", source_param: str = "source") -> PickedImage | None:
    """Where the image comes from (`source_param` of the page's URL state: file, draw or camera, so a link
    opens the drawing pad or the camera), then the image: a sample (its name kept in the URL under `param`)
    or an upload, a drawing (classified live with `classifier`, as the page's `invert` setting says), or a
    camera photo. None while there is no image yet or after a bad file (the message is already shown)."""
    source = st.segmented_control("Image source", list(SOURCES), format_func=SOURCES.get, required=True,
                                  key=state.key(source_param), label_visibility="collapsed")
    if source == "draw":
        drawing = drawing_pad(f"{key}.drawing", classifier, invert=invert)
        if drawing is None:
            return None
        return PickedImage(images.LoadedImage(drawing.render(), "Drawing", "L", (drawing.side, drawing.side)),
                           "your drawing", drawing.ident, drawing=drawing)
    if source == "camera":
        return _camera_photo(key)
    return _sample_or_upload(state, param, key)


def _sample_or_upload(state, param: str, key: str) -> PickedImage | None:
    """A sample (its name kept in the URL under `param`) or an upload."""
    fashion = _fashion()
    names = [*images.SAMPLES, *fashion]
    if state[param] not in names:
        st.warning(f"The link's image {state[param]!r} is not one of the sample images; showing {names[0]}.",
                   icon="🔗")
        state[param] = names[0]
    left, right = st.columns(2)
    left.selectbox("Sample image", names, key=state.key(param),
                   help="Photos, or test images of Fashion-MNIST that the bundled model never saw in training.")
    upload = right.file_uploader("…or upload your own image", type=UPLOAD_TYPES, key=f"{key}.upload",
                                 max_upload_size=IMAGE_UPLOAD_MB,
                                 help="PNG, JPEG, WebP, BMP, GIF or TIFF, up to "
                                      f"{notation.megabytes(images.MAX_BYTES)} and "
                                      f"{notation.approx(images.MAX_PIXELS)} pixels.")
    if upload is None:
        name = state[param]
        if name in fashion:
            loaded, _ = fashion[name]
            true = name.removeprefix(classify.FASHION_PREFIX)
            return PickedImage(loaded, name, f"fashion:{name}", true_class=true)
        return PickedImage(_sample(name), name, f"sample:{name}")
    return picked_file(upload.name, upload.getvalue(), "upload")


def _camera_photo(key: str) -> PickedImage | None:
    widget, kept = f"{key}.camera", f"{key}.last_photo"

    def remember_photo() -> None:  # a photo taken, or cleared with the camera's own button
        photo = st.session_state.get(widget)
        st.session_state[kept] = photo.getvalue() if photo is not None else None

    # 720p: plenty for a network's 224×224 at most, and a small JPEG over a lecture hall's wifi (a camera's
    # default can be 4K: 3840×2160 from chromium's test camera).
    photo = st.camera_input("Take a photo", key=widget, resolution="720p", width=520, on_change=remember_photo,
                            help="The browser asks once for the camera. The photo stays in this browser tab: "
                                 "a link to this page cannot carry it.")
    if photo is not None:
        return picked_file("your photo", photo.getvalue(), "camera")
    last = st.session_state.get(kept)
    if last:  # the camera widget starts empty when it is drawn again (after a sample, a drawing, another page)
        st.caption("Classifying your last photo; take another to replace it.")
        return picked_file("your photo", last, "camera")
    st.info("Take a photo to classify it: hold an object in front of the camera and press **Take Photo**.",
            icon=":material/photo_camera:")
    return None


def picked_file(name: str, data: bytes, kind: str) -> PickedImage | None:
    """An uploaded file or a camera photo through the engine's safe loader (size and pixel limits, EXIF
    orientation, broken data): the picture, or None after showing why it can't be used."""
    try:
        loaded, orientation = _upload(data)
    except images.ImageError as error:
        st.error(f"**{name}** can't be used: {error}", icon="🖼️")
        return None
    return PickedImage(loaded, name, f"{kind}:" + hashlib.sha256(data).hexdigest(), orientation)


@st.cache_resource(max_entries=1, show_spinner=False)
def bundled_model() -> classify.Classifier:
    """The small Fashion-MNIST CNN that ships with the app: loaded once per server process."""
    return classify.load_bundled()


@st.cache_resource(max_entries=2, show_spinner=False)
def pretrained_model(key: str) -> classify.Classifier:
    """An ImageNet model from the torch cache: loaded once per server process, shared by all sessions."""
    return classify.load_pretrained(key)


@st.cache_resource(max_entries=4, show_spinner=False)
def _checkpoint_classifier(digest: str, _data: bytes) -> classify.Classifier:
    """Shared by every session that uploads the same bytes: never changed after it is made."""
    return classify.from_checkpoint(load_checkpoint(_data), "checkpoint", "Your uploaded checkpoint")


def checkpoint_picker(key: str) -> classify.Classifier | None:
    """A cnnviz checkpoint (.pt from the training page) uploaded by the student."""
    upload = st.file_uploader("Checkpoint file from the Train a CNN page", type=CHECKPOINT_TYPES,
                              key=f"{key}.ckpt", max_upload_size=MAX_CHECKPOINT_MB)
    if upload is None:
        st.info("Upload a checkpoint (.pt) saved on the **Train a CNN** page to classify with it.",
                icon=":material/upload_file:")
        return None
    data = upload.getvalue()
    try:
        classifier = _checkpoint_classifier(hashlib.sha256(data).hexdigest(), data)
    except (CheckpointError, classify.ClassifyError) as error:
        st.error(f"**{upload.name}** can't be used: {error}", icon=":material/block:")
        return None
    return dataclasses.replace(classifier, title=f"Checkpoint {upload.name}")


def session_classifier() -> classify.Classifier | None:
    """The model trained on the training page in this browser session (st.session_state[TRAINED_KEY]), if any."""
    ckpt = st.session_state.get(TRAINED_KEY)
    if not isinstance(ckpt, Checkpoint):
        st.info("No model has been trained in this session yet. Train one on the **Train a CNN** page, "
                "then come back here.", icon=":material/model_training:")
        st.page_link("pages/5_Train_a_CNN.py", label="Train a CNN", icon=":material/model_training:")
        return None
    cache = st.session_state.setdefault("classify.session_models", {})
    if id(ckpt) not in cache:
        try:
            cache.clear()
            cache[id(ckpt)] = (ckpt, classify.from_checkpoint(ckpt, "session", "The model you trained"))
        except classify.ClassifyError as error:
            st.error(f"The model trained in this session can't be used: {error}")
            return None
    return cache[id(ckpt)][1]
