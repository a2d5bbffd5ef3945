"""Training runs that a lecture hall shares: whose they are, where they stand, and where they train.

A run is one training of one student's stack. It belongs to the student (an id the browser keeps,
not the tab), has a short id of its own that a link carries (`run=<id>` on the training page: a
refresh, a second tab or a shared link reattaches to it), and lives on the server, not in a session:

- `RunRecord`: everything a page shows about a run (settings, state, queue position, progress,
  curves, epoch reports, message, times) as of one moment; never changed once made.
- `RunStore`: where records live. `LocalRunStore` keeps them in this process's memory and on disk
  under the runs directory (CNNVIZ_RUNS_DIR, default data/runs): `<id>/record.json`, `reports.pt`
  and `checkpoint.pt` (cnnviz.checkpoint's format). A restart loads them; a run that was queued,
  running or paused then says it was interrupted (its last epoch's model kept). Finished runs are
  deleted CNNVIZ_RUN_KEEP_HOURS after they ended.
- `Executor`: where runs train. `LocalExecutor` starts one worker process per running run
  (`python -m cnnviz.worker`: torch and cnnviz only), so runs never take each other's Python time or
  the server's, and a finished run's memory (GPU memory included) goes with its process. It gives
  each device `Slots`: the CPU one run at a time (`CountSlots`), a GPU as many as fit in its free
  memory (`MemorySlots`, from each run's measured need). Stop takes effect within a second: the
  worker cuts the step between two layers, and a worker that has not ended a second after the
  request is ended (its last epoch's model kept).
- `Limits`: what a shared server allows (environment variables, read here and enforced when a run
  is created, never only in a page): a run's size in multiply-adds, its training time, the runs a
  student has going at once.
- `Runs`: what pages use: start (limits checked), get, a student's runs, stop / pause / resume (its
  owner only), the model of a finished run (loaded once per process, shared by every session).

`make_backend()` chooses the store and executor in one place: the local ones, or (CNNVIZ_REDIS_URL)
cnnviz.runs_redis's Redis store and RQ executor behind the same `RunStore` and `Executor` interfaces;
`cnnviz.worker.train_run` is the training both kinds of worker run.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import math
import os
import pickle
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import ClassVar

import torch

from . import notation
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .data import DATASETS, TRAINING_DATA
from .network import StackError, analyse, head_problem, parse_stack, totals
from .train import (
    MEMORY_HEADROOM,
    EpochReport,
    History,
    TrainConfig,
    TrainError,
    TrainProgress,
    check_memory,
    device_label,
    estimate_memory,
    free_memory_bytes,
    pick_device,
)

LOG = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent

STATES = ("queued", "running", "paused", "finished", "stopped", "error", "interrupted")
ACTIVE = ("queued", "running", "paused")
RUN_ID = re.compile(r"^[A-Za-z0-9_-]{6,32}$")  # secrets.token_urlsafe(6): 8 characters
STUDENT_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")  # made by the browser (ui/components/student.js)

# A worker that has not ended this long after a stop request is ended; checked every tick (0.1 s) and the
# kill takes a few ms, so a stop takes effect within a second even when the run is stuck in one kernel.
STOP_GRACE_S = 0.7
PAUSE_LIMIT_S = 30 * 60  # a run paused this long is stopped (keeping its model): it holds a process
CUDA_CONTEXT_BYTES = 600 * 2**20  # what a worker process's CUDA context takes besides torch's allocations
PERSIST_EVERY_S = 2.0  # progress reaches record.json at most this often (state changes at once)
EXPIRE_EVERY_S = 60.0
CHECKPOINTS_CACHED = 8  # finished models kept loaded in this process (shared by all sessions)
INTERRUPTED = "Interrupted: the server restarted while it trained."


class RunRefused(Exception):
    """A run that may not start (a limit, a bad setting) or a request its sender may not make; the
    message is for the page."""


# ---------------------------------------------------------------------------- limits


def _env_number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum:
        LOG.warning("%s=%r is not a number of at least %g; using %g", name, text, minimum, default)
        return default
    return value


@dataclass(frozen=True)
class Limits:
    """A shared server's limits. Defaults fit a 2-core server: 10¹² multiply-adds (forward, per image ×
    training images × epochs) is some minutes of training there; a GPU gets 100 times as many."""

    max_multiply_adds: float | None = None  # None: DEFAULT_MULTIPLY_ADDS for the run's device
    max_seconds: float = 600.0  # training time of one run; it then stops itself, keeping its model
    max_active_per_student: int = 2  # queued, running or paused at once
    max_queued: int = 50  # runs waiting on the whole server
    keep_hours: float = 24.0  # finished runs (and their models) kept this long

    DEFAULT_MULTIPLY_ADDS: ClassVar[dict[str, float]] = {"cpu": 1e12, "mps": 1e13, "cuda": 1e14}

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Limits:
        """CNNVIZ_MAX_RUN_MULTIPLY_ADDS, CNNVIZ_MAX_RUN_SECONDS, CNNVIZ_MAX_RUNS_PER_STUDENT,
        CNNVIZ_MAX_QUEUED_RUNS, CNNVIZ_RUN_KEEP_HOURS (a value that is not a number is logged and ignored)."""
        macs = environ.get("CNNVIZ_MAX_RUN_MULTIPLY_ADDS", "").strip()
        return cls(
            max_multiply_adds=_env_number(environ, "CNNVIZ_MAX_RUN_MULTIPLY_ADDS", math.nan, 1) if macs else None,
            max_seconds=_env_number(environ, "CNNVIZ_MAX_RUN_SECONDS", cls.max_seconds, 1),
            max_active_per_student=int(_env_number(environ, "CNNVIZ_MAX_RUNS_PER_STUDENT",
                                                   cls.max_active_per_student, 1)),
            max_queued=int(_env_number(environ, "CNNVIZ_MAX_QUEUED_RUNS", cls.max_queued, 1)),
            keep_hours=_env_number(environ, "CNNVIZ_RUN_KEEP_HOURS", cls.keep_hours, 0),
        )

    def multiply_adds(self, device: str) -> float:
        if self.max_multiply_adds is not None and math.isfinite(self.max_multiply_adds):
            return self.max_multiply_adds
        return self.DEFAULT_MULTIPLY_ADDS.get(device, self.DEFAULT_MULTIPLY_ADDS["cpu"])


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RunRequest:
    """What a page asks to train: the settings and the data they are for."""

    config: TrainConfig
    data: str  # key of cnnviz.data.TRAINING_DATA
    train_images: int
    test_images: int

    @property
    def dataset(self) -> str:
        return TRAINING_DATA[self.data].name


@dataclass(frozen=True)
class Requests:
    """What a run's owner asked for: stop, or be paused now (False: carry on)."""

    stop: bool = False
    pause: bool = False


