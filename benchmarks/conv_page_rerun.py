#!/usr/bin/env python
"""Time the convolution page's rerun on the server side (median and p90).

    python benchmarks/conv_page_rerun.py                  # the table (about a minute)
    python benchmarks/conv_page_rerun.py --runs 20        # quicker, noisier
    python benchmarks/conv_page_rerun.py --profile next   # + cProfile of one scenario's reruns

Goal (issue): a rerun of pages/1_Convolution.py costs <= 20 ms p90 on the server side.

What is timed. `AppTest.run()` polls the script thread with `time.sleep` and rebuilds a mock
runtime each call, so its wall time (printed for reference) is not what a server spends. This
script hooks the script runner AppTest uses instead (a subclass of its LocalScriptRunner):
it times `ScriptRunner._run_script`, i.e. widget-state processing and callbacks, the page
script (its figures and the protobuf deltas they become) and the runner's own bookkeeping,
on the script thread, with `time.perf_counter`. Then it times `serialize_forward_msg` (what
the server does to each message before the websocket) over the messages that run produced.
"total" = run + serialise, as wall time and as the CPU time the whole process (every thread,
torch's included) spent meanwhile (`time.process_time`).

Wall time or CPU time. On a quiet server the two agree (the rerun is one thread's work). On a
shared machine (this one: 2 cores, several busy neighbours) the wall time also counts the
time other programs held the cores, and swings from run to run with their load; the CPU time
counts what the rerun itself cost. The table gives both, with the load average, and says
for each whether p90 <= 20 ms holds; read the CPU column as "what a server spends", and
the wall column as what it would take on this machine right now.

Two AppTest artefacts are removed so the numbers match a long-running server: AppTest makes a
new ScriptCache on every run (the page would be recompiled every rerun; a server compiles it
once), so every run here shares one; and AppTest reruns the whole page even for a widget inside
an `st.fragment` (no fragment id in its rerun request), whereas a browser asks for the fragment
alone: the "fragment" rows inject the fragment's id into the rerun request, as the browser does.

Stepping. The stepper steps in the browser (ui.client_stepper): a click on Next costs no rerun.
Python hears the step once per burst of steps (the component's state, 400 ms after the last
move, inside the stepper's fragment): the "next" scenarios time that rerun, with the browser's
message built by hand (the component's state: the next step and Python's last command id).

Caches. The page keeps what does not change between reruns (the layer, its steps, the activation
map of the photo). Most scenarios revisit states (steps of one layer; stride 1 <-> 2), as a class
stepping through the lecture's example does. The "new bias" scenario types a bias never used
before on every rerun, so nothing about the new layer or its photo map is cached: what the
first visit to a setting costs.

The machine is noisy (2 shared cores): every scenario's reruns are interleaved one-for-one with
reruns of a trivial script (`st.write("x")`) timed through the same hook, and the table gives
each scenario as a multiple of that reference as well as in milliseconds.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import gc
import io
import json
import math
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = "pages/1_Convolution.py"
GOAL_P90_MS = 20.0

os.chdir(ROOT)  # .streamlit/config.toml is read from the working directory, as with `streamlit run`

from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates  # noqa: E402
from streamlit.runtime.runtime_util import serialize_forward_msg  # noqa: E402
from streamlit.runtime.scriptrunner import ScriptRunnerEvent  # noqa: E402
from streamlit.runtime.scriptrunner.script_cache import ScriptCache  # noqa: E402
from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequests  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402
from streamlit.testing.v1 import app_test as _app_test  # noqa: E402
from streamlit.testing.v1.local_script_runner import LocalScriptRunner  # noqa: E402


@dataclasses.dataclass
class Sample:
    run_ms: float  # ScriptRunner._run_script on the script thread
    event_ms: float  # SCRIPT_STARTED -> *_STOPPED_* (a subset of run_ms)
    serialise_ms: float
    kilobytes: float
    kind: str  # "full" or "fragment": what the runner actually executed
    run_cpu_ms: float = 0.0  # CPU time of the whole process (every thread) during run_ms
    serialise_cpu_ms: float = 0.0
    appt_ms: float = 0.0  # AppTest.run() wall time, for comparison only

    @property
    def total_ms(self) -> float:
        return self.run_ms + self.serialise_ms

    @property
    def cpu_ms(self) -> float:
        return self.run_cpu_ms + self.serialise_cpu_ms


class TimedRunner(LocalScriptRunner):
    """AppTest's script runner with a stopwatch (and optionally a profiler) on the script thread."""

    script_cache = ScriptCache()  # shared by all runs, as in a server
    fragment_id: str | None = None  # set: reruns are for this fragment only, as a browser asks
    profiler: cProfile.Profile | None = None
    last: Sample | None = None
    seen_fragment_ids: set[str] = set()

    def __init__(self, script_path, session_state, pages_manager, *args, **kwargs):
        super().__init__(script_path, session_state, pages_manager, *args, **kwargs)
        self._script_cache = pages_manager._script_cache = TimedRunner.script_cache
        if TimedRunner.fragment_id is not None:
            # LocalScriptRunner queues a full rerun at construction, and a pending full rerun
            # absorbs a fragment request: start from an empty queue so run() asks for the fragment.
            self._requests = ScriptRequests()
        self._bench_msgs: list = []
        self._bench_events: list[tuple[float, ScriptRunnerEvent, dict]] = []
        self.on_event.connect(self._bench_on_event, weak=False)

    def _bench_on_event(self, sender, event: ScriptRunnerEvent, **kwargs) -> None:
        self._bench_events.append((time.perf_counter(), event, kwargs))
        if event == ScriptRunnerEvent.ENQUEUE_FORWARD_MSG:
            msg = kwargs["forward_msg"]
            self._bench_msgs.append(msg)
            if msg.HasField("delta") and msg.delta.fragment_id:
                TimedRunner.seen_fragment_ids.add(msg.delta.fragment_id)

    def request_rerun(self, rerun_data):
        if TimedRunner.fragment_id is not None:
            rerun_data = dataclasses.replace(rerun_data, fragment_id=TimedRunner.fragment_id)
        return super().request_rerun(rerun_data)

    def _run_script(self, rerun_data) -> None:
        profiler = TimedRunner.profiler
        start, start_cpu = time.perf_counter(), time.process_time()
        if profiler is not None:
            profiler.enable()
        try:
            super()._run_script(rerun_data)
        finally:
            if profiler is not None:
                profiler.disable()
            run_s, run_cpu_s = time.perf_counter() - start, time.process_time() - start_cpu
            self._bench_record(run_s, run_cpu_s)

    def _bench_record(self, run_s: float, run_cpu_s: float) -> None:
        started = [(t, kw) for t, e, kw in self._bench_events if e == ScriptRunnerEvent.SCRIPT_STARTED]
        stopped = [t for t, e, _ in self._bench_events if e in (
            ScriptRunnerEvent.SCRIPT_STOPPED_WITH_SUCCESS, ScriptRunnerEvent.FRAGMENT_STOPPED_WITH_SUCCESS,
            ScriptRunnerEvent.SCRIPT_STOPPED_WITH_COMPILE_ERROR)]
        event_s = (stopped[-1] - started[0][0]) if started and stopped else math.nan
        kind = "fragment" if started and started[-1][1].get("fragment_ids_this_run") else "full"
        t0, cpu0 = time.perf_counter(), time.process_time()
        size = sum(len(serialize_forward_msg(m)) for m in self._bench_msgs)
        serialise_s, serialise_cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        TimedRunner.last = Sample(run_s * 1e3, event_s * 1e3, serialise_s * 1e3, size / 1024, kind,
                                  run_cpu_s * 1e3, serialise_cpu_s * 1e3)


