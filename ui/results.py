"""Results that depend on a model and an image, never on the session: computed once per process.

A hall opens the lecturer's link: a hundred sessions classify the same sample with the same model, and
every one of them would otherwise run the same forward passes, the same Grad-CAM and occlusion, and
encode the same pictures. Here each result is made once and shared (Streamlit's cache_resource: one
computation per key even when a hall asks at the same moment, the others wait for it), so a page's
first run in a new session costs what drawing it costs.

- `model_key(classifier)`: the model's part of a key. The bundled CNN and the pretrained models are
  loaded once per process and never change, so their name identifies them. A model trained or
  uploaded in a session is keyed by that session's object ("session:…") and its results stay in the
  session: an object's id means nothing once the session that held it is gone.
- `result_key(classifier, image, setting)`: shared only when the image is one of the app's samples too
  (what a hall's link shows). A drawing, a photo or an upload is one student's: shared, a hall drawing at
  once would push every sample's results out of the few large entries (a VGG-16 forward pass again on
  every click of another student).
- `remember(kind, key, make)`: make() once per key (also what depends on a run's id and epoch only: its
  reports never change). Shared results are never changed by their users
  (tensors read, pictures drawn, figure dicts handed to plotly as they are).

Sizes: an ImageNet model's forward pass with every activation kept is tens of MB (VGG-16's overview
~115 MB), so those results keep to the last few keys; the rest (the bundled CNN's passes, pictures,
figures, maps of a class) are small and keep many.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from cnnviz.classify import PRETRAINED, Classifier

T = TypeVar("T")
SHARED_MODELS = frozenset({"bundled", *PRETRAINED})  # loaded once per process (ui.upload), never changed
LARGE_KINDS = frozenset({"prediction", "overview"})  # every activation of a forward pass: large for ImageNet models
SESSION_PREFIX = "session:"
SESSION_ENTRIES = 16  # a page's worth of results (its prediction, overview, pictures, figures)


def model_key(classifier: Classifier) -> str:
    """The model's part of a result's key: its name when every session shares it, else this session's."""
    if classifier.key in SHARED_MODELS:
        return classifier.key
    return f"{SESSION_PREFIX}{id(classifier.model)}"


def result_key(classifier: Classifier, image, setting: str) -> tuple:
    """(model, image, setting) for remember(): every session's for a shared model and a sample image
    (`image.is_sample`), else this session's."""
    model = model_key(classifier) if image.is_sample else f"{SESSION_PREFIX}{id(classifier.model)}"
    return (model, image.ident, setting)


@st.cache_resource(max_entries=4, show_spinner=False)
def _large(kind: str, key: tuple, _make: Callable[[], T]) -> T:
    return _make()


@st.cache_resource(max_entries=96, show_spinner=False)
def _small(kind: str, key: tuple, _make: Callable[[], T]) -> T:
    return _make()


def _cache_for(kind: str, key: tuple):
    """An ImageNet model's forward pass with its activations is tens of MB and keeps to the few large
    entries; the bundled CNN's is a few kB and is kept with the small results (a hall's samples on it
    never push a VGG-16 student's results out)."""
    return _large if kind in LARGE_KINDS and key[0] in PRETRAINED else _small


def remember(kind: str, key: tuple, make: Callable[[], T]) -> T:
    """make() once per (kind, key): in this process when key[0] is a shared model's, else in this
    session (its last SESSION_ENTRIES results: a session keeps what it shows, not its history)."""
    if str(key[0]).startswith(SESSION_PREFIX):
        store = _session_store()
        if (kind, key) not in store:
            store[(kind, key)] = make()
            while len(store) > SESSION_ENTRIES:
                store.popitem(last=False)
        store.move_to_end((kind, key))
        return store[(kind, key)]
    return _cache_for(kind, key)(kind, key, make)


def is_ready(kind: str, key: tuple) -> bool:
    """Whether remember(kind, key, …) would return at once (a slow result offered behind a button)."""
    if str(key[0]).startswith(SESSION_PREFIX):
        return (kind, key) in _session_store()
    try:
        return _lookup(_cache_for(kind, key), kind, key)
    except Exception:  # noqa: BLE001 - Streamlit's cache internals: not knowing only means "not yet"
        return False


def _session_store() -> OrderedDict:
    return st.session_state.setdefault("results.session", OrderedDict())


def _lookup(cache, kind: str, key: tuple) -> bool:
    """Ask the cache without computing: a `make` that raises tells us the value was not there."""
    try:
        cache(kind, key, _raise_missing)
    except _Missing:
        return False
    return True


class _Missing(Exception):
    pass


def _raise_missing():
    raise _Missing