@dataclass(frozen=True)
class RunRecord:
    """One run as of one moment (a new record for every change: safe to share between threads)."""

    id: str
    owner: str  # a student id (STUDENT_ID)
    config: TrainConfig
    data: str  # key of cnnviz.data.TRAINING_DATA
    dataset: str  # its cnnviz.data name, e.g. "fashion-mnist"
    source: str  # "bundled" or "full"
    classes: tuple[str, ...]
    in_shape: tuple[int, int, int]
    train_images: int
    test_images: int
    device: str  # "cpu", "cuda", "mps"
    device_label: str
    multiply_adds: int  # per image × training images × epochs (the limit's measure)
    memory_bytes: int  # what it needs on its device: the estimate, then as measured
    state: str = "queued"  # one of STATES
    message: str = ""
    queue_position: int | None = None  # 1 = next, while queued
    progress: TrainProgress | None = None
    history: History = field(default_factory=History)
    reports: tuple[EpochReport, ...] = ()
    stop_requested: bool = False
    pause_requested: bool = False
    checkpoint_epochs: float | None = None  # the epochs of the model kept on the server, if any
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def done(self) -> bool:
        return not self.active

    @property
    def requests(self) -> Requests:
        return Requests(self.stop_requested, self.pause_requested)

    @property
    def test_accuracy(self) -> float | None:
        """The last measured test accuracy (None before the first evaluation)."""
        return self.history.test_accuracy[-1] if self.history.test_accuracy else None


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, 22nd, 101st, 111th."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def state_text(record: RunRecord) -> str:
    """Where a run stands in a few words, as a list of runs shows it: 'waiting, 3rd in line',
    'training, epoch 1.40 of 3', 'paused', 'finished', 'stopped', 'failed', 'interrupted'."""
    if record.state == "queued":
        return f"waiting, {ordinal(record.queue_position)} in line" if record.queue_position else "waiting"
    if record.state == "running":
        if record.progress is None:
            return "starting"
        return f"training, epoch {record.progress.epoch:.2f} of {record.progress.epochs}"
    return {"error": "failed"}.get(record.state, record.state)


# Written to record.json: everything but the reports (reports.pt) and the queue position (not kept).
_NOT_IN_JSON = ("reports", "queue_position")


def record_to_json(record: RunRecord) -> dict:
    data = {f.name: getattr(record, f.name) for f in fields(record) if f.name not in _NOT_IN_JSON}
    data.update(config=asdict(record.config), history=asdict(record.history),
                progress=asdict(record.progress) if record.progress is not None else None,
                classes=list(record.classes), in_shape=list(record.in_shape))
    return data


def _known(cls, data: Mapping) -> dict:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def record_from_json(data: Mapping, reports: tuple[EpochReport, ...] = ()) -> RunRecord:
    """The record written by record_to_json (fields this version does not know are left out)."""
    values = _known(RunRecord, data)
    values.update(config=TrainConfig(**_known(TrainConfig, data["config"])),
                  history=History(**_known(History, data.get("history") or {})),
                  progress=TrainProgress(**_known(TrainProgress, data["progress"])) if data.get("progress") else None,
                  classes=tuple(data["classes"]), in_shape=tuple(data["in_shape"]), reports=reports)
    values.pop("queue_position", None)
    record = RunRecord(**values)
    if not RUN_ID.match(record.id) or record.state not in STATES:
        raise ValueError(f"not a run record: id {record.id!r}, state {record.state!r}")
    return record


def _report_to_dict(report: EpochReport) -> dict:
    return {f.name: getattr(report, f.name) for f in fields(report)}


def _report_from_dict(data: Mapping) -> EpochReport:
    return EpochReport(**_known(EpochReport, data))


