"""Training runs in Redis trained by RQ workers (cnnviz.runs_redis): records, reports and models shared by
two stores as two app servers, queue places, the owner's requests, the keep time, a run whose worker
went away shown failed on read, and a real RQ worker (a subprocess) training runs to their end, pausing,
resuming and stopping them within a second, and failing a run whose work horse is killed."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace
from functools import partial

import pytest
import torch

from cnnviz.checkpoint import Checkpoint
from cnnviz.network import build_model
from cnnviz.runs import Limits, Runs, new_student_id
from cnnviz.runs_redis import HEARTBEAT_TTL_S, STOP_GRACE_S_RQ, RedisRunStore, RQExecutor, job_id, queue_name, train_job
from cnnviz.train import EpochReport, History, TrainProgress
from run_helpers import SLOW, TINY, request, run_record, wait_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")


record = partial(run_record, state="queued")  # a record as the Redis tests start most of theirs


def report(epoch: int) -> EpochReport:
    g = torch.Generator().manual_seed(epoch)
    return EpochReport(epoch=epoch, test_loss=1.5, test_accuracy=0.4,
                       confusion=torch.randint(0, 9, (10, 10), generator=g),
                       sample_images=torch.randint(0, 255, (10, 1, 28, 28), dtype=torch.uint8, generator=g),
                       sample_labels=torch.arange(10), sample_predictions=torch.arange(10).flip(0),
                       sample_probabilities=torch.rand(10, generator=g), filters=torch.randn(4, 1, 3, 3, generator=g))


def checkpoint(epochs: float) -> Checkpoint:
    torch.manual_seed(0)
    return Checkpoint.from_model(build_model(TINY, (1, 28, 28)), TINY, (1, 28, 28), [str(k) for k in range(10)],
                                 "fashion-mnist", {"epochs": epochs, "test_accuracy": 0.5})


def same_reports(a, b) -> bool:
    return len(a) == len(b) and all(
        x.epoch == y.epoch and x.test_accuracy == y.test_accuracy and torch.equal(x.confusion, y.confusion)
        and torch.equal(x.sample_images, y.sample_images) and torch.equal(x.filters, y.filters) for x, y in zip(a, b))


# ---------------------------------------------------------------------------- the store


def test_the_environment_chooses_redis_and_rq(tmp_path):
    from cnnviz.runs import make_backend, make_store
    environ = {"CNNVIZ_REDIS_URL": "redis://127.0.0.1:1/0", "CNNVIZ_RUNS_DIR": str(tmp_path),
               "CNNVIZ_RUN_KEEP_HOURS": "2", "CNNVIZ_MAX_RUN_SECONDS": "100"}
    runs = make_backend(environ)  # redis-py connects on first use: no server needed here
    assert isinstance(runs.store, RedisRunStore) and isinstance(runs.executor, RQExecutor)
    assert runs.store.keep_s == 7200 and runs.executor.job_timeout_s == 2 * 100 + 30 * 60 + 300
    assert isinstance(make_store(environ), RedisRunStore)


def test_records_reports_and_models_written_on_one_server_are_read_on_another(redis_server):
    server_a, worker = RedisRunStore.from_url(redis_server), RedisRunStore.from_url(redis_server)
    made = record(state="running", started_at=1.5)
    server_a.create(made)
    with pytest.raises(ValueError):
        server_a.create(made)
    worker.beat(made.id, "worker-1")
    progress = TrainProgress(epoch=0.5, epochs=2, step=12, steps=48, images_seen=3072, images_per_s=900.0,
                             train_seconds=3.4, elapsed_s=4.0, eta_s=10.0, phase="training")
    history = History(train_epoch=[0.25, 0.5], train_loss=[2.1, 1.7], train_accuracy=[0.3, 0.45])
    worker.update(made.id, progress=progress, history=history, memory_bytes=1234)
    worker.add_report(made.id, report(0))
    worker.add_report(made.id, report(1))
    worker.save_checkpoint(made.id, checkpoint(1.0))
    seen = server_a.get(made.id)
    assert replace(seen, reports=()) == replace(made, progress=progress, history=history, memory_bytes=1234,
                                                checkpoint_epochs=1.0)
    assert same_reports(seen.reports, (report(0), report(1)))
    model = server_a.checkpoint(made.id)
    assert model.metrics["epochs"] == 1.0
    assert all(torch.equal(model.state_dict[k], checkpoint(1.0).state_dict[k]) for k in model.state_dict)
    assert server_a.checkpoint(made.id) is model  # loaded once per process
    worker.save_checkpoint(made.id, checkpoint(2.0))
    assert server_a.checkpoint(made.id).metrics["epochs"] == 2.0  # a newer model is read again
    assert [r.id for r in server_a.all()] == [made.id]
    assert server_a.update("nosuchrun", state="error") is None and server_a.get("nosuchrun") is None
    assert not server_a.redis.exists("cnnviz:run:nosuchrun")  # a write never makes a run up


def test_a_students_runs_are_found_by_owner_and_handed_over_on_any_server(redis_server):
    server_a, server_b = RedisRunStore.from_url(redis_server), RedisRunStore.from_url(redis_server)
    session, browser, other = "a" * 22, "b" * 22, "c" * 22
    for number, owner in enumerate([session, other, session]):
        server_a.create(record(f"run{number}abcd", owner=owner, created_at=1000.0 + number))
    assert [r.id for r in server_b.by_owner(session)] == ["run2abcd", "run0abcd"]  # newest first
    assert server_a.transfer(session, browser) == 2
    assert [r.id for r in server_b.by_owner(browser)] == ["run2abcd", "run0abcd"]  # a change read again
    assert server_b.by_owner(session) == [] and [r.id for r in server_b.by_owner(other)] == ["run1abcd"]
    assert [r.owner for r in server_b.all()] == [browser, other, browser]


def test_a_record_is_read_and_parsed_again_only_when_it_changed(redis_server):
    """A training page reads a student's runs and the device's load on every rerun: with a day of a hall's
    runs kept, parsing every record each time cost ~1 s per read (300 runs on the 2-core machine)."""
    store, worker = RedisRunStore.from_url(redis_server), RedisRunStore.from_url(redis_server)
    for number in range(20):
        worker.create(record(f"run{number:02d}abc", state="finished"))
    worker.add_report("run07abc", report(1))

    def whole_reads() -> int:
        stats = store.redis.info("commandstats")
        return stats.get("cmdstat_hgetall", {}).get("calls", 0) + stats.get("cmdstat_lrange", {}).get("calls", 0)

    assert len(store.all()) == 20
    before = whole_reads()
    assert len(store.all()) == 20 and len(store.by_owner("s" * 22)) == 20
    assert whole_reads() == before  # nothing changed: nothing read whole
    worker.update("run03abc", message="changed")
    assert store.get("run03abc").message == "changed" and store.all()[3].message == "changed"
    # the changed record only, once by each store (update returns the record as it now is)
    assert whole_reads() == before + 2


def test_queued_runs_see_their_place_and_a_stop_takes_one_out_of_the_queue(redis_server):
    store = RedisRunStore.from_url(redis_server)
    runs = Runs(store, RQExecutor(store), Limits(max_active_per_student=5))
    me = new_student_id()
    first, second, third = (runs.start(me, request()) for _ in range(3))
    other_server = RedisRunStore.from_url(redis_server)
    assert [r.queue_position for r in other_server.all()] == [1, 2, 3]
    assert other_server.redis.lrange("rq:queue:" + queue_name("cpu"), 0, -1) == [
        job_id(r.id).encode() for r in (first, second, third)]
    runs.stop(second.id, me)
    stopped = other_server.get(second.id)
    assert stopped.state == "stopped" and stopped.message == "Stopped before it started." and stopped.finished_at
    assert [other_server.get(r.id).queue_position for r in (first, third)] == [1, 2]
    assert other_server.requests(second.id).stop and not other_server.requests(first.id).stop
    runs.pause(first.id, me)  # only a running run pauses
    assert not other_server.requests(first.id).pause


def test_the_keep_time_starts_when_a_run_ends_and_expired_runs_leave_the_index(redis_server):
    store = RedisRunStore.from_url(redis_server, keep_hours=2 / 3600)  # 2 s
    store.create(record("keepmeok", state="running"))
    store.save_checkpoint("keepmeok", checkpoint(1.0))
    store.add_report("keepmeok", report(1))
    assert store.redis.ttl("cnnviz:run:keepmeok") == -1  # a run going keeps its keys
    store.update("keepmeok", state="finished", finished_at=time.time())
    assert all(0 < store.redis.ttl(f"cnnviz:run:keepmeok{suffix}") <= 2 for suffix in ("", ":reports", ":checkpoint"))
    assert store.checkpoint("keepmeok") is not None
    time.sleep(2.2)
    assert store.get("keepmeok") is None and store.all() == [] and store.checkpoint("keepmeok") is None
    assert store.redis.zcard("cnnviz:runs") == 0


def test_a_run_whose_worker_stopped_beating_is_failed_on_any_servers_read(redis_server):
    server_a, server_b = RedisRunStore.from_url(redis_server), RedisRunStore.from_url(redis_server)
    for run_id in ("beatingx", "silentxx"):
        server_a.create(record(run_id))
        assert server_a.begin(run_id, f"host:{run_id}", "CPU (1 thread)") == "running"
    server_a.save_checkpoint("silentxx", checkpoint(1.0))
    assert server_a.redis.ttl("cnnviz:run:silentxx:alive") == HEARTBEAT_TTL_S
    server_a.redis.pexpire("cnnviz:run:silentxx:alive", 100)  # the worker beats no more
    server_a.beat("beatingx", "host:beatingx")
    time.sleep(0.2)
    failed = server_b.all()[1]
    assert failed.id == "silentxx" and failed.state == "error" and failed.finished_at
    assert failed.message == ("Training failed: its worker (host:silentxx) stopped answering before the run was done "
                              "(the worker process or its machine went away). The model after 1 epoch is kept.")
    assert server_a.get("beatingx").state == "running"
    assert server_a.requests("silentxx").stop  # were it still training somewhere, it stops
    assert server_a.begin("silentxx", "another", "CPU") == "error"  # a run is never trained twice
    assert 0 < server_a.redis.ttl("cnnviz:run:silentxx") <= Limits.keep_hours * 3600  # its keep time started


def test_the_job_trains_a_run_to_its_end_as_a_worker_would(redis_server, monkeypatch):
    monkeypatch.setenv("CNNVIZ_REDIS_URL", redis_server)
    store = RedisRunStore.from_url(redis_server)
    runs = Runs(store, RQExecutor(store))
    run = runs.start(new_student_id(), request(epochs=2))
    assert train_job(run.id) == "finished"
    done = RedisRunStore.from_url(redis_server).get(run.id)
    assert done.state == "finished" and done.checkpoint_epochs == 2.0 and done.started_at and done.finished_at
    assert [r.epoch for r in done.reports] == [0, 1, 2] and done.progress.phase == "done"
    assert done.message.startswith("Finished 2 epochs: test accuracy ")
    assert runs.checkpoint(run.id).test_accuracy == done.history.test_accuracy[-1] > 0.4  # chance: 0.1
    assert not store.redis.exists(f"cnnviz:run:{run.id}:alive")
    assert train_job(run.id) == "finished"  # a job run twice does not train twice


# ---------------------------------------------------------------------------- a real RQ worker


def test_an_rq_worker_trains_runs_to_their_end_and_obeys_pause_resume_and_stop_within_a_second(
        redis_server, rq_workers):
    store = RedisRunStore.from_url(redis_server)
    executor = RQExecutor(store)
    runs = Runs(store, executor, Limits(max_multiply_adds=1e15, max_active_per_student=3))
    me = new_student_id()
    tiny = runs.start(me, request(device="auto", epochs=1))  # queued before any worker is there
    rq_workers(redis_server, queue_name("cpu"))
    wait_for(lambda: executor.served_devices() == {"cpu"}, 30, "the worker registered")
    done = wait_for(lambda: runs.get(tiny.id).done and runs.get(tiny.id), 90, "the tiny run finished")
    assert done.state == "finished" and done.checkpoint_epochs == 1.0, done.message
    assert runs.checkpoint(tiny.id).test_accuracy > 0.4

    long = runs.start(me, request(epochs=50, batch_size=16))
    wait_for(lambda: (runs.get(long.id).progress or False) and runs.get(long.id).progress.step >= 2, 60,
             "the long run training")
    asked = time.perf_counter()
    runs.pause(long.id, me)
    wait_for(lambda: runs.get(long.id).state == "paused", 5, "paused", every=0.01)
    paused_after = time.perf_counter() - asked
    steps = runs.get(long.id).progress.step
    time.sleep(0.5)
    assert runs.get(long.id).progress.step == steps  # it trains no more
    asked = time.perf_counter()
    runs.resume(long.id, me)
    wait_for(lambda: runs.get(long.id).state == "running", 5, "running again", every=0.01)
    resumed_after = time.perf_counter() - asked
    wait_for(lambda: runs.get(long.id).progress.step > steps, 30, "steps after the resume")
    asked = time.perf_counter()
    runs.stop(long.id, me)
    wait_for(lambda: runs.get(long.id).done, 5, "stopped", every=0.01)
    stopped_after = time.perf_counter() - asked
    stopped = runs.get(long.id)
    # A fast machine may finish an epoch or two between the resume and the stop: what matters is that it
    # stopped long before its 50 epochs, with the model it had.
    assert stopped.state == "stopped" and stopped.message.startswith("Stopped after "), stopped.message
    assert stopped.checkpoint_epochs is not None and stopped.checkpoint_epochs < 50, stopped.checkpoint_epochs
    print(f"paused after {paused_after:.3f} s, running again after {resumed_after:.3f} s, "
          f"stopped after {stopped_after:.3f} s")
    assert paused_after < 1.0 and resumed_after < 1.0 and stopped_after < 1.0, (
        paused_after, resumed_after, stopped_after)

    # A stop inside a step of seconds, and then a test of the whole test set that would take seconds more:
    # within a second of the request the worker kills its horse (RQ's stop-job command).
    slow = runs.start(me, request(stack=SLOW, batch_size=64, epochs=5, eval_at_start=False))
    wait_for(lambda: (runs.get(slow.id).progress or False) and runs.get(slow.id).progress.step >= 1, 60,
             "the slow run training")
    asked = time.perf_counter()
    runs.stop(slow.id, me)
    wait_for(lambda: runs.get(slow.id).done, 5, "stopped", every=0.01)
    stopped_after = time.perf_counter() - asked
    stopped = runs.get(slow.id)
    assert stopped.state == "stopped" and stopped.message == "Stopped. No epoch had ended, so no model was kept."
    print(f"a stop inside a step of seconds: stopped after {stopped_after:.3f} s (the work horse killed)")
    assert STOP_GRACE_S_RQ <= stopped_after < 1.0, stopped_after


def test_a_killed_work_horse_fails_its_run_at_once_and_the_worker_takes_the_next(redis_server, rq_workers):
    store = RedisRunStore.from_url(redis_server)
    runs = Runs(store, RQExecutor(store), Limits(max_multiply_adds=1e15, max_active_per_student=3))
    me = new_student_id()
    slow = runs.start(me, request(stack=SLOW, batch_size=64, epochs=5, eval_at_start=False))
    tiny = runs.start(me, request(epochs=1))
    rq_workers(redis_server, queue_name("cpu"))
    wait_for(lambda: runs.get(slow.id).progress is not None, 90, "the slow run training")
    assert runs.get(tiny.id).queue_position == 1
    worker = json.loads(store.redis.hget(f"cnnviz:run:{slow.id}", "worker"))  # host:pid of the work horse
    os.kill(int(worker.rsplit(":", 1)[1]), signal.SIGKILL)
    failed = wait_for(lambda: runs.get(slow.id).done and runs.get(slow.id), 10, "the run failed")
    assert failed.state == "error" and failed.message.startswith(
        "Training failed: its process was killed (perhaps its machine ran out of memory) before the run was done."), \
        failed.message
    assert wait_for(lambda: runs.get(tiny.id).done and runs.get(tiny.id), 90, "the next run").state == "finished"

