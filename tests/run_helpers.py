"""What the training-run tests share (tests/test_runs.py, tests/test_runs_redis.py): small stacks, a run's
request on the bundled Fashion-MNIST subset, and waiting for a condition."""

from __future__ import annotations

import time

from cnnviz.runs import RunRecord, RunRequest
from cnnviz.train import TrainConfig

TINY = "conv3x4,relu,maxpool2,flatten,fc10"
# 6 convolutions of 64 filters at 28×28: 145 million multiply-adds per image, a step of 512 images takes
# seconds on one CPU thread (a stop must not wait for it).
SLOW = ",".join(["conv3x64,relu"] * 6) + ",gap,fc10"


def config(**changes) -> TrainConfig:
    base = {"stack": TINY, "device": "cpu", "epochs": 1, "batch_size": 256, "threads": 1}
    base.update(changes)
    return TrainConfig(**base)


def request(**changes) -> RunRequest:
    return RunRequest(config(**changes), "fashion", 6000, 1000)


def run_record(run_id="abcdefgh", owner="s" * 22, state="finished", **changes) -> RunRecord:
    """A run's record as a store keeps it, for the store tests (the bundled data, a two-epoch config)."""
    base = {"id": run_id, "owner": owner, "config": config(epochs=2), "data": "fashion",
            "dataset": "fashion-mnist", "source": "bundled", "classes": tuple(str(k) for k in range(10)),
            "in_shape": (1, 28, 28), "train_images": 6000, "test_images": 1000, "device": "cpu",
            "device_label": "CPU (1 thread)", "multiply_adds": 1, "memory_bytes": 10, "state": state,
            "created_at": time.time()}
    base.update(changes)
    return RunRecord(**base)


def wait_for(condition, timeout=30.0, what="condition", every=0.01):
    """condition()'s first truthy value within timeout seconds, else the test fails naming `what`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")