def write_atomically(path: Path, data: bytes) -> None:
    """Write a file so that a reader (or a restart) finds the old one or the new one, never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    write_atomically(path, save_checkpoint(checkpoint))


def checkpoint_epochs(checkpoint: Checkpoint) -> float:
    return float(checkpoint.metrics.get("epochs", 0.0))


# ---------------------------------------------------------------------------- the store


class RunStore(ABC):
    """Where run records live; every method is safe to call from any thread.

    The pages read records and ask for stops (Runs); the executor moves runs through their states;
    a worker reports progress, history, epoch reports and checkpoints, and reads its requests. A
    store shared between processes (Redis) implements the same methods."""

    @abstractmethod
    def create(self, record: RunRecord) -> None: ...

    @abstractmethod
    def get(self, run_id: str) -> RunRecord | None: ...

    @abstractmethod
    def update(self, run_id: str, **changes) -> RunRecord | None:
        """Change fields of a run (state, message, progress, history, ...); None if there is no such run."""

    @abstractmethod
    def add_report(self, run_id: str, report: EpochReport) -> None: ...

    @abstractmethod
    def all(self) -> list[RunRecord]:
        """Every run, oldest first."""

    def by_owner(self, owner: str) -> list[RunRecord]:
        """A student's runs, newest first."""
        return sorted((r for r in self.all() if r.owner == owner), key=lambda r: r.created_at, reverse=True)

    def transfer(self, old_owner: str, new_owner: str) -> int:
        """Give `old_owner`'s runs to `new_owner` (a session's own id to its browser's, once known)."""
        moved = 0
        for record in self.all():
            if record.owner == old_owner:
                self.update(record.id, owner=new_owner)
                moved += 1
        return moved

    def request(self, run_id: str, *, stop: bool | None = None, pause: bool | None = None) -> None:
        """The owner asks for a stop (for good) or a pause (True) / resume (False)."""
        changes = {}
        if stop:
            changes["stop_requested"] = True
        if pause is not None:
            changes["pause_requested"] = pause
        if changes:
            self.update(run_id, **changes)

    def requests(self, run_id: str) -> Requests:
        record = self.get(run_id)
        return record.requests if record is not None else Requests(stop=True)

    @abstractmethod
    def save_checkpoint(self, run_id: str, checkpoint: Checkpoint) -> None:
        """Keep the run's model (the last epoch's while it trains, then the final one)."""

    @abstractmethod
    def checkpoint(self, run_id: str) -> Checkpoint | None:
        """The run's kept model, loaded once per process; None if it has none."""

    @abstractmethod
    def expire(self, now: float | None = None) -> list[str]:
        """Delete runs that ended longer ago than the keep time; their ids."""


class LoadedModels:
    """Finished runs' models, loaded once per process and shared by every session (the classify page and
    the explorer of a hall use the same few): the newest version of each run (a file's time stamp, a Redis
    version number), at most CHECKPOINTS_CACHED runs, the least recently used dropped first."""

    def __init__(self, size: int = CHECKPOINTS_CACHED):
        self.size = size
        self._models: OrderedDict[tuple[str, object], Checkpoint] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, run_id: str, version: object, source: Callable[[], str | os.PathLike | bytes | None]
            ) -> Checkpoint | None:
        """The run's model at this version; source() gives its file or bytes when it must be loaded (None:
        gone). A model that cannot be read is logged and None (the page says there is no model)."""
        key = (run_id, version)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        data = source()
        if data is None:
            return None
        try:
            loaded = load_checkpoint(data)
        except CheckpointError as error:
            LOG.warning("the model of run %s cannot be read: %s", run_id, error)
            return None
        with self._lock:
            self._drop(run_id)  # an older version of this run
            self._models[key] = loaded
            while len(self._models) > self.size:
                self._models.popitem(last=False)
        return loaded

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._drop(run_id)

    def _drop(self, run_id: str) -> None:
        for key in [k for k in self._models if k[0] == run_id]:
            del self._models[key]


