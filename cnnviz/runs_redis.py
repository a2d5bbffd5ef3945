"""Training runs past one machine: records in Redis, trained by RQ workers (CNNVIZ_REDIS_URL).

The same `RunStore` and `Executor` as cnnviz.runs' local ones, for several app servers behind a proxy
and GPU machines anywhere that reach one Redis:

- `RedisRunStore`: every app server and worker reads and writes the same records. Keys (<id> is the
  run's id):

      cnnviz:run:<id>              hash: the record's fields, each as JSON (cnnviz.runs.record_to_json),
                                   and keep_s, worker, checkpoint_version
      cnnviz:run:<id>:reports      list: the epoch reports (torch.save of each, read back weights_only)
      cnnviz:run:<id>:checkpoint   the run's model, cnnviz.checkpoint's bytes (small models: a few MB)
      cnnviz:run:<id>:alive        the worker's heartbeat: set every HEARTBEAT_EVERY_S while it trains,
                                   expiring after HEARTBEAT_TTL_S
      cnnviz:runs                  sorted set: id → created_at (every run, oldest first)
      cnnviz:runs:owner:<student>  set: the student's runs

  The owner's stop and pause are fields of the hash (stop_requested, pause_requested) that the worker
  reads every 0.05 s (cnnviz.worker). Writes are small Lua scripts that never recreate a run that
  has expired, and that start the keep time (EXPIRE keep_s on all its keys) once the run has ended.
  A running or paused run whose heartbeat has expired is marked failed when anyone reads it, on any
  app server: a worker that dies mid-run (its machine gone, SIGKILL, out of memory) never leaves a
  run "running" forever.

- `RQExecutor`: one RQ queue per device (`cnnviz-cpu`, `cnnviz-cuda`, `cnnviz-mps`); `submit`
  enqueues `train_job(run_id)`, which wraps cnnviz.worker.train_run with the run's start, heartbeat
  and pause state. A queued run's place is its job's place in its queue (read with the record). A
  stop that the run has not obeyed within STOP_GRACE_S_RQ (a step stuck in one kernel) has its work
  horse killed through RQ's stop-job command; the model of its last epoch stays.

- Workers: `rq worker --url $CNNVIZ_REDIS_URL --worker-class cnnviz.runs_redis.RunWorker cnnviz-cuda`
  (one per GPU, CUDA_VISIBLE_DEVICES=<n>; several on one GPU train that many runs at once). See
  `RunWorker` for why it forks a work horse per run rather than training in the worker itself.
"""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, is_dataclass, replace

import redis
import torch
from rq import Queue, Worker, get_current_job
from rq.callbacks import Callback
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from .checkpoint import Checkpoint, save_checkpoint
from .runs import (
    ACTIVE,
    LoadedModels,
    PAUSE_LIMIT_S,
    Executor,
    Limits,
    Requests,
    RunRecord,
    RunStore,
    _kept_text,
    _report_from_dict,
    _report_to_dict,
    record_from_json,
    record_to_json,
)
from .train import EpochReport

LOG = logging.getLogger(__name__)

PREFIX = "cnnviz:run:"
INDEX = "cnnviz:runs"
OWNER_INDEX = "cnnviz:runs:owner:"  # + student id
QUEUE_PREFIX = "cnnviz-"  # + device type: cnnviz-cpu, cnnviz-cuda, cnnviz-mps
JOB_PREFIX = "cnnviz-run-"  # + run id: the RQ job's id
DEVICES_BEST_FIRST = ("cuda", "mps", "cpu")

HEARTBEAT_EVERY_S = 1.0
# Long against any pause in a worker's Python (a data set read, a slow CUDA call), short against a
# hall waiting on a run whose worker has gone.
HEARTBEAT_TTL_S = 10
QUEUE_SLACK_S = 300  # a job's RQ timeout beyond the run's own limits (data loading, the final test)
# A stop not obeyed this long after the request has the work horse killed; RQ's stop-job command, the
# kill and the record's update take some 0.05 s more: the run has stopped within a second.
STOP_GRACE_S_RQ = 0.6
LOST_JOB_AFTER_S = 60  # a queued run with no job this long after it was made (never enqueued, or evicted)

