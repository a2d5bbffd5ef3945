"""The labs' stepper: a convolution or pooling layer window by window (or one gradient descent step,
parameter by parameter), stepped in the browser.

    client_stepper(state, "step", layer, key="conv.stepper", present=presenting(), predict_param="predict")

The engine (cnnviz.stepping) computes every step once; the component (ui/components/stepper.*)
gets them once and steps with buttons and keys (← → Home End, Space plays) with no script rerun.
The step's truth is the browser's; it reaches

- the URL at once (the component's history.replaceState of `param`), so a copied link or a reload
  opens it: Python validates a link on the session's first run (UrlState), like every parameter;
- Python 400 ms after the last move (component state, inside a fragment: one fragment rerun per
  burst), into `state[param]`, so the page's own URL writes carry the step the browser shows.
  Python's st.query_params is not read again: once the browser has changed the URL itself, it is
  a stale copy (see the components notes, §5).

Predict mode (the student types each value before it is shown) is the browser's too, switched by
the component's Predict button; with `predict_param` it is a URL parameter of the page
(`?predict=1` opens in it), written and told to Python like the step (one fragment rerun per
switch). A guess is checked in the browser against the value the engine put in the step's data
(`answers`): at once and with no rerun, where asking Python (setTriggerValue) would cost a fragment
rerun per guess and a change of the data to show the verdict; the browser only compares the
student's number with the engine's, it computes none.

Python moves the stepper with a command in the data, {"id", "step", "predict"}, applied once per new
id: when the layer changes (a setting, an edit) or a callback set `state[param]` (a reset to 0) or
the predict parameter. A report from the browser that predates Python's latest command is ignored,
so a stale step never undoes a reset.

Other parts of the app talk to it with window events (see stepper.js): "cnnviz:stepped" and
"cnnviz:edge" from it, "cnnviz:goto" to it.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import streamlit as st

from cnnviz.conv import Convolution
from cnnviz.pooling import Pooling
from cnnviz.sgd import GradientStep
from cnnviz.stepping import conv_steps, pool_steps, sgd_steps

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


Stepped = Convolution | Pooling | GradientStep


def _numbers(t) -> tuple:
    """A tensor's shape, type and exact numbers."""
    return tuple(t.shape), str(t.dtype), t.detach().cpu().numpy().tobytes()


def _fingerprint(layer: Stepped) -> tuple:
    """What a layer's steps depend on: its kind, geometry and the exact numbers of its tensors (a gradient
    step's: its layer's, the target's and the learning rate)."""
    if isinstance(layer, GradientStep):
        return ("sgd", layer.learning_rate, _fingerprint(layer.layer), _numbers(layer.target))
    tensors = (layer.x,) if isinstance(layer, Pooling) else (layer.x, layer.weight, layer.bias)
    return (type(layer).__name__, getattr(layer, "kind", "conv"), layer.geometry, *map(_numbers, tensors))


_BUILDERS = {Convolution: conv_steps, Pooling: pool_steps, GradientStep: sgd_steps}


def steps_of(layer: Stepped) -> dict:
    """The layer's steps (cnnviz.stepping), computed once per distinct layer and shared by reruns and
    sessions: the same dict object, so the component's data stays the same between runs (sent once,
    then a cache reference). Don't change it."""
    key = _fingerprint(layer)
    steps = _steps_cache.get(key)
    if steps is None:
        steps = _BUILDERS[type(layer)](layer)
        _steps_cache[key] = steps
        while len(_steps_cache) > _CACHE_SIZE:
            _steps_cache.popitem(last=False)
    _steps_cache.move_to_end(key)
    return steps


def _memory(key: str) -> dict:
    """What Python told the component (its last command) and what it knows of its step and predict mode."""
    return st.session_state.setdefault(f"_stepper.{key}", {"goto": 0, "goto_step": 0, "goto_predict": False,
                                                           "step": 0, "predict": False, "steps": None, "count": 1})


def _heard(state: UrlState, param: str, predict_param: str | None, key: str) -> None:
    """The browser sent its step (and predict mode): take them unless they predate Python's latest command."""
    value = st.session_state.get(key) or {}
    memory = _memory(key)
    step, predict = value.get("step"), value.get("predict")
    if value.get("goto") != memory["goto"]:
        return
    if isinstance(step, int) and not isinstance(step, bool):
        state[param] = memory["step"] = max(0, min(step, memory["count"] - 1))
    if predict_param and isinstance(predict, bool):
        state[predict_param] = memory["predict"] = predict
    state.sync()  # what the browser already wrote: Python's copy of the URL stays right


@st.fragment
def _stepper(state: UrlState, param: str, steps: dict, key: str, present: bool, predict_param: str | None) -> None:
    memory = _memory(key)
    count = steps["count"]
    step = state[param] = max(0, min(state[param], count - 1))
    predict = bool(state[predict_param]) if predict_param else False
    mounting = key not in st.session_state  # not drawn in the previous run: the browser mounts it anew
    if mounting or steps is not memory["steps"] or step != memory["step"] or predict != memory["predict"]:
        memory["goto"] += 1
        memory["goto_step"], memory["goto_predict"] = step, predict
    memory.update(step=step, predict=predict, steps=steps, count=count)
    # The same data while nothing changes (not even the step the browser reported): sent once, then
    # referenced, and the component is not called again.
    command = {"id": memory["goto"], "step": memory["goto_step"], "predict": memory["goto_predict"]}
    def heard() -> None:
        _heard(state, param, predict_param, key)

    _stepper_component(
        key=key,
        data={**steps, "key": key, "param": param, "predict_param": predict_param, "present": present,
              "goto": command},
        default={"step": command["step"], "goto": command["id"], "predict": command["predict"]},
        on_step_change=heard,
        on_goto_change=heard,
        on_predict_change=heard,
    )


def client_stepper(state: UrlState, param: str, layer: Stepped, *, key: str, present: bool = False,
                   predict_param: str | None = None) -> None:
    """Draw the stepper of `layer` (a convolution, a pooling layer or a gradient descent step), its step in
    `state[param]` (the page's URL parameter: "step", or "sstep" for a second stepper on a page). `key`
    names it, in session state and in the events it sends; `present`: the presenter view's large grids
    and type; `predict_param`: the page's URL parameter (a flag) that holds predict mode, shared by the
    page's steppers (None: predict mode is the browser's alone, not in the link)."""
    _stepper(state, param, steps_of(layer), key, present, predict_param)