_app_test.LocalScriptRunner = TimedRunner  # AppTest builds one runner per run() from this name


def timed_run(at: AppTest, widget_states: WidgetStates | None = None) -> Sample:
    """at.run(), or a run with these widget states (what the browser would send)."""
    TimedRunner.last = None
    start = time.perf_counter()
    if widget_states is None:
        at.run()
    else:
        at._run(widget_states)
    appt_ms = (time.perf_counter() - start) * 1e3
    if at.exception:
        raise RuntimeError(f"the script raised: {[e.value for e in at.exception]}")
    if TimedRunner.last is None:
        raise RuntimeError("the timing hook saw no script run")
    sample = TimedRunner.last
    sample.appt_ms = appt_ms
    return sample


# ---- scenarios: each returns a prepared AppTest and a function that makes one rerun ----

def open_page(**query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "home.py"), default_timeout=60)
    at.switch_page(PAGE)
    for key, value in query.items():
        at.query_params[key] = value
    timed_run(at)
    return at


def stepping(at: AppTest) -> Callable[[], WidgetStates]:
    """What the browser sends once a student has stepped (one message per burst of steps): every
    widget's state, the stepper's with the next step (after the last output: the first).

    After a fragment rerun AppTest's tree holds the fragment's elements only, and sending only their
    states would drop every other widget's value (conv.s, ...) from the session. A browser sends the
    state of every widget on the page: so do we, from the first, full tree."""
    full_tree = at._tree

    def send() -> WidgetStates:
        stepper = next(e for e in at.get("bidi_component") if e.key == "conv.stepper")
        data = json.loads(stepper.proto.json)
        step = (at.session_state["conv.step"] + 1) % data["count"]
        states = {w.id: w for w in full_tree.get_widget_states().widgets}
        states.update((w.id, w) for w in at._tree.get_widget_states().widgets)
        states[stepper.proto.id] = WidgetState(id=stepper.proto.id,
                                               json_value=json.dumps({"step": step, "goto": data["goto"]["id"]}))
        return WidgetStates(widgets=list(states.values()))
    return send


