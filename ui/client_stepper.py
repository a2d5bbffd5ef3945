"""The labs' stepper: a convolution or pooling layer window by window, stepped in the browser.

    client_stepper(state, "step", layer, key="conv.stepper", present=presenting())

The engine (cnnviz.stepping) computes every step once; the component (ui/components/stepper.*)
gets them once and steps with buttons and keys (← → Home End, Space plays) with no script rerun.
The step's truth is the browser's; it reaches

- the URL at once (the component's history.replaceState of `param`), so a copied link or a reload
  opens it: Python validates a link on the session's first run (UrlState), like every parameter;
- Python 400 ms after the last move (component state, inside a fragment: one fragment rerun per
  burst), into `state[param]`, so the page's own URL writes carry the step the browser shows.
  Python's st.query_params is not read again: once the browser has changed the URL itself, it is
  a stale copy (see the components notes, §5).

Python moves the stepper with a command in the data, {"id", "step"}, applied once per new id: when
the layer changes (a setting, an edit) or a callback set `state[param]` (a reset to 0). A report
from the browser that predates Python's latest command is ignored, so a stale step never undoes a
reset.

Other parts of the app talk to it with window events (see stepper.js): "cnnviz:stepped" and
"cnnviz:edge" from it, "cnnviz:goto" to it.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import streamlit as st

from cnnviz.conv import Convolution
from cnnviz.pooling import Pooling
from cnnviz.stepping import conv_steps, pool_steps

from .show import Component
from .state import UrlState

_HERE = Path(__file__).resolve().parent / "components"
_NAME = "cnnviz_stepper"  # app-wide
# Trusted files of ours; user numbers only ever reach the component as data.
_PARTS = {part: (_HERE / f"stepper.{part}").read_text(encoding="utf-8") for part in ("html", "css", "js")}


# Registered with the runtime that runs the script, on first use (ui.show.Component).
_stepper_component = Component(_NAME, **_PARTS)

_CACHE_SIZE = 64
_steps_cache: OrderedDict[tuple, dict] = OrderedDict()


def _fingerprint(layer: Convolution | Pooling) -> tuple:
    """What a layer's steps depend on: its kind, geometry and the exact numbers of its tensors."""
    tensors = (layer.x,) if isinstance(layer, Pooling) else (layer.x, layer.weight, layer.bias)
    return (type(layer).__name__, getattr(layer, "kind", "conv"), layer.geometry,
            *((tuple(t.shape), str(t.dtype), t.detach().cpu().numpy().tobytes()) for t in tensors))


def steps_of(layer: Convolution | Pooling) -> dict:
    """The layer's steps (cnnviz.stepping), computed once per distinct layer and shared by reruns and
    sessions: the same dict object, so the component's data stays the same between runs (sent once,
    then a cache reference). Don't change it."""
    key = _fingerprint(layer)
    steps = _steps_cache.get(key)
    if steps is None:
        steps = conv_steps(layer) if isinstance(layer, Convolution) else pool_steps(layer)
        _steps_cache[key] = steps
        while len(_steps_cache) > _CACHE_SIZE:
            _steps_cache.popitem(last=False)
    _steps_cache.move_to_end(key)
    return steps


def _memory(key: str) -> dict:
    """What Python told the component (its last command) and what it knows of its step."""
    return st.session_state.setdefault(f"_stepper.{key}", {"goto": 0, "goto_step": 0, "step": 0, "steps": None,
                                                           "count": 1})


def _heard(state: UrlState, param: str, key: str) -> None:
    """The browser sent its step: take it unless it predates Python's latest command."""
    value = st.session_state.get(key) or {}
    memory = _memory(key)
    step = value.get("step")
    if value.get("goto") != memory["goto"] or not isinstance(step, int) or isinstance(step, bool):
        return
    state[param] = memory["step"] = max(0, min(step, memory["count"] - 1))
    state.sync()  # the same step the browser already wrote: Python's copy of the URL stays right


@st.fragment
def _stepper(state: UrlState, param: str, steps: dict, key: str, present: bool) -> None:
    memory = _memory(key)
    count = steps["count"]
    step = state[param] = max(0, min(state[param], count - 1))
    mounting = key not in st.session_state  # not drawn in the previous run: the browser mounts it anew
    if mounting or steps is not memory["steps"] or step != memory["step"]:
        memory["goto"] += 1
        memory["goto_step"] = step
    memory.update(step=step, steps=steps, count=count)
    # The same data while nothing changes (not even the step the browser reported): sent once, then
    # referenced, and the component is not called again.
    command = {"id": memory["goto"], "step": memory["goto_step"]}
    _stepper_component(
        key=key,
        data={**steps, "key": key, "param": param, "present": present, "goto": command},
        default={"step": command["step"], "goto": command["id"]},
        on_step_change=lambda: _heard(state, param, key),
        on_goto_change=lambda: _heard(state, param, key),
    )


def client_stepper(state: UrlState, param: str, layer: Convolution | Pooling, *, key: str,
                   present: bool = False) -> None:
    """Draw the stepper of `layer`, its step in `state[param]` (the page's URL parameter: "step",
    or "sstep" for a second stepper on a page). `key` names it, in session state and in the events
    it sends; `present`: the presenter view's large grids and type."""
    _stepper(state, param, steps_of(layer), key, present)