class LocalRunStore(RunStore):
    """Records in this process's memory, each also on disk under `root`/<id>/ (record.json,
    reports.pt, checkpoint.pt), so that finished runs and their models survive a restart."""

    def __init__(self, root: str | os.PathLike, keep_hours: float = Limits.keep_hours):
        self.root = Path(root).expanduser().resolve()
        self.keep_s = keep_hours * 3600
        self._records: dict[str, RunRecord] = {}
        self._persisted_at: dict[str, float] = {}
        self._models = LoadedModels()
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ files

    def folder(self, run_id: str) -> Path:
        if not RUN_ID.match(run_id):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id

    def checkpoint_path(self, run_id: str) -> Path:
        return self.folder(run_id) / "checkpoint.pt"

    def _persist(self, record: RunRecord) -> None:
        folder = self.folder(record.id)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / "record.json", json.dumps(record_to_json(record)).encode())
        self._persisted_at[record.id] = time.monotonic()

    def _persist_reports(self, record: RunRecord) -> None:
        folder = self.folder(record.id)
        folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save([_report_to_dict(r) for r in record.reports], buffer)
        write_atomically(folder / "reports.pt", buffer.getvalue())

    def load(self) -> LocalRunStore:
        """Read the runs kept on disk (at the server's start). Runs that were queued, running or paused
        were interrupted by the restart: they say so, and keep the last epoch's model if there is one."""
        if not self.root.is_dir():
            return self
        now = time.time()
        for folder in sorted(self.root.iterdir()):
            if not (folder / "record.json").is_file() or not RUN_ID.match(folder.name):
                continue
            try:
                record = self._read(folder)
            except Exception as error:  # noqa: BLE001 - one damaged run must not keep the others away
                LOG.warning("run %s could not be read (%s); left out", folder.name, error)
                continue
            if record.active:
                kept = self._kept_checkpoint_epochs(record.id)
                record = replace(record, state="interrupted", finished_at=now, queue_position=None,
                                 checkpoint_epochs=kept, message=INTERRUPTED + _kept_text(kept))
                self._records[record.id] = record
                self._persist(record)
            else:
                self._records[record.id] = record
        self.expire(now)
        return self

    def _read(self, folder: Path) -> RunRecord:
        data = json.loads((folder / "record.json").read_text())
        reports: tuple[EpochReport, ...] = ()
        if (folder / "reports.pt").is_file():
            raw = torch.load(folder / "reports.pt", map_location="cpu", weights_only=True)
            reports = tuple(_report_from_dict(r) for r in raw)
        record = record_from_json(data, reports)
        if record.id != folder.name:
            raise ValueError(f"the record in {folder.name} is of run {record.id}")
        return record

    def _kept_checkpoint_epochs(self, run_id: str) -> float | None:
        path = self.checkpoint_path(run_id)
        if not path.is_file():
            return None
        try:
            return checkpoint_epochs(load_checkpoint(path))
        except CheckpointError:
            return None

    # ------------------------------------------------------------------ records

    def create(self, record: RunRecord) -> None:
        with self._lock:
            if record.id in self._records:
                raise ValueError(f"run {record.id} exists")
            self._records[record.id] = record
            self._persist(record)

    def get(self, run_id: str) -> RunRecord | None:
        return self._records.get(run_id)

    def all(self) -> list[RunRecord]:
        with self._lock:
            return list(self._records.values())

    def update(self, run_id: str, **changes) -> RunRecord | None:
        with self._lock:
            record = self._records.get(run_id)
            if record is None:
                return None
            new = replace(record, **changes)
            self._records[run_id] = new
            quiet = set(changes) <= {"progress", "history", "memory_bytes", "queue_position"}
            due = time.monotonic() - self._persisted_at.get(run_id, 0.0) >= PERSIST_EVERY_S
            if not quiet or (due and set(changes) != {"queue_position"}):
                self._persist(new)
            return new

    def add_report(self, run_id: str, report: EpochReport) -> None:
        with self._lock:
            record = self._records.get(run_id)
            if record is None:
                return
            record = replace(record, reports=record.reports + (report,))
            self._records[run_id] = record
            self._persist_reports(record)

    # ------------------------------------------------------------------ models

    def save_checkpoint(self, run_id: str, checkpoint: Checkpoint) -> None:
        write_checkpoint(self.checkpoint_path(run_id), checkpoint)
        self.checkpoint_written(run_id, checkpoint_epochs(checkpoint))

    def checkpoint_written(self, run_id: str, epochs: float) -> None:
        """A worker wrote the run's checkpoint file (cnnviz.worker, in its own process)."""
        self.update(run_id, checkpoint_epochs=epochs)

    def checkpoint(self, run_id: str) -> Checkpoint | None:
        record = self.get(run_id)
        if record is None or record.checkpoint_epochs is None:
            return None
        path = self.checkpoint_path(run_id)
        try:
            stamp = path.stat().st_mtime_ns
        except OSError:
            return None
        return self._models.get(run_id, stamp, lambda: path)

    # ------------------------------------------------------------------ lifetime

    def expire(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        with self._lock:
            gone = [r.id for r in self._records.values()
                    if r.done and (r.finished_at or r.created_at) + self.keep_s <= now]
            for run_id in gone:
                del self._records[run_id]
                self._persisted_at.pop(run_id, None)
                self._models.forget(run_id)
        for run_id in gone:
            shutil.rmtree(self.folder(run_id), ignore_errors=True)
        return gone


def _kept_text(epochs: float | None) -> str:
    if epochs is None:
        return " No epoch had ended, so no model was kept."
    return f" The model after {_epochs_text(epochs)} is kept."


def _epochs_text(epochs: float) -> str:
    whole = float(epochs).is_integer()
    value = f"{epochs:g}" if whole else f"{epochs:.2f}"
    return f"{value} epoch{'' if whole and epochs == 1 else 's'}"


# ---------------------------------------------------------------------------- slots


class Slots(ABC):
    """Which runs may train on one device at once. Used by the executor's one thread only."""

    releases_on_pause = True  # a paused run gives its place to the next (it keeps its memory)

    def __init__(self) -> None:
        self.held: dict[str, int] = {}  # run id -> memory need in bytes

    @abstractmethod
    def admits(self, need: int) -> bool:
        """Whether a run needing `need` bytes may start now."""

    def take(self, run_id: str, need: int) -> None:
        self.held[run_id] = int(need)

    def update(self, run_id: str, need: int) -> None:
        if run_id in self.held:
            self.held[run_id] = int(need)

    def release(self, run_id: str) -> None:
        self.held.pop(run_id, None)


class CountSlots(Slots):
    """A fixed number of runs at once. The CPU: one, since two runs would each get half the cores and
    all the contention between their threads."""

    def __init__(self, count: int = 1):
        super().__init__()
        self.count = count

    def admits(self, need: int) -> bool:
        return len(self.held) < self.count


class MemorySlots(Slots):
    """A GPU: runs train at once while the sum of their memory needs fits `headroom` × the device's
    free memory. The free memory is read when none of our runs holds any (others' use of the device
    then counts against us; ours is the needs we add up). A run is admitted alone whatever it needs
    (it then fails with a message if it truly does not fit). At most `max_runs` at once: each worker
    process feeds its GPU from a CPU core of its own."""

    releases_on_pause = False  # a paused worker keeps its GPU memory

    def __init__(self, free_bytes: Callable[[], int | None], headroom: float = MEMORY_HEADROOM,
                 max_runs: int | None = None):
        super().__init__()
        self.free_bytes, self.headroom = free_bytes, headroom
        self.max_runs = max_runs or os.cpu_count() or 1
        self.capacity: float | None = None

    def admits(self, need: int) -> bool:
        if not self.held:
            free = self.free_bytes()
            self.capacity = self.headroom * free if free is not None else None
            return True
        if self.capacity is None or len(self.held) >= self.max_runs:
            return False
        return sum(self.held.values()) + need <= self.capacity


def default_slots() -> dict[str, Slots]:
    slots: dict[str, Slots] = {"cpu": CountSlots(1)}
    if torch.cuda.is_available():
        slots["cuda"] = MemorySlots(lambda: free_memory_bytes(torch.device("cuda")))
    slots["mps"] = CountSlots(1)  # no free-memory count on MPS: one run at a time
    return slots


# ---------------------------------------------------------------------------- executors


class Executor(ABC):
    """Where runs train. The local one: worker processes of this server; cnnviz.runs_redis.RQExecutor:
    `submit` enqueues the run on its device's RQ queue."""

    @abstractmethod
    def submit(self, run_id: str) -> None:
        """Queue a created run for its device."""

    @abstractmethod
    def wake(self, run_id: str) -> None:
        """The run's requests changed (stop, pause, resume): act on them now."""

    def close(self) -> None:
        """End every run (the server is going down); their records say so."""


class WorkerProcess:
    """One worker process (`python -m cnnviz.worker`) and the socket to it. Messages both ways are
    pickles of tuples (plain pickle: torch's multiprocessing pickler would hand tensors over in shared
    memory, which outlives neither side cleanly)."""

    def __init__(self, record: RunRecord, checkpoint_path: Path):
        ours, theirs = socket.socketpair()
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), environment.get("PYTHONPATH")) if p)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cnnviz.worker", "--fd", str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env=environment, stdin=subprocess.DEVNULL)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.send(("start", record, str(checkpoint_path)))

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, message: tuple) -> None:
        try:
            self.conn.send_bytes(pickle.dumps(message))
        except OSError:
            pass  # it has ended; its exit is noticed by poll()

    def receive(self) -> tuple:
        return pickle.loads(self.conn.recv_bytes())

    def exit_code(self) -> int | None:
        return self.process.poll()

    def kill(self) -> None:
        """End it now (SIGTERM, then SIGKILL): torch's kernels do not wait for Python's signal handlers."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(0.3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def close(self) -> None:
        self.conn.close()


@dataclass
class _Worker:
    """The executor's view of one worker."""

    run_id: str
    device: str
    handle: WorkerProcess
    holds_slot: bool = True
    told: str = "run"  # the last command sent: "run" (start / resume), "pause", "stop"
    stop_deadline: float | None = None
    paused_since: float | None = None
    ended: bool = False  # the worker reported its final state
    eof: bool = False  # its socket is closed
    started: float = field(default_factory=time.monotonic)
    paused_total: float = 0.0


