"""The data sets for every page: each split loaded once per server process, the one Download
button, and the test-image picker.

The images are shared read-only by all sessions (st.cache_resource): a page gets the same
tensors as every other page and session, never a copy, and must not change them.

The data folder is the server's setting, the CNNVIZ_DATA environment variable
(cnnviz.data.default_root), never a widget: the visitors of a shared server must not point
the server at its own files, nor learn its paths, so every message names it
"the server's data folder" (the README's "Data, weights and the command line" tells
the admin how to set it).
"""

from __future__ import annotations

import random
import threading
from typing import Any

import streamlit as st

from cnnviz import data
from cnnviz.data import DATASETS, DataUnavailable, ImageSet
from cnnviz.learn_figures import image_png
from ui.state import UrlState

FOLDER_NAME = "the server's data folder"
DOWNLOADED_KEY = "datasets.downloaded"  # the success message shown after the rerun that follows a download
WHERE = {"debian": "full set (Debian package)", "torchvision": "full set (torchvision's files)"}


def _root() -> str:
    return str(data.default_root())


def resolved_source(name: str, source: str) -> str:
    """"auto" made definite: "full" when the full set is on the server, else the bundled subset
    where there is one. Resolved before caching, so one split is never held twice."""
    if source != "auto":
        return source
    if data.full_present(name, _root()) or not DATASETS[name].has_bundled:
        return "full"
    return "bundled"


@st.cache_resource(max_entries=8, show_spinner="Reading the images…")
def _split(name: str, split: str, source: str, root: str) -> ImageSet:
    return data.load_images(name, split, source=source, root=root, root_name=FOLDER_NAME)


def image_sets(name: str, source: str = "auto") -> tuple[ImageSet, ImageSet]:
    """The (train, test) splits, shared by all sessions. Raises DataUnavailable with a message
    for the page (no server paths in it)."""
    source = resolved_source(name, source)
    return _split(name, "train", source, _root()), _split(name, "test", source, _root())


@st.cache_resource(max_entries=8, show_spinner=False)
def _subset(name: str, source: str, root: str, n: int, seed: int) -> ImageSet:
    return _split(name, "train", source, root).take(n, seed=seed)


def training_images(name: str, source: str, n: int, seed: int) -> ImageSet:
    """A fixed random subset of n training images (the whole split when it has at most n),
    made once per server for these settings."""
    return _subset(name, resolved_source(name, source), _root(), n, seed)


def on_server(name: str, source: str) -> bool:
    """Whether the images for `source` are here without a download."""
    if resolved_source(name, source) == "bundled":
        return DATASETS[name].has_bundled
    return data.full_present(name, _root()) is not None


def location(name: str) -> str:
    """Which images of `name` this server has, in words (for the data sets table)."""
    present = data.full_present(name, _root())
    if present:
        return WHERE[present]
    return "bundled subset" if DATASETS[name].has_bundled else "not here: choose it above to download"


def how_to_get(name: str) -> str:
    """How to get the full set onto the server, for the page (the data folder named, not shown)."""
    return data.how_to_get(name, _root(), FOLDER_NAME)


@st.cache_resource
def _download_lock() -> threading.Lock:
    """One download at a time per server: two sessions fetching the same files into the same
    folder would write over each other's files."""
    return threading.Lock()


def download_button(name: str, *, key: str, where: Any = st) -> None:
    """The "Download <data set>" button. Pressed, it fetches torchvision's files into the
    server's data folder with a progress bar, then reruns the page, which now finds them
    (`download_notice` says so); a failure is shown where the button was."""
    title = DATASETS[name].title
    if not where.button(data.download_label(name), icon=":material/download:", key=key,
                        help="Fetches torchvision's files from the addresses torchvision lists into the "
                             "server's data folder (the server needs internet access)."):
        return
    box = where.container()
    lock = _download_lock()
    bar = box.progress(0.0, text="Waiting for another download to finish…" if lock.locked() else "Connecting…")
    try:
        with lock:
            data.download_full(name, root=_root(), root_name=FOLDER_NAME,
                               progress=lambda fraction, text: bar.progress(min(max(fraction, 0.0), 1.0), text=text))
    except DataUnavailable as error:
        bar.empty()
        box.error(f"**The download did not work.** {error}", icon=":material/cloud_off:")
        return
    # Nothing cached needs clearing: a split that could not be loaded was never cached, and
    # "auto" now resolves to the full set, a new cache entry.
    st.session_state[DOWNLOADED_KEY] = f"{title} downloaded to {FOLDER_NAME}."
    st.rerun()


def download_notice() -> None:
    """After the rerun that follows a download: say it worked, once."""
    if DOWNLOADED_KEY in st.session_state:
        st.success(st.session_state.pop(DOWNLOADED_KEY), icon=":material/download_done:")


def test_image_picker(state: UrlState, test_set: ImageSet, param: str = "img", where: Any = st) -> int:
    """Choose a test image by number, at random or as the next one of a class; shows it
    enlarged and returns its index. The number is the page's URL parameter `param`."""
    class_key = f"{state.page}.of_class"

    def random_image() -> None:
        state[param] = random.randrange(len(test_set))

    def next_of_class() -> None:
        state[param] = test_set.next_of_class(test_set.classes.index(st.session_state[class_key]), state[param])
        st.session_state[class_key] = None  # choosing the same class again steps on

    with where.container():
        st.number_input(f"Test image (0–{len(test_set) - 1})", 0, len(test_set) - 1, key=state.key(param))
        st.button("Random test image", icon=":material/casino:", on_click=random_image, width="stretch")
        st.selectbox("Next image of class", test_set.classes, index=None, key=class_key, on_change=next_of_class,
                     placeholder="choose a class…")
        index = state[param]
        st.image(image_png(test_set.image(index)), width=220,
                 caption=f"Test image {index}: {test_set.class_name(index)} ({test_set.shape_text})")
    return index