PAUSED_MESSAGE = "It keeps its worker until you resume."
LOST_MESSAGE = ("Training failed: its worker ({worker}) stopped answering before the run was done "
                "(the worker process or its machine went away).")
LOST_BEFORE_START = "Training failed: the job queue lost this run before a worker started it."


# ---------------------------------------------------------------------------- Lua

# Every write script gets KEYS = (record, reports, checkpoint, alive). `settle` counts the change (the
# record's version: readers parse a record again only when it changed) and starts the keep time once the
# run has ended (and ends its heartbeat); a run still going keeps its keys for as long as it goes.
_SETTLE = """
local function settle()
  redis.call('HINCRBY', KEYS[1], 'version', 1)
  local state = redis.call('HGET', KEYS[1], 'state')
  if state == '"queued"' or state == '"running"' or state == '"paused"' then return end
  local keep = math.max(1, math.floor(tonumber(redis.call('HGET', KEYS[1], 'keep_s') or '86400')))
  for i = 1, 3 do redis.call('EXPIRE', KEYS[i], keep) end
  redis.call('DEL', KEYS[4])
end
"""

# ARGV: field, value, field, value, ... (JSON values)
_UPDATE = _SETTLE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
settle()
return 1
"""

# ARGV: the report's bytes
_ADD_REPORT = _SETTLE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[1])
settle()
return 1
"""

# ARGV: the checkpoint's bytes, its epochs (JSON)
_SAVE_CHECKPOINT = _SETTLE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'checkpoint_epochs', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'checkpoint_version', 1)
settle()
return 1
"""

# The end of a run that its worker could not record. ARGV[1]: 'lost' (only a running or paused run
# whose heartbeat has expired) or 'active' (any run still going); then field, value pairs.
_END_IF = _SETTLE + """
local state = redis.call('HGET', KEYS[1], 'state')
if ARGV[1] == 'lost' then
  if state ~= '"running"' and state ~= '"paused"' then return 0 end
  if redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
elseif state ~= '"queued"' and state ~= '"running"' and state ~= '"paused"' then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
settle()
return 1
"""

# A worker takes a queued run. ARGV: worker (JSON), started_at (JSON), device label (JSON), heartbeat TTL,
# the stopped-before-start message (JSON). Returns the run's state afterwards ('' if there is no run).
_BEGIN = _SETTLE + """
if redis.call('EXISTS', KEYS[1]) == 0 then return '' end
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= '"queued"' then return state end
if redis.call('HGET', KEYS[1], 'stop_requested') == 'true' then
  redis.call('HSET', KEYS[1], 'state', '"stopped"', 'message', ARGV[5], 'finished_at', ARGV[2])
  settle()
  return '"stopped"'
end
redis.call('HSET', KEYS[1], 'state', '"running"', 'message', '""', 'worker', ARGV[1], 'started_at', ARGV[2],
           'device_label', ARGV[3])
redis.call('SET', KEYS[4], ARGV[1], 'EX', tonumber(ARGV[4]))
redis.call('HINCRBY', KEYS[1], 'version', 1)
return '"running"'
"""


def _json(value) -> str:
    """A record field's value as stored: JSON of what record_to_json writes for it."""
    if is_dataclass(value):
        value = asdict(value)
    elif isinstance(value, tuple):
        value = list(value)
    return json.dumps(value)


def _keys(run_id: str) -> list[str]:
    base = PREFIX + run_id
    return [base, base + ":reports", base + ":checkpoint", base + ":alive"]


def _pairs(changes: dict) -> list[str]:
    return [text for name, value in changes.items() for text in (name, _json(value))]


def queue_name(device: str) -> str:
    return QUEUE_PREFIX + device


def job_id(run_id: str) -> str:
    return JOB_PREFIX + run_id


def _job_lost(status: bytes | None, record: RunRecord) -> bool:
    """Whether a queued run that is in no queue has lost its job (RQ's status of it, if any)."""
    if status is None:
        return time.time() - record.created_at > LOST_JOB_AFTER_S
    return status.decode() in ("failed", "stopped", "canceled")


def _report_bytes(report: EpochReport) -> bytes:
    buffer = io.BytesIO()
    torch.save(_report_to_dict(report), buffer)
    return buffer.getvalue()