def fragment_id_of_stepper(at: AppTest) -> str:
    """The stepper fragment's id, as the deltas it drew carry it (the page has one fragment)."""
    ids = TimedRunner.seen_fragment_ids
    if len(ids) != 1:
        raise RuntimeError(f"expected one fragment on the page, saw {sorted(ids)}")
    return next(iter(ids))


def scenario_next_full(**query):
    at = open_page(**query)
    return at, stepping(at), None


def scenario_next_fragment(**query):
    TimedRunner.seen_fragment_ids = set()
    at = open_page(**query)
    return at, stepping(at), fragment_id_of_stepper(at)


def scenario_stride():
    at = open_page()
    values = iter(range(10**9))

    def change() -> None:  # 1 -> 2 -> 1 ...: a real change, hence a full rerun, every time
        at.number_input(key="conv.s").set_value(2 if next(values) % 2 == 0 else 1)
    return at, change, None


def scenario_new_bias():
    """Type a bias never used before: nothing about the new layer or its activation map on the photo
    is in any cache, so this is what a first visit to a setting costs (conv2d on the photo, PNG)."""
    at = open_page()
    values = iter(range(1, 10**9))

    def change() -> None:
        at.text_input(key="conv.b_text.0").set_value(str(next(values)))
    return at, change, None


def reference_app(tmp: Path):
    script = tmp / "empty_app.py"
    script.write_text('import streamlit as st\n\nst.write("x")\n')
    at = AppTest.from_file(str(script), default_timeout=60)
    timed_run(at)
    return at


