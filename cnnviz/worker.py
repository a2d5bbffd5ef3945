"""A training run's worker: trains one run of cnnviz.runs with cnnviz.train.Trainer and reports back.

Two ways in:

- `train_run(run_id, store)`: trains the run, sending its progress, curves, epoch reports and models
  to `store` (a cnnviz.runs.RunStore; by default the one the environment names, `make_store()`, which
  is how a job queue's worker such as RQ would call it) and obeying its owner's requests (stop within
  a second, pause between steps), read from the store every REQUESTS_EVERY_S.
- `python -m cnnviz.worker --fd N`: a worker process of cnnviz.runs.LocalExecutor. It is told its run
  over the socket N, and reports over it (`ParentLink`, a store that forwards to the server); the
  server's commands come back the same way. It imports torch and cnnviz only (no streamlit), loads the
  data itself, and exits when its run ends, so its memory (GPU memory included) goes with it. It exits
  as well when the server is gone (its socket closes).
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import pickle
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from . import notation
from .checkpoint import Checkpoint
from .data import DataUnavailable, ImageSet, load_images
from .runs import (
    CUDA_CONTEXT_BYTES,
    Requests,
    RunRecord,
    RunStore,
    checkpoint_epochs,
    make_store,
    write_checkpoint,
)
from .train import Control, EpochReport, History, Trainer, TrainError, TrainProgress

LOG = logging.getLogger(__name__)
REQUESTS_EVERY_S = 0.05  # how often the owner's requests are read: a stop is seen within this
DATA_FOLDER_NAME = "the server's data folder"  # as ui.datasets names it: never the server's path


@functools.lru_cache(maxsize=4)
def image_sets(dataset: str, source: str) -> tuple[ImageSet, ImageSet]:
    """The (train, test) splits, read once per worker process (a job queue's worker lives for many runs)."""
    return (load_images(dataset, "train", source=source, root_name=DATA_FOLDER_NAME),
            load_images(dataset, "test", source=source, root_name=DATA_FOLDER_NAME))


class _Requests(threading.Thread):
    """Reads the owner's requests from the store and sets the trainer's Control accordingly."""

    def __init__(self, store: RunStore, run_id: str, control: Control):
        super().__init__(name=f"cnnviz-requests-{run_id}", daemon=True)
        self.store, self.run_id, self.control = store, run_id, control
        self.finished = threading.Event()

    def run(self) -> None:
        while not self.finished.wait(REQUESTS_EVERY_S):
            requests = self.store.requests(self.run_id)
            if requests.stop:
                self.control.stop()
            elif requests.pause and not self.control.pause_requested:
                self.control.pause()
            elif not requests.pause and self.control.pause_requested:
                self.control.resume()


def _memory_reporter(store: RunStore, run_id: str, device: torch.device):
    """On CUDA: the run's measured need (the most torch has reserved, and the process's CUDA context),
    told to the store whenever it grew by more than 5 %, so the scheduler counts what runs really use."""
    told = [0]

    def report() -> None:
        if device.type != "cuda":
            return
        need = torch.cuda.max_memory_reserved(device) + CUDA_CONTEXT_BYTES
        if need > told[0] * 1.05:
            told[0] = need
            store.update(run_id, memory_bytes=int(need))

    return report


def _final_message(stopped: bool, by_request: bool, epochs: float, accuracy: float | None,
                   time_limit_s: float | None) -> str:
    count = f"{epochs:g}" if float(epochs).is_integer() else f"{epochs:.2f}"
    plural = "" if epochs == 1 else "s"
    if not stopped:
        text = f"Finished {count} epoch{plural}"
    elif by_request or time_limit_s is None:
        text = f"Stopped after {count} epoch{plural}"
    else:
        text = f"Stopped at the server's limit of {notation.seconds(time_limit_s)} of training, after {count} epoch{plural}"
    return text + (f": test accuracy {notation.percent(accuracy)}." if accuracy is not None else ".")


def train_run(run_id: str, store: RunStore | None = None) -> str:
    """Train run `run_id` to its end and record it; returns its final state ("finished", "stopped" or
    "error"). Never raises for a problem of the run: the record says what went wrong."""
    store = store if store is not None else make_store()
    record = store.get(run_id)
    if record is None:
        return "error"
    control = Control()
    requests = _Requests(store, run_id, control)
    requests.start()
    try:
        result, control = _train(store, record, control)
    except (TrainError, DataUnavailable) as error:
        store.update(run_id, state="error", message=str(error), finished_at=time.time())
        return "error"
    except Exception as error:  # noqa: BLE001 - a run ends with a message, never silently
        LOG.error("run %s failed:\n%s", run_id, traceback.format_exc())
        store.update(run_id, state="error", message=f"Training failed: {type(error).__name__}: {error}",
                     finished_at=time.time())
        return "error"
    finally:
        requests.finished.set()
    store.save_checkpoint(run_id, result.checkpoint)
    state = "stopped" if result.stopped else "finished"
    store.update(run_id, state=state, history=result.history, finished_at=time.time(),
                 message=_final_message(result.stopped, control.stop_requested, result.epochs_done,
                                        result.test_accuracy, record.config.time_limit_s))
    return state


def _train(store: RunStore, record: RunRecord, control: Control):
    train_set, test_set = image_sets(record.dataset, record.source)
    trainer: Trainer | None = None
    report_memory = _memory_reporter(store, record.id, torch.device(record.device))

    def on_progress(progress: TrainProgress, history: History) -> None:
        store.update(record.id, progress=progress, history=history.copy())
        report_memory()

    def on_epoch(report: EpochReport) -> None:
        store.add_report(record.id, report)
        if report.epoch >= 1:  # the model after each epoch is kept: a stop or a restart keeps it
            store.save_checkpoint(record.id, trainer.checkpoint())

    trainer = Trainer(record.config, train_set, test_set, classes=list(record.classes), dataset=record.dataset,
                      control=control, on_progress=on_progress, on_epoch=on_epoch, device=record.device)
    return trainer.run(), control


# ---------------------------------------------------------------------------- a local worker process


class ParentLink(RunStore):
    """The store as a worker process of the local executor sees it: its own record, reports sent over
    the socket to the server (which writes them to the real store), checkpoints written to the run's
    file directly (the same disk; only a note goes over the socket), and the server's commands."""

    def __init__(self, conn: Connection, record: RunRecord, checkpoint_path: str):
        self.conn, self.record, self.path = conn, record, Path(checkpoint_path)
        self._requests = Requests()
        self._send_lock = threading.Lock()
        threading.Thread(target=self._listen, name="cnnviz-commands", daemon=True).start()

    def _listen(self) -> None:
        """Commands from the server; when the server is gone, so is this worker."""
        while True:
            try:
                command, *_ = pickle.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                os._exit(3)
            if command == "stop":
                self._requests = Requests(stop=True)
            elif command in ("pause", "resume"):
                self._requests = Requests(stop=self._requests.stop, pause=command == "pause")

    def _send(self, message: tuple) -> None:
        with self._send_lock:
            self.conn.send_bytes(pickle.dumps(message))

    def create(self, record: RunRecord) -> None:
        raise NotImplementedError("a worker does not create runs")

    def get(self, run_id: str) -> RunRecord | None:
        return self.record if run_id == self.record.id else None

    def all(self) -> list[RunRecord]:
        return [self.record]

    def update(self, run_id: str, **changes) -> RunRecord | None:
        self._send(("update", changes))
        return None

    def add_report(self, run_id: str, report: EpochReport) -> None:
        self._send(("report", report))

    def requests(self, run_id: str) -> Requests:
        return self._requests

    def save_checkpoint(self, run_id: str, checkpoint: Checkpoint) -> None:
        write_checkpoint(self.path, checkpoint)
        self._send(("checkpoint", checkpoint_epochs(checkpoint)))

    def checkpoint(self, run_id: str) -> Checkpoint | None:
        return None

    def expire(self, now: float | None = None) -> list[str]:
        return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A worker process of cnnviz.runs.LocalExecutor.")
    parser.add_argument("--fd", type=int, required=True, help="the socket to the server")
    args = parser.parse_args(argv)
    conn = Connection(args.fd)
    kind, record, checkpoint_path = pickle.loads(conn.recv_bytes())
    if kind != "start":
        return 2
    train_run(record.id, ParentLink(conn, record, checkpoint_path))
    conn.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
