"""Background training jobs: snapshots read from another thread, pause / resume / stop, the
device queue (one job at a time per device, positions in arrival order, paused jobs give
their place up), and errors that end a job with a message instead of an exception."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from cnnviz.jobs import DeviceQueue, TrainingJob
from cnnviz.train import TrainConfig, TrainError

STACK = "conv3x4,relu,maxpool2,flatten,fc10"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(600) % 10
    images = torch.randint(0, 60, (600, 1, 12, 12), generator=g, dtype=torch.uint8)
    # class k: a bright column at position k, easy to learn
    for k in range(10):
        images[labels == k, 0, :, k + 1] = 250
    return (images[:500], labels[:500]), (images[500:], labels[500:])


def config(**changes) -> TrainConfig:
    base = dict(stack=STACK, device="cpu", epochs=2, batch_size=25, report_every_s=0.01)
    base.update(changes)
    return TrainConfig(**base)


def wait_for(condition, timeout=20.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


MADE: list[TrainingJob] = []


@pytest.fixture(autouse=True)
def stop_leftover_jobs():
    """A job a failed test leaves running must not train on into the next test."""
    yield
    while MADE:
        job = MADE.pop()
        job.stop()
        job.wait(20)


def make_job(data, queue, **changes) -> TrainingJob:
    tr, te = data
    job = TrainingJob(config(**changes), tr, te, classes=[str(k) for k in range(10)], dataset="bars", queue=queue)
    MADE.append(job)
    return job


def steps(job: TrainingJob) -> int:
    progress = job.snapshot().progress
    return progress.step if progress is not None else 0


def test_job_runs_in_the_background_and_finishes_with_a_checkpoint(data):
    queue = DeviceQueue()
    job = make_job(data, queue)
    assert job.snapshot().state == "queued" and not job.alive
    seen_states = set()
    job.start()
    while job.alive:
        seen_states.add(job.snapshot().state)
        time.sleep(0.005)
    assert job.wait(1)
    snap = job.snapshot()
    assert snap.state == "finished" and snap.done and not snap.active
    assert "running" in seen_states
    assert snap.checkpoint is not None and snap.checkpoint.dataset == "bars"
    assert snap.checkpoint.test_accuracy == snap.history.test_accuracy[-1] > 0.5  # chance: 0.1
    assert "Finished 2 epochs: test accuracy" in snap.message
    assert [r.epoch for r in snap.reports] == [0, 1, 2]  # 0: before training
    assert snap.progress.phase == "done" and snap.progress.fraction == 1.0
    assert queue.load("cpu") == (0, 0)  # the slot was given back


def test_snapshots_are_consistent_copies(data):
    queue = DeviceQueue()
    job = make_job(data, queue, epochs=3).start()
    wait_for(lambda: steps(job) > 3, what="progress")
    snap = job.snapshot()
    length = len(snap.history.train_loss)
    job.wait(30)
    assert len(snap.history.train_loss) == length  # a snapshot never changes afterwards
    assert len(job.snapshot().history.train_loss) > length


def test_pause_resume_and_stop(data):
    queue = DeviceQueue()
    job = make_job(data, queue, epochs=20).start()
    wait_for(lambda: job.snapshot().state == "running" and steps(job) > 2, what="running")
    job.pause()
    wait_for(lambda: job.snapshot().state == "paused", what="paused")
    step = job.snapshot().progress.step
    assert queue.load("cpu") == (0, 0)  # a paused job frees the device
    time.sleep(0.2)
    assert job.snapshot().progress.step == step and job.alive
    job.resume()
    wait_for(lambda: steps(job) > step + 2, what="steps after resume")
    job.stop()
    assert job.wait(20)
    snap = job.snapshot()
    assert snap.state == "stopped" and "Stopped after" in snap.message
    assert snap.checkpoint is not None and snap.checkpoint.metrics["epochs"] < 20


def test_second_job_waits_for_the_device_and_sees_its_position(data):
    queue = DeviceQueue()
    first = make_job(data, queue, epochs=50).start()
    wait_for(lambda: first.snapshot().state == "running", what="first running")
    second = make_job(data, queue).start()
    third = make_job(data, queue).start()
    wait_for(lambda: third.snapshot().queue_position == 2, what="third queued")
    assert second.snapshot().state == "queued" and second.snapshot().queue_position == 1
    assert queue.load("cpu") == (1, 2)
    # pausing the first hands the device to the second; the third moves up
    first.pause()
    wait_for(lambda: second.snapshot().state in ("running", "finished"), what="second running")
    assert third.snapshot().queue_position == 1
    third.stop()  # leaving the queue
    wait_for(lambda: third.snapshot().state == "stopped", what="third stopped")
    assert "before it started" in third.snapshot().message
    assert second.wait(30) and second.snapshot().state == "finished"
    first.resume()
    wait_for(lambda: first.snapshot().state == "running", what="first running again")
    first.stop()
    assert first.wait(20) and first.snapshot().state == "stopped"
    assert queue.load("cpu") == (0, 0)


def test_queue_is_first_come_first_served_across_threads():
    queue = DeviceQueue({"cpu": 1})
    order, tickets = [], [queue.ticket() for _ in range(4)]
    assert queue.acquire("cpu", tickets[0])

    def worker(ticket):
        assert queue.acquire("cpu", ticket)
        order.append(ticket)
        queue.release("cpu", ticket)

    threads = []
    for ticket in tickets[1:]:
        threads.append(threading.Thread(target=worker, args=(ticket,)))
        threads[-1].start()
        wait_for(lambda t=ticket: queue.position("cpu", t) is not None, what="queued")
    assert [queue.position("cpu", t) for t in tickets] == [0, 1, 2, 3]
    queue.release("cpu", tickets[0])
    for thread in threads:
        thread.join(10)
    assert order == tickets[1:]
    assert queue.position("cpu", tickets[0]) is None


def test_out_of_memory_ends_the_job_with_a_message_and_frees_the_device(data):
    queue = DeviceQueue()
    job = make_job(data, queue)
    train_step, steps = job.trainer.train_step, []

    def fails_on_the_third_step(x, y):
        # only this job's trainer fails: the other threads and tests keep torch's own functions
        steps.append(len(y))
        if len(steps) == 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        train_step(x, y)

    job.trainer.train_step = fails_on_the_third_step
    job.start()
    assert job.wait(20)
    snap = job.snapshot()
    assert snap.state == "error" and "ran out of memory" in snap.message and "smaller batch size" in snap.message
    assert steps == [25, 25, 25]  # it failed in the third step
    assert queue.load("cpu") == (0, 0)
    # the next job on the same queue runs normally
    after = make_job(data, queue, epochs=1).start()
    assert after.wait(20) and after.snapshot().state == "finished"


def test_unexpected_errors_end_the_job_with_a_message(data, monkeypatch):
    job = make_job(data, DeviceQueue())

    def broken(*args, **kwargs):
        raise ValueError("something odd")

    monkeypatch.setattr(job.trainer, "evaluate", broken)
    job.start()
    assert job.wait(20)
    assert job.snapshot().state == "error" and job.snapshot().message == "Training failed: ValueError: something odd"


def test_bad_settings_are_refused_when_the_job_is_made(data):
    with pytest.raises(TrainError, match="ends in 5 outputs"):
        make_job(data, DeviceQueue(), stack="conv3x4,relu,flatten,fc5")