class LocalExecutor(Executor):
    """Worker processes of this server, one per running run, scheduled by one thread.

    Runs wait per device, first come first served, and see their place (record.queue_position);
    `slots` says how many of them train at once. A pause tells the worker to wait between steps; on
    a device whose slots release paused runs (the CPU) it gives its place to the next run and queues
    again on resume. A stop is sent at once; a worker still alive `stop_grace_s` later is ended, and
    the run keeps its last epoch's model. A worker that dies without a word (a crash, the kernel's
    out-of-memory killer) leaves its run in "error", never running forever."""

    def __init__(self, store: LocalRunStore, *, slots: dict[str, Slots] | None = None,
                 stop_grace_s: float = STOP_GRACE_S, tick_s: float = 0.1, launch=WorkerProcess):
        self.store = store
        self.slots = slots if slots is not None else default_slots()
        self.stop_grace_s, self.tick_s, self.launch = stop_grace_s, tick_s, launch
        self._queues: dict[str, list[str]] = {}
        self._workers: dict[str, _Worker] = {}
        self._events: list[tuple[str, str]] = []
        self._events_lock = threading.Lock()
        self._wake_reader, self._wake_writer = _wake_pipe()
        self._closed = threading.Event()
        self._expired_at = 0.0
        self._thread = threading.Thread(target=self._loop, name="cnnviz-runs", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ any thread

    def submit(self, run_id: str) -> None:
        self._post("submit", run_id)

    def wake(self, run_id: str) -> None:
        self._post("wake", run_id)

    def worker_pid(self, run_id: str) -> int | None:
        worker = self._workers.get(run_id)
        return worker.handle.pid if worker is not None else None

    def _post(self, kind: str, run_id: str) -> None:
        with self._events_lock:
            self._events.append((kind, run_id))
        try:
            os.write(self._wake_writer, b"x")
        except OSError:
            pass

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._post("close", "")
        self._thread.join(10)
        for worker in list(self._workers.values()):
            worker.handle.kill()
            worker.handle.close()
            self._interrupt(worker.run_id, "Interrupted: the server stopped while it trained.")
        for queue in self._queues.values():
            for run_id in queue:
                self._interrupt(run_id, "Interrupted: the server stopped before it started.")
        self._workers.clear()
        self._queues.clear()
        for fd in (self._wake_reader, self._wake_writer):
            os.close(fd)

    def _interrupt(self, run_id: str, message: str) -> None:
        record = self.store.get(run_id)
        if record is not None and record.active:
            kept = record.checkpoint_epochs
            self.store.update(run_id, state="interrupted", finished_at=time.time(), queue_position=None,
                              message=message + _kept_text(kept))

    # ------------------------------------------------------------------ the executor's thread

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                waiting = [w.handle.conn for w in self._workers.values() if not w.eof]
                ready = wait([*waiting, self._wake_reader], timeout=self.tick_s)
                if self._wake_reader in ready:
                    os.read(self._wake_reader, 4096)
                self._take_events()
                for worker in list(self._workers.values()):
                    if worker.handle.conn in ready:
                        self._receive(worker)
                self._step(time.monotonic())
            except Exception:
                LOG.exception("the run scheduler hit an error; it carries on")
                time.sleep(self.tick_s)

    def _take_events(self) -> None:
        with self._events_lock:
            events, self._events = self._events, []
        for kind, run_id in events:
            record = self.store.get(run_id) if run_id else None
            if kind == "submit" and record is not None and record.state == "queued":
                self._queues.setdefault(record.device, []).append(run_id)

    def _receive(self, worker: _Worker) -> None:
        """Apply what a worker reported to its run's record."""
        while not worker.eof:
            try:
                if not worker.handle.conn.poll():
                    return
                kind, *body = worker.handle.receive()
            except (EOFError, OSError):
                worker.eof = True
                return
            run_id = worker.run_id
            if kind == "update":
                self._apply_update(worker, body[0])
            elif kind == "report":
                self.store.add_report(run_id, body[0])
            elif kind == "checkpoint":
                self.store.checkpoint_written(run_id, body[0])

    def _apply_update(self, worker: _Worker, changes: dict) -> None:
        allowed = {"progress", "history", "memory_bytes", "state", "message", "finished_at"}
        changes = {k: v for k, v in changes.items() if k in allowed}
        if changes.get("state") not in (None, "finished", "stopped", "error"):
            changes.pop("state")  # the executor decides the states of a run that goes on
        if "state" in changes:
            worker.ended = True
        if "memory_bytes" in changes:
            self.slots[worker.device].update(worker.run_id, changes["memory_bytes"])
        record = self.store.update(worker.run_id, **changes)
        progress = changes.get("progress")
        if record is not None and progress is not None and progress.phase == "paused" and worker.told == "pause" \
                and record.state == "running":
            self._paused(worker)

    def _paused(self, worker: _Worker) -> None:
        worker.paused_since = time.monotonic()
        slots = self.slots[worker.device]
        if slots.releases_on_pause and worker.holds_slot:
            slots.release(worker.run_id)
            worker.holds_slot = False
        self.store.update(worker.run_id, state="paused",
                          message="The device is free for others until you resume." if not worker.holds_slot else
                          "It keeps its place on the device until you resume.")

    def _step(self, now: float) -> None:
        for worker in list(self._workers.values()):
            record = self.store.get(worker.run_id)
            if record is None:  # deleted under it
                worker.handle.kill()
            else:
                self._follow_requests(worker, record, now)
            if worker.handle.exit_code() is not None:
                if not worker.eof:
                    self._receive(worker)  # what it said before it ended
                self._ended(worker)
            elif worker.stop_deadline is not None and now >= worker.stop_deadline:
                worker.handle.kill()  # the next step sees it ended
        for device, queue in self._queues.items():
            self._admit(device, queue)
        if now - self._expired_at >= EXPIRE_EVERY_S:
            self._expired_at = now
            self.store.expire()

    def _follow_requests(self, worker: _Worker, record: RunRecord, now: float) -> None:
        """Turn the owner's requests (and the run's time limits) into commands to the worker."""
        if worker.told == "stop":
            return
        paused_for = now - worker.paused_since if worker.paused_since is not None else 0.0
        ran_for = now - worker.started - worker.paused_total - paused_for
        limit = record.config.time_limit_s
        if paused_for > PAUSE_LIMIT_S or (limit is not None and ran_for > 2 * limit + 60):
            record = self.store.update(worker.run_id, stop_requested=True)  # it stops itself, keeping its model
        if record.stop_requested:
            worker.handle.send(("stop",))
            worker.told, worker.stop_deadline = "stop", now + self.stop_grace_s
            self._leave_queue(worker.run_id, record.device)
        elif record.pause_requested and worker.told == "run" and record.state == "running":
            worker.handle.send(("pause",))
            worker.told = "pause"
        elif not record.pause_requested and worker.told == "pause":
            if record.state == "running":  # withdrawn before the worker paused
                worker.handle.send(("resume",))
                worker.told = "run"
            elif record.state == "paused":
                worker.paused_total += paused_for
                worker.paused_since = None
                if worker.holds_slot:
                    self._resume(worker)
                else:  # its place went to the next run: queue again
                    worker.told = "queued"
                    self.store.update(worker.run_id, state="queued", message="Waiting for the device again.")
                    self._queues.setdefault(worker.device, []).append(worker.run_id)

    def _resume(self, worker: _Worker) -> None:
        worker.handle.send(("resume",))
        worker.told = "run"
        self.store.update(worker.run_id, state="running", message="", queue_position=None)

    def _leave_queue(self, run_id: str, device: str) -> None:
        queue = self._queues.get(device, [])
        if run_id in queue:
            queue.remove(run_id)

    def _admit(self, device: str, queue: list[str]) -> None:
        """Start (or resume) the runs at the head of a device's queue while its slots admit them; the
        others see their place."""
        slots = self.slots.get(device) or self.slots.setdefault(device, CountSlots(1))
        for run_id in list(queue):
            record = self.store.get(run_id)
            if record is None or (record.stop_requested and run_id not in self._workers):
                queue.remove(run_id)
                if record is not None:
                    self.store.update(run_id, state="stopped", message="Stopped before it started.",
                                      finished_at=time.time(), queue_position=None)
        while queue:
            record = self.store.get(queue[0])
            if not slots.admits(record.memory_bytes):
                break
            queue.pop(0)
            slots.take(record.id, record.memory_bytes)
            if record.id in self._workers:  # a paused run coming back
                worker = self._workers[record.id]
                worker.holds_slot = True
                self._resume(worker)
            else:
                self._launch(record, slots)
        for position, run_id in enumerate(queue, start=1):
            record = self.store.get(run_id)
            if record is not None and record.queue_position != position:
                self.store.update(run_id, queue_position=position)

    def _launch(self, record: RunRecord, slots: Slots) -> None:
        try:
            handle = self.launch(record, self.store.checkpoint_path(record.id))
        except Exception as error:
            LOG.exception("a worker process could not start")
            slots.release(record.id)
            self.store.update(record.id, state="error", finished_at=time.time(), queue_position=None,
                              message=f"The training process could not start: {error}.")
            return
        self._workers[record.id] = _Worker(record.id, record.device, handle)
        self.store.update(record.id, state="running", started_at=time.time(), queue_position=None, message="")

    def _ended(self, worker: _Worker) -> None:
        """A worker process has exited: the run's final state if the worker could not say it."""
        del self._workers[worker.run_id]
        self._leave_queue(worker.run_id, worker.device)
        self.slots[worker.device].release(worker.run_id)
        worker.handle.close()
        record = self.store.get(worker.run_id)
        if record is None or not record.active:
            return
        code = worker.handle.exit_code()
        if worker.told == "stop":
            state, message = "stopped", "Stopped." + _kept_text(record.checkpoint_epochs)
        else:
            how = "was killed (perhaps the server ran out of memory)" if code == -9 else f"ended with code {code}"
            state, message = "error", f"Training failed: its process {how} before the run was done."
        self.store.update(worker.run_id, state=state, message=message, finished_at=time.time(), queue_position=None)


def _wake_pipe() -> tuple[int, int]:
    reader, writer = os.pipe()
    os.set_blocking(writer, False)
    return reader, writer


# ---------------------------------------------------------------------------- what pages use


def new_student_id() -> str:
    return secrets.token_urlsafe(16)


class Runs:
    """Starting, watching and controlling runs, for pages (any thread)."""

    def __init__(self, store: RunStore, executor: Executor, limits: Limits | None = None):
        self.store, self.executor = store, executor
        self.limits = limits or Limits()

    # ------------------------------------------------------------------ starting

    def refusals(self, owner: str, request: RunRequest, device: str | None = None) -> list[str]:
        """Why this student may not start this run now (empty: they may). The page shows these before
        Start; `start` checks them again."""
        config, found = request.config, []
        found += config.problems()
        if request.data not in TRAINING_DATA:
            return found + [f"There is no training data called {request.data!r}."]
        info = DATASETS[request.dataset]
        try:
            infos = analyse(parse_stack(config.stack), info.shape)
        except StackError as error:
            return found + [str(error)]
        problem = head_problem(infos, len(info.classes), info.title)
        if problem:
            found.append(problem)
        device = device or _device_type(config.device)
        macs_per_image = totals(infos).multiply_adds
        total = macs_per_image * request.train_images * config.epochs
        allowed = self.limits.multiply_adds(device)
        if total > allowed:
            found.append(
                f"This run is too big for this server: {notation.approx(total)} multiply-adds "
                f"({notation.count(macs_per_image)} per image × {notation.count(request.train_images)} images × "
                f"{notation.count(config.epochs)} epoch{'s' if config.epochs != 1 else ''}), and a run may have "
                f"{notation.approx(allowed)}. Train fewer epochs, use fewer filters, or pool earlier.")
        active = [r for r in self.store.by_owner(owner) if r.active]
        if len(active) >= self.limits.max_active_per_student:
            found.append(
                f"You have {notation.count(len(active))} run{'s' if len(active) != 1 else ''} going already, the most "
                "this server allows at once: stop one (Your runs) or wait until one ends.")
        waiting = sum(1 for r in self.store.all() if r.state == "queued")
        if waiting >= self.limits.max_queued:
            found.append(f"{notation.count(waiting)} runs are waiting for this server already; try again in a "
                         "few minutes.")
        return found

    def start(self, owner: str, request: RunRequest) -> RunRecord:
        """Create a run and queue it (RunRefused with every reason if it may not start)."""
        if not STUDENT_ID.match(owner or ""):
            raise RunRefused("This browser has no student id yet; reload the page.")
        config = request.config
        try:
            device = pick_device(config.device)
        except TrainError as error:
            raise RunRefused(str(error)) from None
        problems = self.refusals(owner, request, device.type)
        if problems:
            raise RunRefused(" ".join(problems))
        info = DATASETS[request.dataset]
        if device.type == "cpu":
            try:
                check_memory(config, info.shape, request.train_images, request.test_images, device)
            except (TrainError, StackError) as error:
                raise RunRefused(str(error)) from None
        limit = self.limits.max_seconds
        config = replace(config, time_limit_s=min(config.time_limit_s or limit, limit))
        need = estimate_memory(config, info.shape, request.train_images, request.test_images).total_bytes
        if device.type == "cuda":
            need += CUDA_CONTEXT_BYTES
        macs = totals(analyse(parse_stack(config.stack), info.shape)).multiply_adds
        record = RunRecord(
            id=self._new_id(), owner=owner, config=config, data=request.data, dataset=request.dataset,
            source=TRAINING_DATA[request.data].source, classes=tuple(info.classes), in_shape=tuple(info.shape),
            train_images=request.train_images, test_images=request.test_images, device=device.type,
            device_label=device_label(device), multiply_adds=macs * request.train_images * config.epochs,
            memory_bytes=need, state="queued", message="Waiting for the device.", created_at=time.time())
        self.store.create(record)
        self.executor.submit(record.id)
        return record

    def _new_id(self) -> str:
        while True:
            run_id = secrets.token_urlsafe(6)
            if self.store.get(run_id) is None:
                return run_id

    # ------------------------------------------------------------------ watching

    def get(self, run_id: str | None) -> RunRecord | None:
        if not run_id or not RUN_ID.match(run_id):
            return None
        return self.store.get(run_id)

    def of_owner(self, owner: str) -> list[RunRecord]:
        return self.store.by_owner(owner) if owner else []

    def checkpoint(self, run_id: str) -> Checkpoint | None:
        return self.store.checkpoint(run_id) if self.get(run_id) is not None else None

    def load(self, device: str) -> tuple[int, int]:
        """(training or paused, waiting) runs on a device type."""
        records = [r for r in self.store.all() if r.device == device]
        return (sum(r.state in ("running", "paused") for r in records),
                sum(r.state == "queued" for r in records))

    def transfer(self, old_owner: str, new_owner: str) -> int:
        if not STUDENT_ID.match(new_owner or ""):
            return 0
        return self.store.transfer(old_owner, new_owner)

    # ------------------------------------------------------------------ the owner's controls

    def _owned(self, run_id: str, owner: str) -> RunRecord:
        record = self.get(run_id)
        if record is None:
            raise RunRefused("This run is no longer on the server.")
        if record.owner != owner:
            raise RunRefused("Only the student who started this run can pause, resume or stop it.")
        return record

    def stop(self, run_id: str, owner: str) -> None:
        """Stop for good; the model trained so far is kept (within a second, whatever the run does)."""
        if self._owned(run_id, owner).active:
            self.store.request(run_id, stop=True)
            self.executor.wake(run_id)

    def pause(self, run_id: str, owner: str) -> None:
        if self._owned(run_id, owner).state == "running":
            self.store.request(run_id, pause=True)
            self.executor.wake(run_id)

    def resume(self, run_id: str, owner: str) -> None:
        if self._owned(run_id, owner).active:
            self.store.request(run_id, pause=False)
            self.executor.wake(run_id)

    def close(self) -> None:
        self.executor.close()


def _device_type(choice: str) -> str:
    try:
        return pick_device(choice).type
    except TrainError:
        return "cpu"


# ---------------------------------------------------------------------------- the backend


def runs_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """CNNVIZ_RUNS_DIR, or data/runs in the repository (git ignores data/)."""
    text = environ.get("CNNVIZ_RUNS_DIR", "").strip()
    return Path(text).expanduser() if text else ROOT / "data" / "runs"


def make_store(environ: Mapping[str, str] = os.environ, limits: Limits | None = None) -> RunStore:
    """The store the environment asks for (a worker of a job queue gets its store here too)."""
    limits = limits or Limits.from_environment(environ)
    if environ.get("CNNVIZ_REDIS_URL", "").strip():
        return _redis_backend(environ["CNNVIZ_REDIS_URL"].strip(), limits)[0]
    return LocalRunStore(runs_directory(environ), limits.keep_hours).load()


def make_backend(environ: Mapping[str, str] = os.environ) -> Runs:
    """Runs with the store and executor the environment asks for: local ones (records in this process
    and on disk, worker processes of this server), or with CNNVIZ_REDIS_URL a Redis store and a job
    queue (_redis_backend)."""
    limits = Limits.from_environment(environ)
    if environ.get("CNNVIZ_REDIS_URL", "").strip():
        store, executor = _redis_backend(environ["CNNVIZ_REDIS_URL"].strip(), limits)
        return Runs(store, executor, limits)
    store = LocalRunStore(runs_directory(environ), limits.keep_hours).load()
    return Runs(store, LocalExecutor(store), limits)


def _redis_backend(url: str, limits: Limits) -> tuple[RunStore, Executor]:
    """Several app servers and workers on one Redis (cnnviz.runs_redis): records, reports and models in
    Redis, runs queued on RQ (one queue per device) and trained by RQ workers anywhere."""
    from .runs_redis import RedisRunStore, RQExecutor

    store = RedisRunStore.from_url(url, limits.keep_hours)
    return store, RQExecutor(store, limits)


_SHARED: Runs | None = None
_SHARED_LOCK = threading.Lock()


def shared_backend() -> Runs:
    """This process's Runs, made on first use (loading the runs kept on disk); ended at exit."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = make_backend()
            atexit.register(close_shared_backend)
        return _SHARED


def close_shared_backend() -> None:
    """End this process's runs (at exit, or between tests: the next shared_backend() starts afresh)."""
    global _SHARED
    with _SHARED_LOCK:
        backend, _SHARED = _SHARED, None
    if backend is not None:
        backend.close()
