"""The classify page's explanations: the network unit by unit, and why it chose a class.

- `overview_now`: cnnviz.explain.network_overview for this (model, image), made once per process
  (ui.results: every session that shows the same image on the same model shares it).
- `network_view`: the overview as a browser component (ui/components/network_view.*): one column per
  layer; a click on a map cell, a vector cell or a score names a unit (one rerun), kept in the page's
  link as `unit` (layer.channel.row.column, or layer.entry, counted from 1).
- `unit_panel`: that unit's receptive field on the image, its input window and filter as the
  convolution lab draws grids, and its arithmetic (cnnviz.explain, in the lesson's notation).
- `why_this_class`: a class picker (the predicted class by default, `cls` in the link), Grad-CAM and
  the occlusion map over the image, each with the sentence that tells how to read it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import streamlit as st
import torch

from cnnviz import explain, notation
from cnnviz.classify import Classifier
from cnnviz.classify_figures import heat_overlay, input_picture, overview_data
from cnnviz.pictures import colorize_signed, symmetric_bound

from .results import is_ready, remember
from .show import Component, arithmetic
from .state import UrlState

_HERE = Path(__file__).resolve().parent / "components"
_VIEW = Component("cnnviz_network_view",
                  **{part: (_HERE / f"network_view.{part}").read_text(encoding="utf-8") for part in ("html", "css", "js")})
VIEW_KEY = "classify.network"
MAP_COLUMNS_KEY = "classify.map_columns"  # per column of the overview shown: does it hold maps?
WINDOW_CHANNELS = 4  # input channels whose windows and filter slices are drawn
OCCLUSION_BUDGET_S = 3.0  # slower than this (estimated): computed on request only
SMALL_INPUT = 32 * 32 * 3  # inputs this small (Fashion-MNIST, CIFAR-10) are always occluded at once
UNIT_PATTERN = re.compile(r"^\d{1,4}(\.\d{1,5}){1,3}$")


# ---------------------------------------------------------------- the link's unit

def parse_unit(text: str) -> str:
    """UrlState parser: 'layer.channel.row.column' (a map cell) or 'layer.entry' (a vector's), from 1."""
    text = text.strip()
    if text and not UNIT_PATTERN.match(text) or text.count(".") == 2:
        raise ValueError("it must be layer.channel.row.column (a map's cell) or layer.entry (a score), "
                         "counted from 1, e.g. 4.5.3.7 or 11.10")
    return text


def unit_text(column: int, channel: int, row: int = 0, col: int = 0, vector: bool = False) -> str:
    return f"{column}.{channel + 1}" if vector else f"{column}.{channel + 1}.{row + 1}.{col + 1}"


def _unit_of(text: str) -> tuple[int, int, int, int]:
    """(column, channel, row, col), 0-based except the column (the overview's own number)."""
    parts = [int(p) for p in text.split(".")]
    if len(parts) == 2:
        return parts[0], parts[1] - 1, 0, 0
    return parts[0], parts[1] - 1, parts[2] - 1, parts[3] - 1


# ---------------------------------------------------------------- run once per (model, image)

def overview_now(classifier: Classifier, x: torch.Tensor, cache_key: tuple) -> explain.Overview:
    """The overview of this image (cache_key: ui.results.model_key, the image, its setting), made once;
    the session keeps only which columns hold maps (what a click's callback needs to name its unit)."""
    overview = remember("overview", cache_key, lambda: explain.network_overview(classifier, x))
    st.session_state[MAP_COLUMNS_KEY] = tuple(c.output.ndim == 3 and c.is_maps for c in overview.columns)
    return overview


# ---------------------------------------------------------------- the overview component

def chosen_unit(overview: explain.Overview, state: UrlState, param: str = "unit") -> tuple[explain.Unit, int]:
    """The link's unit and the column it was clicked in, or before any click the first convolution's
    strongest response; a unit the model does not have is said, and the default shown."""
    text = state[param]
    if text:
        try:
            column, channel, row, col = _unit_of(text)
            return explain.unit_at(overview, column, channel, row, col), column
        except explain.ExplainError as error:
            st.warning(f"The link's unit {param}={text!r} was ignored: {error}", icon="🔗")
            state[param] = ""
    unit = explain.unit_at(overview, *explain.default_unit(overview))
    return unit, unit.column


def _clicked(state: UrlState, param: str) -> None:
    value = st.session_state.get(VIEW_KEY) or {}
    unit = value.get("unit") if hasattr(value, "get") else None
    if not isinstance(unit, dict):
        return
    try:
        column, channel, row, col = (int(unit[k]) for k in ("column", "channel", "row", "col"))
    except (KeyError, TypeError, ValueError):
        return
    state[param] = unit_text(column, channel, row, col,
                             vector=row == 0 and col == 0 and not _is_map_column(column))


def _is_map_column(column: int) -> bool:
    kinds = st.session_state.get(MAP_COLUMNS_KEY, ())
    return kinds[column] if 0 <= column < len(kinds) else True


def network_view(overview: explain.Overview, unit: explain.Unit, column: int, state: UrlState, cache_key: tuple, *,
                 present: bool = False, param: str = "unit") -> None:
    """The overview, the chosen unit ringed in the column it was clicked in (and its receptive field on the
    input); a click picks another."""
    selected = {"column": column,
                "channel": unit.position[0] if unit.position else unit.index,
                "row": unit.position[1] if unit.position else 0, "col": unit.position[2] if unit.position else 0,
                "field": list(unit.receptive_field) if unit.receptive_field else None}
    many = len(overview.columns) > 30
    maps = 4 if many or present else 6
    tile = 56 if present else (40 if many else 44)
    extra = {selected["column"]: selected["channel"]} if unit.position else None
    data = remember("network view", (*cache_key, maps, tile, tuple(sorted((extra or {}).items()))),
                    lambda: overview_data(overview, maps_per_column=maps, tile_px=tile, extra=extra))
    hint = ("Click a cell of any map, a vector or a score to see what that unit computed. "
            f"Red: positive, blue: negative, white: zero; each map on its own scale. {len(overview.columns)} "
            "columns" + (", scroll sideways for the rest." if many else "."))
    _VIEW(key=VIEW_KEY, data={**data, "selected": selected, "present": present, "tile": tile, "hint": hint},
          on_unit_change=lambda: _clicked(state, param))


# ---------------------------------------------------------------- one unit

def grid_html(values: torch.Tensor, bound: float, *, title: str = "", padding: torch.Tensor | None = None,
              cell_px: int = 34) -> str:
    """A small grid of numbers as the labs draw them: each cell coloured on the diverging scale (±bound),
    its number in the lesson's notation; padding cells grey. Escaped."""
    rows, cols = values.shape
    colours = colorize_signed(values.detach().double().numpy(), bound)
    cells = []
    for r in range(rows):
        for c in range(cols):
            pad = padding is not None and bool(padding[r, c])
            red, green, blue = (int(v) for v in colours[r, c])
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 140
            style = ("background:#cfd3da;color:#4b5563" if pad else
                     f"background:rgb({red},{green},{blue});color:{'#111827' if light else '#fff'}")
            text = notation.number(float(values[r, c]), 2)
            cells.append(f"<div style='{style};height:{cell_px}px;display:flex;align-items:center;"
                         f"justify-content:center;font-size:{0.62 if len(text) > 4 else 0.75}rem;"
                         f"font-family:ui-monospace,Menlo,Consolas,monospace'>{html.escape(text)}</div>")
    grid = (f"<div style='display:grid;grid-template-columns:repeat({cols},{cell_px}px);gap:2px'>"
            + "".join(cells) + "</div>")
    head = f"<div style='font-size:0.8rem;font-weight:600;margin-bottom:2px'>{html.escape(title)}</div>" if title else ""
    return f"<div style='display:inline-block;margin:0 12px 10px 0;vertical-align:top'>{head}{grid}</div>"


def _windows_html(unit: explain.Unit, source: str) -> str:
    window, weights = unit.window, unit.weights
    shown = range(min(window.shape[0], WINDOW_CHANNELS))
    bound = symmetric_bound(window.numpy())
    parts = []
    for c in shown:
        channel = unit.channels[c]
        parts.append(grid_html(window[c], bound, title=f"input channel {channel + 1}", padding=unit.padding))
    more = window.shape[0] - len(shown)
    inputs = "".join(parts) + (f"<div style='font-size:0.85rem;color:#4b5563'>… and {more} more channels</div>"
                               if more > 0 else "")
    if weights is None:
        return f"<div><b>Its window</b> in {html.escape(source, quote=False)}</div>{inputs}"
    wb = symmetric_bound(weights.numpy())
    kernels = "".join(grid_html(weights[c], wb, title=f"filter slice {c + 1}") for c in shown)
    return (f"<div><b>Input window</b> in {html.escape(source, quote=False)} (grey: padding zeros)</div>{inputs}"
            f"<div><b>Filter {unit.position[0] + 1}</b>, one slice per input channel</div>{kernels}")


def unit_panel(overview: explain.Overview, unit: explain.Unit, *, present: bool = False) -> None:
    """What the chosen unit computed: where it looks in the image, what it reads, and the sum."""
    st.markdown(f"**{unit.title}**")
    left, right = st.columns([1, 3] if not present else [1, 2])
    with left:
        picture = input_picture(overview.image, side_px=240 if present else 200, box=unit.receptive_field)
        caption = "The whole image: it follows a vector that mixes every position." if unit.receptive_field is None \
            else _field_caption(unit.receptive_field)
        st.image(picture, width=picture.width)
        st.caption(caption)
    with right:
        if unit.window is not None:
            source = explain.input_column(overview, unit.column)
            name = "the image" if source == 0 else f"layer {source}'s output ({overview.columns[source].title})"
            st.markdown(_windows_html(unit, name), unsafe_allow_html=True)
        arithmetic(unit.lines)
        check = (f"torch's value for this unit: {notation.number(unit.torch_value)}"
                 + (f" → {notation.number(unit.final)} after what follows" if unit.following else ""))
        st.caption(f"{unit.sentence} ({check}.)")
        if unit.contributions:
            listed = "; ".join(f"{where}: {notation.number(p)}" for where, p in unit.contributions)
            st.caption(f"Largest products w·x: {listed}.")


def _field_caption(box: explain.Box) -> str:
    top, left, bottom, right = box
    return (f"Receptive field (amber): rows {top + 1}–{bottom + 1}, columns {left + 1}–{right + 1} of the input, "
            f"{notation.grid(bottom - top + 1, right - left + 1)} pixels.")


# ---------------------------------------------------------------- why this class

def class_picker(classifier: Classifier, overview: explain.Overview, state: UrlState, param: str = "cls") -> int:
    """The class to explain: the predicted one unless the link or the student chose another."""
    classes = classifier.classes
    predicted = int(overview.logits.argmax())
    if state[param] and state[param] not in classes:
        st.warning(f"The link's class {param}={state[param]!r} was ignored: this model has no such class; "
                   f"explaining the predicted class, {classes[predicted]}.", icon="🔗")
        state[param] = ""
    order = torch.argsort(overview.logits, descending=True).tolist()
    options = [""] + [classes[i] for i in order]
    st.selectbox("Class to explain", options, key=state.key(param),
                 format_func=lambda name: f"{classes[predicted]} (predicted)" if name == "" else
                 f"{name} ({notation.percent(float(overview.probabilities[classes.index(name)]))})",
                 help="Grad-CAM and the occlusion map for this class: which parts of the image raised its score.")
    return classes.index(state[param]) if state[param] else predicted


def why_this_class(classifier: Classifier, x: torch.Tensor, overview: explain.Overview, class_index: int,
                   cache_key: tuple, *, forward_seconds: float, present: bool = False) -> None:
    """Grad-CAM and the occlusion map of one class, side by side, over the image."""
    name = classifier.classes[class_index]
    side = 250 if present else 260
    gradcam_col, occlusion_col = st.columns(2)
    with gradcam_col:
        try:
            cam = remember("gradcam", (*cache_key, class_index), lambda: explain.grad_cam(classifier, x, class_index))
        except explain.ExplainError as error:
            st.info(str(error))
        else:
            st.markdown(f"**Grad-CAM** on {cam.layer}")
            st.image(input_picture(x, side_px=side, heat=heat_overlay(cam.heatmap)), width=side,
                     caption=f"ReLU(Σ α_k A_k) over the {notation.count(cam.activations.shape[0])} maps of "
                             f"{notation.grid(*cam.coarse.shape)}, α_k the mean of ∂score/∂A_k, enlarged to the image")
            st.markdown(cam.sentence)
    with occlusion_col:
        h, w = x.shape[1:]
        patch, stride = explain.default_patch(h, w)
        count = len(explain.patch_positions(h, patch, stride)) * len(explain.patch_positions(w, patch, stride))
        estimate = forward_seconds * count
        key = (*cache_key, class_index, patch, stride)
        ready = is_ready("occlusion", key)
        st.markdown(f"**Occlusion**: a grey {notation.grid(patch, patch)} patch at {notation.count(count)} places")
        small = x.numel() <= SMALL_INPUT  # batched, a few hundred small images take milliseconds
        if not ready and not small and estimate > OCCLUSION_BUDGET_S and not st.button(
                f"Compute the occlusion map ({notation.count(count)} forward passes, about "
                f"{notation.seconds(estimate)})", key="classify.occlude", icon=":material/grid_on:"):
            st.caption(f"Each of the {notation.count(count)} patched images runs through the network once.")
            return
        with st.spinner("Covering the image patch by patch…"):
            occ = remember("occlusion", key, lambda: explain.occlusion_map(classifier, x, class_index, patch, stride))
        st.image(input_picture(x, side_px=side, heat=heat_overlay(occ.drop, signed=True)), width=side,
                 caption=f"p({name}) without the patch minus p({name}) with it, averaged over the patches that "
                         "cover each pixel")
        st.markdown(occ.sentence)
