"""The models of the "What models learn" page: each trained once per settings on the server
(with a progress bar while it trains), then shared by every session that asks for the same
settings, the most recently used STORE_SIZE of them kept."""

from __future__ import annotations

import threading
from collections import OrderedDict

import streamlit as st

from cnnviz import learn
from cnnviz.data import ImageSet
from ui.state import UrlState

STORE_SIZE = 24


class _Store:
    def __init__(self) -> None:
        self.results: OrderedDict[tuple, learn.TrainResult] = OrderedDict()
        self.lock = threading.Lock()  # sessions run in threads of their own

    def get(self, key: tuple) -> learn.TrainResult | None:
        with self.lock:
            if key in self.results:
                self.results.move_to_end(key)
            return self.results.get(key)

    def put(self, key: tuple, result: learn.TrainResult) -> None:
        with self.lock:
            self.results[key] = result
            while len(self.results) > STORE_SIZE:
                self.results.popitem(last=False)


@st.cache_resource
def _store() -> _Store:
    return _Store()


def trained(state: UrlState, kind: str, train_set: ImageSet, test_set: ImageSet, **settings) -> learn.TrainResult:
    """The model of `kind` trained on these images with these settings (learn.train's keywords).

    Settings that cannot work (or a server out of memory) are explained on the page, which
    then stops, its URL state kept."""
    key = (kind, train_set.name, train_set.source, len(train_set), tuple(sorted(settings.items())))
    store = _store()
    result = store.get(key)
    if result is not None:
        return result
    title = learn.TITLES[kind].lower()
    bar = st.progress(0.0, text=f"Training the {title}…")
    try:
        result = learn.train(kind, train_set, test_set,
                             progress=lambda fraction, text: bar.progress(min(fraction, 1.0), text=text), **settings)
    except (ValueError, RuntimeError) as error:  # impossible settings, or out of memory
        bar.empty()
        st.error(f"The {title} could not be trained: {error}", icon=":material/error:")
        state.sync()
        st.stop()
    bar.empty()
    store.put(key, result)
    return result