def _report(data: bytes) -> EpochReport:
    return _report_from_dict(torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


# ---------------------------------------------------------------------------- the store


class RedisRunStore(RunStore):
    """Run records in Redis, shared by every app server and worker (thread-safe: redis-py's client is).

    `connection` is a redis.Redis that returns bytes (as RQ's own connection does)."""

    def __init__(self, connection: redis.Redis, keep_hours: float = Limits.keep_hours):
        self.redis = connection
        self.keep_s = keep_hours * 3600
        self._update = connection.register_script(_UPDATE)
        self._add_report = connection.register_script(_ADD_REPORT)
        self._save_checkpoint = connection.register_script(_SAVE_CHECKPOINT)
        self._end_if = connection.register_script(_END_IF)
        self._begin = connection.register_script(_BEGIN)
        self._lock = threading.Lock()
        # Parsed once per process and change: run id → (version, record without its queue place).
        self._records: dict[str, tuple[int, RunRecord]] = {}
        self._reports: dict[str, tuple[EpochReport, ...]] = {}  # decoded once per process (append-only)
        self._models = LoadedModels()  # (run id, checkpoint version) → model

    @classmethod
    def from_url(cls, url: str, keep_hours: float = Limits.keep_hours) -> RedisRunStore:
        return cls(redis.Redis.from_url(url), keep_hours)

    # ------------------------------------------------------------------ records

    def create(self, record: RunRecord) -> None:
        values = {name: json.dumps(value) for name, value in record_to_json(record).items()}
        values.update(keep_s=json.dumps(self.keep_s), version="0")
        key = _keys(record.id)[0]
        if not self.redis.hsetnx(key, "id", values["id"]):
            raise ValueError(f"run {record.id} exists")
        pipe = self.redis.pipeline()
        pipe.hset(key, mapping=values)
        pipe.zadd(INDEX, {record.id: record.created_at})
        self._index_owner(pipe, record.id, record.owner)
        pipe.execute()

    def _index_owner(self, pipe, run_id: str, owner: str) -> None:
        pipe.sadd(OWNER_INDEX + owner, run_id)
        pipe.expire(OWNER_INDEX + owner, int(self.keep_s) + 86400)  # outlives the runs it lists

    def get(self, run_id: str) -> RunRecord | None:
        found = self._read([run_id])
        return found[0] if found else None

    def all(self) -> list[RunRecord]:
        return self._read([i.decode() for i in self.redis.zrange(INDEX, 0, -1)], index=INDEX)

    def by_owner(self, owner: str) -> list[RunRecord]:
        ids = [i.decode() for i in self.redis.smembers(OWNER_INDEX + owner)]
        return sorted(self._read(ids, index=OWNER_INDEX + owner), key=lambda r: r.created_at, reverse=True)

    def update(self, run_id: str, **changes) -> RunRecord | None:
        changes.pop("queue_position", None)  # read from the queue, never stored
        old_owner = self.redis.hget(_keys(run_id)[0], "owner") if "owner" in changes else None
        if changes and not self._update(keys=_keys(run_id), args=_pairs(changes)):
            return None
        if old_owner is not None:
            pipe = self.redis.pipeline()
            pipe.srem(OWNER_INDEX + json.loads(old_owner), run_id)
            self._index_owner(pipe, run_id, changes["owner"])
            pipe.execute()
        return self.get(run_id)

    def transfer(self, old_owner: str, new_owner: str) -> int:
        moved = 0
        for run_id in self.redis.smembers(OWNER_INDEX + old_owner):
            moved += self.update(run_id.decode(), owner=new_owner) is not None
        return moved

    def add_report(self, run_id: str, report: EpochReport) -> None:
        self._add_report(keys=_keys(run_id), args=[_report_bytes(report)])

    def requests(self, run_id: str) -> Requests:
        stop, pause, state = self.redis.hmget(_keys(run_id)[0], "stop_requested", "pause_requested", "state")
        if state is None or json.loads(state) not in ACTIVE:
            return Requests(stop=True)  # gone, or ended under it (e.g. marked failed): stop training
        return Requests(stop=stop == b"true", pause=pause == b"true")

    def _read(self, run_ids: list[str], index: str | None = None) -> list[RunRecord]:
        """The records of these runs, in this order, with their reports and queue places; runs whose
        worker has gone are marked failed first (any reader does it: no app server is in charge). A
        record is parsed again only when its version changed; ids of runs Redis has deleted leave
        `index`."""
        pipe = self.redis.pipeline(transaction=False)
        for run_id in run_ids:
            record_key, _, _, alive_key = _keys(run_id)
            pipe.hget(record_key, "version")
            pipe.exists(alive_key)
        answers = pipe.execute()
        versions = {run_id: answers[2 * i] for i, run_id in enumerate(run_ids)}
        alive = {run_id: answers[2 * i + 1] for i, run_id in enumerate(run_ids)}
        gone = [run_id for run_id in run_ids if versions[run_id] is None]
        self._parse_changed({run_id: int(v) for run_id, v in versions.items() if v is not None})
        records = []
        for run_id in run_ids:
            cached = self._records.get(run_id) if versions[run_id] is not None else None
            if cached is None:
                continue
            record = cached[1]
            if record.state in ("running", "paused") and not alive[run_id]:
                record = self._lost(record) or record
            records.append(record)
        if index is not None and gone:
            if index == INDEX:
                self.redis.zrem(index, *gone)
            else:
                self.redis.srem(index, *gone)
            with self._lock:
                for run_id in gone:
                    self._forget(run_id)
        return self._with_queue_places(records)

    def _parse_changed(self, versions: dict[str, int]) -> None:
        """Read and parse the records whose version is not the one this process parsed last."""
        with self._lock:
            changed = [run_id for run_id, v in versions.items() if self._records.get(run_id, (None,))[0] != v]
        if not changed:
            return
        pipe = self.redis.pipeline(transaction=False)
        for run_id in changed:
            pipe.hgetall(_keys(run_id)[0])
            pipe.llen(_keys(run_id)[1])
        answers = pipe.execute()
        for i, run_id in enumerate(changed):
            raw, report_count = answers[2 * i], answers[2 * i + 1]
            record = self._record(run_id, raw, report_count) if raw else None
            with self._lock:
                if record is None:
                    self._records.pop(run_id, None)
                else:
                    self._records[run_id] = (int(raw[b"version"]), record)

    def _record(self, run_id: str, raw: dict[bytes, bytes], report_count: int) -> RunRecord | None:
        data = {name.decode(): json.loads(value) for name, value in raw.items()}
        try:
            return record_from_json(data, self._reports_of(run_id, report_count))
        except (KeyError, TypeError, ValueError) as error:
            LOG.warning("run %s in Redis cannot be read (%s); left out", run_id, error)
            return None

    def _reports_of(self, run_id: str, count: int) -> tuple[EpochReport, ...]:
        with self._lock:
            known = self._reports.get(run_id, ())
        if len(known) == count:
            return known
        start = len(known) if len(known) < count else 0
        new = tuple(_report(data) for data in self.redis.lrange(_keys(run_id)[1], start, count - 1))
        reports = (known if start else ()) + new
        with self._lock:
            self._reports[run_id] = reports
        return reports

    def _lost(self, record: RunRecord) -> RunRecord | None:
        worker = json.loads(self.redis.hget(_keys(record.id)[0], "worker") or b'"unknown"')
        message = LOST_MESSAGE.format(worker=worker) + _kept_text(record.checkpoint_epochs)
        ended = self._end_if(keys=_keys(record.id), args=["lost", *_pairs(
            {"state": "error", "message": message, "finished_at": time.time()})])
        if ended:
            LOG.warning("run %s: its worker %s has gone; marked failed", record.id, worker)
        return self.get(record.id) if ended else None

    def _with_queue_places(self, records: list[RunRecord]) -> list[RunRecord]:
        """A queued run's place in its device's RQ queue (1 = next). A queued run whose job is in no
        queue and failed in RQ (its worker died before the run began), or has had no job for
        LOST_JOB_AFTER_S, is marked failed."""
        queued = [r for r in records if r.state == "queued"]
        if not queued:
            return records
        pipe = self.redis.pipeline(transaction=False)
        for record in queued:
            pipe.lpos(Queue.redis_queue_namespace_prefix + queue_name(record.device), job_id(record.id))
            pipe.hget(Job.redis_job_namespace_prefix + job_id(record.id), "status")
        answers = pipe.execute()
        placed = {}
        for index, record in enumerate(queued):
            position, status = answers[2 * index], answers[2 * index + 1]
            if position is not None:
                placed[record.id] = replace(record, queue_position=position + 1)
            elif _job_lost(status, record) and self.end_if_active(record.id, "error", LOST_BEFORE_START):
                placed[record.id] = self.get(record.id)
        return [placed.get(r.id, r) for r in records]

    def _forget(self, run_id: str) -> None:
        self._records.pop(run_id, None)
        self._reports.pop(run_id, None)
        self._models.forget(run_id)

    # ------------------------------------------------------------------ models

    def save_checkpoint(self, run_id: str, checkpoint: Checkpoint) -> None:
        self._save_checkpoint(keys=_keys(run_id), args=[
            save_checkpoint(checkpoint), json.dumps(float(checkpoint.metrics.get("epochs", 0.0)))])

    def checkpoint(self, run_id: str) -> Checkpoint | None:
        record_key, _, checkpoint_key, _ = _keys(run_id)
        version = self.redis.hget(record_key, "checkpoint_version")
        if version is None:
            return None
        return self._models.get(run_id, int(version), lambda: self.redis.get(checkpoint_key))

    # ------------------------------------------------------------------ lifetime

    def expire(self, now: float | None = None) -> list[str]:
        """Redis deletes a run's keys keep_s after it ended; this forgets the ids it deleted."""
        ids = [i.decode() for i in self.redis.zrange(INDEX, 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.exists(_keys(run_id)[0])
        gone = [run_id for run_id, there in zip(ids, pipe.execute()) if not there]
        if gone:
            self.redis.zrem(INDEX, *gone)
            with self._lock:
                for run_id in gone:
                    self._forget(run_id)
        return gone

    # ------------------------------------------------------------------ what workers do

    def begin(self, run_id: str, worker: str, device_label: str) -> str:
        """A worker takes a queued run: "running" (its heartbeat set), "stopped" (stopped while it
        waited), or the state of a run that is not queued ("" for none): then it must not train it."""
        now = time.time()
        state = self._begin(keys=_keys(run_id), args=[
            json.dumps(worker), json.dumps(now), json.dumps(device_label), HEARTBEAT_TTL_S,
            json.dumps("Stopped before it started."), json.dumps(now)])
        text = state.decode() if isinstance(state, bytes) else state
        return json.loads(text) if text else ""

    def beat(self, run_id: str, worker: str) -> None:
        self.redis.set(_keys(run_id)[3], worker, ex=HEARTBEAT_TTL_S)

    def end_if_active(self, run_id: str, state: str, message: str) -> bool:
        """Record the end of a run that its worker could not record (killed), if it is still going."""
        return bool(self._end_if(keys=_keys(run_id), args=["active", *_pairs(
            {"state": state, "message": message, "finished_at": time.time()})]))


# ---------------------------------------------------------------------------- the executor


class RQExecutor(Executor):
    """Runs queued on RQ, one queue per device; RQ workers anywhere train them (RunWorker)."""

    def __init__(self, store: RedisRunStore, limits: Limits | None = None, *, stop_grace_s: float = STOP_GRACE_S_RQ):
        self.store, self.redis = store, store.redis
        self.limits = limits or Limits()
        self.stop_grace_s = stop_grace_s
        self._timers: set[threading.Timer] = set()  # stops to enforce

    @property
    def job_timeout_s(self) -> int:
        """RQ's limit on one job: the run's training time and a pause (both ended by the worker itself
        first) and the time to load data and test the model; RQ kills the work horse past it."""
        return int(self.limits.max_seconds * 2 + PAUSE_LIMIT_S + QUEUE_SLACK_S)

    def served_devices(self) -> set[str]:
        """The devices whose queues some live worker listens to."""
        served = set()
        for worker in Worker.all(connection=self.redis):
            for name in worker.queue_names():
                if name.startswith(QUEUE_PREFIX):
                    served.add(name[len(QUEUE_PREFIX):])
        return served

    def _device(self, record: RunRecord) -> str:
        """An "auto" run goes to the best device a worker offers (the app server's own devices say
        nothing about the workers'); a run for a named device waits for a worker of that device."""
        if record.config.device != "auto":
            return record.device
        served = self.served_devices()
        return next((d for d in DEVICES_BEST_FIRST if d in served), record.device)

    def submit(self, run_id: str) -> None:
        record = self.store.get(run_id)
        if record is None or record.state != "queued":
            return
        device = self._device(record)
        if device != record.device:
            self.store.update(run_id, device=device, device_label=f"{device.upper()} (a worker's)")
        keep = max(1, int(self.store.keep_s))
        Queue(queue_name(device), connection=self.redis).enqueue_call(
            "cnnviz.runs_redis.train_job", args=(run_id,), job_id=job_id(run_id), timeout=self.job_timeout_s,
            result_ttl=keep, failure_ttl=keep, description=f"cnnviz run {run_id}",
            on_stopped=Callback("cnnviz.runs_redis.job_stopped"))

    def wake(self, run_id: str) -> None:
        """A stop of a queued run takes it out of its queue now; a running run stops itself (its worker
        reads the request within 0.05 s), and one still going stop_grace_s later has its horse killed."""
        record = self.store.get(run_id)
        if record is None or not record.stop_requested or not record.active:
            return
        if record.state == "queued":
            if Queue(queue_name(record.device), connection=self.redis).remove(job_id(run_id)):
                self.store.end_if_active(run_id, "stopped", "Stopped before it started.")
            return  # else a worker has just taken it: it sees the stop when it begins
        timer = threading.Timer(self.stop_grace_s, self._enforce_stop, (run_id,))
        timer.daemon = True
        self._timers = {t for t in self._timers if t.is_alive()} | {timer}
        timer.start()

    def _enforce_stop(self, run_id: str) -> None:
        # A timer thread: nothing here may raise, Redis going away included (the worker's heartbeat
        # then ends the run as failed).
        try:
            record = self.store.get(run_id)
            if record is None or not record.active:
                return
            send_stop_job_command(self.redis, job_id(run_id))  # job_stopped records the run as stopped
        except (InvalidJobOperation, NoSuchJobError, redis.exceptions.ConnectionError):
            pass

    def close(self) -> None:
        """The app server goes down; the runs go on in their workers."""
        for timer in list(self._timers):
            timer.cancel()
        self._timers.clear()


# ---------------------------------------------------------------------------- the worker side


class _JobStore(RedisRunStore):
    """The store as train_job's run sees it: the trainer's progress also moves the run between running
    and paused, as the local executor does for its worker processes."""

    def update(self, run_id: str, **changes) -> RunRecord | None:
        progress = changes.get("progress")
        if progress is not None and "state" not in changes:
            state = self.redis.hget(_keys(run_id)[0], "state")
            state = json.loads(state) if state is not None else None
            if progress.phase == "paused" and state == "running":
                changes.update(state="paused", message=PAUSED_MESSAGE)
            elif progress.phase in ("training", "evaluating") and state == "paused":
                changes.update(state="running", message="")
        return super().update(run_id, **changes)

    def requests(self, run_id: str) -> Requests:
        """Read every 0.05 s by the worker: a withdrawn pause shows the run running again at once."""
        requests = super().requests(run_id)
        if not requests.pause and not requests.stop:
            state = self.redis.hget(_keys(run_id)[0], "state")
            if state == b'"paused"':
                super().update(run_id, state="running", message="")
        return requests


class _Heartbeat(threading.Thread):
    """Keeps the run's alive key while its job trains; asks for a stop when a pause or the run lasts
    longer than the server allows (the local executor's rules)."""

    def __init__(self, store: RedisRunStore, run_id: str, worker: str, time_limit_s: float | None):
        super().__init__(name=f"cnnviz-heartbeat-{run_id}", daemon=True)
        self.store, self.run_id, self.worker, self.time_limit_s = store, run_id, worker, time_limit_s
        self.finished = threading.Event()

    def run(self) -> None:
        started, paused_since, paused_total = time.monotonic(), None, 0.0
        while not self.finished.wait(HEARTBEAT_EVERY_S):
            try:
                self.store.beat(self.run_id, self.worker)
                state = self.store.redis.hget(_keys(self.run_id)[0], "state")
            except redis.RedisError as error:  # Redis away for a moment: the next beat tries again
                LOG.warning("run %s: heartbeat not written (%s)", self.run_id, error)
                continue
            now = time.monotonic()
            if state == b'"paused"':
                paused_since = paused_since or now
            elif paused_since is not None:
                paused_total += now - paused_since
                paused_since = None
            paused_for = now - paused_since if paused_since is not None else 0.0
            ran_for = now - started - paused_total - paused_for
            limit = self.time_limit_s
            if paused_for > PAUSE_LIMIT_S or (limit is not None and ran_for > 2 * limit + 60):
                self.store.request(self.run_id, stop=True)  # it stops itself, keeping its model


def train_job(run_id: str) -> str:
    """The RQ job: take the run (unless it was stopped or ended meanwhile), keep its heartbeat, and
    train it with cnnviz.worker.train_run; returns the run's final state."""
    from .train import device_label
    from .worker import train_run  # torch and the trainer: only where runs train

    job = get_current_job()
    connection = job.connection if job is not None else redis.Redis.from_url(os.environ["CNNVIZ_REDIS_URL"])
    store = _JobStore(connection)
    record = store.get(run_id)
    if record is None:
        return "gone"
    worker = f"{socket.gethostname()}:{os.getpid()}"  # the process that trains: the work horse
    try:
        label = device_label(record.device)
    except Exception:  # noqa: BLE001 - no such device on this worker: train_run says so in the record
        label = record.device_label
    state = store.begin(run_id, worker, label)
    if state != "running":
        return state or "gone"
    heartbeat = _Heartbeat(store, run_id, worker, record.config.time_limit_s)
    heartbeat.start()
    try:
        return train_run(run_id, store)
    finally:
        heartbeat.finished.set()


def job_stopped(job: Job, connection: redis.Redis) -> None:
    """RQ's on_stopped callback (in the worker, after it killed the work horse on a stop request)."""
    run_id = job.args[0]
    store = RedisRunStore(connection)
    record = store.get(run_id)
    if record is not None:
        store.end_if_active(run_id, "stopped", "Stopped." + _kept_text(record.checkpoint_epochs))


def _horse_killed(job: Job, retpid: int, ret_val: int, rusage) -> None:
    """The work horse died without finishing (a crash, the out-of-memory killer, RQ's timeout): the run
    says so at once, without waiting for its heartbeat to expire."""
    if not job.func_name.endswith("train_job") or not job.args:
        return
    run_id = job.args[0]
    signal_number = os.WTERMSIG(ret_val) if ret_val and os.WIFSIGNALED(ret_val) else None
    if signal_number == 9:
        how = "was killed (perhaps its machine ran out of memory)"
    elif signal_number is not None:
        how = f"was ended by signal {signal_number}"
    else:
        how = f"ended with code {os.waitstatus_to_exitcode(ret_val) if ret_val else ret_val}"
    store = RedisRunStore(job.connection)
    record = store.get(run_id)
    if record is not None:
        store.end_if_active(run_id, "error", f"Training failed: its process {how} before the run was done."
                            + _kept_text(record.checkpoint_epochs))


class RunWorker(Worker):
    """The RQ worker for cnnviz runs: RQ's forking Worker, one run at a time.

    Why forking (rq.Worker) and not SimpleWorker: each run trains in a work horse forked for it, so
      - a run's memory, GPU memory and CUDA context included, goes with its horse when it ends, and
        the next student's run starts on a clean device;
      - a stop is obeyed within a second even when the run cannot obey it (a step stuck in one long
        kernel): the app server sends RQ's stop-job command and this worker kills the horse, which
        SimpleWorker cannot do (it would have to kill itself);
      - a horse that crashes or is killed by the out-of-memory killer leaves the worker alive, which
        records the run as failed at once (_horse_killed) and takes the next run.
    One worker is one run at a time: start one per GPU (CUDA_VISIBLE_DEVICES), or several per GPU to
    train that many small runs at once. The worker itself imports torch and the trainer before it
    forks (a run does not wait for the imports) but never touches CUDA: CUDA does not survive a fork,
    so only horses use it."""

    def __init__(self, queues: Iterable, *args, **kwargs):
        kwargs.setdefault("work_horse_killed_handler", _horse_killed)
        super().__init__(queues, *args, **kwargs)
        from . import worker  # noqa: F401 - imported once, before the forks
