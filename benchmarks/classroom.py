#!/usr/bin/env python
"""A lecture hall on one server: N students driving cnnviz the way their browsers do, without rendering.

    python benchmarks/classroom.py --serve --students 30 --trainers 3 --minutes 2
    python benchmarks/classroom.py --serve --students 100 --trainers 10 --minutes 2 --burst --json hall.json
    python benchmarks/classroom.py --url http://127.0.0.1:8501 --pid 1234 --students 20 --trainers 2 --minutes 2

Each student is one browser tab speaking Streamlit's websocket protocol (the protobuf messages that the
streamlit package ships; see "The protocol" below). Students arrive at random over the first 30 s
(`--arrive-over`; `--burst`: all in the same second) and follow the lecture with think time between
actions (`--think`, 5 s on average):

  1. open the convolution page from a slide's link (a new tab: health check, websocket, first run),
  2. step through the lab (the stepper steps in the browser; Python hears one report per burst of steps),
     change the padding, step again,
  3. open the pooling page (a sidebar link: same session), step,
  4. open the VGG-16 explorer,
  5. open "Classify an image" and classify a sample photo;
  K of them ("trainers") also open "Train a CNN" after the VGG-16 explorer, press Start (found by its
  label) with the default CNN, watch it for a while, classify, and go back to watch the run (its live
  view reruns while the page is open, as in a browser) until the end.

Then every student stays on their last page until `--minutes` are over, and all tabs close.

What it reports: per action p50 / p90 / max latency (from the request to the run's finished message;
a page open from a link also counts its health check and websocket handshake), errors (exceptions
drawn in the page, failed runs, requests never answered, connections refused), the last student's page
open, the trainings done / running / waiting (with the position the page shows) / lost, the longest
wait in the queue, the server's /_stcore/health latency under the load (probed every 0.25 s), the
server's RSS (peak; with all sessions connected; after they closed), memory per session (RSS growth
over the warmed-up server, divided by the sessions), the server's CPU, the training worker processes'
CPU and the peak RSS with them, and the benchmark's own CPU. The last line is

    classroom: N students, K training, p90 action X ms, errors E, trainings done D/K, peak rss R MB

"p90 action" covers every action but training (opening the training page, Start, its live view).

The server. `--serve` starts `streamlit run app.py` on 127.0.0.1 (a free port), bounded in time (killed
after the run's minutes plus a margin) with a short disconnected-session TTL (`--session-ttl`, default
10 s: Streamlit keeps a closed tab's session that long so that it can reconnect), warms it up (one tab
visits every page of the lecture once, as a lecturer checks their slides) and stops it at the end.
`--url` uses a running server instead; give `--pid` for its memory and CPU (read from /proc) and
`--session-ttl` as it is configured there (Streamlit's default: 120 s). Only 127.0.0.1 / localhost.

The benchmark's own cost: one asyncio process, no threads, nothing rendered: its CPU time is reported
next to the server's.

The protocol (Streamlit 1.64; the frontend's behaviour it copies is cited in the comments):
GET /_stcore/health (sets the XSRF cookie) and /_stcore/host-config, then a websocket to /_stcore/stream
(subprotocols "streamlit" and the cookie's value, Origin = the Host). Every request is a
BackMsg.rerun_script (ClientState: the query string, the page, every widget's value, the fragment of the
widget acted on, the hashes of the cached messages); the answer is ForwardMsgs up to script_finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent

# ----------------------------------------------------------------------------------- the lecture

LINK = ("Convolution", "step=2")  # a slide's link: /Convolution?step=2
PAGES = {  # url path of each page: st.page_link / the sidebar ask for it by its hash, learnt from `navigation`
    "home": "", "convolution": "Convolution", "pooling": "Pooling", "stacking": "Stacking_layers",
    "learn": "What_models_learn", "train": "Train_a_CNN", "vgg": "VGG16_explorer", "classify": "Classify_an_image",
}
CONV_STEPPER, POOL_STEPPER = "conv.stepper", "pool.stepper"
PADDING_KEY, SAMPLE_KEY = "conv.pad_pick", "classify.img"
START_LABEL = re.compile(r"^Start( training)?\b", re.IGNORECASE)  # the training page's button, whatever its place
RUN_ENDED = re.compile(r"finished|stopped|trained", re.IGNORECASE)  # a success alert about the run: it is done
RUN_PROBLEM = re.compile(r"problem|interrupted|failed|lost|refused|error", re.IGNORECASE)  # an error alert about it
TRAINING_ACTIONS = {"open Train a CNN", "start training", "live view"}  # not in "p90 action"
STEPS_PER_REPORT = (1, 6)  # a burst of steps in the browser, one report to Python (stepper.js, 400 ms after)
ARRIVAL_S, BURST_S = 30.0, 1.0
HEALTH_EVERY_S, HEALTH_TIMEOUT_S = 0.25, 10.0
RSS_EVERY_S = 0.2
FINISHED_OK = (ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY)
CACHE_RUNS = 2  # the browser's ForwardMessageCache keeps a cacheable message for 2 script runs


# --------------------------------------------------------------------------------- a small HTTP

async def http_get(base_url: str, path: str, timeout: float) -> tuple[int, dict[str, str], bytes]:
    """GET base_url + path with asyncio streams (no thread per request); Connection: close."""
    parts = urlsplit(base_url)
    host, port = parts.hostname, parts.port or 80

    async def exchange() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {parts.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         "Connection: close\r\n\r\n".encode())
            await writer.drain()
            return await reader.read()
        finally:
            writer.close()

    data = await asyncio.wait_for(exchange(), timeout)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = _unchunk(body)
    return status, headers, body


def _unchunk(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return bytes(out)


# ------------------------------------------------------------------------------ one browser tab

def user_key(widget_id: str) -> str | None:
    """The `key=` a script gave a widget: its id is "$$ID-<hash>-<key>" (streamlit/elements/lib/utils.py)."""
    if widget_id.startswith("$$ID-"):
        key = widget_id.split("-", 2)[2]
        return None if key == "None" else key
    return None


def _optional(proto: Any, name: str) -> Any:
    """A proto3 `optional` field's value, None when unset (the frontend's `??` chains)."""
    try:
        if not proto.HasField(name):
            return None
    except ValueError:  # not an optional field
        pass
    return getattr(proto, name)


def initial_widget_state(kind: str, proto: Any) -> WidgetState | None:
    """What the browser stores for a widget when it draws it, and sends back with every rerun
    (useBasicWidgetState: set_value ? the proto's value : its default). None: nothing to send
    (buttons are triggers; a component's state exists once it set one)."""
    state = WidgetState(id=proto.id)
    current = getattr(proto, "set_value", False)
    if kind == "number_input":
        number = _optional(proto, "value") if current else None
        number = number if number is not None else _optional(proto, "default")
        if number is not None:
            if proto.data_type == type(proto).INT:
                state.int_value = int(number)
            else:
                state.double_value = number
    elif kind in ("text_input", "text_area"):
        text = _optional(proto, "value") if current else _optional(proto, "default")
        if text is not None:
            state.string_value = text
    elif kind == "checkbox":  # st.toggle too
        state.bool_value = bool(proto.value if current else proto.default)
    elif kind in ("selectbox", "radio"):
        if current:
            text = _optional(proto, "raw_value")
        else:
            index = _optional(proto, "default")
            text = proto.options[index] if index is not None and proto.options else None
        if text is not None:
            state.string_value = text
    elif kind == "button_group":  # st.segmented_control, st.pills
        values = list(proto.raw_values) if current else [
            f"{proto.options[i].content_icon} {proto.options[i].content}".strip() for i in proto.default]
        state.string_array_value.data.extend(values)
    elif kind == "slider" and not proto.options:
        state.double_array_value.data.extend(proto.value if current else proto.default)
    else:  # select_slider, file_uploader, components...: the server keeps their value
        return None
    return state


@dataclass
class Element:
    kind: str  # the Element oneof ("markdown", "button", "bidi_component"...) or "block"
    proto: Any
    fragment_id: str
    run_id: str

    @property
    def id(self) -> str:
        return getattr(self.proto, "id", "") if self.kind != "block" else ""

    @property
    def key(self) -> str | None:
        return user_key(self.id) if self.id else None


class RunFailed(Exception):
    """A request that ended without a successful run: its status, or no answer in time."""


@dataclass
class Run:
    seconds: float
    n_msgs: int
    n_bytes: int
    exceptions: list[str]


class Tab:
    """One browser tab: a session of the app, its elements and widget values as a browser keeps them.

    One request at a time (a second one would make the server abandon the first: runner.fastReruns);
    the live view's timed reruns wait their turn like every action."""

    def __init__(self, base_url: str, name: str, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.timeout = timeout
        self.ws = None
        self.page_name = ""  # the URL path, for the first run only; then the page's hash
        self.page_hash = ""
        self.query = ""
        self.pages: dict[str, str] = {}  # url path -> page script hash (from ForwardMsg.navigation)
        self.elements: dict[tuple[int, ...], Element] = {}
        self.widgets: dict[str, WidgetState] = {}
        self.run_id = ""
        self.fragments_this_run: list[str] = []
        self.cache: dict[str, list] = {}  # hash -> [ForwardMsg, runs since last used] (the browser's cache)
        self.live: dict[str, asyncio.Task] = {}  # fragment id -> timed reruns (st.fragment(run_every=...))
        self.live_runs: list[tuple[float, bool]] = []  # (seconds, ok) of the live view's reruns
        self.lock = asyncio.Lock()
        self.reader: asyncio.Task | None = None
        self.waiting: asyncio.Future | None = None
        self.counting: dict[str, Any] | None = None
        self.unexpected: list[str] = []
        self.after_run: Callable[[], None] | None = None  # called after every answered run (the student's eyes)

    # -- connection

    async def connect(self) -> None:
        """The browser's "DoInitPings" (health and host-config at once), then the websocket."""
        (status, headers, _), _ = await asyncio.gather(http_get(self.base_url, "/_stcore/health", self.timeout),
                                                       http_get(self.base_url, "/_stcore/host-config", self.timeout))
        if status != 200:
            raise RunFailed(f"health check answered {status}")
        cookie = headers.get("set-cookie", "")
        xsrf = cookie.split(";", 1)[0].split("=", 1)[1] if cookie.startswith("_streamlit_xsrf=") else None
        parts = urlsplit(self.base_url)
        self.ws = await asyncio.wait_for(connect(
            f"ws://{parts.netloc}{parts.path}/_stcore/stream",
            subprotocols=["streamlit", xsrf or "PLACEHOLDER_AUTH_TOKEN"],
            additional_headers={"Cookie": f"_streamlit_xsrf={xsrf}"} if xsrf else {},
            origin=f"{parts.scheme}://{parts.netloc}",  # must be exactly the Host: 127.0.0.1 is not localhost
            max_size=None,  # a page's message can exceed websockets' 1 MiB default
            ping_interval=None,  # browsers send no pings; the server's are answered while we read
            compression=None, proxy=None, open_timeout=self.timeout), self.timeout)
        self.reader = asyncio.create_task(self._read(), name=f"{self.name}-reader")

    async def close(self) -> None:
        self._stop_live()
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            await asyncio.gather(self.reader, return_exceptions=True)

    # -- requests

    async def rerun(self, *, triggers: tuple[WidgetState, ...] = (), fragment_id: str = "",
                    widgets: list[WidgetState] | None = None, auto: bool = False) -> Run:
        """rerun_script with every widget value (or `widgets`) and wait for the run's end (bounded)."""
        async with self.lock:
            return await self._rerun(triggers, fragment_id, widgets, auto)

    async def _rerun(self, triggers, fragment_id, widgets, auto) -> Run:
        state = ClientState(query_string=self.query, fragment_id=fragment_id, is_auto_rerun=auto)
        if self.page_hash:
            state.page_script_hash = self.page_hash
        else:
            state.page_name = self.page_name  # the first run: the server resolves the page from the URL path
        trigger_ids = {t.id for t in triggers}
        values = self.widgets.values() if widgets is None else widgets
        state.widget_states.widgets.extend(v for v in values if v.id not in trigger_ids)
        state.widget_states.widgets.extend(triggers)
        state.cached_message_hashes.extend(self.cache)
        info = state.context_info
        info.timezone, info.timezone_offset, info.locale = "Europe/Berlin", -60, "en-US"
        info.url = f"{self.base_url}/{self.page_name}" + (f"?{self.query}" if self.query else "")
        info.is_embedded, info.color_scheme = False, "light"
        self.waiting = asyncio.get_running_loop().create_future()
        self.counting = {"n": 0, "bytes": 0, "exceptions": []}
        start = time.perf_counter()
        await self.ws.send(BackMsg(rerun_script=state).SerializeToString())
        try:
            # A request can go unanswered (a fragment the server no longer has): always bound the wait.
            status = await asyncio.wait_for(self.waiting, self.timeout)
        except TimeoutError:
            raise RunFailed(f"no answer within {self.timeout:.0f} s") from None
        finally:
            counted, self.counting = self.counting, None
        seconds = time.perf_counter() - start
        if status not in FINISHED_OK:
            raise RunFailed(f"run ended with status {status}")
        if self.after_run is not None:
            self.after_run()
        return Run(seconds, counted["n"], counted["bytes"], counted["exceptions"])

    async def open(self, page: str, query: str = "") -> Run:
        """A new tab on /page?query: connect, then the first run (no widget values)."""
        start = time.perf_counter()
        self.page_name, self.query = page, query
        await self.connect()
        run = await self.rerun()
        run.seconds = time.perf_counter() - start  # the student waits for the connection too
        return run

    async def go_to(self, page: str, query: str = "") -> Run:
        """A page link in the same session (the frontend's onPageChange): the target's hash, the
        widgets of the old page dropped, timed reruns stopped."""
        async with self.lock:
            self._stop_live()
            self.page_hash, self.page_name, self.query = self.pages[page], page, query
            self.elements.clear()
            self.widgets.clear()
            return await self._rerun((), "", [], False)

    async def click(self, element: Element) -> Run:
        """A button: trigger_value for this one request, in the button's fragment if it has one."""
        if element.proto.disabled:
            raise RunFailed(f"button {element.proto.label!r} is disabled")
        return await self.rerun(triggers=(WidgetState(id=element.id, trigger_value=True),),
                                fragment_id=element.fragment_id)

    async def set_value(self, element: Element, value: Any) -> Run:
        """A changed widget: stored as the browser stores it, then a rerun with every value."""
        state = WidgetState(id=element.id)
        if element.kind == "number_input":
            if element.proto.data_type == type(element.proto).INT:
                state.int_value = int(value)
            else:
                state.double_value = float(value)
        elif element.kind in ("selectbox", "radio", "text_input", "text_area"):
            state.string_value = str(value)
        elif element.kind == "button_group":
            state.string_array_value.data.extend(value)
        elif element.kind == "bidi_component":  # a component's setStateValue: its whole state as JSON
            state.json_value = json.dumps(value)
        else:
            raise ValueError(f"can't set a {element.kind}")
        self.widgets[element.id] = state
        return await self.rerun(fragment_id=element.fragment_id)

    # -- what the tab shows

    def find(self, *, kind: str | None = None, key: str | None = None, label: str | None = None) -> Element:
        found = [e for e in self.elements.values()
                 if (kind is None or e.kind == kind) and (key is None or e.key == key)
                 and (label is None or getattr(e.proto, "label", None) == label)]
        if len(found) != 1:
            raise RunFailed(f"{len(found)} elements with kind={kind} key={key} label={label} on /{self.page_name}")
        return found[0]

    def texts(self, kind: str) -> list[str]:
        """The text of every element of one kind (alerts: their body; progress: its text)."""
        field_name = {"alert": "body", "progress": "text", "markdown": "body"}[kind]
        return [getattr(e.proto, field_name) for e in self.elements.values() if e.kind == kind]

    # -- receiving

    async def _read(self) -> None:
        error: BaseException = ConnectionError("websocket closed")
        try:
            async for data in self.ws:
                msg = ForwardMsg()
                msg.ParseFromString(data)
                if self.counting is not None:
                    self.counting["n"] += 1
                    self.counting["bytes"] += len(data)
                self._handle(msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the connection broke: fail the awaited run rather than hang
            error = exc
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_exception(RunFailed(f"connection lost: {error}"))

    def _handle(self, msg: ForwardMsg) -> None:
        kind = msg.WhichOneof("type")
        if msg.metadata.cacheable and msg.hash:
            self.cache[msg.hash] = [msg, 0]
        if kind == "ref_hash":  # a message we said we have: resolve it from our cache
            cached = self.cache.get(msg.ref_hash)
            if cached is None:
                self.unexpected.append(f"unknown ref_hash {msg.ref_hash}")
                return
            cached[1] = 0
            resolved = ForwardMsg()
            resolved.CopyFrom(cached[0])
            resolved.metadata.CopyFrom(msg.metadata)
            msg, kind = resolved, resolved.WhichOneof("type")
        if kind == "new_session":
            session = msg.new_session
            self.run_id = session.script_run_id
            self.fragments_this_run = list(session.fragment_ids_this_run)
            self.page_hash = session.page_script_hash or self.page_hash
            if not self.fragments_this_run:  # a full run: it announces again the timed reruns it keeps
                self._stop_live()
        elif kind == "navigation":
            for page in msg.navigation.app_pages:
                self.pages[page.url_pathname] = page.page_script_hash
            self.page_hash = msg.navigation.page_script_hash
        elif kind == "delta":
            self._apply(msg)
        elif kind == "page_info_changed":  # st.query_params changed: the browser pushes it into its URL
            self.query = msg.page_info_changed.query_string
        elif kind == "auto_rerun":
            self._start_live(msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
        elif kind == "stop_auto_rerun":
            self._stop_live(msg.stop_auto_rerun.fragment_ids)
        elif kind == "script_finished":
            if msg.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                self._clear_stale(msg.script_finished)
                self._age_cache()
                if self.waiting is not None and not self.waiting.done():
                    self.waiting.set_result(msg.script_finished)
        elif kind == "session_event":
            if msg.session_event.HasField("script_compilation_exception") and self.counting is not None:
                self.counting["exceptions"].append(msg.session_event.script_compilation_exception.message)
        elif kind == "page_not_found":
            self.unexpected.append(f"page not found: {msg.page_not_found.page_name!r}")

    def _apply(self, msg: ForwardMsg) -> None:
        delta = msg.delta
        which = delta.WhichOneof("type")
        if which == "new_element":
            kind = delta.new_element.WhichOneof("type")
            proto = getattr(delta.new_element, kind)
        elif which == "add_block":
            kind, proto = "block", delta.add_block
        else:  # new_transient: toasts, spinners
            return
        element = Element(kind, proto, delta.fragment_id, self.run_id)
        self.elements[tuple(msg.metadata.delta_path)] = element
        if kind == "exception" and self.counting is not None:
            self.counting["exceptions"].append(f"{proto.type}: {proto.message}")
        if element.id and (element.id not in self.widgets or getattr(proto, "set_value", False)):
            initial = initial_widget_state(kind, proto)
            if initial is not None:
                self.widgets[element.id] = initial

    def _clear_stale(self, status: int) -> None:
        """The frontend at the end of a run: drop the elements the run did not draw again (a fragment's
        run: only its own), and the values of widgets no longer shown."""
        if status == ForwardMsg.FINISHED_SUCCESSFULLY:
            stale = [p for p, e in self.elements.items() if e.run_id != self.run_id]
        elif status == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY:
            stale = [p for p, e in self.elements.items()
                     if e.run_id != self.run_id and e.fragment_id in self.fragments_this_run]
        else:
            return
        for path in stale:
            del self.elements[path]
        shown = {e.id for e in self.elements.values() if e.id}
        for widget_id in [w for w in self.widgets if w not in shown]:
            del self.widgets[widget_id]

    def _age_cache(self) -> None:
        for hash_, entry in list(self.cache.items()):
            entry[1] += 1
            if entry[1] > CACHE_RUNS:
                del self.cache[hash_]

    # -- timed reruns (the training page's live view)

    def _start_live(self, fragment_id: str, interval: float) -> None:
        if not fragment_id or fragment_id in self.live:
            return

        async def tick() -> None:
            while True:
                await asyncio.sleep(interval)
                if self.lock.locked():  # a run is in flight: the browser's timer fires anyway, we skip
                    continue
                start = time.perf_counter()
                try:
                    run = await self.rerun(fragment_id=fragment_id, auto=True)
                except RunFailed:
                    self.live_runs.append((time.perf_counter() - start, False))
                else:
                    self.live_runs.append((run.seconds, not run.exceptions))
        self.live[fragment_id] = asyncio.create_task(tick(), name=f"{self.name}-live")

    def _stop_live(self, fragment_ids=None) -> None:
        for fragment_id in list(self.live if fragment_ids is None else fragment_ids):
            task = self.live.pop(fragment_id, None)
            if task is not None and task is not asyncio.current_task():
                task.cancel()


# ------------------------------------------------------------------------------------ a student

@dataclass
class Action:
    name: str
    seconds: float | None  # None: failed
    error: str | None = None
    n_bytes: int = 0


@dataclass
class Student:
    index: int
    trains: bool
    actions: list[Action] = field(default_factory=list)
    training: str = "not asked"  # done / running / waiting (position N) / lost: ... (training_status)
    started_at: float | None = None  # when Start was answered (time.monotonic)
    done_after_s: float | None = None  # Start to the first page showing the run done
    waited_s: float = 0.0  # Start to the first page showing it past the queue
    worst_position: int | None = None  # the furthest back in the queue the page showed it
    finished_script: bool = False
    tab: Tab | None = None

    def observe_training(self) -> None:
        """What the training page shows now (after Start and every live-view rerun): the status, the queue
        position, when it left the queue and when it was done."""
        if self.tab is None or self.started_at is None or self.tab.page_name != PAGES["train"]:
            return
        self.training = status = training_status(self.tab)
        since = time.monotonic() - self.started_at
        if status.startswith("waiting"):
            position = int(re.search(r"\d+", status).group())
            self.worst_position = max(position, self.worst_position or 0)
            self.waited_s = since
        if status == "done" and self.done_after_s is None:
            self.done_after_s = since


async def act(student: Student, name: str, make_run) -> Run | None:
    """Run one action, record its latency or its error; never raises."""
    try:
        run = await make_run()
    except Exception as error:  # noqa: BLE001 - any failure (no answer, a refused connection, a missing widget) is data
        student.actions.append(Action(name, None, f"{type(error).__name__}: {error}"))
        return None
    error = "; ".join(run.exceptions) if run.exceptions else None
    student.actions.append(Action(name, run.seconds, error, run.n_bytes))
    return run


def step_report(tab: Tab, key: str, rng: random.Random) -> dict:
    """What the stepper component tells Python after a burst of steps: its step and Python's last
    command id (ui/components/stepper.js sendStep: setStateValue goto, step, predict)."""
    stepper = tab.find(kind="bidi_component", key=key)
    data = json.loads(stepper.proto.json)
    step = min(data["count"] - 1, rng.randint(*STEPS_PER_REPORT))
    report = {"goto": data["goto"]["id"], "step": step}
    if data.get("predict_param"):
        report["predict"] = False
    return report


async def report_steps(student: Student, key: str, rng: random.Random) -> None:
    tab = student.tab
    try:
        report = step_report(tab, key, rng)
    except (RunFailed, KeyError, ValueError) as error:
        student.actions.append(Action("step", None, f"{type(error).__name__}: {error}"))
        return
    await act(student, "step", lambda: tab.set_value(tab.find(kind="bidi_component", key=key), report))


async def change_padding(student: Student) -> None:
    tab = student.tab

    async def change():
        control = tab.find(kind="button_group", key=PADDING_KEY)
        current = tab.widgets[control.id].string_array_value.data
        choice = "1" if list(current) != ["1"] else "2"
        return await tab.set_value(control, [choice])
    await act(student, "change padding", change)


async def classify_sample(student: Student, rng: random.Random) -> None:
    tab = student.tab

    async def classify():
        picker = tab.find(kind="selectbox", key=SAMPLE_KEY)
        current = tab.widgets[picker.id].string_value
        return await tab.set_value(picker, rng.choice([o for o in picker.proto.options if o != current]))
    await act(student, "classify a sample", classify)


def start_button(tab: Tab) -> Element:
    """The training page's Start button, found by its label (the page's layout may change; its words stay)."""
    found = [e for e in tab.elements.values() if e.kind == "button" and START_LABEL.match(e.proto.label)]
    if len(found) != 1:
        raise RunFailed(f"{len(found)} Start buttons on /{tab.page_name}")
    return found[0]


async def start_training(student: Student) -> None:
    tab = student.tab

    async def start():
        run = await tab.click(start_button(tab))
        student.started_at = time.monotonic()
        student.observe_training()
        return run
    await act(student, "start training", start)


def training_status(tab: Tab) -> str:
    """Where the session's run stands, as the training page shows it: "done", "running", "waiting
    (position N)" (queued, with the position the page shows), or "lost: <why>" (an error, or no run shown).
    Read from the page's words and elements, not its layout: a success alert or the trained model's
    download is done; an error or warning about a problem (failed, refused, interrupted) is lost;
    "position N" is waiting; a progress bar is running."""
    alerts = [e.proto for e in tab.elements.values() if e.kind == "alert"]
    Format = type(alerts[0]).Format if alerts else None
    for alert in alerts:  # failed, refused, interrupted by a restart: the student has no run going
        if alert.format in (Format.ERROR, Format.WARNING) and RUN_PROBLEM.search(alert.body):
            return "lost: " + alert.body[:120]
    for alert in alerts:
        match = re.search(r"position (\d+)", alert.body)
        if match:
            return f"waiting (position {match.group(1)})"
    if any(a.format == Format.SUCCESS and RUN_ENDED.search(a.body) for a in alerts) or any(
            e.kind == "download_button" and "checkpoint" in e.proto.label.lower() for e in tab.elements.values()):
        return "done"
    if tab.texts("progress"):
        return "running"
    return "lost: the page shows no run"


def final_training_status(student: Student) -> str:
    """A trainer's run at the end of the lecture: as their training page shows it now, or as it last showed
    it (done stays done); a trainer whose Start never went through has lost it."""
    if student.tab is None:
        return "lost: never connected"
    if student.started_at is None:
        return "lost: Start was never answered"
    student.observe_training()
    return "done" if student.done_after_s is not None else student.training


async def lecture(student: Student, url: str, start_at: float, deadline: float, think_s: float,
                  timeout: float, seed: int) -> None:
    """One student's lecture (see the module's docstring), then idle on the last page until the deadline."""
    rng = random.Random(seed * 1_000_003 + student.index)

    async def think(scale: float = 1.0) -> bool:
        """Read the page a while; False when the lecture is over."""
        pause = think_s * scale * rng.uniform(0.5, 1.5)
        await asyncio.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        return time.monotonic() < deadline

    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    tab = student.tab = Tab(url, f"s{student.index}", timeout)
    tab.after_run = student.observe_training
    page, query = LINK
    if await act(student, "open Convolution from a link", lambda: tab.open(page, query)) is None:
        return
    script = [
        lambda: report_steps(student, CONV_STEPPER, rng),
        lambda: change_padding(student),
        lambda: report_steps(student, CONV_STEPPER, rng),
        lambda: act(student, "open Pooling", lambda: tab.go_to(PAGES["pooling"])),
        lambda: report_steps(student, POOL_STEPPER, rng),
        lambda: act(student, "open VGG-16 explorer", lambda: tab.go_to(PAGES["vgg"])),
    ]
    if student.trains:
        script += [
            lambda: act(student, "open Train a CNN", lambda: tab.go_to(PAGES["train"])),
            lambda: start_training(student),
            lambda: think(3.0),  # watch the first curves
        ]
    script += [
        lambda: act(student, "open Classify an image", lambda: tab.go_to(PAGES["classify"])),
        lambda: classify_sample(student, rng),
    ]
    if student.trains:
        script.append(lambda: act(student, "open Train a CNN", lambda: tab.go_to(PAGES["train"])))
    for step in script:
        if not await think():
            return
        await step()
    student.finished_script = True
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))


# ------------------------------------------------------------------------------ the server side

def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces): fields[0] is the state, [1] the ppid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float | None:
    """The process's user + system CPU time (/proc/PID/stat), every thread; 10 ms resolution. With
    reaped_children, also that of its children that have ended (cutime + cstime)."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """The processes under `pid` now (training workers), from every /proc/*/stat's parent."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def worker_cpu_seconds(pid: int) -> float:
    """CPU of the server's child processes (training workers): those that ended and were waited for
    (the server's cutime + cstime), and those still running (their own and their ended children's)."""
    fields = _stat_fields(pid)
    reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK") if fields else 0.0
    return reaped + sum(cpu_seconds(child, reaped_children=True) or 0.0 for child in descendants(pid))


def tree_rss_mb(pid: int) -> float:
    """The RSS of the server and every process under it (training workers), summed."""
    return sum(rss_mb(p) or 0.0 for p in [pid, *descendants(pid)])


async def active_sessions(url: str) -> int | None:
    """Sessions with an open websocket (/_stcore/metrics, OpenMetrics)."""
    try:
        status, _, body = await http_get(url, "/_stcore/metrics", 10)
    except (TimeoutError, OSError):
        return None
    match = re.search(rb"^active_sessions\s+(\d+)", body, re.MULTILINE)
    return int(match.group(1)) if status == 200 and match else None


@dataclass
class Watch:
    """The server seen from outside while the hall works: RSS and health-check latency."""
    url: str
    pid: int | None
    rss: list[tuple[float, float]] = field(default_factory=list)  # (time, MB): the server process
    tree_rss: list[tuple[float, float]] = field(default_factory=list)  # (time, MB): with its workers, every 1 s
    health: list[tuple[float, float, bool]] = field(default_factory=list)  # (time, seconds waited, answered "ok")

    async def sample_rss(self) -> None:
        samples = 0
        while self.pid is not None:
            now, value = time.monotonic(), rss_mb(self.pid)
            if value is not None:
                self.rss.append((now, value))
            if samples % round(1 / RSS_EVERY_S) == 0:  # scanning /proc for workers costs more: once a second
                self.tree_rss.append((now, tree_rss_mb(self.pid)))
            samples += 1
            await asyncio.sleep(RSS_EVERY_S)

    async def probe_health(self) -> None:
        """GET /_stcore/health every HEALTH_EVERY_S (one at a time): what a load balancer would see."""
        while True:
            start = time.monotonic()
            try:
                status, _, body = await http_get(self.url, "/_stcore/health", HEALTH_TIMEOUT_S)
                ok = status == 200 and body.strip() == b"ok"
            except (TimeoutError, OSError, ValueError, IndexError):
                ok = False
            self.health.append((start, time.monotonic() - start, ok))
            await asyncio.sleep(max(0.0, HEALTH_EVERY_S - (time.monotonic() - start)))

    def peak_rss(self) -> float | None:
        return max((v for _, v in self.rss), default=None)

    def peak_tree_rss(self) -> float | None:
        return max((v for _, v in self.tree_rss), default=None)


# ------------------------------------------------------------------------------------- the run

@dataclass
class Settings:
    students: int
    trainers: int
    minutes: float
    burst: bool = False
    think_s: float = 5.0
    timeout_s: float = 60.0
    seed: int = 1
    session_ttl_s: float = 120.0
    warm_up: bool = True
    arrival_s: float = ARRIVAL_S  # students arrive at random over this many seconds (a burst: BURST_S)


@dataclass
class Result:
    settings: Settings
    url: str
    students: list[Student]
    watch: Watch
    load_before: float
    load_after: float = 0.0
    rss_warm: float | None = None
    rss_full: float | None = None  # every session connected, at the end of the lecture
    rss_closed: float | None = None  # after the sessions closed and their TTL passed
    sessions_full: int | None = None
    sessions_closed: int | None = None
    server_cpu_s: float | None = None
    worker_cpu_s: float | None = None  # training worker processes (none when runs train in the server)
    client_cpu_s: float = 0.0
    wall_s: float = 0.0
    warm_up: list[Action] = field(default_factory=list)

    # -- figures

    def actions(self) -> list[Action]:
        return [a for s in self.students for a in s.actions]

    def by_action(self) -> dict[str, list[Action]]:
        grouped: dict[str, list[Action]] = {}
        for action in self.actions():
            grouped.setdefault(action.name, []).append(action)
        for student in self.students:
            if student.tab is not None and student.tab.live_runs:
                grouped.setdefault("live view", []).extend(
                    Action("live view", s if ok else None, None if ok else "failed") for s, ok in student.tab.live_runs)
        return grouped

    def errors(self) -> list[str]:
        found = [f"s{s.index} {a.name}: {a.error}" for s in self.students for a in s.actions if a.error]
        found += [f"s{s.index} live view: {n} failed" for s in self.students if s.tab is not None
                  for n in [sum(1 for _, ok in s.tab.live_runs if not ok)] if n]
        found += [f"s{s.index}: {u}" for s in self.students if s.tab is not None for u in s.tab.unexpected]
        return found

    def unfinished(self) -> list[int]:
        """Students who did not get through their script in the time (their missing actions never ran)."""
        return [s.index for s in self.students if not s.finished_script]

    def p90_all_but_training(self) -> float | None:
        seconds = [a.seconds for a in self.actions() if a.name not in TRAINING_ACTIONS and a.seconds is not None]
        return percentile(seconds, 90) if seconds else None

    def last_open(self) -> float | None:
        opens = [a.seconds for a in self.actions() if a.name == "open Convolution from a link" and a.seconds]
        return max(opens) if opens else None

    def trainings(self) -> dict[str, int]:
        counts = {"done": 0, "running": 0, "waiting": 0, "lost": 0}
        for student in self.students:
            if student.trains:
                counts[student.training.split(" ")[0].rstrip(":")] += 1
        return counts

    def training_times(self) -> dict:
        trainers = [s for s in self.students if s.trains]
        return {"done_s": [s.done_after_s for s in trainers if s.done_after_s is not None],
                "longest_wait_s": max((s.waited_s for s in trainers), default=0.0),
                "worst_position": max((s.worst_position or 0 for s in trainers), default=0) or None}

    def memory_per_session(self) -> float | None:
        if self.rss_full is None or self.rss_warm is None:
            return None
        return (self.rss_full - self.rss_warm) / max(1, len(self.students))

    def health_summary(self) -> dict[str, float | int | None]:
        """The health probes' latency: of those answered, and the worst wait of all (an unanswered probe
        waited until it failed or timed out: HEALTH_TIMEOUT_S)."""
        probes = self.watch.health
        answered = [s for _, s, ok in probes if ok]
        return {"probes": len(probes), "unanswered": len(probes) - len(answered),
                "p50_ms": percentile(answered, 50) * 1e3 if answered else None,
                "p99_ms": percentile(answered, 99) * 1e3 if answered else None,
                "max_ms": max(answered) * 1e3 if answered else None,
                "worst_wait_ms": max((s for _, s, _ in probes), default=0.0) * 1e3,
                "over_1s": sum(1 for _, s, _ in probes if s > 1.0)}

    def last_line(self) -> str:
        p90, peak, trainers = self.p90_all_but_training(), self.watch.peak_rss(), self.settings.trainers
        return (f"classroom: {len(self.students)} students, {trainers} training, "
                f"p90 action {'n/a' if p90 is None else f'{p90 * 1e3:.0f}'} ms, errors {len(self.errors())}, "
                f"trainings done {self.trainings()['done']}/{trainers}, "
                f"peak rss {'n/a' if peak is None else f'{peak:.0f}'} MB")

    def to_json(self) -> dict:
        return {
            "settings": self.settings.__dict__, "url": self.url, "wall_s": self.wall_s,
            "load_average": [self.load_before, self.load_after],
            "actions": {name: summary([a.seconds for a in acts if a.seconds is not None]) | {
                "errors": sum(1 for a in acts if a.error), "n": len(acts)} for name, acts in self.by_action().items()},
            "p90_all_but_training_ms": (self.p90_all_but_training() or 0) * 1e3,
            "last_open_s": self.last_open(), "errors": self.errors(), "unfinished": self.unfinished(),
            "trainings": self.trainings(), "training_times": self.training_times(), "training_status": {s.index: s.training for s in self.students if s.trains},
            "health": self.health_summary(),
            "rss_mb": {"warm": self.rss_warm, "peak": self.watch.peak_rss(), "peak_with_workers": self.watch.peak_tree_rss(),
                       "full": self.rss_full,
                       "closed": self.rss_closed},
            "sessions": {"full": self.sessions_full, "closed": self.sessions_closed},
            "memory_per_session_mb": self.memory_per_session(),
            "server_cpu_s": self.server_cpu_s, "worker_cpu_s": self.worker_cpu_s, "client_cpu_s": self.client_cpu_s,
            "warm_up": [a.__dict__ for a in self.warm_up],
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest rank (p90 of 20 values is the 18th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def summary(seconds: list[float]) -> dict[str, float | None]:
    if not seconds:
        return {"p50_ms": None, "p90_ms": None, "max_ms": None}
    return {"p50_ms": statistics.median(seconds) * 1e3, "p90_ms": percentile(seconds, 90) * 1e3,
            "max_ms": max(seconds) * 1e3}


async def warm_up(url: str, timeout: float) -> list[Action]:
    """One tab through every page of the lecture once: the lecturer checking their slides."""
    student = Student(-1, trains=False)
    tab = student.tab = Tab(url, "warm-up", timeout)
    page, query = LINK
    await act(student, f"open {page}", lambda: tab.open(page, query))
    for path in PAGES.values():
        if path and path != page and path in tab.pages:
            await act(student, f"open {path}", lambda path=path: tab.go_to(path))
    await tab.close()
    return student.actions


async def run_classroom(url: str, pid: int | None, settings: Settings, log=print) -> Result:
    """The whole measurement against a running server (see the module's docstring)."""
    watch = Watch(url, pid)
    result = Result(settings, url, [], watch, os.getloadavg()[0])
    cpu0 = time.process_time()
    if settings.warm_up:
        result.warm_up = await warm_up(url, settings.timeout_s)
        log(f"warm-up: {', '.join(f'{a.name} {a.seconds * 1e3:.0f} ms' if a.seconds else f'{a.name} FAILED' for a in result.warm_up)}")
    await asyncio.sleep(1.0)
    result.rss_warm = rss_mb(pid) if pid else None
    server_cpu0 = cpu_seconds(pid) if pid else None
    worker_cpu0 = worker_cpu_seconds(pid) if pid else None
    watchers = [asyncio.create_task(watch.sample_rss()), asyncio.create_task(watch.probe_health())]

    began = time.monotonic()
    deadline = began + settings.minutes * 60
    spread = BURST_S if settings.burst else settings.arrival_s
    rng = random.Random(settings.seed)
    trainers = set(rng.sample(range(settings.students), min(settings.trainers, settings.students)))
    result.students = [Student(i, i in trainers) for i in range(settings.students)]
    arrivals = sorted(rng.uniform(0, spread) for _ in result.students)
    await asyncio.gather(*(lecture(s, url, began + arrivals[s.index], deadline, settings.think_s,
                                   settings.timeout_s, settings.seed) for s in result.students))

    # The end of the lecture, every session still connected.
    for student in result.students:
        if student.trains:
            student.training = final_training_status(student)
    result.rss_full = rss_mb(pid) if pid else None
    result.sessions_full = await active_sessions(url)
    if pid:
        result.server_cpu_s = cpu_seconds(pid) - server_cpu0
        result.worker_cpu_s = worker_cpu_seconds(pid) - worker_cpu0
    for task in watchers:
        task.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)
    await asyncio.gather(*(s.tab.close() for s in result.students if s.tab is not None), return_exceptions=True)
    result.wall_s = time.monotonic() - began
    result.client_cpu_s = time.process_time() - cpu0

    # Closed tabs: Streamlit keeps each session for its TTL (a reconnect resumes it), drops expired ones
    # when it next stores a session: one more tab, closed after the TTL, makes it do so.
    if pid:
        log(f"sessions closed; waiting {settings.session_ttl_s + 3:.0f} s (the disconnected-session TTL) …")
        await asyncio.sleep(settings.session_ttl_s + 3)
        probe = Tab(url, "probe", settings.timeout_s)
        try:
            await probe.open(PAGES["home"])
        except (TimeoutError, RunFailed, OSError):
            pass
        await probe.close()
        await asyncio.sleep(3.0)
        result.rss_closed = rss_mb(pid)
        result.sessions_closed = await active_sessions(url)
    result.load_after = os.getloadavg()[0]
    return result


def print_report(result: Result, log=print) -> None:
    s = result.settings
    arrival = "in the same second (--burst)" if s.burst else f"over {s.arrival_s:g} s"
    log(f"\n{s.students} students ({s.trainers} training) arriving {arrival}, {s.minutes:g} min, think "
        f"{s.think_s:g} s; server {result.url}; load average {result.load_before:.2f} before, "
        f"{result.load_after:.2f} after ({os.cpu_count()} CPUs)")
    log(f"{'action':<30} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'max ms':>8} {'errors':>7}")
    for name, acts in result.by_action().items():
        stats = summary([a.seconds for a in acts if a.seconds is not None])
        cells = [f"{stats[k]:8.0f}" if stats[k] is not None else f"{'-':>8}" for k in ("p50_ms", "p90_ms", "max_ms")]
        log(f"{name:<30} {len(acts):5d} {' '.join(cells)} {sum(1 for a in acts if a.error):7d}")
    p90 = result.p90_all_but_training()
    last = result.last_open()
    log(f"all but training: p90 {p90 * 1e3:.0f} ms" if p90 is not None else "all but training: no action answered")
    if last is not None:
        log(f"last student's page open: {last:.2f} s")
    health = result.health_summary()
    if health["probes"]:
        log(f"health: {health['probes']} probes, {health['unanswered']} unanswered, "
            + (f"p50 {health['p50_ms']:.0f} ms, p99 {health['p99_ms']:.0f} ms, " if health["p50_ms"] is not None
               else "none answered, ")
            + f"worst wait {health['worst_wait_ms']:.0f} ms, {health['over_1s']} over 1 s")
    if s.trainers:
        counts = result.trainings()
        log(f"trainings: done {counts['done']}, running {counts['running']}, waiting {counts['waiting']}, "
            f"lost {counts['lost']} — " + "; ".join(f"s{st.index} {st.training}" for st in result.students if st.trains))
        times = result.training_times()
        if times["done_s"]:
            log(f"trainings done {max(times['done_s']):.0f} s after Start at the latest; "
                f"longest wait in the queue {times['longest_wait_s']:.0f} s, furthest position "
                f"{times['worst_position'] or '-'}")
    unfinished = result.unfinished()
    if unfinished:
        log(f"{len(unfinished)} students did not get through the lecture in {s.minutes:g} min")
    if result.rss_warm is not None:
        per = result.memory_per_session()
        log(f"server RSS: warmed up {result.rss_warm:.0f} MB, peak {result.watch.peak_rss():.0f} MB, with "
            f"{result.sessions_full} sessions {result.rss_full:.0f} MB ({per:+.1f} MB per session)"
            + (f", {result.rss_closed:.0f} MB after they closed ({result.sessions_closed} left; "
               f"{result.rss_full - result.rss_closed:+.0f} MB freed)" if result.rss_closed is not None else ""))
    if result.server_cpu_s is not None:
        log(f"server CPU {result.server_cpu_s:.1f} s over {result.wall_s:.0f} s "
            f"({result.server_cpu_s / result.wall_s * 100:.0f}% of one core); training worker processes "
            f"{result.worker_cpu_s:.1f} s, peak RSS with them {result.watch.peak_tree_rss() or 0:.0f} MB")
    log(f"load generator CPU {result.client_cpu_s:.1f} s ({result.client_cpu_s / max(result.wall_s, 1e-9) * 100:.0f}% "
        "of one core)")
    errors = result.errors()
    for error in errors[:20]:
        log(f"  error: {error}")
    if len(errors) > 20:
        log(f"  … {len(errors) - 20} more errors")
    log(result.last_line())


# --------------------------------------------------------------------------- serving, and main

def start_server(minutes: float, session_ttl_s: float):
    """`streamlit run app.py` on 127.0.0.1 (tests/server.py), killed by `timeout` if we never stop it."""
    sys.path.insert(0, str(ROOT / "tests"))
    from server import StreamlitServer

    class BoundedServer(StreamlitServer):
        def command(self, port: int) -> list[str]:
            limit = int(minutes * 60 + session_ttl_s + 300)
            return ["timeout", "--signal=TERM", "--kill-after=10", str(limit), *super().command(port),
                    "--server.disconnectedSessionTTL", str(int(session_ttl_s))]

    server = BoundedServer(ROOT / "app.py")
    server.start()
    return server


def server_pid(server) -> int:
    """The streamlit process under `timeout`: the child of the process we started."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == server.process.pid:
            return int(stat.parent.name)
    return server.process.pid


def check_local(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"classroom.py only connects to 127.0.0.1 or localhost, not {host}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--trainers", type=int, default=3, help="students who also train the default CNN")
    parser.add_argument("--minutes", type=float, default=3.0, help="length of the lecture (the run is bounded by it)")
    parser.add_argument("--burst", action="store_true", help="all students arrive in the same second")
    parser.add_argument("--arrive-over", type=float, default=ARRIVAL_S, metavar="S",
                        help="students arrive at random over the first S seconds (default 30)")
    parser.add_argument("--think", type=float, default=5.0, help="mean think time between actions, s")
    parser.add_argument("--timeout", type=float, default=60.0, help="longest wait for one answer, s")
    parser.add_argument("--seed", type=int, default=1)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--serve", action="store_true", help="start the app on 127.0.0.1 for this run")
    where.add_argument("--url", help="a running server: http://127.0.0.1:PORT")
    parser.add_argument("--pid", type=int, help="the running server's pid (memory, CPU)")
    parser.add_argument("--session-ttl", type=float, default=None,
                        help="the server's disconnectedSessionTTL, s (--serve sets it: default 10)")
    parser.add_argument("--no-warm-up", action="store_true", help="no tab visits the pages before the students")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    if args.students < 1 or not 0 <= args.trainers <= args.students or args.minutes <= 0:
        parser.error("need students >= 1, 0 <= trainers <= students, minutes > 0")
    if args.session_ttl is None:
        args.session_ttl = 10.0 if args.serve else 120.0
    return args


async def amain(args: argparse.Namespace) -> int:
    server = None
    try:
        if args.serve:
            server = start_server(args.minutes, args.session_ttl)
            url, pid = server.url, server_pid(server)
            print(f"serving {url} (pid {pid})", flush=True)
        else:
            url, pid = args.url, args.pid
            check_local(url)
        settings = Settings(args.students, args.trainers, args.minutes, args.burst, args.think, args.timeout,
                            args.seed, args.session_ttl, not args.no_warm_up, args.arrive_over)
        result = await run_classroom(url, pid, settings, log=lambda text: print(text, flush=True))
        print_report(result)
        if args.json:
            Path(args.json).write_text(json.dumps(result.to_json(), indent=1, default=str))
        return 0
    finally:
        if server is not None:
            server.close()


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(amain(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
