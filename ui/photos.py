"""Pick a bundled sample photo or upload one; bad files become a message, not a traceback."""

from __future__ import annotations

import streamlit as st
import torch

from cnnviz import images

PHOTO_SIDE = 256  # big enough to see edges, small enough to convolve on every rerun
UPLOAD_TYPES = ["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"]


@st.cache_data(max_entries=32, show_spinner=False)
def _sample_tensor(name: str, side: int) -> torch.Tensor:
    return images.to_tensor(images.sample_image(name).image, side)


@st.cache_data(max_entries=8, show_spinner=False)
def _upload_tensor(data: bytes, side: int) -> tuple[torch.Tensor, list[str]]:
    loaded = images.load_image(data)
    return images.to_tensor(loaded.image, side), loaded.notes


def photo_picker(state, param: str, key: str, side: int = PHOTO_SIDE) -> tuple[torch.Tensor | None, str]:
    """A sample (kept in the URL under `param`) or an upload; returns a (3, H, W) tensor in [0, 1]."""
    names = list(images.SAMPLES)
    if state[param] not in names:
        state[param] = names[0]
    left, right = st.columns(2)
    left.selectbox("Sample photo", names, key=state.key(param))
    upload = right.file_uploader("…or upload your own", type=UPLOAD_TYPES, key=f"{key}.upload")
    if upload is None:
        return _sample_tensor(state[param], side), state[param]
    try:
        photo, notes = _upload_tensor(upload.getvalue(), side)
    except images.ImageError as error:
        st.error(f"**{upload.name}** can't be used: {error}", icon="🖼️")
        return None, upload.name
    for note in notes:
        st.caption(f"ℹ️ {note}")
    return photo, upload.name
