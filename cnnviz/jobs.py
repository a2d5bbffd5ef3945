"""Training runs as background jobs that many students can share one server with.

A `TrainingJob` runs a `cnnviz.train.Trainer` in its own thread, so a page can rerun,
switch to another page and come back without stopping it; `snapshot()` returns, from any
thread, an immutable picture of where it stands (state, queue position, progress, curves,
the per-epoch reports, the finished checkpoint or the error).

Jobs queue for their device: `DEVICE_QUEUE` lets one job at a time train on each device
type (the GPU, or this server's CPU cores), the others wait in arrival order and see their
position. A paused job gives its place up to the next one and queues again on resume. A
CUDA out-of-memory error ends that job with a message; the others carry on.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import torch

from .checkpoint import Checkpoint
from .train import Control, EpochReport, History, TrainConfig, Trainer, TrainError, TrainProgress, device_label

LOG = logging.getLogger(__name__)

# Jobs that may train at once on each device type. One GPU job at a time keeps the memory
# of one student's model from pushing another's out; on the CPU, two jobs would each get
# half the cores and all the thread contention, so they queue as well.
DEVICE_SLOTS = {"cuda": 1, "mps": 1, "cpu": 1}

STATES = ("queued", "running", "paused", "finished", "stopped", "error")
ACTIVE = ("queued", "running", "paused")


class DeviceQueue:
    """First come, first served slots per device type; thread-safe, process-wide."""

    def __init__(self, slots: dict[str, int] | None = None):
        self.slots = dict(DEVICE_SLOTS if slots is None else slots)
        self._cond = threading.Condition()
        self._waiting: dict[str, list[int]] = {}
        self._running: dict[str, set[int]] = {}
        self._tickets = itertools.count(1)

    def ticket(self) -> int:
        return next(self._tickets)

    def acquire(self, device_type: str, ticket: int, cancelled: Callable[[], bool] = lambda: False,
                poll_s: float = 0.2) -> bool:
        """Wait for a slot; False (and out of the queue) if `cancelled()` becomes true first."""
        with self._cond:
            waiting = self._waiting.setdefault(device_type, [])
            running = self._running.setdefault(device_type, set())
            waiting.append(ticket)
            try:
                while True:
                    if cancelled():
                        return False
                    if waiting[0] == ticket and len(running) < self.slots.get(device_type, 1):
                        running.add(ticket)
                        return True
                    self._cond.wait(poll_s)
            finally:
                waiting.remove(ticket)
                self._cond.notify_all()

    def release(self, device_type: str, ticket: int) -> None:
        with self._cond:
            self._running.get(device_type, set()).discard(ticket)
            self._cond.notify_all()

    def position(self, device_type: str, ticket: int) -> int | None:
        """0 while running, 1.. while waiting (1 = next), None when in neither."""
        with self._cond:
            if ticket in self._running.get(device_type, ()):
                return 0
            waiting = self._waiting.get(device_type, [])
            return waiting.index(ticket) + 1 if ticket in waiting else None

    def load(self, device_type: str) -> tuple[int, int]:
        """(running, waiting) on a device type."""
        with self._cond:
            return len(self._running.get(device_type, ())), len(self._waiting.get(device_type, ()))


DEVICE_QUEUE = DeviceQueue()


@dataclass(frozen=True)
class JobSnapshot:
    """Everything a page shows about a job, as of one moment (never changed after it is made)."""

    state: str  # one of STATES
    device: str  # "cuda", "mps", "cpu"
    device_label: str
    config: TrainConfig
    queue_position: int | None = None  # 1 = next in line, while queued
    progress: TrainProgress | None = None
    history: History = field(default_factory=History)
    reports: tuple[EpochReport, ...] = ()
    checkpoint: Checkpoint | None = None
    message: str = ""  # what happened, for the page (errors in plain words)
    started_at: float = 0.0
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def done(self) -> bool:
        return not self.active


class JobControl(Control):
    """Pausing hands the device slot to the next job in the queue; resuming queues again."""

    def __init__(self, job: TrainingJob):
        super().__init__()
        self.job = job

    def wait_while_paused(self) -> None:
        job = self.job
        job._release_slot()
        job._update(state="paused", message="the device is free for others until you resume.")
        super().wait_while_paused()
        if self.stop_requested:
            return
        job._update(state="queued", message="Waiting for the device again.")
        if job._acquire_slot():
            job._update(state="running", message="")


class TrainingJob:
    """One training run in a background thread. Everything is checked when the job is made
    (TrainError / StackError with a message), so a page can explain a bad setting before
    anything starts; `start()` then queues it for its device."""

    def __init__(self, config: TrainConfig, train_set, test_set, *, classes: Sequence[str] | None = None,
                 dataset: str | None = None, queue: DeviceQueue = DEVICE_QUEUE,
                 device: torch.device | str | None = None):
        self.queue = queue
        self.control = JobControl(self)
        self._lock = threading.Lock()
        self.trainer = Trainer(config, train_set, test_set, classes=classes, dataset=dataset, control=self.control,
                               on_progress=self._on_progress, on_epoch=self._on_epoch, device=device)
        self.device = self.trainer.device
        self._ticket = queue.ticket()
        self._holding = False
        self._thread: threading.Thread | None = None
        self._snapshot = JobSnapshot(state="queued", device=self.device.type, device_label=device_label(self.device),
                                     config=config, started_at=time.time(), message="Not started yet.")
        self.result = None

    # ------------------------------------------------------------------ control (any thread)

    def start(self) -> TrainingJob:
        if self._thread is not None:
            return self
        self._update(message="Waiting for the device.")
        self._thread = threading.Thread(target=self._main, name=f"cnnviz-train-{self._ticket}", daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        if self.snapshot().state in ("running", "queued"):
            self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    def stop(self) -> None:
        """Stop soon (between two steps); the model trained so far is kept and evaluated."""
        self.control.stop()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (or timeout); True when it has ended."""
        if self._thread is None:
            return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> JobSnapshot:
        snap = self._snapshot
        if snap.state == "queued":
            return replace(snap, queue_position=self.queue.position(self.device.type, self._ticket))
        return snap

    # ------------------------------------------------------------------ the thread

    def _update(self, **changes) -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, **changes)

    def _acquire_slot(self) -> bool:
        got = self.queue.acquire(self.device.type, self._ticket, cancelled=lambda: self.control.stop_requested)
        self._holding = got
        return got

    def _release_slot(self) -> None:
        if self._holding:
            self._holding = False
            self.queue.release(self.device.type, self._ticket)

    def _on_progress(self, progress: TrainProgress, history: History) -> None:
        history = history.copy()
        with self._lock:
            self._snapshot = replace(self._snapshot, progress=progress, history=history)

    def _on_epoch(self, report: EpochReport) -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, reports=self._snapshot.reports + (report,))

    def _main(self) -> None:
        try:
            if not self._acquire_slot():
                self._update(state="stopped", message="Stopped before it started.", finished_at=time.time())
                return
            self._update(state="running", message="")
            result = self.trainer.run()
            self.result = result
            self._update(
                state="stopped" if result.stopped else "finished", checkpoint=result.checkpoint,
                history=result.history.copy(), finished_at=time.time(),
                message=(f"Stopped after {result.epochs_done:.2f} epochs" if result.stopped else
                         f"Finished {result.epochs_done:g} epoch{'s' if result.epochs_done != 1 else ''}") +
                        (f": test accuracy {result.test_accuracy:.1%}." if result.test_accuracy is not None else "."))
        except TrainError as error:
            self._update(state="error", message=str(error), finished_at=time.time())
        except Exception as error:  # noqa: BLE001 - a job must end with a message, never silently
            LOG.error("training job failed:\n%s", traceback.format_exc())
            self._update(state="error", message=f"Training failed: {type(error).__name__}: {error}",
                         finished_at=time.time())
        finally:
            self._release_slot()
            self.trainer = _Finished(self.trainer)  # let the data and model go


class _Finished:
    """What is left of a trainer after its run: the settings, not the tensors."""

    def __init__(self, trainer: Trainer):
        self.config = trainer.config
        self.device = trainer.device
        self.classes = trainer.classes
        self.in_shape = trainer.in_shape
