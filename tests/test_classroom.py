"""benchmarks/classroom.py: its statistics against numpy, how it reads a training page, and a short
lecture against a real server (`--serve`) whose report must hold real, complete values."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.Button_pb2 import Button
from streamlit.proto.Progress_pb2 import Progress

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import classroom

LAST_LINE = re.compile(r"^classroom: (\d+) students, (\d+) training, p90 action (\d+) ms, errors (\d+), "
                       r"trainings done (\d+)/(\d+), peak rss (\d+) MB$")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 10, 20, 99, 100, 101])
@pytest.mark.parametrize("q", [50, 90, 99, 100])
def test_percentile_is_numpys_nearest_rank(n, q):
    values = list(np.random.default_rng(n * 1000 + q).exponential(0.2, n))
    assert classroom.percentile(values, q) == np.percentile(values, q, method="inverted_cdf")


def test_summary_matches_numpy_in_milliseconds():
    seconds = list(np.random.default_rng(7).uniform(0.01, 2.0, 37))
    figures = classroom.summary(seconds)
    assert figures["p50_ms"] == pytest.approx(np.median(seconds) * 1e3)
    assert figures["p90_ms"] == pytest.approx(np.percentile(seconds, 90, method="inverted_cdf") * 1e3)
    assert figures["max_ms"] == pytest.approx(max(seconds) * 1e3)
    assert classroom.summary([]) == {"p50_ms": None, "p90_ms": None, "max_ms": None}


def test_health_summary_counts_an_unanswered_probe_as_its_whole_wait():
    watch = classroom.Watch("http://127.0.0.1:1", None)
    watch.health = [(0.0, 0.002, True), (0.25, 0.5, True), (0.5, 0.004, True), (0.75, 10.0, False)]
    health = classroom.Result(classroom.Settings(3, 0, 1.0), watch.url, [], watch, 0.0).health_summary()
    assert health == {"probes": 4, "unanswered": 1, "p50_ms": pytest.approx(4.0), "p99_ms": pytest.approx(500.0),
                      "max_ms": pytest.approx(500.0), "worst_wait_ms": pytest.approx(10_000.0), "over_1s": 1}


def _tab_showing(*protos) -> classroom.Tab:
    tab = classroom.Tab("http://127.0.0.1:1", "t", 1.0)
    for index, proto in enumerate(protos):
        kind = {Alert: "alert", Progress: "progress", Button: "button"}[type(proto)]
        tab.elements[(0, index)] = classroom.Element(kind, proto, "", "run")
    return tab


@pytest.mark.parametrize("protos, status", [
    ((Alert(body="**Finished: 3 epochs** (CPU)", format=Alert.SUCCESS),), "done"),
    ((Alert(body="**Waiting for the server's CPU**: position 3 in the queue (2 waiting runs go first).",
            format=Alert.INFO), Progress(value=0, text="Preparing…")), "waiting (position 3)"),
    ((Progress(value=40, text="Epoch 2 of 3"),), "running"),
    ((Alert(body="**Training stopped with a problem.** out of memory", format=Alert.ERROR),),
     "lost: **Training stopped with a problem.** out of memory"),
    ((Alert(body="**Interrupted by a server restart: the model of epoch 1 is kept.**", format=Alert.WARNING),),
     "lost: **Interrupted by a server restart: the model of epoch 1 is kept.**"),
    ((Alert(body="**Paused** on the CPU: paused by you", format=Alert.WARNING), Progress(value=10)), "running"),
    ((Alert(body="Fix the stack above first.", format=Alert.ERROR), Progress(value=10, text="Epoch 1")), "running"),
    ((), "lost: the page shows no run"),
])
def test_training_status_reads_the_page(protos, status):
    assert classroom.training_status(_tab_showing(*protos)) == status


def test_start_button_found_by_its_label_alone():
    tab = _tab_showing(Button(id="a", label="Stop"), Button(id="b", label="Start training"), Button(id="c", label="Restart"))
    assert classroom.start_button(tab).id == "b"
    with pytest.raises(classroom.RunFailed):
        classroom.start_button(_tab_showing(Button(id="a", label="Stop")))


def test_a_short_lecture_against_a_real_server(tmp_path):
    """Three students and one trainer through the whole lecture on a server the benchmark starts."""
    report = tmp_path / "classroom.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "classroom.py"), "--serve", "--students", "3", "--trainers", "1",
         "--minutes", "0.6", "--arrive-over", "3", "--think", "1", "--session-ttl", "2", "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    match = LAST_LINE.match(last)
    assert match, last
    figures = json.loads(report.read_text())
    assert figures["errors"] == [], figures["errors"]
    assert figures["unfinished"] == []
    actions = figures["actions"]
    every_student = ["open Convolution from a link", "change padding", "open Pooling", "open VGG-16 explorer",
                     "open Classify an image", "classify a sample"]
    for name in every_student:
        assert actions[name]["n"] == 3 and actions[name]["errors"] == 0, (name, actions[name])
        assert 0 < actions[name]["p50_ms"] <= actions[name]["p90_ms"] <= actions[name]["max_ms"] < 60_000
    assert actions["step"]["n"] == 9  # two on the convolution page, one on pooling, per student
    assert actions["start training"]["n"] == 1 and actions["start training"]["errors"] == 0
    assert figures["trainings"] == {"done": 1, "running": 0, "waiting": 0, "lost": 0}
    assert 0 < figures["training_times"]["done_s"][0] < 36
    rss = figures["rss_mb"]
    assert 100 < rss["warm"] <= rss["peak"] < 8000
    assert figures["server_cpu_s"] > 0 and figures["health"]["probes"] > 10 and figures["health"]["unanswered"] == 0
    assert 0 < figures["health"]["worst_wait_ms"] < classroom.HEALTH_TIMEOUT_S * 1e3
    assert figures["last_open_s"] == pytest.approx(actions["open Convolution from a link"]["max_ms"] / 1e3)
    students, trainers, p90, errors, done, asked, peak = map(int, match.groups())
    assert (students, trainers, errors, done, asked) == (3, 1, 0, 1, 1)
    assert p90 == round(figures["p90_all_but_training_ms"]) and peak == round(rss["peak"])