SCENARIOS: dict[str, tuple[str, Callable]] = {
    "next": ("step told to Python, AppTest (full page)", scenario_next_full),
    "next-fragment": ("step told to Python, fragment only (as a browser)", scenario_next_fragment),
    "stride": ("stride 1<->2 (conv.s), full page", scenario_stride),
    "new-bias": ("new bias typed (nothing cached), full page", scenario_new_bias),
    "two-channels": ("?ex=two-channels, step told, AppTest (full)",
                     lambda: scenario_next_full(ex="two-channels")),
    "two-channels-fragment": ("?ex=two-channels, step told, fragment only",
                              lambda: scenario_next_fragment(ex="two-channels")),
}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (p90 of 40 values is the 36th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def measure(name: str, ref_at: AppTest, runs: int, warmup: int, profile: bool):
    _, make = SCENARIOS[name]
    at, interact, fragment_id = make()
    page, ref = [], []
    profiler = cProfile.Profile() if profile else None
    last_seen = None
    for i in range(warmup + runs):
        TimedRunner.fragment_id = None
        ref_sample = timed_run(ref_at)
        widget_states = interact()
        TimedRunner.fragment_id = fragment_id
        TimedRunner.profiler = profiler if i >= warmup else None
        try:
            sample = timed_run(at, widget_states)
        finally:
            TimedRunner.fragment_id = None
            TimedRunner.profiler = None
        expected = "fragment" if fragment_id else "full"
        if sample.kind != expected:
            raise RuntimeError(f"{name}: expected a {expected} rerun, the runner did a {sample.kind} one")
        seen = (at.session_state["conv.step"], at.session_state["conv.s"], at.session_state["conv.b"])
        if seen == last_seen:
            raise RuntimeError(f"{name}: the rerun changed nothing (step, stride, bias) = {seen}")
        last_seen = seen
        if i >= warmup:
            page.append(sample)
            ref.append(ref_sample)
    return page, ref, profiler


def print_profile(name: str, profiler: cProfile.Profile, runs: int, top: int) -> None:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    print(f"\ncProfile of '{name}' ({runs} reruns, script thread only; times are totals over all "
          f"reruns, divide by {runs} for one), top {top} by cumulative time:")
    text = out.getvalue()
    print(text[text.find("   ncalls"):].rstrip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=40, help="timed reruns per scenario (default 40)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed reruns first (default 5)")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--profile", choices=list(SCENARIOS), default=None,
                        help="also cProfile this scenario's timed reruns (slows that scenario down)")
    parser.add_argument("--top", type=int, default=25, help="profile lines to print (default 25)")
    args = parser.parse_args()

    began, load_before = time.perf_counter(), os.getloadavg()
    gc.collect()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        ref_at = reference_app(Path(tmp))
        for name in args.scenarios:
            results[name] = measure(name, ref_at, args.runs, args.warmup, profile=False)
        profiled = measure(args.profile, ref_at, args.runs, args.warmup, profile=True) if args.profile else None

    all_ref = [s.total_ms for page, ref, _ in results.values() for s in ref]
    print(f"cnnviz {PAGE}: server-side rerun, {args.runs} timed reruns per scenario after "
          f"{args.warmup} warm-up; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{load_before[0]:.1f} before / {os.getloadavg()[0]:.1f} after")
    print(f"reference: a trivial script (st.write) through the same hook, interleaved with every rerun: "
          f"median {statistics.median(all_ref):.2f} ms, p90 {percentile(all_ref, 90):.2f} ms "
          f"over {len(all_ref)} runs\n")
    header = (f"{'scenario':<42} {'ran':<8} {'median':>7} {'p90':>7} {'CPU med':>7} {'CPU p90':>7} "
              f"{'x ref':>6} {'serial.':>7} {'KB':>5} {'AppTest':>8}  p90 <= {GOAL_P90_MS:g} ms: wall / CPU")
    print(header)
    print("-" * len(header))
    for name, (page, ref, _) in results.items():
        total, cpu = [s.total_ms for s in page], [s.cpu_ms for s in page]
        ref_median = statistics.median(s.total_ms for s in ref)
        p90, cpu_p90 = percentile(total, 90), percentile(cpu, 90)
        print(f"{SCENARIOS[name][0]:<42} {page[0].kind:<8} {statistics.median(total):7.2f} {p90:7.2f} "
              f"{statistics.median(cpu):7.2f} {cpu_p90:7.2f} "
              f"{statistics.median(total) / ref_median:5.1f}x "
              f"{statistics.median(s.serialise_ms for s in page):7.2f} "
              f"{statistics.median(s.kilobytes for s in page):5.0f} "
              f"{statistics.median(s.appt_ms for s in page):8.1f}  "
              f"{'met' if p90 <= GOAL_P90_MS else 'NOT MET'} / {'met' if cpu_p90 <= GOAL_P90_MS else 'NOT MET'}")
    print("\nmedian/p90: wall time of script run + serialising its messages, in ms. CPU med/p90: the CPU "
          "time the\nprocess (all its threads) spent meanwhile: on this shared machine other programs' load "
          "stretches the\nwall time, not the CPU time. x ref: wall median over the median of the trivial "
          "script's reruns\ninterleaved with this scenario. serial.: median wall time of serialising. KB: "
          "serialised messages per\nrerun. AppTest: AppTest.run() wall time (polling and mock setup; not "
          "server time).")
    if profiled is not None:
        print_profile(args.profile, profiled[2], args.runs, args.top)
    print(f"\n(benchmark took {time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
