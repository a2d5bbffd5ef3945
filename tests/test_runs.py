"""Training runs for a lecture hall (cnnviz.runs, cnnviz.worker): records kept on disk across a restart
(runs that were training say they were interrupted), expiry, GPU-like memory slots admitting several runs
at once (simulated capacity), the CPU one run at a time with queue positions and pauses that hand the
device over, the server's limits refused with messages, Stop within a second even inside a step of
seconds, a crashed worker process shown as failed, and the worker's entry point run in-process (as a job
queue's worker would call it). Every test ends the worker processes it started."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace

import pytest
import torch

from cnnviz import runs as runs_module
from cnnviz.checkpoint import Checkpoint
from cnnviz.data import load_images
from cnnviz.network import build_model
from cnnviz.runs import (
    CountSlots,
    Executor,
    Limits,
    LocalExecutor,
    LocalRunStore,
    MemorySlots,
    RunRefused,
    Runs,
    new_student_id,
)
from cnnviz.train import (
    EpochReport,
    History,
    TrainProgress,
    estimate_memory,
)
from cnnviz.worker import train_run
from run_helpers import SLOW, TINY, config, request, wait_for
from run_helpers import run_record as record

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class HeldExecutor(Executor):
    """Runs are queued and never started: for what happens when a run is created."""

    def __init__(self):
        self.submitted, self.woken = [], []

    def submit(self, run_id: str) -> None:
        self.submitted.append(run_id)

    def wake(self, run_id: str) -> None:
        self.woken.append(run_id)


@pytest.fixture
def backend(tmp_path):
    """Runs on a store in a temporary folder, with worker processes; every process ended afterwards."""
    made = []

    def make(slots=None, limits=None) -> Runs:
        store = LocalRunStore(tmp_path / "runs").load()
        runs = Runs(store, LocalExecutor(store, slots=slots), limits or Limits())
        made.append(runs)
        return runs

    yield make
    for runs in made:
        runs.close()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def steps_done(runs: Runs, run_id: str) -> int:
    progress = runs.get(run_id).progress
    return progress.step if progress is not None else 0


def checkpoint(epochs: float, seed: int = 0) -> Checkpoint:
    torch.manual_seed(seed)
    return Checkpoint.from_model(build_model(TINY, (1, 28, 28)), TINY, (1, 28, 28), [str(k) for k in range(10)],
                                 "fashion-mnist", {"epochs": epochs, "test_accuracy": 0.5})


def report(epoch: int) -> EpochReport:
    g = torch.Generator().manual_seed(epoch)
    return EpochReport(epoch=epoch, test_loss=1.5, test_accuracy=0.4, confusion=torch.randint(0, 9, (10, 10), generator=g),
                       sample_images=torch.randint(0, 255, (10, 1, 28, 28), dtype=torch.uint8, generator=g),
                       sample_labels=torch.arange(10), sample_predictions=torch.arange(10).flip(0),
                       sample_probabilities=torch.rand(10, generator=g), filters=torch.randn(4, 1, 3, 3, generator=g))


# ---------------------------------------------------------------------------- the store


def test_finished_runs_survive_a_restart_and_runs_that_trained_say_they_were_interrupted(tmp_path):
    store = LocalRunStore(tmp_path)
    history = History(train_epoch=[0.5, 1.0], train_loss=[2.0, 1.0], train_accuracy=[0.2, 0.6], test_epoch=[1.0],
                      test_loss=[1.1], test_accuracy=[0.6], test_seconds=[0.4])
    progress = TrainProgress(epoch=2.0, epochs=2, step=48, steps=48, images_seen=12000, images_per_s=9000.0,
                             train_seconds=1.3, elapsed_s=2.0, eta_s=None, phase="done")
    store.create(record("finished", state="running"))
    store.update("finished", history=history, progress=progress)
    store.add_report("finished", report(0))
    store.add_report("finished", report(1))
    store.save_checkpoint("finished", checkpoint(2.0))
    store.update("finished", state="finished", message="Finished 2 epochs: test accuracy 60%.", finished_at=time.time())
    store.create(record("training", state="running"))
    store.save_checkpoint("training", checkpoint(1.0, seed=1))  # its first epoch's model
    store.create(record("waiting", state="queued"))
    store.create(record("pausing", state="paused"))

    restarted = LocalRunStore(tmp_path).load()
    done = restarted.get("finished")
    assert done.state == "finished" and done.message == "Finished 2 epochs: test accuracy 60%."
    assert done.history == history and done.progress == progress and done.config == config(epochs=2)
    assert [r.epoch for r in done.reports] == [0, 1]
    assert torch.equal(done.reports[1].confusion, report(1).confusion)
    assert torch.equal(done.reports[1].filters, report(1).filters)
    model = restarted.checkpoint("finished")
    assert all(torch.equal(model.state_dict[k], v) for k, v in checkpoint(2.0).state_dict.items())
    assert restarted.checkpoint("finished") is model  # loaded once, shared by every session

    training = restarted.get("training")
    assert training.state == "interrupted" and not training.active
    assert training.message == ("Interrupted: the server restarted while it trained. "
                                "The model after 1 epoch is kept.")
    assert training.checkpoint_epochs == 1.0 and restarted.checkpoint("training") is not None
    for name in ("waiting", "pausing"):
        assert restarted.get(name).state == "interrupted"
        assert restarted.get(name).message.endswith("No epoch had ended, so no model was kept.")
        assert restarted.checkpoint(name) is None
    # and the record on disk says so too
    assert json.loads((tmp_path / "training" / "record.json").read_text())["state"] == "interrupted"


def test_finished_runs_expire_after_the_keep_time_and_active_ones_never(tmp_path):
    store = LocalRunStore(tmp_path, keep_hours=1)
    now = time.time()
    store.create(record("old-done", state="stopped", finished_at=now - 3601))
    store.save_checkpoint("old-done", checkpoint(1.0))
    store.create(record("new-done", state="finished", finished_at=now - 3500))
    store.create(record("old-runs", state="running", created_at=now - 10 * 3600))
    assert store.expire(now) == ["old-done"]
    assert store.get("old-done") is None and store.checkpoint("old-done") is None
    assert not (tmp_path / "old-done").exists()
    assert store.get("new-done") is not None and store.get("old-runs") is not None
    later = LocalRunStore(tmp_path, keep_hours=0).load()  # a restart expires as well
    assert later.get("new-done") is None and later.get("old-runs") is None  # interrupted now, then expired


def test_a_damaged_record_is_left_out_and_the_others_load(tmp_path):
    store = LocalRunStore(tmp_path)
    store.create(record("goodgood"))
    (tmp_path / "badbadba").mkdir()
    (tmp_path / "badbadba" / "record.json").write_text("{not json")
    (tmp_path / "..escape").mkdir()
    assert [r.id for r in LocalRunStore(tmp_path).load().all()] == ["goodgood"]


# ---------------------------------------------------------------------------- slots


def test_memory_slots_admit_runs_while_their_needs_fit_the_free_memory():
    free = {"bytes": 10_000}
    slots = MemorySlots(lambda: free["bytes"], headroom=0.8, max_runs=8)  # 8,000 bytes for our runs
    assert slots.admits(3000)
    slots.take("a", 3000)
    assert slots.capacity == 8000
    free["bytes"] = 7000  # what run a now uses does not shrink the capacity while runs hold it
    assert slots.admits(3000)
    slots.take("b", 3000)
    assert not slots.admits(3000)  # 9,000 > 8,000
    assert slots.admits(2000)  # 8,000 fits exactly
    slots.update("a", 5000)  # run a measured more than estimated
    assert not slots.admits(1)
    slots.release("a")
    assert slots.admits(5000) and not slots.admits(5001)
    slots.release("b")
    free["bytes"] = 1000  # another program took the GPU's memory
    assert slots.admits(50_000)  # alone: admitted whatever it needs (it fails with a message if too big)
    slots.take("big", 50_000)
    assert slots.capacity == 800 and not slots.admits(1)
    assert not slots.releases_on_pause  # a paused worker keeps its GPU memory


def test_memory_slots_run_at_most_one_worker_per_cpu_core_and_count_slots_a_fixed_number():
    slots = MemorySlots(lambda: 10**12, max_runs=2)
    slots.take("a", 1)
    slots.take("b", 1)
    assert not slots.admits(1)
    one = CountSlots(1)
    assert one.admits(10**15)
    one.take("a", 10**15)
    assert not one.admits(1) and one.releases_on_pause


def test_several_runs_train_at_once_on_a_gpu_like_device(backend):
    """MemorySlots on the CPU stand in for a GPU with room for two of these runs: two worker processes
    train at the same time, the third waits with its position."""
    need = estimate_memory(config(batch_size=16), (1, 28, 28), 6000, 1000).total_bytes
    runs = backend(slots={"cpu": MemorySlots(lambda: int(2.5 * need), headroom=1.0)})
    me = new_student_id()
    first, second = (runs.start(me, request(epochs=50, batch_size=16)) for _ in range(2))
    third = runs.start(new_student_id(), request(batch_size=16))

    def both_training():
        a, b = runs.get(first.id), runs.get(second.id)
        return all(r.state == "running" and r.progress is not None and r.progress.step > 0 for r in (a, b))

    wait_for(both_training, 60, "two runs training at once")
    assert runs.get(third.id).state == "queued" and runs.get(third.id).queue_position == 1
    assert runs.load("cpu") == (2, 1)
    steps = runs.get(first.id).progress.step, runs.get(second.id).progress.step
    wait_for(lambda: runs.get(first.id).progress.step > steps[0] and runs.get(second.id).progress.step > steps[1],
             30, "both going on")
    runs.stop(first.id, me)
    wait_for(lambda: runs.get(third.id).state != "queued", 30, "the third admitted")
    runs.stop(second.id, me)
    assert wait_for(lambda: runs.get(third.id).done, 60, "the third finished")
    assert runs.get(third.id).state == "finished"


def test_the_cpu_trains_one_run_at_a_time_queued_runs_see_their_place_and_a_pause_hands_over(backend):
    runs = backend()
    me, other = new_student_id(), new_student_id()
    first = runs.start(me, request(epochs=50, batch_size=16))
    wait_for(lambda: runs.get(first.id).state == "running", what="first running")
    second, third = runs.start(other, request()), runs.start(new_student_id(), request())
    wait_for(lambda: runs.get(third.id).queue_position == 2, what="third queued")
    assert runs.get(second.id).state == "queued" and runs.get(second.id).queue_position == 1
    assert runs.load("cpu") == (1, 2)

    runs.stop(second.id, other)  # leaving the queue
    wait_for(lambda: runs.get(second.id).state == "stopped", what="second stopped")
    assert runs.get(second.id).message == "Stopped before it started."
    wait_for(lambda: runs.get(third.id).queue_position == 1, what="third moves up")

    wait_for(lambda: runs.get(first.id).progress is not None, 60, "first training")
    runs.pause(first.id, me)  # the CPU goes to the next run while the first waits
    wait_for(lambda: runs.get(first.id).state == "paused", what="first paused")
    assert "free for others" in runs.get(first.id).message
    step = runs.get(first.id).progress.step
    runs.resume(first.id, me)  # queued again behind the third
    wait_for(lambda: runs.get(first.id).state == "queued" or runs.get(third.id).done, what="first queued again")
    assert wait_for(lambda: runs.get(third.id).done, 60, "third finished")
    assert runs.get(third.id).state == "finished"
    wait_for(lambda: runs.get(first.id).state == "running" and runs.get(first.id).progress.step > step, 30,
             "first going on")
    runs.stop(first.id, me)
    wait_for(lambda: runs.get(first.id).done, 10, "first stopped")
    first_done = runs.get(first.id)
    assert first_done.state == "stopped" and first_done.message.startswith("Stopped after ")
    assert runs.checkpoint(first.id).metrics["epochs"] < 50
    assert runs.load("cpu") == (0, 0)


# ---------------------------------------------------------------------------- limits and owners


def test_limits_are_enforced_when_a_run_is_created_with_messages(tmp_path):
    store = LocalRunStore(tmp_path)
    executor = HeldExecutor()
    runs = Runs(store, executor, Limits(max_multiply_adds=1e9, max_seconds=90, max_active_per_student=1))
    me = new_student_id()
    # the default stack: 299,498 multiply-adds per image × 6,000 images × 3 epochs = 5.39 billion
    with pytest.raises(RunRefused) as refused:
        runs.start(me, request(stack="conv3x8,relu,maxpool2,conv3x16,relu,maxpool2,flatten,fc10", epochs=3))
    assert str(refused.value) == (
        "This run is too big for this server: 5.39 billion multiply-adds (299,498 per image × 6,000 images × "
        "3 epochs), and a run may have 1.00 billion. Train fewer epochs, use fewer filters, or pool earlier.")
    assert store.all() == [] and executor.submitted == []

    run = runs.start(me, request(epochs=2))  # 7,850 + ... well under a billion
    assert executor.submitted == [run.id] and run.state == "queued" and run.owner == me
    assert run.config.time_limit_s == 90  # the server's limit on training time goes with the run
    assert run.multiply_adds == (4 * 9 * 784 + 4 * 28 * 28 + 10 * 785) * 6000 * 2
    with pytest.raises(RunRefused, match="You have 1 run going already, the most this server allows"):
        runs.start(me, request())
    assert runs.start(new_student_id(), request()).state == "queued"  # another student may
    with pytest.raises(RunRefused, match="no student id"):
        runs.start("../../etc", request())
    with pytest.raises(RunRefused, match="ends in 5 outputs"):
        runs.start(new_student_id(), request(stack="conv3x4,relu,flatten,fc5"))
    with pytest.raises(RunRefused, match="epochs must be from 1"):
        runs.start(new_student_id(), request(epochs=0))


def test_limits_come_from_the_environment_and_bad_values_are_ignored():
    limits = Limits.from_environment({"CNNVIZ_MAX_RUN_MULTIPLY_ADDS": "2e12", "CNNVIZ_MAX_RUN_SECONDS": "300",
                                      "CNNVIZ_MAX_RUNS_PER_STUDENT": "3", "CNNVIZ_RUN_KEEP_HOURS": "48",
                                      "CNNVIZ_MAX_QUEUED_RUNS": "lots"})
    assert (limits.multiply_adds("cpu"), limits.multiply_adds("cuda")) == (2e12, 2e12)
    assert (limits.max_seconds, limits.max_active_per_student, limits.keep_hours) == (300, 3, 48)
    assert limits.max_queued == Limits.max_queued
    defaults = Limits.from_environment({})
    assert defaults.multiply_adds("cpu") == 1e12 and defaults.multiply_adds("cuda") == 1e14
    assert runs_module.runs_directory({"CNNVIZ_RUNS_DIR": "/srv/runs"}).as_posix() == "/srv/runs"
    assert runs_module.runs_directory({}) == runs_module.ROOT / "data" / "runs"


def test_only_the_owner_controls_a_run_and_a_session_id_hands_its_runs_to_the_browser_id(tmp_path):
    store = LocalRunStore(tmp_path)
    executor = HeldExecutor()
    runs = Runs(store, executor)
    owner, watcher = new_student_id(), new_student_id()
    run = runs.start(owner, request())
    for action in (runs.stop, runs.pause, runs.resume):
        with pytest.raises(RunRefused, match="Only the student who started this run"):
            action(run.id, watcher)
    assert not runs.get(run.id).stop_requested and executor.woken == []
    runs.stop(run.id, owner)
    assert runs.get(run.id).stop_requested and executor.woken == [run.id]
    browser = new_student_id()
    assert runs.transfer(owner, browser) == 1
    assert [r.id for r in runs.of_owner(browser)] == [run.id] and runs.of_owner(owner) == []
    assert runs.transfer(browser, "not an id") == 0
    assert runs.get("../../x") is None and runs.get(None) is None


# ---------------------------------------------------------------------------- workers


def test_the_worker_entry_point_trains_a_run_in_process_as_a_job_queue_would(tmp_path):
    store = LocalRunStore(tmp_path)
    runs = Runs(store, HeldExecutor())
    run = runs.start(new_student_id(), request(epochs=2))
    assert train_run(run.id, store) == "finished"
    done = store.get(run.id)
    assert done.state == "finished" and done.checkpoint_epochs == 2.0
    assert [r.epoch for r in done.reports] == [0, 1, 2]
    model = store.checkpoint(run.id)
    assert done.message == f"Finished 2 epochs: test accuracy {model.test_accuracy * 100:.1f}%."
    assert model.test_accuracy == done.history.test_accuracy[-1] > 0.4  # chance: 0.1
    # what the worker checked is the engine's own evaluation of the kept weights
    test = load_images("fashion-mnist", "test", source="bundled")
    with torch.no_grad():
        predictions = model.build_model()(model.prepare(test.images)).argmax(1)
    assert model.test_accuracy == pytest.approx((predictions == test.labels).float().mean().item())


def test_a_run_stops_itself_at_the_servers_time_limit_keeping_its_model(tmp_path):
    store = LocalRunStore(tmp_path)
    runs = Runs(store, HeldExecutor(), Limits(max_seconds=0.3))
    run = runs.start(new_student_id(), request(epochs=50, batch_size=16))
    assert train_run(run.id, store) == "stopped"
    done = store.get(run.id)
    assert done.message.startswith("Stopped at the server's limit of 300 ms of training, after 0.")
    assert 0 < store.checkpoint(run.id).metrics["epochs"] < 50


def test_stop_takes_effect_within_a_second_inside_a_step_of_seconds(backend):
    runs = backend(limits=Limits(max_multiply_adds=1e15))
    me = new_student_id()
    run = runs.start(me, request(stack=SLOW, batch_size=512, eval_at_start=False))
    wait_for(lambda: runs.get(run.id).progress is not None, 60, "training started")  # published before step 1
    pid = runs.executor.worker_pid(run.id)
    time.sleep(0.4)  # inside the first step
    asked = time.perf_counter()
    runs.stop(run.id, me)
    wait_for(lambda: runs.get(run.id).done, 10, "stopped")
    took = time.perf_counter() - asked
    done = runs.get(run.id)
    assert took < 1.0, took
    assert done.state == "stopped" and done.progress.step == 0  # the step was cut, not finished
    wait_for(lambda: not alive(pid), 5, "the worker process gone")


def test_a_worker_that_does_not_end_after_a_stop_is_ended_keeping_the_last_epochs_model(backend):
    """Stopped in its second step, the run would evaluate the model at the stop on 1,000 test images with
    the slow stack (seconds): the server ends the worker within a second of the request instead, and the model
    of the last epoch stays (here one saved as if epoch 1 had ended)."""
    runs = backend(limits=Limits(max_multiply_adds=1e16))
    me = new_student_id()
    run = runs.start(me, request(stack=SLOW, batch_size=512, eval_at_start=False, epochs=2))
    runs.store.save_checkpoint(run.id, checkpoint(1.0))
    wait_for(lambda: steps_done(runs, run.id) >= 1, 60, "a step done")
    pid = runs.executor.worker_pid(run.id)
    asked = time.perf_counter()
    runs.stop(run.id, me)
    wait_for(lambda: runs.get(run.id).done, 10, "stopped")
    assert time.perf_counter() - asked < 1.0
    done = runs.get(run.id)
    assert done.state == "stopped" and done.message == "Stopped. The model after 1 epoch is kept."
    assert runs.checkpoint(run.id).metrics["epochs"] == 1.0
    assert not alive(pid)


def test_a_crashed_worker_process_leaves_its_run_failed_not_running(backend):
    runs = backend()
    me = new_student_id()
    run = runs.start(me, request(epochs=50, batch_size=16))
    wait_for(lambda: runs.get(run.id).progress is not None, 60, "training")
    os.kill(runs.executor.worker_pid(run.id), signal.SIGKILL)
    wait_for(lambda: runs.get(run.id).done, 5, "the run ended")
    failed = runs.get(run.id)
    assert failed.state == "error"
    assert failed.message == ("Training failed: its process was killed (perhaps the server ran out of memory) "
                              "before the run was done.")
    nxt = runs.start(me, request())  # the CPU is free for the next run
    assert wait_for(lambda: runs.get(nxt.id).done, 60, "next run") and runs.get(nxt.id).state == "finished"


def test_closing_the_server_interrupts_its_runs_and_a_restart_shows_them(backend, tmp_path):
    runs = backend()
    me = new_student_id()
    training = runs.start(me, request(epochs=50, batch_size=16))
    waiting = runs.start(new_student_id(), request())
    wait_for(lambda: runs.get(training.id).progress is not None, 60, "training")
    pid = runs.executor.worker_pid(training.id)
    runs.close()
    assert not alive(pid)
    restarted = LocalRunStore(tmp_path / "runs").load()
    assert restarted.get(training.id).state == restarted.get(waiting.id).state == "interrupted"
    assert restarted.get(waiting.id).message.startswith("Interrupted: the server stopped before it started.")
    assert replace(restarted.get(training.id), message="").owner == me


def test_a_runs_state_in_a_few_words_says_its_place_in_line():
    assert [runs_module.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 101, 111, 112)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "101st", "111th", "112th"]
    waiting = record(state="queued", queue_position=3)
    assert runs_module.state_text(waiting) == "waiting, 3rd in line"
    assert runs_module.state_text(replace(waiting, queue_position=None)) == "waiting"
    progress = TrainProgress(epoch=1.4, epochs=3, step=110, steps=235, images_seen=7000, images_per_s=9000.0,
                             train_seconds=1.0, elapsed_s=1.2, eta_s=2.0, phase="training")
    assert runs_module.state_text(record(state="running", progress=progress)) == "training, epoch 1.40 of 3"
    assert runs_module.state_text(record(state="running")) == "starting"
    assert runs_module.state_text(record(state="error")) == "failed"
    assert runs_module.state_text(record(state="interrupted")) == "interrupted"
    assert record().test_accuracy is None
    history = History(test_epoch=[0.0, 1.0], test_loss=[2.3, 0.6], test_accuracy=[0.1, 0.8], test_seconds=[0.1, 0.2])
    assert record(history=history).test_accuracy == 0.8
